"""Evaluation (SPEC §4.1): every video scored exactly once across ranks, views summed, results gathered.

Each rank takes videos ``rank, rank+W, …`` (no padding, no drop_last, quirk 9), scores all V = crops × clips
views of a video in one batch, and all ranks gather (index, label, top-5) rows. Unreadable videos (``ok`` False)
count as wrong and are reported. Text features are computed once per class set (the model caches them while
gradients are off), not once per batch and view (quirk 29).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import Subset

from ..atomic import atomic_write_text
from ..data.loader import build_loader
from ..model.vificlip import ViFiCLIP
from . import builders
from .config_schema import RunConfig
from .distributed import all_gather_objects, current_topology, shard_indices
from .logging import progress_bar
from .metrics import EvalResult, compute_metrics, top_k, view_scores
from .runs import EVALS_DIR

log = logging.getLogger(__name__)


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA by default, fp16 on request, fp32 on CPU (SPEC §1.7 with native AMP, quirk 1)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model: ViFiCLIP, dataset, class_names: list[str], device: torch.device, batch_size: int = 2,
             precision: str = "auto", num_workers: int = 0, desc: str = "eval") -> EvalResult:  # fmt: skip
    """Top-1/top-5/mean-class accuracy of ``model`` on a test-mode dataset; identical on every rank."""
    rank, world = current_topology()
    shard = Subset(dataset, shard_indices(len(dataset), rank, world))
    loader = build_loader(shard, batch_size, shuffle=False, num_workers=num_workers, distributed=False)
    was_training = model.training
    model.eval()
    rows: list[tuple[int, int, list[int]]] = []
    bar = progress_bar(len(loader), 0, desc, enabled=rank == 0)
    with autocast_context(device, precision):
        text = model.encode_text(class_names)  # [C, D], once for the whole evaluation
        for batch in loader:
            video = batch["video"].to(device, non_blocking=True)  # [B, V, T, 3, S, S]
            b, v = video.shape[:2]
            features = model.encode_video(video.flatten(0, 1))  # [B·V, D]
            logits = model.logits(features, text).view(b, v, -1)  # [B, V, C]
            top = top_k(view_scores(logits), 5).cpu()  # [B, 5]
            for i in range(b):
                ok = bool(batch["ok"][i])
                rows.append((int(batch["index"][i]), int(batch["label"][i]), top[i].tolist() if ok else []))
            bar.update(1)
    bar.close()
    model.train(was_training)
    merged = {index: (label, top) for part in all_gather_objects(rows) for index, label, top in part}
    if len(merged) != len(dataset):
        raise RuntimeError(f"evaluation scored {len(merged)} distinct videos of {len(dataset)}")
    ordered = [merged[i] for i in range(len(dataset))]
    return compute_metrics([r[0] for r in ordered], [r[1] for r in ordered], len(class_names))


def save_evaluation(result: EvalResult, out_dir: Path, name: str, class_names: list[str],
                    extra: dict | None = None) -> Path:  # fmt: skip
    """``eval_<name>.json`` (metrics) and ``confusion_<name>.csv`` (rows = true class, columns = predicted)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**result.to_json(), "summary": result.summary(), **(extra or {})}
    atomic_write_text(out_dir / f"eval_{name}.json", json.dumps(payload, indent=1) + "\n")
    lines = [["true \\ predicted", *class_names]]
    lines += [[class_names[i], *map(str, row)] for i, row in enumerate(result.confusion)]
    with (out_dir / f"confusion_{name}.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(lines)
    return out_dir / f"eval_{name}.json"


def wise_interpolate(zero_shot: ViFiCLIP, fine_tuned: ViFiCLIP, alpha: float) -> ViFiCLIP:
    """WiSE-FT: a copy of ``fine_tuned`` whose CLIP weights are (1−α)·zero-shot + α·fine-tuned (prompts kept)."""
    if zero_shot.arch != fine_tuned.arch:
        raise builders.ArchitectureError(f"WiSE-FT needs one architecture; got {zero_shot.arch} and "
                                         f"{fine_tuned.arch}")  # fmt: skip
    start = zero_shot.clip.state_dict()
    mixed = {k: (1 - alpha) * start[k].to(v) + alpha * v if v.is_floating_point() else v
             for k, v in fine_tuned.clip.state_dict().items()}  # fmt: skip
    out = ViFiCLIP(builders.build_clip(fine_tuned.arch), fine_tuned.arch, variant=fine_tuned.variant,
                   template=fine_tuned.template, replace_underscores=fine_tuned.replace_underscores,
                   prompts=fine_tuned.prompts)  # fmt: skip
    out.clip.load_state_dict(mixed)
    return out.to(next(fine_tuned.parameters()).device)


@dataclasses.dataclass
class EvalSpec:
    """One evaluation of a run: which list, which class set, which views."""

    name: str
    val_list: str | None = None  # default: data.val_list
    labels: str | None = None  # default: data.labels
    num_clips: int | None = None
    num_crops: int | None = None


def evaluate_config(cfg: RunConfig, model: ViFiCLIP, spec: EvalSpec, device: torch.device,
                    out_dir: Path | None = None) -> EvalResult:  # fmt: skip
    """Build the dataset ``spec`` names from ``cfg``, evaluate, log "N of M videos scored", save files."""
    names = builders.class_names(cfg.data, spec.labels, "data.labels" if spec.labels is None else "labels")
    items = builders.records(cfg.data, spec.val_list or cfg.data.val_list, len(names), "data.val_list")
    clips = spec.num_clips or cfg.eval.num_clips
    crops = spec.num_crops or cfg.eval.num_crops
    dataset = builders.eval_dataset(cfg.data, items, clips, crops, cfg.train.seed)
    result = evaluate(model, dataset, names, device, cfg.eval.batch_size, cfg.train.precision,
                      cfg.data.num_workers, desc=f"eval {spec.name}")  # fmt: skip
    log.info("%s [%s, %d×%d views]: %s", cfg.name, spec.name, clips, crops, result.summary())
    if out_dir is not None and current_topology()[0] == 0:
        save_evaluation(result, out_dir, spec.name, names, {"views": f"{clips}x{crops}",
                                                            "val_list": spec.val_list or cfg.data.val_list})  # fmt: skip
    return result


def run_eval(cfg: RunConfig, checkpoint: str | None = None, views: tuple[int, int] | None = None,
             wise_alpha: float | None = None, device: str = "auto") -> dict[str, EvalResult]:  # fmt: skip
    """``vificlip eval``: one checkpoint on ``data.val_list`` (+ the WiSE-FT interpolation when asked)."""
    from .distributed import init_distributed

    topo = init_distributed(device)
    # The evaluated weights are the checkpoint's: an init-from of the training config must not overwrite them.
    model_cfg = (
        cfg.model
        if checkpoint is None
        else dataclasses.replace(cfg.model, checkpoint=checkpoint, init_from=None)
    )
    model = builders.build_model(model_cfg).to(topo.device)
    clips, crops = views or (cfg.eval.num_clips, cfg.eval.num_crops)
    out_dir, name = cfg.run_dir / EVALS_DIR, f"{clips}x{crops}"
    spec = EvalSpec(name, num_clips=clips, num_crops=crops)
    results = {"model": evaluate_config(cfg, model, spec, topo.device, out_dir)}
    alpha = wise_alpha if wise_alpha is not None else cfg.eval.wise_alpha
    if alpha is not None:
        if cfg.model.checkpoint is None:
            raise builders.ConfigError("eval.wise_alpha: needs model.checkpoint (the zero-shot weights)")
        zero_shot = builders.load_weights(cfg.model.checkpoint, cfg.model).to(topo.device)
        wise = wise_interpolate(zero_shot, model, alpha)
        wise_spec = dataclasses.replace(spec, name=f"{name}_wise{alpha:g}")
        results["wise"] = evaluate_config(cfg, wise, wise_spec, topo.device, out_dir)
    return results
