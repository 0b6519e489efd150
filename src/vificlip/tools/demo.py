"""``vificlip demo``: the paper's whole pipeline, end to end, on the embedded synthetic benchmark and small CLIP.

1. Write the synthetic benchmark once (:mod:`vificlip.data.synthetic_benchmark`; reused when present).
2. With the engine's protocol runners (:mod:`vificlip.engine.protocols`), for vanilla zero-shot CLIP, CLIP
   image-FT, CLIP text-FT, ViFi-CLIP and bridge-and-prompt: zero-shot transfer Synthetic-K → Synthetic-U (3 splits,
   mean ± std), base-to-novel on Synthetic-U (3 draws, HM) and few-shot on Synthetic-U (K = 2, 4, 8, 16).
3. Print the tables in the paper's layout and write ``report.md`` with plots (:mod:`vificlip.tools.demo_report`).

Schedules are the presets in ``tools/demo_presets`` (each says what it changes from the paper and why); ``quick``
shortens them further for the test suite. Runs that already finished are reused, as by the protocol commands.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..data.synthetic_benchmark import Benchmark, ensure_benchmark, num_videos
from ..engine.config import RunConfig, load_config
from ..engine.protocols import ProtocolResult, run_protocol
from ..model.variants import VARIANTS
from ..model.variants import title as variant_title

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "demo_presets"
# Rows in the paper's table order (model/variants.py): vanilla CLIP, image-FT, text-FT, ViFi-CLIP, bridge-and-prompt.
BRIDGE_RUN = "zeroshot/vifi"  # the Synthetic-K ViFi-CLIP that bridge-and-prompt starts from
# --quick: fewer epochs and K values, a smaller benchmark; what the test suite runs (≤ 2 minutes).
QUICK = {
    "zeroshot": {"train.epochs": 3, "train.eval_freq": 3},
    "base2novel": {"train.epochs": 3, "train.eval_freq": 3},
    "fewshot": {"train.epochs": 3, "train.eval_freq": 3, "protocol.shots": [2, 4]},
}


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """What one demo run does: where, how big, and with which seeds (all printed in the report)."""

    out: Path
    quick: bool = False
    benchmark_seed: int = 0
    train_seed: int = 1024
    variants: tuple[str, ...] = VARIANTS
    device: str = "cpu"
    checkpoint: str = "synthetic-tiny-clip"  # the CLIP every row starts from (a built-in name or a file)

    @property
    def size(self) -> str:
        return "quick" if self.quick else "full"


@dataclasses.dataclass
class DemoResult:
    """Everything the report needs: the protocol results per (protocol, variant), run folders and timings."""

    plan: DemoPlan
    benchmark: Benchmark
    results: dict[tuple[str, str], ProtocolResult]
    run_dirs: dict[tuple[str, str], Path]
    seconds: dict[str, float]


def _preset(protocol: str, variant: str) -> Path:
    prefix = "prompt_" if variant == "prompt" else ""
    return PRESET_DIR / f"{prefix}{protocol}.yaml"


def build_config(plan: DemoPlan, bench: Benchmark, protocol: str, variant: str) -> RunConfig:
    """The engine config of one (protocol, variant): demo preset + benchmark paths + seeds (+ quick changes)."""
    u = str(bench.preset_path("synthetic_u"))
    overrides: dict = {
        "name": f"demo_{protocol}_{variant}",
        "output.dir": str(plan.out / "runs" / protocol / variant),
        "train.seed": plan.train_seed,
        "model.checkpoint": plan.checkpoint,
        "data.annotation_dir": str(bench.annotation_dir),
    }
    if variant != "prompt":
        overrides["model.variant"] = variant
    else:
        overrides["model.init_from"] = str(plan.out / "runs" / BRIDGE_RUN)
    if protocol == "zeroshot":
        k = "datasets_splits/synthetic_k_splits"
        overrides.update({"data.root": str(bench.video_root("synthetic_k")), "data.train_list": f"{k}/train.txt",
                          "data.val_list": f"{k}/val.txt", "data.labels": "labels/synthetic_k_labels.csv",
                          "protocol.targets": [u],
                          "protocol.target_roots": {"synthetic_u": str(bench.video_root("synthetic_u"))}})  # fmt: skip
    else:
        # data.labels: plan_fewshot takes the lists from the dataset preset but not its label file.
        overrides.update(
            {
                "data.dataset": u,
                "data.root": str(bench.video_root("synthetic_u")),
                "data.labels": "labels/synthetic_u_labels.csv",
            }
        )
    if plan.quick:
        overrides.update(QUICK[protocol])
    return load_config(_preset(protocol, variant), overrides)


def _run_one(plan: DemoPlan, bench: Benchmark, protocol: str, variant: str) -> tuple[ProtocolResult, Path]:
    """One row of one table through the engine's protocol dispatch (an unknown protocol is an error there)."""
    cfg = build_config(plan, bench, protocol, variant)
    return run_protocol(protocol, cfg, device=plan.device), cfg.run_dir


def schedule(plan: DemoPlan) -> list[tuple[str, str]]:
    """(protocol, variant) in run order: zero-shot first, since its ViFi-CLIP is the bridge that the prompt rows
    start from; zero-shot itself has no prompt row, as in the paper."""
    order = [("zeroshot", v) for v in plan.variants if v != "prompt"]
    for protocol in ("base2novel", "fewshot"):
        order += [(protocol, v) for v in plan.variants]
    if "prompt" in plan.variants and "vifi" not in plan.variants:
        order.insert(0, ("zeroshot", "vifi"))
    return order


def run_demo(plan: DemoPlan, announce: Callable[[str], None] = print) -> DemoResult:
    """Generate (or reuse) the benchmark, run every protocol × variant, return the results with timings."""
    from tqdm import tqdm

    started = time.perf_counter()
    announce(f"vificlip demo: output {plan.out}; benchmark seed {plan.benchmark_seed}, training seed "
             f"{plan.train_seed}, {torch.get_num_threads()} CPU threads, {'quick' if plan.quick else 'full'} mode")  # fmt: skip
    with tqdm(total=num_videos(plan.size), desc="synthetic videos", dynamic_ncols=True, leave=False) as bar:
        bench = ensure_benchmark(
            plan.out / "benchmark", plan.benchmark_seed, plan.size, progress=lambda: bar.update(1)
        )
    seconds = {"benchmark": time.perf_counter() - started}
    results, run_dirs = {}, {}
    order = schedule(plan)
    for index, (protocol, variant) in enumerate(order, start=1):
        announce(f"[{index}/{len(order)}] {protocol}: {variant_title(variant)}")
        tick = time.perf_counter()
        results[(protocol, variant)], run_dirs[(protocol, variant)] = _run_one(plan, bench, protocol, variant)
        seconds[f"{protocol}/{variant}"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - started
    return DemoResult(plan, bench, results, run_dirs, seconds)
