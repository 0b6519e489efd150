"""Recognise actions in your own videos with any class names: the Python API behind ``vificlip predict``.

    recognizer = vificlip.load("vificlip_k400.safetensors")
    recognizer.predict("clip.mp4", ["dancing", "swimming"])  # [("dancing", 0.93), ("swimming", 0.07)]

A video goes through the reference's test pipeline (SPEC §2.4, §2.6): centres of T segments, short side
256/224·S, centre crop S (or 3 crops), the authors' normalisation. With several views the per-view softmax
probabilities are averaged (the reference sums them, SPEC §4.1; the ranking is the same).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.decode import open_video
from ..data.sampling import test_indices
from ..data.transforms import TestTransform, build_test_transform
from ..data.video_files import VIDEO_SUFFIXES, expand_videos, is_frame_folder
from ..engine.distributed import pick_device
from ..engine.resolve import resolve_optional, resolve_weights
from ..engine.runs import MODEL_FILE
from ..errors import VificlipError
from ..model.loading import load_model
from ..model.prompt_io import is_prompt_file, load_prompts
from ..model.vificlip import ViFiCLIP

log = logging.getLogger(__name__)

#: the most frames one video may be sampled to (the paper uses 8-32); memory grows with it, not with the source
MAX_FRAMES = 256
DEFAULT_FRAMES = 16  # segments per video when neither the caller nor the checkpoint says
EXPORT_CONFIG = "config.json"  # what `vificlip export` writes beside the weights: frames, normalisation, …


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one video, most probable first."""

    video: str
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"video": self.video, "top_k": [{"class": c, "probability": round(p, 6)}
                                               for c, p in zip(self.classes, self.probabilities)]}  # fmt: skip


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a device this machine lacks is a :class:`VificlipError`."""
    return pick_device(device)


def check_num_frames(num_frames: int) -> int:
    if not isinstance(num_frames, int) or not 1 <= num_frames <= MAX_FRAMES:
        raise VificlipError(f"the number of frames must be 1 … {MAX_FRAMES}, got {num_frames!r}")
    return num_frames


@dataclass(frozen=True)
class Clip:
    """A video read for the test pipeline: ``views`` float [V,T,3,S,S], its frame count, frames missing."""

    views: torch.Tensor
    num_frames: int
    missing_frames: int = 0


def read_clip(
    path: str | Path, num_frames: int, transform: TestTransform, backend: str = "auto",
    allow_truncated: bool = False,
) -> Clip:  # fmt: skip
    """Decode the T test frames of one video, each reduced to the crops' region as soon as it is decoded (memory
    grows with T × output size, not with the source resolution), then crop and normalise."""
    with open_video(path, backend=backend, allow_truncated=allow_truncated) as reader:
        frames = reader.read(test_indices(reader.num_frames, check_num_frames(num_frames)), transform.reduce)
        return Clip(transform.finish(frames), reader.num_frames, reader.missing_frames)


def load_video_tensor(
    path: str | Path,
    num_frames: int,
    input_size: int,
    num_crops: int = 1,
    normalization: str = "authors",
    backend: str = "auto",
    allow_truncated: bool = False,
) -> torch.Tensor:
    """A video file (or frame folder) → float [V,T,3,S,S], V = num_crops, ready for ``encode_video``."""
    transform = build_test_transform(input_size=input_size, num_crops=num_crops, normalization=normalization)
    return read_clip(path, num_frames, transform, backend, allow_truncated).views


def find_videos(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """(videos, problems): files as given; folders expanded recursively to their video files and frame folders
    (``VIDEO_SUFFIXES``, sorted). A path that does not exist or a folder without videos is a problem line, and
    the other paths are still expanded."""
    found: list[Path] = []
    problems: list[str] = []
    for entry in map(Path, paths):
        if not entry.exists():
            problems.append(f"{entry}: no such video file or folder")
        elif entry.is_file() or is_frame_folder(entry):
            found.append(entry)
        elif videos := expand_videos(entry):
            found.extend(videos)
        else:
            problems.append(f"{entry}: folder holds no videos ({' '.join(sorted(VIDEO_SUFFIXES))}) "
                            "and no img_<number>.jpg frames")  # fmt: skip
    return found, problems


class VideoRecognizer:
    """A loaded ViFi-CLIP model plus its test-time video pipeline."""

    def __init__(
        self,
        model: ViFiCLIP,
        num_frames: int = 16,
        device: str | torch.device = "cpu",
        num_crops: int = 1,
        normalization: str = "authors",
        backend: str = "auto",
        allow_truncated: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.num_frames = check_num_frames(num_frames)
        self.num_crops = num_crops
        self.normalization = normalization
        self.backend = backend
        self.allow_truncated = allow_truncated
        self.transform = build_test_transform(model.arch.image_size, num_crops, normalization)
        self.truncated: list[
            str
        ] = []  # videos read with missing frames (allow_truncated): the counted warning
        self.source = "the model"  # what to name in errors: load() sets the checkpoint path

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def video_tensor(self, video: str | Path | torch.Tensor) -> torch.Tensor:
        """Path → [V,T,3,S,S]; a float tensor [T,3,S,S] or [V,T,3,S,S] passes through."""
        if isinstance(video, torch.Tensor):
            return video if video.ndim == 5 else video.unsqueeze(0)
        if not isinstance(video, (str, Path)):
            raise VificlipError(f"a video is a path or a tensor, not {type(video).__name__}")
        clip = read_clip(video, self.num_frames, self.transform, self.backend, self.allow_truncated)
        if clip.missing_frames:
            self.truncated.append(str(video))
        return clip.views

    @torch.no_grad()
    def encode_video(self, video: str | Path | torch.Tensor) -> torch.Tensor:
        """One L2-normalised embedding [D] (mean over views)."""
        views = self.video_tensor(video).to(self.device)
        with self._autocast():
            features = self.model.encode_video(views).float()  # [V, D]
        return torch.nn.functional.normalize(features.mean(0), dim=-1)

    @torch.no_grad()
    def probabilities(self, video: str | Path | torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """[C] class probabilities: softmax per view, averaged over views."""
        views = self.video_tensor(video).to(self.device)
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise VificlipError(f"class_names must be a list of names, not {type(class_names).__name__} "
                                f"{str(class_names)[:40]!r}")  # fmt: skip
        with self._autocast():
            logits = self.model(views, class_names).float()  # [V, C]
        if not torch.isfinite(logits).all():
            raise VificlipError(f"{self.source} produced NaN or infinite scores: its weights are broken")
        return logits.softmax(dim=-1).mean(dim=0)

    def predict(
        self, video: str | Path | torch.Tensor, class_names: Sequence[str], top_k: int = 5
    ) -> Prediction:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise VificlipError(f"top_k must be an integer ≥ 1, got {top_k!r}")
        probs = self.probabilities(video, class_names)
        values, indices = probs.topk(min(top_k, len(class_names)))
        return Prediction(
            video=str(video) if not isinstance(video, torch.Tensor) else "<tensor>",
            classes=tuple(class_names[i] for i in indices.tolist()),
            probabilities=tuple(values.tolist()),
        )


def recorded_pipeline(weights: Path) -> dict:
    """Frames and normalisation recorded by an export (``config.json`` beside our weights); {} for anything else."""
    folder = weights if weights.is_dir() else weights.parent
    config = folder / EXPORT_CONFIG
    if not (folder / MODEL_FILE).is_file() or not config.is_file():
        return {}
    try:
        recorded = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict) or recorded.get("format") != "vificlip":
        return {}  # e.g. a Hugging Face CLIPModel config
    return {k: recorded[k] for k in ("num_frames", "normalization") if k in recorded}


def load(
    checkpoint: str | Path,
    base: str | Path | None = None,
    num_frames: int | None = None,
    device: str = "auto",
    template: str | None = None,
    **pipeline,
) -> VideoRecognizer:
    """Any supported checkpoint, run folder, prompt artefact, built-in or remote name as a video recogniser.

    ``num_frames`` and ``normalization`` default to what an exported folder records (``vificlip export``), else
    16 frames and the authors' constants.
    """
    path = resolve_weights(checkpoint)  # a name, run folder or checkpoint folder → its weights
    recorded = recorded_pipeline(path)
    if num_frames is None:
        num_frames = recorded.get("num_frames", DEFAULT_FRAMES)
    if "normalization" in recorded:
        pipeline.setdefault("normalization", recorded["normalization"])
    base_path = resolve_optional(base)
    if is_prompt_file(path):  # bridge-and-prompt artefact: prompts on their recorded (or given) base
        model = load_prompts(path, base=base_path)
        if template is not None:
            raise VificlipError(
                f"{path}: prompt models build their own prompt text; --template does not apply"
            )
    else:
        model = load_model(path, base=base_path, template=template)
    recognizer = VideoRecognizer(model, num_frames=num_frames, device=device, **pipeline)
    recognizer.source = str(path)
    return recognizer
