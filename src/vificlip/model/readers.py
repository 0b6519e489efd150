"""Safe readers for the containers checkpoints come in: safetensors, weights-only pickles, TorchScript, JSON.

Each returns plain Python/tensor objects and turns every failure into one :class:`CheckpointError` line that names
the file. Pickles are only ever read with ``torch.load(weights_only=True)``; TorchScript is the one reader that
runs code (``torch.jit.load`` has no safe mode), so it is for trusted files only.
"""

from __future__ import annotations

import json
import logging
import pickle
import struct
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .convert import CheckpointError, StateDict

logger = logging.getLogger(__name__)

# The authors pickled a yacs CfgNode (a dict subclass; SPEC quirk 27). Reading it as an OrderedDict runs no code
# and keeps weights_only=True: OrderedDict is the one dict type whose items and __dict__ the safe unpickler fills.
SAFE_STAND_INS = [(OrderedDict, "yacs.config.CfgNode")]


def fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}")


def is_torchscript(path: Path) -> bool:
    """TorchScript archives carry ``constants.pkl`` and ``code/``; ``torch.save`` zips never do."""
    with zipfile.ZipFile(path) as archive:
        names = [name.split("/", 1)[-1] for name in archive.namelist()]
    return "constants.pkl" in names or any(name.startswith("code/") for name in names)


def safetensors_header(path: Path) -> dict | None:
    """The JSON header when the file has safetensors' layout (u64 length, then '{'), else None."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (length,) = struct.unpack("<Q", head[:8])
    if length > path.stat().st_size - 8:
        raise fail(path, "truncated safetensors file (header longer than the file)")
    with open(path, "rb") as f:
        f.seek(8)
        try:
            return json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise fail(path, f"corrupt safetensors header ({exc})") from None


def read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise fail(
            path, f"unreadable safetensors file (truncated or corrupt?): {' '.join(str(exc).split())}"
        ) from None


def torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` always; errors become one line naming the file."""
    try:
        with torch.serialization.safe_globals(SAFE_STAND_INS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(str(exc))
        # e.g. "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
        if "GLOBAL" in reason:
            raise fail(path, f"needs code to load ({reason}); refused for safety: vificlip reads weights only "
                       "and never runs code from a checkpoint") from None  # fmt: skip
        raise fail(path, f"not a readable PyTorch checkpoint (truncated or corrupt?): {reason}") from None
    except Exception as exc:  # noqa: BLE001 - any parse error of foreign bytes (torch also tries safetensors)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(
            path, f"not a readable PyTorch checkpoint (truncated or corrupt?): {first[:200]}"
        ) from None


def _unpickler_reason(message: str) -> str:
    """The one informative line of torch's weights_only error, without its generic advice (which suggests
    ``weights_only=False``: exactly what must not be done with an untrusted file)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for number, line in enumerate(lines):
        if "GLOBAL" in line or "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:")[-1].strip()
            if not reason and number + 1 < len(lines):  # the reason is on the next line
                reason = lines[number + 1]
            if reason:
                return reason.split(". Please use")[0].rstrip(".")
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation", "(")
    useful = [line for line in lines if not line.startswith(advice)]
    return useful[0].rstrip(".") if useful else "unreadable pickle"


def read_torchscript(path: Path) -> StateDict:
    logger.info(
        "%s: OpenAI TorchScript archive; torch.jit.load runs its code, so use trusted files only", path
    )
    try:
        with warnings.catch_warnings():  # deprecation notice; this archive format is what OpenAI ships
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise fail(path, f"unreadable TorchScript archive: {str(exc).strip().splitlines()[0]}") from None
    return dict(module.state_dict())


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(path, f"unreadable JSON config ({exc})") from None
