"""`vificlip demo --quick`: the paper's protocols end to end on the synthetic benchmark, and the claim checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vificlip.cli import main
from vificlip.data.synthetic_benchmark import Benchmark
from vificlip.engine.protocols import ProtocolResult
from vificlip.model.variants import VARIANTS
from vificlip.tools.demo import DemoPlan, DemoResult, schedule
from vificlip.tools.demo_report import claims


def _result(protocol: str, summary: dict) -> ProtocolResult:
    return ProtocolResult(protocol, "m", "8x32", {}, summary, [])


def _fake_demo(vifi_k2: float, prompt_k2: float) -> DemoResult:
    results = {}
    for variant, base, hm, zs in (("zeroshot", 20, 20, 12), ("image", 40, 30, 14), ("text", 45, 33, 15),
                                  ("vifi", 50, 35, 16), ("prompt", 48, 30, 0)):  # fmt: skip
        results[("base2novel", variant)] = _result(
            "base2novel", {"model": {"base": base, "novel": 20, "hm": hm}}
        )
        results[("zeroshot", variant)] = _result("zeroshot", {"U": {"mean": zs, "std": 1.0}})
        k2 = {"vifi": vifi_k2, "prompt": prompt_k2}.get(variant, 10.0)
        results[("fewshot", variant)] = _result("fewshot", {"model": {2: k2, 4: 30.0}})
    plan = DemoPlan(Path("unused"))
    return DemoResult(plan, Benchmark(Path("unused"), 0, "full"), results, {}, {"total": 1.0})


def test_claims_follow_the_numbers():
    held = {c.text: c.held for c in claims(_fake_demo(vifi_k2=20.0, prompt_k2=25.0))}
    assert (
        held["ViFi-CLIP beats vanilla zero-shot CLIP on base classes by a wide margin (≥ 10 points)"] is True
    )
    assert held["fine-tuning both towers ≥ either alone (base-to-novel HM)"] is True
    assert held["bridge-and-prompt helps at low K (beats ViFi-CLIP fine-tuned from CLIP), K=2"] is True
    held = {c.text: c.held for c in claims(_fake_demo(vifi_k2=20.0, prompt_k2=15.0))}
    assert held["bridge-and-prompt helps at low K (beats ViFi-CLIP fine-tuned from CLIP), K=2"] is False


def test_schedule_trains_the_bridge_before_any_prompt_row():
    order = schedule(DemoPlan(Path("x")))
    assert order.index(("zeroshot", "vifi")) < order.index(("base2novel", "prompt"))
    assert ("zeroshot", "prompt") not in order and len(order) == 4 + 2 * len(VARIANTS)
    assert schedule(DemoPlan(Path("x"), variants=("prompt",)))[0] == ("zeroshot", "vifi")


def test_a_row_runs_through_the_engine_dispatch_and_an_unknown_protocol_is_an_error(monkeypatch, tmp_path):
    from vificlip.engine.config import load_config
    from vificlip.engine.protocols import ConfigError
    from vificlip.tools import demo

    cfg = load_config("b2n_hmdb", [f"output.dir={tmp_path}"])
    monkeypatch.setattr(demo, "build_config", lambda *args: cfg)
    calls = []
    monkeypatch.setattr(
        demo, "run_protocol", lambda protocol, c, **kw: calls.append((protocol, c, kw)) or "r"
    )
    assert demo._run_one(DemoPlan(tmp_path), None, "fewshot", "vifi") == ("r", tmp_path)
    assert calls == [("fewshot", cfg, {"device": "cpu"})]
    monkeypatch.undo()
    monkeypatch.setattr(demo, "build_config", lambda *args: cfg)
    with pytest.raises(
        ConfigError, match="unknown protocol 'fewshots'; expected one of zeroshot, base2novel"
    ):
        demo._run_one(DemoPlan(tmp_path), None, "fewshots", "vifi")  # never silently few-shot


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    yield out
    shutil.rmtree(out / "runs", ignore_errors=True)  # ~1 GB of run checkpoints; pytest keeps old tmp dirs


@pytest.mark.slow
def test_quick_demo_writes_the_report_tables_and_plots(quick_demo, capsys):
    report = (quick_demo / "report.md").read_text()
    for title in ("Zero-shot", "Base-to-novel", "Few-shot", "The paper's claims, here", "Known limit"):
        assert title in report
    for method in ("Vanilla CLIP", "CLIP image-FT", "CLIP text-FT", "ViFi-CLIP", "ViFi-CLIP + VL prompting"):
        assert f"| {method} |" in report
    assert "training seed 1024" in report and "benchmark seed 0" in report
    assert (quick_demo / "accuracy.png").stat().st_size > 0 and (quick_demo / "training_curves.png").is_file()


@pytest.mark.slow
def test_quick_demo_orderings_that_hold_across_seeds(quick_demo):
    """Fine-tuning the text tower (text-FT, ViFi-CLIP) beats vanilla CLIP on base-to-novel base accuracy and HM.

    Measured with --quick on benchmark seeds 0, 1, 2: the smallest margins were +9.4 (ViFi-CLIP base) and +10.2
    (HM). Image-FT is not asserted: on seed 0 it stayed below vanilla CLIP (12.5 vs 18.8), and the other claims
    (both towers ≥ either alone, bridge-and-prompt at low K) flipped between seeds at this size.
    """

    def b2n(variant: str) -> dict:
        path = quick_demo / "runs" / "base2novel" / variant / "results.json"
        return json.loads(path.read_text())["summary"]["model"]

    vanilla = b2n("zeroshot")
    for variant in ("text", "vifi"):
        assert b2n(variant)["base"] > vanilla["base"] + 5, variant
        assert b2n(variant)["hm"] > vanilla["hm"] + 5, variant
