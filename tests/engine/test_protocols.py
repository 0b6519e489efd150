"""Protocol runners: the paper's aggregation (mean ± std, 3-draw averages, HM) and the CLI end to end."""

from __future__ import annotations

import json

import pytest

from vificlip.cli import main
from vificlip.engine import protocols, report
from vificlip.engine.config import ConfigError, to_yaml
from vificlip.engine.evaluate import EvalSpec
from vificlip.engine.metrics import EvalResult
from vificlip.model.loading import load_model


def fake_result(top1: float) -> EvalResult:
    return EvalResult(top1, 100.0, top1, 10, 10, 0, [])


@pytest.fixture
def scripted(monkeypatch, toy_task):
    """No training; evaluation returns the scripted top-1 for each evaluation name."""
    scores: dict[str, float] = {}
    monkeypatch.setattr(
        protocols, "_trained_model", lambda cfg, device, overwrite=False: load_model(toy_task.checkpoint)
    )
    monkeypatch.setattr(
        protocols, "evaluate_config", lambda cfg, model, spec, device, out: fake_result(scores[spec.name])
    )
    return scores


def test_zeroshot_mean_and_std_over_splits_with_wise_row(scripted, toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "zs", {"eval.wise_alpha": 0.5})
    scripted.update({"hmdb_51_split1": 50.0, "hmdb_51_split2": 52.0, "hmdb_51_split3": 51.0,
                     "hmdb_51_split1_wise": 40.0, "hmdb_51_split2_wise": 40.0, "hmdb_51_split3_wise": 43.0})  # fmt: skip
    result = protocols.run_zeroshot(cfg, {"HMDB-51": [cfg, cfg, cfg]}, tmp_path / "zs")
    assert result.summary["HMDB-51"]["mean"] == pytest.approx(51.0)
    assert result.summary["HMDB-51"]["std"] == pytest.approx((2 / 3) ** 0.5)  # population std over 3 splits
    assert result.cells == {"HMDB-51": "51.0 ± 0.8"} and result.wise_cells == {"HMDB-51": "41.0 ± 1.4"}
    table = (tmp_path / "zs" / "results.md").read_text()
    assert "| ViFi-CLIP | 4x32 | 51.0 ± 0.8 |" in table and "WiSE-FT (α=0.5) | 4x32 | 41.0 ± 1.4 |" in table


def test_base2novel_hm_of_the_averaged_base_and_novel(scripted, toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "b2n")
    scripted.update({"draw1_base": 70.0, "draw2_base": 75.0, "draw3_base": 80.0,
                     "draw1_novel": 50.0, "draw2_novel": 55.0, "draw3_novel": 45.0})  # fmt: skip
    result = protocols.run_base2novel([cfg] * 3, EvalSpec("novel"), tmp_path / "b2n", dataset="HMDB-51")
    s = result.summary["model"]
    assert (s["base"], s["novel"]) == (pytest.approx(75.0), pytest.approx(50.0))
    assert s["hm"] == pytest.approx(60.0)  # 2·75·50/125, not the mean of per-draw HMs (≈ 59.8)
    assert result.cells == {"HMDB-51": "75.0 / 50.0 / 60.0"}
    saved = json.loads((tmp_path / "b2n" / "results.json").read_text())
    assert saved["protocol"] == "base2novel" and len(saved["runs"]) == 6


def test_fewshot_row_and_merged_report(scripted, toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "fs")
    scripted.update({"k2": 57.25, "k4": 62.7, "k8": 64.5, "k16": 66.8})
    protocols.run_fewshot({16: cfg, 2: cfg, 4: cfg, 8: cfg}, tmp_path / "fs", dataset="HMDB-51")
    text_ft = toy_task.config(tmp_path / "fs_text", {"model.variant": "text"})
    scripted.update({"k2": 50.0, "k4": 51.0, "k8": 52.0, "k16": 53.0})
    protocols.run_fewshot(
        {2: text_ft, 4: text_ft, 8: text_ft, 16: text_ft}, tmp_path / "fs_text", dataset="HMDB-51"
    )
    merged = report.merge_reports([tmp_path / "fs", tmp_path / "fs_text"])
    assert "| Method | Input | HMDB-51 K=2/4/8/16 |" in merged
    assert "| ViFi-CLIP | 4x32 | 57.2 / 62.7 / 64.5 / 66.8 |" in merged
    assert "| CLIP text-FT | 4x32 | 50.0 / 51.0 / 52.0 / 53.0 |" in merged


def test_plans_from_data_presets_follow_the_authors_files(toy_task, tmp_path):
    from vificlip.engine.config import load_config

    draws, novel, title = protocols.plan_base2novel(load_config("b2n_hmdb"))
    assert title == "HMDB-51" and [d.data.train_list.rsplit("/", 1)[1] for d in draws] == [
        "fs_base_s1_train.txt", "fs_base_s2_train.txt", "fs_base_s3_train.txt"]  # fmt: skip
    assert draws[0].data.labels.endswith("hmdb_51_base_labels.csv") and novel.labels.endswith(
        "novel_labels.csv"
    )
    runs, _ = protocols.plan_fewshot(load_config("fewshot_ucf"), [2, 16])
    assert runs[16].data.train_list.endswith("train1_few_shot_16.txt") and runs[2].data.val_list.endswith(
        "val1.txt"
    )
    targets = protocols.plan_zeroshot(load_config("zeroshot_k400_vifi"))
    assert list(targets) == ["HMDB-51", "UCF-101", "Kinetics-600 (zero-shot splits)"]
    assert [t.data.labels for t in targets["Kinetics-600 (zero-shot splits)"]] == [
        f"labels/ZS_split{i}_K600.csv" for i in (1, 2, 3)]  # fmt: skip


@pytest.mark.slow
def test_cli_train_eval_run_and_report_end_to_end(toy_task, tmp_path, capsys):
    cfg = toy_task.config(tmp_path / "unused", {"train.epochs": 1, "protocol.novel_val_list": str(toy_task.val_list),
                                                "protocol.novel_labels": str(toy_task.labels)})  # fmt: skip
    config = tmp_path / "toy.yaml"
    config.write_text(to_yaml(cfg))
    run = tmp_path / "train"
    assert main(["train", str(config), "--output", str(run)]) == 0
    assert main(["eval", str(config), "--checkpoint", str(run), "--views", "2x3", "--wise-alpha", "0.5",
                 "--output", str(tmp_path / "eval")]) == 0  # fmt: skip
    assert (tmp_path / "eval" / "evals" / "eval_2x3.json").is_file() and (
        tmp_path / "eval" / "evals" / "eval_2x3_wise0.5.json"
    ).is_file()
    out = capsys.readouterr().out
    assert "model: top-1" in out and "wise: top-1" in out and "6 of 6 videos scored" in out
    assert main(["run", "base2novel", "--preset", str(config), "--output", str(tmp_path / "b2n")]) == 0
    assert main(["run", "fewshot", "--preset", str(config), "--shots", "2", "--variant", "image",
                 "--output", str(tmp_path / "fs")]) == 0  # fmt: skip
    assert main(["run", "supervised", "--preset", str(config), "--set", "eval.final_num_clips=2", "--set",
                 "eval.final_num_crops=3", "--output", str(tmp_path / "sup")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["report", str(tmp_path / "b2n"), str(tmp_path / "fs"), str(tmp_path / "sup")]) == 0
    report = capsys.readouterr().out
    assert "| Method | Input | Views | Top-1 | Top-5 |" in report and "| 2×3 |" in report
    supervised = json.loads((tmp_path / "sup" / "results.json").read_text())
    assert supervised["runs"][0]["views"] == "2x3" and supervised["runs"][0]["num_videos"] == 6
    assert (
        "Base-to-novel" in report
        and "| ViFi-CLIP | 4x32 |" in report
        and "| CLIP image-FT | 4x32 |" in report
    )
    # Bad input reaches the user as one line and exit status 2.
    assert main(["train", str(config), "--resume", "auto", "--init-from", str(run)]) == 2
    assert main(["run", "base2novel"]) == 2
    assert main(["eval", str(config), "--checkpoint", str(run), "--views", "2x2"]) == 2


def test_zeroshot_with_a_given_checkpoint_trains_nothing(toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "zs")
    result = protocols.run_zeroshot(
        cfg, {"Toy": [cfg, cfg]}, tmp_path / "zs", checkpoint=str(toy_task.checkpoint)
    )
    assert result.summary["Toy"]["std"] == 0 and len(result.summary["Toy"]["splits"]) == 2
    assert not (tmp_path / "zs" / "checkpoints").exists()
    assert (tmp_path / "zs" / "evals" / "eval_toy_split2.json").is_file()


def test_rerunning_a_protocol_reuses_finished_trainings(toy_task, tmp_path, monkeypatch):
    cfg = toy_task.config(tmp_path / "fs", {"train.epochs": 1})
    first = protocols.run_fewshot({2: protocols._sub(cfg, tmp_path / "fs", "k2")}, tmp_path / "fs")
    monkeypatch.setattr(protocols, "train", lambda *a, **k: pytest.fail("trained again"))
    again = protocols.run_fewshot({2: protocols._sub(cfg, tmp_path / "fs", "k2")}, tmp_path / "fs")
    assert again.cells == first.cells


def _trained(toy_task, run_dir, top1s: list[float], overrides: dict | None = None):
    """A config whose run folder holds a finished training that evaluated epochs 0, 1, … with these top-1s."""
    cfg = toy_task.config(run_dir, overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    evals = [{"epoch": e, **fake_result(t).to_json()} for e, t in enumerate(top1s)]
    (run_dir / "train_results.json").write_text(
        json.dumps({"evals": evals, "final": None, "checkpoint": None})
    )
    return cfg


def test_results_carry_the_last_epoch_and_the_best_evaluated_epoch(scripted, toy_task, tmp_path):
    scripted.update({"k2": 40.0, "k4": 45.0})  # the last epoch's model, scored after training
    runs = {
        2: _trained(toy_task, tmp_path / "k2", [30.0, 50.0, 40.0]),
        4: _trained(toy_task, tmp_path / "k4", [45.0]),
    }
    result = protocols.run_fewshot(runs, tmp_path / "fs", dataset="HMDB-51")
    assert result.summary["best"]["k2"] == {
        "epoch": 1,
        "top1": 50.0,
        "top5": 100.0,
        "last_epoch": 2,
        "last_top1": 40.0,
    }
    table = (tmp_path / "fs" / "results.md").read_text()
    assert "| ViFi-CLIP | 4x32 | 40.0 / 45.0 |" in table
    assert "| ViFi-CLIP, best evaluated epoch | 4x32 | 50.0 / 45.0 |" in table
    assert "last epoch (vificlip's default)" in table and "max_accuracy" in table

    scripted.update(
        {f"draw{i}_{half}": v for i in (1, 2, 3) for half, v in (("base", 70.0), ("novel", 50.0))}
    )
    draws = [_trained(toy_task, tmp_path / f"s{i}", [60.0, 80.0 + i, 70.0]) for i in (1, 2, 3)]
    b2n = protocols.run_base2novel(draws, EvalSpec("novel"), tmp_path / "b2n", dataset="HMDB-51")
    assert b2n.best_cells == {"HMDB-51": "82.0 / – / –"} and b2n.cells == {"HMDB-51": "70.0 / 50.0 / 58.3"}

    scripted.update({"final_1x1": 61.0})
    sup = protocols.run_supervised(_trained(toy_task, tmp_path / "sup", [55.0, 63.5, 61.0]), tmp_path / "sup")
    assert sup.cells["Top-1"] == "61.0" and sup.best_cells["Top-1"] == "63.5 (epoch 1)"
    assert report.load_result(tmp_path / "sup").best_cells == sup.best_cells  # read back from results.json


def test_no_best_row_without_training_evaluations(scripted, toy_task, tmp_path):
    scripted.update({"k2": 40.0})
    result = protocols.run_fewshot({2: toy_task.config(tmp_path / "k2")}, tmp_path / "fs", dataset="HMDB-51")
    assert (
        result.best_cells is None
        and "best evaluated epoch" not in (tmp_path / "fs" / "results.md").read_text()
    )


@pytest.mark.parametrize("text", ['{"a": 1}', "[1, 2]", '{"protocol": "fewshot"}'])
def test_report_on_a_file_that_is_not_a_protocol_result_is_one_line(tmp_path, text, capsys):
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(ConfigError, match="not a protocol result"):
        report.load_result(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a protocol result" in err and len(err.splitlines()) == 1 and "Traceback" not in err
