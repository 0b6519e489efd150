"""What a start or a resume may do with a run folder, checked before any work (docs/engine.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import VificlipError
from . import checkpoint as ckpt
from . import runs
from .config import RunConfig, config_differences, read_run_config

log = logging.getLogger(__name__)


class ResumeError(VificlipError):
    """A resume that would silently change the run (different config, missing state, occupied folder)."""


def check_run_dir(
    cfg: RunConfig, resume: str | None, overwrite: bool = False, clear: bool = True
) -> Path | None:
    """Refuse a resume whose config differs, and a fresh start over existing checkpoints (before any work).

    ``overwrite``: a fresh start that first removes what an earlier training wrote in the folder (``clear``: this
    process does the removing; rank 0 only under torchrun).
    """
    run_dir = cfg.run_dir
    if resume and overwrite:
        raise ResumeError("--resume continues a run and --overwrite starts it over; give only one")
    if overwrite and clear:
        removed = runs.clear_training_outputs(run_dir)
        if removed:
            log.warning("%s: --overwrite removed %s", run_dir, ", ".join(removed))
    source = ckpt.resume_dir(run_dir, resume) if resume else None
    # --resume PATH may name another run's checkpoint: compare against the config of the run that wrote it.
    saved_dir = (runs.run_dir_of(source) or source) if source is not None and resume != "auto" else run_dir
    if resume and (saved_dir / runs.CONFIG_FILE).is_file():
        diffs = config_differences(read_run_config(saved_dir), cfg)
        if diffs:
            raise ResumeError(f"{saved_dir} was run with a different config; refusing to resume. Differences: "
                              + "; ".join(diffs))  # fmt: skip
    if not resume and not overwrite and runs.has_checkpoints(run_dir):
        raise ResumeError(f"{run_dir} already holds checkpoints; pass --resume auto to continue it, --overwrite "
                          "to start it over, or choose another --output")  # fmt: skip
    return source
