"""Protocol runners: each chains one row of a paper table (SPEC §2.10, §3.12, §4.2) and writes its report.

* zero-shot: train on K400 (or take a model), evaluate each target on its 3 splits → mean ± std per target;
* base-to-novel: train on 3 base draws; evaluate base and novel, each with its own class set → average → HM;
* few-shot: one training per K, evaluated on split 1 only (quirk 19);
* supervised: train, then the final model with 4 clips × 3 crops.

The ``run_*`` functions take explicit configs (the demo calls them with its own data); ``plan_*`` builds those
configs from an engine preset and its data preset (``data.dataset``). A sub-run that already finished with the
same resolved config is not repeated and an interrupted one resumes, so re-running a protocol command continues
it; a sub-run made with another config is refused, naming the keys that differ (``overwrite`` retrains it). With
``eval.wise_alpha`` every evaluation is repeated on the WiSE-FT weights and reported as a separate row.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_write_text
from ..data.presets import load_dataset_preset
from ..model.variants import FINE_TUNED
from ..model.variants import title as variant_title
from ..model.vificlip import ViFiCLIP
from . import builders
from .config import ConfigError, RunConfig, config_differences, read_run_config
from .distributed import current_topology, init_distributed
from .evaluate import EvalSpec, evaluate_config, wise_interpolate
from .metrics import EvalResult, harmonic_mean, mean_std
from .report import PROTOCOLS, ProtocolResult, best_epoch, markdown_table
from .runs import (
    EVALS_DIR,
    RESULTS_FILE,
    TABLE_FILE,
    has_checkpoints,
    model_file,
    read_train_results,
)
from .train import train

log = logging.getLogger(__name__)


def _method(cfg: RunConfig) -> str:
    return variant_title(cfg.model.variant)


def _input(cfg: RunConfig) -> str:
    return f"{cfg.data.num_frames}x{cfg.data.input_size}"


def _sub(cfg: RunConfig, output_dir: Path, name: str, **data: str | None) -> RunConfig:
    """A copy of ``cfg`` writing to ``output_dir/name`` with some data fields replaced."""
    return dataclasses.replace(cfg, name=f"{cfg.name}_{name}", data=dataclasses.replace(cfg.data, **data),
                               output=dataclasses.replace(cfg.output, dir=str(output_dir / name)))  # fmt: skip


# ---- running pieces -----------------------------------------------------------------------------------------
def _stale_keys(cfg: RunConfig) -> list[str]:
    """How the config that trained ``cfg.run_dir`` differs from ``cfg`` (paths, workers and logging aside)."""
    try:
        return config_differences(read_run_config(cfg.run_dir), cfg)
    except ConfigError as exc:
        return [f"the saved config is unusable ({exc})"]


def _trained_model(cfg: RunConfig, device: str, overwrite: bool = False) -> ViFiCLIP:
    """Train ``cfg`` (resuming, or reusing a finished run of the same config), or build vanilla CLIP as-is.

    A finished or interrupted sub-run made with another config is refused naming the keys (its numbers would be
    stale); ``overwrite`` retrains it from scratch instead.
    """
    topo = init_distributed(device)
    if cfg.model.variant == "zeroshot":
        return builders.build_model(cfg.model).to(topo.device)
    if not has_checkpoints(cfg.run_dir):
        return train(cfg, device=device).model
    stale = _stale_keys(cfg)
    if stale and not overwrite:
        raise ConfigError(f"{cfg.run_dir} was trained with another config, so its results would be stale: "
                          f"{'; '.join(stale)}. Pass --overwrite to retrain it, or choose another --output")  # fmt: skip
    if stale:
        log.warning(
            "%s: config changed (%s); retraining from scratch (--overwrite)", cfg.run_dir, "; ".join(stale)
        )
        return train(cfg, device=device, overwrite=True).model
    if read_train_results(cfg.run_dir) is not None:
        log.info("%s: already trained with this config, reusing %s", cfg.name, cfg.run_dir)
        return builders.load_weights(str(model_file(cfg.run_dir)), cfg.model).to(topo.device)
    return train(cfg, resume="auto", device=device).model


def _models(cfg: RunConfig, model: ViFiCLIP) -> dict[str, ViFiCLIP]:
    """The model, plus its WiSE-FT interpolation with the starting weights when ``eval.wise_alpha`` is set."""
    models = {"model": model}
    alpha = cfg.eval.wise_alpha
    # WiSE-FT blends fine-tuned CLIP weights with the starting ones; prompt models keep CLIP frozen, vanilla
    # CLIP was never tuned, so neither has anything to blend.
    if alpha is not None and cfg.model.variant in FINE_TUNED and cfg.model.checkpoint is not None:
        zero_shot = builders.load_weights(cfg.model.checkpoint, cfg.model).to(next(model.parameters()).device)
        models["wise"] = wise_interpolate(zero_shot, model, alpha)
    return models


def _evaluate_all(
    cfg: RunConfig, models: dict[str, ViFiCLIP], spec: EvalSpec, out_dir: Path
) -> dict[str, EvalResult]:
    """The same evaluation for each model; the WiSE-FT one's files get a ``_wise`` suffix."""
    results = {}
    for key, model in models.items():
        named = dataclasses.replace(spec, name=spec.name if key == "model" else f"{spec.name}_wise")
        results[key] = evaluate_config(cfg, model, named, next(model.parameters()).device, out_dir)
    return results


def _pm(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.1f} ± {std:.1f}"


# ---- zero-shot ----------------------------------------------------------------------------------------------
def run_zeroshot(train_cfg: RunConfig, targets: dict[str, list[RunConfig]], output_dir: Path,
                 device: str = "auto", checkpoint: str | None = None, overwrite: bool = False) -> ProtocolResult:  # fmt: skip
    """Train ``train_cfg`` once (or take ``checkpoint``, or nothing for vanilla CLIP), evaluate every split."""
    if checkpoint is not None:  # built as `vificlip eval` builds it: the config's variant and template apply
        model_cfg = dataclasses.replace(train_cfg.model, checkpoint=checkpoint, init_from=None)
        model = builders.build_model(model_cfg).to(init_distributed(device).device)
    else:
        model = _trained_model(train_cfg, device, overwrite)
    models = _models(train_cfg, model)
    runs, summary, cells, wise_cells = [], {}, {}, {}
    for target, split_cfgs in targets.items():
        scores: dict[str, list[float]] = {key: [] for key in models}
        for i, split_cfg in enumerate(split_cfgs, start=1):
            results = _evaluate_all(
                split_cfg, models, EvalSpec(f"{_slug(target)}_split{i}"), output_dir / EVALS_DIR
            )
            for key, result in results.items():
                scores[key].append(result.top1)
                runs.append({"target": target, "split": i, "weights": key, **result.to_json()})
        mean, std = mean_std(scores["model"])
        summary[target] = {"mean": mean, "std": std, "splits": scores["model"]}
        cells[target] = _pm(scores["model"])
        if "wise" in scores:
            summary[target]["wise"] = scores["wise"]
            wise_cells[target] = _pm(scores["wise"])
    if best := _best({"train": train_cfg}):  # on the training's own validation list, not the targets
        summary["best"] = best
    return _finish("zeroshot", train_cfg, cells, summary, runs, wise_cells, output_dir)


def plan_zeroshot(cfg: RunConfig) -> dict[str, list[RunConfig]]:
    """Evaluation configs for ``protocol.targets`` from their data presets (labels + list per split)."""
    targets: dict[str, list[RunConfig]] = {}
    for name in cfg.protocol.targets:
        preset = load_dataset_preset(name)
        if not preset.zero_shot:
            raise ConfigError(f"protocol.targets: dataset {name!r} has no zero-shot splits")
        root = cfg.protocol.target_roots.get(name) or cfg.protocol.target_roots.get(preset.name)
        targets[preset.title] = [
            _sub(cfg, Path(cfg.run_dir), f"{preset.name}_split{i}", root=root, val_list=split.eval,
                 labels=split.labels, dataset=preset.name, num_classes=None, layout=preset.layout)
            for i, split in enumerate(preset.zero_shot, start=1)
        ]  # fmt: skip
    if not targets:
        raise ConfigError(
            "protocol.targets: empty; name the zero-shot datasets (e.g. [hmdb51, ucf101, k600])"
        )
    return targets


# ---- base-to-novel ------------------------------------------------------------------------------------------
def run_base2novel(draws: Sequence[RunConfig], novel: EvalSpec, output_dir: Path, device: str = "auto",
                   dataset: str = "", overwrite: bool = False) -> ProtocolResult:  # fmt: skip
    """Per draw: train on base classes, evaluate base (``data.val_list``/``labels``) and ``novel`` (own classes).

    The paper averages base and novel over the 3 draws and takes the harmonic mean of the averages (SPEC §4.2).
    Vanilla CLIP trains nothing, so its one evaluation stands for every draw.
    """
    if draws[0].model.variant == "zeroshot":
        draws = draws[:1]
    runs = []
    per_key: dict[str, dict[str, list[float]]] = {}
    for i, cfg in enumerate(draws, start=1):
        models = _models(cfg, _trained_model(cfg, device, overwrite))
        for half, spec in (
            ("base", EvalSpec(f"draw{i}_base")),
            ("novel", dataclasses.replace(novel, name=f"draw{i}_novel")),
        ):
            for key, result in _evaluate_all(cfg, models, spec, output_dir / EVALS_DIR).items():
                per_key.setdefault(key, {"base": [], "novel": []})[half].append(result.top1)
                runs.append({"draw": i, "half": half, "weights": key, **result.to_json()})
    summary: dict = {}
    column = dataset or draws[0].data.dataset or "custom"
    cells, wise_cells = {}, {}
    for key, halves in per_key.items():
        base, novel_acc = (
            sum(halves["base"]) / len(halves["base"]),
            sum(halves["novel"]) / len(halves["novel"]),
        )
        hm = harmonic_mean(base, novel_acc)
        summary[key] = {
            "base": base,
            "novel": novel_acc,
            "hm": hm,
            "base_draws": halves["base"],
            "novel_draws": halves["novel"],
        }
        (cells if key == "model" else wise_cells)[column] = f"{base:.1f} / {novel_acc:.1f} / {hm:.1f}"
    best_cells = None
    if len(best := _best({f"draw{i}": cfg for i, cfg in enumerate(draws, start=1)})) == len(draws):
        summary["best"] = best  # training validates on the base classes only
        best_base = sum(b["top1"] for b in best.values()) / len(best)
        best_cells = {column: f"{best_base:.1f} / – / –"}
    return _finish("base2novel", draws[0], cells, summary, runs, wise_cells, output_dir, best_cells)


def plan_base2novel(cfg: RunConfig) -> tuple[list[RunConfig], EvalSpec, str]:
    if cfg.data.dataset is None:
        if not (cfg.protocol.novel_val_list and cfg.protocol.novel_labels):
            raise ConfigError("protocol.novel_val_list/novel_labels: needed when data.dataset is not set")
        novel = EvalSpec("novel", cfg.protocol.novel_val_list, cfg.protocol.novel_labels)
        return [_sub(cfg, cfg.run_dir, "s1")], novel, "custom"
    preset = load_dataset_preset(cfg.data.dataset)
    b2n = preset.base_novel
    if b2n is None:
        raise ConfigError(f"data.dataset: {preset.name} has no base-to-novel split")
    draws = [_sub(cfg, cfg.run_dir, f"s{i}", train_list=train_list, val_list=b2n.base_val, labels=b2n.base_labels,
                  num_classes=b2n.num_base) for i, train_list in enumerate(b2n.train, start=1)]  # fmt: skip
    return draws, EvalSpec("novel", b2n.novel_val, b2n.novel_labels), preset.title


# ---- few-shot -----------------------------------------------------------------------------------------------
def run_fewshot(runs_by_k: dict[int, RunConfig], output_dir: Path, device: str = "auto",
                dataset: str = "", overwrite: bool = False) -> ProtocolResult:  # fmt: skip
    """One training per K (all-way K-shot), each scored on its ``data.val_list`` (split 1 only)."""
    runs, per_key = [], {}
    for k, cfg in sorted(runs_by_k.items()):
        models = _models(cfg, _trained_model(cfg, device, overwrite))
        for key, result in _evaluate_all(cfg, models, EvalSpec(f"k{k}"), output_dir / EVALS_DIR).items():
            per_key.setdefault(key, {})[k] = result.top1
            runs.append({"shots": k, "weights": key, **result.to_json()})
    first = runs_by_k[min(runs_by_k)]
    column = f"{dataset or first.data.dataset or 'custom'} K={'/'.join(map(str, sorted(runs_by_k)))}"
    cells = {column: " / ".join(f"{v:.1f}" for _, v in sorted(per_key["model"].items()))}
    wise = (
        {column: " / ".join(f"{v:.1f}" for _, v in sorted(per_key["wise"].items()))}
        if "wise" in per_key
        else {}
    )
    summary, best_cells = dict(per_key), None
    if len(best := _best({f"k{k}": cfg for k, cfg in sorted(runs_by_k.items())})) == len(runs_by_k):
        summary["best"] = best  # validated on the same split-1 list the row is scored on
        best_cells = {column: " / ".join(f"{b['top1']:.1f}" for b in best.values())}
    return _finish("fewshot", first, cells, summary, runs, wise, output_dir, best_cells)


def plan_fewshot(cfg: RunConfig, shots: Sequence[int] | None = None) -> tuple[dict[int, RunConfig], str]:
    """One config per K from the data preset's K-shot lists; without a preset, ``data.train_list`` is one K."""
    shots = list(shots or cfg.protocol.shots)
    if cfg.data.dataset is None:
        if len(shots) > 1:
            raise ConfigError(f"protocol.shots / --shots: {','.join(map(str, shots))} asks for {len(shots)} "
                              "trainings, but without data.dataset there is one training list (data.train_list), "
                              "so only one K can run; give one K, set data.dataset to a preset with K-shot lists "
                              "(hmdb51, ucf101, ssv2), or call run_fewshot with a config per K")  # fmt: skip
        k = shots[0] if shots else 0
        return {k: _sub(cfg, cfg.run_dir, f"k{k}")}, "custom"
    preset = load_dataset_preset(cfg.data.dataset)
    missing = [k for k in shots if k not in preset.few_shot]
    if missing or not shots:
        raise ConfigError(
            f"protocol.shots: {preset.name} has K-shot lists for {sorted(preset.few_shot)}, not {missing or shots}"
        )
    val = preset.few_shot_eval[0] if preset.few_shot_eval else cfg.data.val_list
    return {
        k: _sub(cfg, cfg.run_dir, f"k{k}", train_list=preset.few_shot[k], val_list=val) for k in shots
    }, preset.title


# ---- fully supervised ---------------------------------------------------------------------------------------
def run_supervised(
    cfg: RunConfig, output_dir: Path, device: str = "auto", overwrite: bool = False
) -> ProtocolResult:
    """Train, then evaluate the final model (not best) with ``eval.final_num_clips × final_num_crops`` views."""
    views = f"{cfg.eval.final_num_clips}x{cfg.eval.final_num_crops}"
    models = _models(cfg, _trained_model(cfg, device, overwrite))
    spec = EvalSpec(f"final_{views}", num_clips=cfg.eval.final_num_clips, num_crops=cfg.eval.final_num_crops)
    # Training already scored the final model with these views (SPEC §3.9); 4×3 on K400 is too costly to repeat.
    results = {"model": done} if (done := _final_of_training(cfg, views)) else {}
    for key, model in models.items():
        if key not in results:
            results.update(_evaluate_all(cfg, {key: model}, spec, output_dir / EVALS_DIR))
    cells = {key: {"Views": views.replace("x", "×"), "Top-1": f"{r.top1:.1f}", "Top-5": f"{r.top5:.1f}"}
             for key, r in results.items()}  # fmt: skip
    runs = [{"weights": key, "views": views, **r.to_json()} for key, r in results.items()]
    summary = {key: r.to_json() for key, r in results.items()}
    best_cells = None
    if best := _best({"model": cfg}):
        summary["best"], b = best, best["model"]
        best_cells = {
            "Views": "1×1",
            "Top-1": f"{b['top1']:.1f} (epoch {b['epoch']})",
            "Top-5": f"{b['top5']:.1f}",
        }
    return _finish(
        "supervised", cfg, cells["model"], summary, runs, cells.get("wise", {}), output_dir, best_cells
    )


def _training_evals(cfg: RunConfig) -> list[dict]:
    """The evaluations a finished training of ``cfg`` recorded (none for vanilla CLIP or an untrained run)."""
    done = read_train_results(cfg.run_dir) if cfg.model.variant != "zeroshot" else None
    return done["evals"] if done else []


def _best(cfgs: dict[str, RunConfig]) -> dict[str, dict]:
    """Per sub-run name: its best evaluated epoch (authors' max_accuracy), where its training evaluated any."""
    return {name: b for name, cfg in cfgs.items() if (b := best_epoch(_training_evals(cfg))) is not None}


def _final_of_training(cfg: RunConfig, views: str) -> EvalResult | None:
    rows = [r for r in _training_evals(cfg) if r.get("views") == views]
    if not rows:
        return None
    fields = {k: v for k, v in rows[-1].items() if k in EvalResult.__dataclass_fields__}
    return EvalResult(**{**fields, "confusion": []})


# ---- one entry point ----------------------------------------------------------------------------------------
def run_protocol(
    protocol: str,
    cfg: RunConfig,
    shots: Sequence[int] | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> ProtocolResult:
    """Plan and run one protocol from a config; results go to ``cfg.run_dir`` (results.json + results.md).

    Args:
        shots: few-shot K values (default ``protocol.shots``).
        checkpoint: zero-shot only: evaluate this K400-trained model instead of training ``cfg``.
        overwrite: retrain sub-runs made with another config instead of refusing.
    """
    out = cfg.run_dir
    if protocol == "zeroshot":
        return run_zeroshot(cfg, plan_zeroshot(cfg), out, device, checkpoint, overwrite)
    if protocol == "base2novel":
        draws, novel, title = plan_base2novel(cfg)
        return run_base2novel(draws, novel, out, device, title, overwrite)
    if protocol == "fewshot":
        by_k, title = plan_fewshot(cfg, shots)
        return run_fewshot(by_k, out, device, title, overwrite)
    if protocol == "supervised":
        return run_supervised(cfg, out, device, overwrite)
    raise ConfigError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


# ---- reports ------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def _finish(protocol: str, cfg: RunConfig, cells: dict, summary: dict, runs: list, wise_cells: dict,
            output_dir: Path, best_cells: dict | None = None) -> ProtocolResult:  # fmt: skip
    if cfg.eval.wise_alpha is not None:
        summary["wise_alpha"] = cfg.eval.wise_alpha
    result = ProtocolResult(protocol, _method(cfg), _input(cfg), cells, summary, runs, wise_cells or None,
                            best_cells)  # fmt: skip
    if current_topology()[0] == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / RESULTS_FILE, json.dumps(dataclasses.asdict(result), indent=1) + "\n")
        atomic_write_text(output_dir / TABLE_FILE, markdown_table([result]))
    log.info("%s\n%s", protocol, markdown_table([result]))
    return result
