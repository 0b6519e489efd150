"""The run-folder contract: the one place that names what a training or protocol run writes, and reads it back.

Layout of a run folder (``RunConfig.run_dir``)::

    config.yaml            the resolved config (what ``--resume`` compares against)
    .lock                  held (flock) by the one process writing the run; pid and host inside, for messages
    log.txt, log_rank<r>.txt
    metrics.jsonl          one JSON object per optimiser step and per evaluation
    tensorboard/           the same scalars
    evals/                 eval_<name>.json, confusion_<name>.csv
    train_results.json     written when training finished
    prompts.safetensors    bridge-and-prompt runs: the small prompt file
    results.json, results.md   protocol folders: the table row
    checkpoints/
        <tag>/             a snapshot: model.safetensors, state.pt (resumable ones), manifest.json (written last)
        last.json, best.json   pointers {"dir", "epoch", "step", ...}: hints, not the source of truth

A snapshot is *complete* when its manifest parses and every file it lists is there with the recorded size (and,
when asked, the recorded sha256). Its ``seq`` orders snapshots; the newest complete one is the run's latest
checkpoint whatever ``last.json`` says, so a deleted, garbage or dangling pointer costs nothing. Readers
(eval, predict, embed) never take the lock: snapshots appear by an atomic rename, complete.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from ..digest import file_sha256
from ..errors import VificlipError

log = logging.getLogger(__name__)

# ---- names --------------------------------------------------------------------------------------------------
CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
LOG_FILE = "log.txt"  # rank 0's log; every rank also writes RANK_LOG_FILE
RANK_LOG_FILE = "log_rank{rank}.txt"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
EVALS_DIR = "evals"
TRAIN_RESULTS_FILE = "train_results.json"
PROMPTS_FILE = "prompts.safetensors"
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
MANIFEST_FILE = "manifest.json"
POINTERS = ("last", "best")
TEMP_PREFIXES = (".tmp-", ".trash-")  # + "<tag>-<pid>": a snapshot being written or deleted by process <pid>
# What a training run writes besides its config and logs: removed by ``--overwrite`` before a fresh start.
TRAINING_OUTPUTS = (
    CHECKPOINT_DIR,
    METRICS_FILE,
    TENSORBOARD_DIR,
    EVALS_DIR,
    TRAIN_RESULTS_FILE,
    PROMPTS_FILE,
)


class RunFolderError(VificlipError):
    """A run folder that cannot be read or written as asked; the message names the path and the cause."""


class CheckpointNotFoundError(RunFolderError, FileNotFoundError):
    """No usable checkpoint where one was asked for."""


class RunLockedError(RunFolderError):
    """Another live process is writing this run folder."""


def describe_os_error(exc: BaseException) -> str:
    """The cause in words: 'no space left on device', 'read-only file system', … (any exception)."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or (code is None and "No space left" in str(exc)):
        return "no space left on device"
    if code is not None:
        return os.strerror(code).lower()
    return str(exc) or type(exc).__name__


def write_error(path: Path, exc: BaseException, what: str = "write") -> RunFolderError:
    """An OS or serialization error while writing ``path``, as the one error type (raise it ``from exc``)."""
    return RunFolderError(f"{path}: cannot {what}: {describe_os_error(exc)}")


# ---- paths --------------------------------------------------------------------------------------------------
def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def pointer_path(run_dir: Path, name: str = "last") -> Path:
    return checkpoint_root(run_dir) / f"{name}.json"


def run_dir_of(checkpoint_dir: Path) -> Path | None:
    """The run folder a snapshot folder belongs to (``<run>/checkpoints/<tag>``), or None for a loose folder."""
    parent = Path(checkpoint_dir).parent
    return parent.parent if parent.name == CHECKPOINT_DIR else None


def has_checkpoints(run_dir: Path) -> bool:
    """Anything checkpoint-like in the run folder: a snapshot folder (complete or not) or a pointer."""
    root = checkpoint_root(run_dir)
    return root.is_dir() and any(not p.name.startswith(TEMP_PREFIXES) for p in root.iterdir())


# ---- pointers -----------------------------------------------------------------------------------------------
def read_pointer(run_dir: Path, name: str = "last") -> dict | None:
    """The pointer's JSON, or None when it is missing or unreadable (a warning says which): it is only a hint."""
    path = pointer_path(run_dir, name)
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable pointer (%s); ignoring it", path, describe_os_error(exc))
        return None
    if not isinstance(pointer, dict) or not isinstance(pointer.get("dir"), str) or "/" in pointer["dir"]:
        log.warning('%s: not a checkpoint pointer (expected {"dir": ...}); ignoring it', path)
        return None
    return pointer


def pointer_dir(run_dir: Path, name: str = "last") -> Path | None:
    """The folder a pointer names (it may be missing: check with :func:`read_snapshot`)."""
    pointer = read_pointer(run_dir, name)
    return None if pointer is None else checkpoint_root(run_dir) / pointer["dir"]


# ---- snapshots ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One checkpoint folder as its manifest describes it."""

    path: Path
    seq: int  # save order within the run: the highest complete one is the latest
    info: dict[str, Any]  # epoch, micro_step, step, keep, ...
    files: dict[str, dict[str, Any]]  # name -> {"size", "sha256"}

    @property
    def resumable(self) -> bool:
        return STATE_FILE in self.files and (self.path / STATE_FILE).is_file()

    def problem(self, checksum: bool = False) -> str | None:
        """Why this snapshot is not complete (None when it is). A deleted ``state.pt`` only makes it weights-only."""
        for name, meta in self.files.items():
            path = self.path / name
            if not path.is_file():
                if name == STATE_FILE:
                    continue
                return f"{name} is missing"
            size = path.stat().st_size
            if size != meta["size"]:
                return f"{name} is {size} bytes, the manifest says {meta['size']} (truncated or replaced)"
            if checksum and file_sha256(path) != meta["sha256"]:
                return f"{name} does not match its sha256 (corrupt)"
        return None


def manifest(folder: Path, seq: int, info: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a filled snapshot folder: every file's size and sha256, the order and the progress."""
    files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name != MANIFEST_FILE}  # fmt: skip
    return {"seq": seq, **info, "files": files}


def read_snapshot(folder: Path) -> Snapshot | None:
    """The snapshot in ``folder``, or None when there is no readable manifest (incomplete, foreign or legacy)."""
    try:
        data = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = data.pop("files")
        seq = int(data.pop("seq"))
        if MODEL_FILE not in files:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Snapshot(Path(folder), seq, data, files)


def snapshots(run_dir: Path) -> list[Snapshot]:
    """Every snapshot of the run with a readable manifest, oldest first (complete or not: see ``problem``)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [s for p in root.iterdir() if p.is_dir() and not p.name.startswith(TEMP_PREFIXES)
             if (s := read_snapshot(p)) is not None]  # fmt: skip
    return sorted(found, key=lambda s: s.seq)


def latest_checkpoint(run_dir: Path, resumable: bool = False, checksum: bool = False) -> Path | None:
    """Run folder → its latest complete checkpoint folder (None when it has none).

    The newest complete snapshot by save order, verified against its manifest (sizes; sha256 too with
    ``checksum``); ``resumable`` also asks for its training state. Newer damaged snapshots and a pointer that
    disagrees are skipped with a warning that says so. Folders from before manifests existed are found through
    the ``last`` pointer.
    """
    skipped = []
    for snap in reversed(snapshots(run_dir)):
        problem = snap.problem(checksum)
        if problem is None and resumable and not snap.resumable:
            problem = f"no {STATE_FILE} (weights only)"
        if problem is not None:
            skipped.append(f"{snap.path.name} ({problem})")
            continue
        if skipped:
            log.warning("%s: skipping damaged newer checkpoint%s %s; using %s", checkpoint_root(run_dir),
                        "s" if len(skipped) > 1 else "", "; ".join(skipped), snap.path.name)  # fmt: skip
        hint = read_pointer(run_dir)
        if hint is not None and hint["dir"] != snap.path.name and not skipped:
            named = checkpoint_root(run_dir) / hint["dir"]
            # An older name is the normal trace of a crash between rename and pointer switch; a missing one is not.
            log.log(logging.INFO if named.is_dir() else logging.WARNING,
                    "%s: last.json names %s%s, the newest complete checkpoint is %s; using it",
                    checkpoint_root(run_dir), hint["dir"], "" if named.is_dir() else " (missing)",
                    snap.path.name)  # fmt: skip
        return snap.path
    legacy = pointer_dir(run_dir)
    if legacy is not None and (legacy / MODEL_FILE).is_file() and read_snapshot(legacy) is None:
        if not resumable or (legacy / STATE_FILE).is_file():
            return legacy
    if skipped:
        log.warning("%s: no complete checkpoint: %s", checkpoint_root(run_dir), "; ".join(skipped))
    return None


def find_checkpoint_dir(path: str | Path) -> Path:
    """A run folder (→ its latest complete checkpoint), a ``checkpoints`` folder, a pointer file or a snapshot."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".json":
        if path.parent.name != CHECKPOINT_DIR:
            raise CheckpointNotFoundError(f"{path}: not a checkpoint pointer (expected <run>/{CHECKPOINT_DIR}/"
                                          "last.json)")  # fmt: skip
        pointer = read_pointer(path.parent.parent, path.stem)
        folder = path.parent / pointer["dir"] if pointer is not None else None
        if folder is None or not (folder / MODEL_FILE).is_file():
            raise CheckpointNotFoundError(f"{path}: unreadable pointer or it names a missing checkpoint; pass the "
                                          f"run folder {path.parent.parent} to use its latest complete one")  # fmt: skip
        return folder
    if (path / MODEL_FILE).is_file():
        return path
    for run_dir in [path] + ([path.parent] if path.name == CHECKPOINT_DIR else []):
        found = latest_checkpoint(run_dir)
        if found is not None:
            return found
    raise CheckpointNotFoundError(f"{path}: no complete checkpoint there (expected a run folder with "
                                  f"{CHECKPOINT_DIR}/<snapshot>/{MODEL_FILE} or a folder with {MODEL_FILE})")  # fmt: skip


def model_file(path: str | Path) -> Path:
    """The weights file to load for ``path``: a run or snapshot folder resolves to its model.safetensors."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        try:
            return find_checkpoint_dir(path) / MODEL_FILE
        except CheckpointNotFoundError:
            return path  # maybe a Hugging Face folder; the model loader decides
    return path


# ---- other files --------------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """A JSON file we wrote, or a one-line :class:`RunFolderError` naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable ({describe_os_error(exc)})") from None


def read_train_results(run_dir: Path) -> dict | None:
    """``train_results.json`` of a finished training run (None while it has not finished)."""
    path = Path(run_dir) / TRAIN_RESULTS_FILE
    return read_json(path) if path.is_file() else None


def read_metrics(run_dir: Path, kind: str | None = None) -> list[dict]:
    """Rows of ``metrics.jsonl`` (``kind`` "train" or "eval" to filter); a torn last line is ignored."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in rows if kind is None or r.get("kind") == kind]


def clear_training_outputs(run_dir: Path) -> list[str]:
    """``--overwrite``: remove what an earlier training wrote (checkpoints, metrics, evals …); returns the names."""
    removed = []
    for name in TRAINING_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


# ---- one writer ---------------------------------------------------------------------------------------------
class RunLock:
    """Exclusive ``flock`` on ``<run>/.lock`` for the whole run: one writer per run folder.

    The kernel drops the lock when its holder dies (even by SIGKILL), so a stale lock never blocks; the pid and
    host written inside only name the holder in the refusal message.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunFolderError(f"{self.run_dir}: cannot write the run folder ({describe_os_error(exc)}); "
                                 "training needs a writable --output") from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunLockedError(f"{self.run_dir} is being written by another process ({holder}); wait for it "
                                 "to finish, stop it, or choose another --output") from None  # fmt: skip
        except OSError as exc:  # e.g. ENOLCK on a file system without flock: run, but say what is unguarded
            log.warning("%s: cannot lock (%s); nothing stops a second writer on this folder", self.path,
                        describe_os_error(exc))  # fmt: skip
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.write(fd, (json.dumps(info) + "\n").encode())
        self.fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f"pid {info['pid']} on {info['host']}, since {info.get('since', '?')}"
        except (OSError, ValueError, KeyError, TypeError):
            return "pid and host unknown"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (removing it would race a new writer)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(run_dir: Path) -> None:
    """Half-written snapshots of dead writers; call only while holding the :class:`RunLock` (no writer is alive)."""
    root = checkpoint_root(run_dir)
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith(TEMP_PREFIXES):
                shutil.rmtree(entry, ignore_errors=True)
