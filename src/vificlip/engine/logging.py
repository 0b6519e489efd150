"""Run logs: a log file per run and per rank, JSONL metrics, TensorBoard scalars (when installed), a progress bar.

The reference logs to ``log_rank{r}.txt`` only (SPEC §3.7); we keep that file and add machine-readable metrics.
Only rank 0 writes metrics and shows a progress bar.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..atomic import atomic_write_text
from .runs import LOG_FILE, METRICS_FILE, RANK_LOG_FILE, TENSORBOARD_DIR, write_error

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def attach_file_logs(run_dir: Path, rank: int) -> list[logging.Handler]:
    """``log.txt`` (rank 0, the run's log) and ``log_rank{r}.txt`` (every rank), appended across resumes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [RANK_LOG_FILE.format(rank=rank)] + ([LOG_FILE] if rank == 0 else [])
    handlers: list[logging.Handler] = []
    root = logging.getLogger("vificlip")
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))
    for name in names:
        handler = logging.FileHandler(run_dir / name, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        handlers.append(handler)
    return handlers


def detach_file_logs(handlers: list[logging.Handler]) -> None:
    root = logging.getLogger("vificlip")
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()


class MetricsWriter:
    """Scalars to ``metrics.jsonl`` (one JSON object per call) and TensorBoard; a no-op off rank 0.

    ``resume_rows``: a resumed run keeps only the rows its checkpoint had seen (the redone steps are not logged
    twice); TensorBoard drops its events from ``purge_step`` on.
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = True, resume_rows: int | None = None,
                 purge_step: int | None = None) -> None:  # fmt: skip
        self.enabled = enabled
        self.path = run_dir / METRICS_FILE
        self.rows = 0
        self.tb = None
        if not enabled:
            return
        if resume_rows is not None:
            self._truncate(resume_rows)
        elif self.path.is_file():
            self.rows = len(self.path.read_text(encoding="utf-8").splitlines())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra: pip install 'vificlip[tensorboard]'
                logging.getLogger(__name__).info("tensorboard not installed; writing metrics.jsonl only")
            else:
                self.tb = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def _truncate(self, rows: int) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True) if self.path.is_file() else []
        kept = [line for line in lines[:rows] if line.endswith("\n")]
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(kept))
        self.rows = len(kept)

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        self.rows += 1
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def memory_mb(device: torch.device) -> float:
    """Peak accelerator memory in MiB (0 on CPU, where the allocator keeps no such counter)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return 0.0


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    """tqdm shows elapsed time and ETA; the trainer adds loss, LR, clips/s and memory as the postfix."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)
