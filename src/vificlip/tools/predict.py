"""Recognise actions in your own videos with any class names: the Python API behind ``vificlip predict``.

    recognizer = vificlip.load("vificlip_k400.safetensors")
    recognizer.predict("clip.mp4", ["dancing", "swimming"])  # [("dancing", 0.93), ("swimming", 0.07)]

A video goes through the reference's test pipeline (SPEC §2.4, §2.6): centres of T segments, short side
256/224·S, centre crop S (or 3 crops), the authors' normalisation. With several views the per-view softmax
probabilities are averaged (the reference sums them, SPEC §4.1; the ranking is the same).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.decode import open_video
from ..data.sampling import test_indices
from ..data.transforms import build_test_transform
from ..engine.resolve import resolve_optional, resolve_weights
from ..errors import VificlipError
from ..model.loading import load_model
from ..model.prompt_io import is_prompt_file, load_prompts
from ..model.vificlip import ViFiCLIP

DEFAULT_FRAMES = 16  # segments per video when neither the caller nor the checkpoint says
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one video, most probable first."""

    video: str
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"video": self.video, "top_k": [{"class": c, "probability": round(p, 6)}
                                               for c, p in zip(self.classes, self.probabilities)]}  # fmt: skip


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_video_tensor(
    path: str | Path,
    num_frames: int,
    input_size: int,
    num_crops: int = 1,
    normalization: str = "authors",
    backend: str = "auto",
) -> torch.Tensor:
    """A video file (or frame folder) → float [V,T,3,S,S], V = num_crops, ready for ``encode_video``."""
    with open_video(path, backend=backend) as reader:
        frames = reader.read(test_indices(reader.num_frames, num_frames))  # uint8 [T,3,H,W]
    transform = build_test_transform(input_size=input_size, num_crops=num_crops, normalization=normalization)
    return transform(frames)


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders expanded recursively to their video files (sorted) and frame folders."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if not entry.exists():
            raise FileNotFoundError(f"{entry}: no such video file or folder")
        if entry.is_file() or any(entry.glob("img_*.jpg")):
            found.append(entry)
            continue
        videos = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise VificlipError(f"{entry}: folder holds no video files ({', '.join(VIDEO_SUFFIXES)})")
        found.extend(videos)
    return found


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
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.num_frames = num_frames
        self.num_crops = num_crops
        self.normalization = normalization
        self.backend = backend

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def video_tensor(self, video: str | Path | torch.Tensor) -> torch.Tensor:
        """Path → [V,T,3,S,S]; a float tensor [T,3,S,S] or [V,T,3,S,S] passes through."""
        if isinstance(video, torch.Tensor):
            return video if video.ndim == 5 else video.unsqueeze(0)
        return load_video_tensor(video, self.num_frames, self.model.arch.image_size, self.num_crops,
                                 self.normalization, self.backend)  # fmt: skip

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
        with self._autocast():
            logits = self.model(views, class_names).float()  # [V, C]
        return logits.softmax(dim=-1).mean(dim=0)

    def predict(
        self, video: str | Path | torch.Tensor, class_names: Sequence[str], top_k: int = 5
    ) -> Prediction:
        probs = self.probabilities(video, class_names)
        values, indices = probs.topk(min(top_k, len(class_names)))
        return Prediction(
            video=str(video) if not isinstance(video, torch.Tensor) else "<tensor>",
            classes=tuple(class_names[i] for i in indices.tolist()),
            probabilities=tuple(values.tolist()),
        )


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
    from .export import recorded_pipeline

    path = resolve_weights(checkpoint)  # a name, run folder or checkpoint folder → its weights
    recorded = recorded_pipeline(path)
    num_frames = num_frames or recorded.get("num_frames", DEFAULT_FRAMES)
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
    return VideoRecognizer(model, num_frames=num_frames, device=device, **pipeline)
