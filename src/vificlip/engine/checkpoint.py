"""Run checkpoints: weights as safetensors, training state beside them, written so that a crash never breaks one.

Layout of ``<run>/checkpoints/``::

    epoch_010/            kept snapshot at an evaluation epoch (weights; training state while it is `last`)
    step_0001234/         mid-epoch or non-evaluation refresh of `last` (deleted once superseded)
        model.safetensors   vificlip.model.loading.save_model (loadable by every command)
        state.pt            optimizer, scheduler, scaler, progress, RNG of every rank (torch.save, plain data)
    last.json, best.json  pointers {"dir", "epoch", "step", "top1"}, replaced atomically

A checkpoint folder is filled under a temporary name and renamed into place; only then is the pointer replaced
(temp file + ``os.replace``). A crash at any moment leaves ``last.json`` naming a complete folder. Resume
(``--resume``) restores everything; ``--init-from`` reads weights only; the two never mix (quirk 25).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..errors import VificlipError
from ..model.loading import save_model

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
POINTERS = ("last", "best")


class CheckpointNotFoundError(VificlipError, FileNotFoundError):
    """No usable checkpoint where one was asked for."""


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


# ---- paths --------------------------------------------------------------------------------------------------
def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def read_pointer(run_dir: Path, name: str = "last") -> dict | None:
    path = checkpoint_root(run_dir) / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def pointer_dir(run_dir: Path, name: str = "last") -> Path | None:
    pointer = read_pointer(run_dir, name)
    return None if pointer is None else checkpoint_root(run_dir) / pointer["dir"]


def find_checkpoint_dir(path: str | Path) -> Path:
    """A run folder (→ its `last`), a ``checkpoints`` folder, a pointer file or a checkpoint folder."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".json":
        return path.parent / json.loads(path.read_text(encoding="utf-8"))["dir"]
    if (path / MODEL_FILE).is_file():
        return path
    for run_dir in [path] + ([path.parent] if path.name == CHECKPOINT_DIR else []):
        found = pointer_dir(run_dir)
        if found is not None:
            return found
    raise CheckpointNotFoundError(f"{path}: no checkpoint there (expected a run folder with "
                                  f"{CHECKPOINT_DIR}/last.json or a folder with {MODEL_FILE})")  # fmt: skip


def model_file(path: str | Path) -> Path:
    """The weights file to load for ``path``: a run/checkpoint folder resolves to its model.safetensors."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        try:
            return find_checkpoint_dir(path) / MODEL_FILE
        except CheckpointNotFoundError:
            return path  # maybe a Hugging Face folder; the model loader decides
    return path


# ---- saving -------------------------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, model: torch.nn.Module, training_state: dict[str, Any], tag: str,
                    pointers: dict[str, dict]) -> Path:  # fmt: skip
    """Write ``checkpoints/<tag>`` atomically, then point ``last``/``best`` at it (rank 0 only).

    Args:
        training_state: optimizer/scheduler/scaler/progress/rng for ``state.pt``; empty for weights-only.
        pointers: e.g. ``{"last": {"epoch": 3, "step": 120}}``; the folder name is added to each.
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / tag
    tmp = root / f".tmp-{tag}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_model(model, tmp / MODEL_FILE)
        if training_state:
            torch.save(training_state, tmp / STATE_FILE)
        if final.exists():  # the same step saved again after a crash between rename and pointer update
            trash = root / f".trash-{tag}-{os.getpid()}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name, info in pointers.items():
        atomic_write_text(root / f"{name}.json", json.dumps({"dir": tag, **info}, indent=1) + "\n")
    prune(run_dir)
    return final


def prune(run_dir: Path) -> None:
    """Delete superseded ``step_*`` folders and leftovers; snapshots that are not `last` keep weights only."""
    root = checkpoint_root(run_dir)
    keep = {p["dir"] for name in POINTERS if (p := read_pointer(run_dir, name)) is not None}
    last = read_pointer(run_dir, "last")
    for entry in root.iterdir():
        if entry.name.startswith((".tmp-", ".trash-")) or (
            entry.name.startswith("step_") and entry.name not in keep
        ):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_dir() and (last is None or entry.name != last["dir"]):
            (entry / STATE_FILE).unlink(missing_ok=True)  # an old snapshot's AdamW state is 2× its weights


# ---- loading ------------------------------------------------------------------------------------------------
def load_training_state(checkpoint_dir: Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        raise CheckpointNotFoundError(f"{checkpoint_dir}: no {STATE_FILE}; this snapshot holds weights only "
                                      "(use --init-from to start a new run from it)")  # fmt: skip
    return torch.load(path, map_location="cpu", weights_only=True)


def resume_dir(run_dir: Path, resume: str) -> Path | None:
    """``auto``: the run's `last` if any (else None, a fresh start); otherwise the given folder."""
    if resume == "auto":
        return pointer_dir(run_dir)
    return find_checkpoint_dir(resume)
