"""Run checkpoints: weights as safetensors, training state beside them, written so that no crash loses work.

Names and readers live in :mod:`.runs` (the run-folder contract); this module writes. One save, in this order:

1. fill ``checkpoints/.tmp-<tag>-<pid>/``: ``model.safetensors``, ``state.pt`` (optimizer, scheduler, scaler,
   progress, RNG of every rank), fsync each, then ``manifest.json`` (sizes, sha256, save order) and the folder;
2. rename it to ``<tag>`` (a complete snapshot that already has the name is never moved away first: the new one
   takes ``<tag>-1``); fsync ``checkpoints/``;
3. replace ``last.json`` (and ``best.json``) atomically: a hint; resume trusts the manifests;
4. prune: superseded snapshots go, kept epochs keep weights only, the two newest resumable snapshots keep their
   training state (the older one is the fallback when the newest is damaged), and nothing of another process.

Weights that are not finite are never saved. A kill at any moment leaves the previous snapshot complete and
found; OS errors (disk full, read-only) become one :class:`~vificlip.engine.runs.RunFolderError` naming the path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_text, fsync_dir
from ..errors import VificlipError
from ..model.loading import save_model
from . import runs
from .runs import MODEL_FILE, STATE_FILE, CheckpointNotFoundError, RunFolderError

log = logging.getLogger(__name__)

KEEP_RESUMABLE = 2  # snapshots that keep state.pt: the newest, and the one to fall back to if it is damaged

# Fault injection for tests: called with "written" (temp folder complete), "renamed" (snapshot in place, pointer
# not yet switched) and "pointed" (pointer switched, not yet pruned).
fault_hook: Callable[[str], None] = lambda stage: None  # noqa: E731


class NonFiniteWeightsError(VificlipError, FloatingPointError):
    """The weights hold NaN or infinity; the snapshot is not written and the last good one is kept."""


@dataclasses.dataclass
class Progress:
    """Where training stands: ``micro_step`` micro-batches of ``epoch`` are done (0 = at the epoch start)."""

    epoch: int = 0
    micro_step: int = 0
    global_step: int = 0  # optimiser steps so far
    best_top1: float | None = None
    best_epoch: int | None = None


# ---- RNG ----------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as plain containers and tensors (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },  # fmt: skip
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# ---- saving -------------------------------------------------------------------------------------------------
def nonfinite_tensors(model: torch.nn.Module) -> list[str]:
    """Names of floating-point parameters and buffers holding NaN or infinity."""
    return [name for name, value in model.state_dict().items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())]  # fmt: skip


def save_checkpoint(run_dir: Path, model: torch.nn.Module, training_state: dict[str, Any], tag: str,
                    pointers: dict[str, dict], keep: bool = True) -> Path:  # fmt: skip
    """Write ``checkpoints/<tag>`` completely, then point ``last``/``best`` at it, then prune (rank 0 only).

    Args:
        training_state: optimizer/scheduler/scaler/progress/rng for ``state.pt``; empty for weights-only.
        pointers: e.g. ``{"last": {"epoch": 3, "step": 120}}``; the folder name is added to each. The ``last``
            entry is also the snapshot's progress in its manifest.
        keep: keep the weights once superseded (an evaluation epoch); False: delete them then.
    """
    root = runs.checkpoint_root(run_dir)
    bad = nonfinite_tensors(model)
    if bad:
        kept = runs.latest_checkpoint(run_dir)
        raise NonFiniteWeightsError(f"weights are not finite ({', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}) "
                                    f"at {tag}; not saved, the last good checkpoint {kept or '(none)'} is kept")  # fmt: skip
    tmp = root / f".tmp-{tag}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_model(model, tmp / MODEL_FILE)
        if training_state:
            with open(tmp / STATE_FILE, "wb") as handle:  # a Python file: a full disk raises OSError(ENOSPC)
                torch.save(training_state, handle)
        for path in tmp.iterdir():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
        seq = max((s.seq for s in runs.snapshots(run_dir)), default=0) + 1
        info = {**pointers.get("last", {}), "keep": keep}
        atomic_write_text(tmp / runs.MANIFEST_FILE, json_text(runs.manifest(tmp, seq, info)), durable=True)
        fsync_dir(tmp)
        fault_hook("written")
        final = _place(root, tag, tmp)
        fsync_dir(root)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, VificlipError):
            raise
        raise runs.write_error(tmp.parent / tag, exc, "write the checkpoint") from exc
    fault_hook("renamed")
    try:
        for name, pointer in pointers.items():
            atomic_write_text(runs.pointer_path(run_dir, name), json_text({"dir": final.name, **pointer}),
                              durable=True)  # fmt: skip
    except OSError as exc:
        raise runs.write_error(runs.pointer_path(run_dir, "last"), exc) from exc
    fault_hook("pointed")
    prune(run_dir)
    return final


def json_text(data: Any) -> str:
    return json.dumps(data, indent=1) + "\n"


def _place(root: Path, tag: str, tmp: Path) -> Path:
    """Rename the filled temp folder to ``tag``; never move a complete snapshot away before its successor is in."""
    final = root / tag
    if final.exists():
        existing = runs.read_snapshot(final)
        if existing is not None and existing.problem() is None:
            n = 1
            while (root / f"{tag}-{n}").exists():
                n += 1
            final = root / f"{tag}-{n}"
        else:  # damaged or incomplete: nothing to lose
            trash = root / f".trash-{tag}-{os.getpid()}"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)
    return final


def prune(run_dir: Path) -> None:
    """Delete superseded snapshots; kept ones lose their training state; never the newest complete one.

    Untouched: the newest complete snapshot and the one before it that can resume (both keep ``state.pt``), kept
    epochs and ``best`` (weights only), damaged snapshots newer than the newest complete one, folders without
    a manifest, and temporary folders of other processes.
    """
    root = runs.checkpoint_root(run_dir)
    snaps = runs.snapshots(run_dir)
    complete = [s for s in snaps if s.problem() is None]
    if complete:
        newest = complete[-1]
        resumable = {s.path for s in [s for s in complete if s.resumable][-KEEP_RESUMABLE:]} | {newest.path}
        best = runs.pointer_dir(run_dir, "best")
        for snap in snaps:
            if snap.path in resumable or snap.seq > newest.seq:
                continue
            if snap.info.get("keep", True) or snap.path == best:
                (snap.path / STATE_FILE).unlink(
                    missing_ok=True
                )  # an old snapshot's AdamW state is 2× its weights
            else:
                shutil.rmtree(snap.path, ignore_errors=True)
    own = f"-{os.getpid()}"
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.name.startswith(runs.TEMP_PREFIXES) and entry.name.endswith(own):
            shutil.rmtree(entry, ignore_errors=True)


# ---- loading ------------------------------------------------------------------------------------------------
def load_training_state(checkpoint_dir: Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        raise CheckpointNotFoundError(f"{checkpoint_dir}: no {STATE_FILE}; this snapshot holds weights only "
                                      "(use --init-from to start a new run from it)")  # fmt: skip
    snap = runs.read_snapshot(checkpoint_dir)
    problem = snap.problem(checksum=True) if snap is not None else None
    if problem is not None:
        raise RunFolderError(f"{checkpoint_dir}: damaged checkpoint: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, unpickling error, I/O error
        raise RunFolderError(f"{path}: unreadable training state, truncated or corrupt "
                             f"({runs.describe_os_error(exc).splitlines()[0][:200]})") from exc  # fmt: skip


def resume_dir(run_dir: Path, resume: str) -> Path | None:
    """``auto``: the run's newest complete resumable snapshot (None for an empty folder); else the given one."""
    path = Path(run_dir if resume == "auto" else resume).expanduser()
    if resume != "auto" and (path / MODEL_FILE).is_file():
        return path
    found = runs.latest_checkpoint(path, resumable=True, checksum=True) if path.is_dir() else None
    if found is not None or (resume == "auto" and not runs.has_checkpoints(path)):
        return found
    weights = runs.latest_checkpoint(path) if path.is_dir() else None
    if weights is not None:
        reason = f"its newest complete checkpoint {weights} holds weights only (no {STATE_FILE})"
    else:
        reason = f"no complete checkpoint there (expected a run folder or a snapshot with {MODEL_FILE} and {STATE_FILE})"
    raise CheckpointNotFoundError(f"--resume {resume}: {reason}; --init-from SNAPSHOT starts a new run from its "
                                  "weights" + (", --overwrite starts this run over" if resume == "auto" else ""))  # fmt: skip
