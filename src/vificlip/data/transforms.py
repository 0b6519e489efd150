"""The paper's train and test pipelines on uint8 video tensors ``[T,3,H,W]`` (SPEC §2.5-2.7).

Every geometric choice (crop box, flip, grayscale, the jitter gate) is drawn once per clip, so all frames of a clip
get the same one. Colour-jitter *factors* are drawn per frame by default, as the reference does (SPEC quirk 14);
``consistent_jitter=True`` draws them once per clip. Randomness comes from the ``torch.Generator`` passed to
``__call__`` (or torch's global RNG, which DataLoader seeds per worker), never from ``random``/NumPy.

Resizes are bilinear with ``antialias=False``: the reference used OpenCV's INTER_LINEAR (via mmcv), which samples
at half-pixel centres without antialiasing, and torch's bilinear mode without antialiasing is the same operation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from vificlip.errors import VificlipError

# RGB, 0-255 scale. The authors normalise with ImageNet statistics, not CLIP's (SPEC §2.7); keep them to reproduce
# the reported numbers.
AUTHORS_MEAN = (123.675, 116.28, 103.53)
AUTHORS_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = tuple(255 * v for v in (0.48145466, 0.4578275, 0.40821073))
CLIP_STD = tuple(255 * v for v in (0.26862954, 0.26130258, 0.27577711))
NUM_CROPS = (1, 3)  # test views: a centre crop, or three crops (the reference supports only these)
NORMALIZATIONS = {"authors": (AUTHORS_MEAN, AUTHORS_STD), "clip": (CLIP_MEAN, CLIP_STD)}

# torchvision ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1), as the reference configures it.
JITTER_RANGES = {
    "brightness": (0.6, 1.4),
    "contrast": (0.6, 1.4),
    "saturation": (0.8, 1.2),
    "hue": (-0.1, 0.1),
}


def _normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name not in NORMALIZATIONS:
        raise VificlipError(f"unknown normalization {name!r}; expected one of {', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


def _check_video(video: torch.Tensor) -> None:
    if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"expected a uint8 video [T,3,H,W], got {video.dtype} {tuple(video.shape)}")


def _resize(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(video.shape[-2:]) == (height, width):
        return video  # bilinear resize to the same size is the identity; skip the work
    return F.resize(video, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=False)


def resize_short_side(video: torch.Tensor, short_side: int) -> torch.Tensor:
    """Keep the aspect ratio; new sides are int(side·scale + 0.5), as mmcv's ``rescale_size``."""
    height, width = video.shape[-2:]
    scale = short_side / min(height, width)
    return _resize(video, int(height * scale + 0.5), int(width * scale + 0.5))


def _normalize(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return F.normalize(video.float(), list(mean), list(std))


def _draw(low: float, high: float, generator: torch.Generator | None) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def adjust_hue(image: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """Rotate the hue of float RGB images in [0, 1] ([..., 3, H, W]) by ``hue_factor`` turns.

    The same HSV rotation as torchvision's ``adjust_hue`` (equal to ~1e-6), written with the closed-form HSV→RGB
    f(n) = V − C·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6, which is several times cheaper; hue is the
    most expensive step of the training augmentation.
    """
    red, green, blue = image.unbind(dim=-3)
    # Element-wise max/min over the three planes: ~20× faster than aminmax over the strided channel dim.
    maxc = torch.maximum(torch.maximum(red, green), blue)
    chroma = maxc - torch.minimum(torch.minimum(red, green), blue)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))  # grey pixels: any hue, output = V
    sextant = torch.where(
        maxc == red,
        (green - blue) / safe,
        torch.where(maxc == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0),
    )
    sextant = torch.remainder(sextant + 6.0 * hue_factor, 6.0)
    out = torch.empty_like(image)  # written plane by plane: no torch.stack copy
    for channel, n in enumerate((5.0, 3.0, 1.0)):  # R, G, B
        k = torch.remainder(sextant + n, 6.0)
        weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0).mul_(chroma)
        torch.sub(maxc, weight, out=out.select(-3, channel))
    return out


_JITTER_OPS = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
               "saturation": F.adjust_saturation, "hue": adjust_hue}  # fmt: skip


def _draw_jitter(generator: torch.Generator | None) -> list[tuple[str, float]]:
    """One torchvision-ColorJitter draw: the four ops in a random order, each with its factor."""
    order = torch.randperm(4, generator=generator).tolist()
    factors = {name: _draw(*JITTER_RANGES[name], generator) for name in JITTER_RANGES}
    names = list(JITTER_RANGES)
    return [(names[op], factors[names[op]]) for op in order]


def _jitter(frame: torch.Tensor, ops: list[tuple[str, float]]) -> torch.Tensor:
    for name, factor in ops:
        frame = _JITTER_OPS[name](frame, factor)
    return frame


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """The per-clip random choices, exposed so tests and debugging can see (and replay) them."""

    crop: tuple[int, int, int, int]  # top, left, height, width in the short-side-resized frame
    flip: bool
    jitter: bool
    gray: bool


@dataclasses.dataclass
class TrainTransform:
    """uint8 [T,3,H,W] → float32 [T,3,S,S], the reference's training pipeline in its order (SPEC §2.5)."""

    input_size: int = 224
    scales: tuple[float, ...] = (1, 0.875, 0.75, 0.66)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    gray_p: float = 0.2
    consistent_jitter: bool = False
    mean: tuple[float, ...] = AUTHORS_MEAN
    std: tuple[float, ...] = AUTHORS_STD
    max_scale_gap: int = 1

    @property
    def short_side(self) -> int:
        return int(256 / 224 * self.input_size)

    def crop_candidates(self, height: int, width: int) -> list[tuple[int, int]]:
        """(crop_w, crop_h) pairs from mmaction's MultiScaleCrop: scale indices at most one apart, 2-px snap."""
        sizes = [int(min(height, width) * s) for s in self.scales]
        pairs = []
        for i, crop_h in enumerate(sizes):
            for j, crop_w in enumerate(sizes):
                if abs(i - j) <= self.max_scale_gap:
                    snap = [v if abs(v - self.input_size) >= 3 else self.input_size for v in (crop_w, crop_h)]
                    pairs.append((snap[0], snap[1]))
        return pairs

    def sample_params(self, height: int, width: int, generator: torch.Generator | None = None) -> TrainParams:
        """Draw crop (size uniform over the candidates, offset uniform over 5 fixed positions), flip, gates."""
        candidates = self.crop_candidates(height, width)
        crop_w, crop_h = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
        w_step, h_step = (width - crop_w) // 4, (height - crop_h) // 4
        offsets = [
            (0, 0),
            (4 * w_step, 0),
            (0, 4 * h_step),
            (4 * w_step, 4 * h_step),
            (2 * w_step, 2 * h_step),
        ]
        left, top = offsets[int(torch.randint(len(offsets), (1,), generator=generator))]
        gates = torch.rand(3, generator=generator).tolist()
        return TrainParams(
            crop=(top, left, crop_h, crop_w),
            flip=gates[0] < self.flip_p,
            jitter=gates[1] < self.jitter_p,
            gray=gates[2] < self.gray_p,
        )

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_video(video)
        video = resize_short_side(video, self.short_side)
        params = self.sample_params(video.shape[-2], video.shape[-1], generator)
        return self.apply(video, params, generator)

    def apply(
        self, video: torch.Tensor, params: TrainParams, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Steps 3-8 of SPEC §2.5 on a short-side-resized clip; only jitter factors are drawn here."""
        top, left, crop_h, crop_w = params.crop
        video = video[..., top : top + crop_h, left : left + crop_w]
        video = _resize(video, self.input_size, self.input_size)
        if params.flip:
            video = F.horizontal_flip(video)
        scale = 1.0
        if params.jitter:
            # Jitter in float [0, 1]: no uint8 round trip per op (the reference re-quantises after each PIL op,
            # a difference below one grey level).
            video, scale = video.float().div_(255.0), 255.0
            shared = _draw_jitter(generator) if self.consistent_jitter else None
            # frame by frame even when the draw is shared: per-frame temporaries stay in cache (~1.5x faster)
            video = torch.stack([_jitter(frame, shared or _draw_jitter(generator)) for frame in video])
        if params.gray:
            video = F.rgb_to_grayscale(video, num_output_channels=3)
        return _normalize(video, [m / scale for m in self.mean], [s / scale for s in self.std])


@dataclasses.dataclass
class TestTransform:
    """uint8 [T,3,H,W] → float32 [num_crops,T,3,S,S] (SPEC §2.6); deterministic."""

    __test__ = False  # not a pytest test class

    input_size: int = 224
    num_crops: int = 1
    mean: tuple[float, ...] = AUTHORS_MEAN
    std: tuple[float, ...] = AUTHORS_STD

    def crop_boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(top, left) of each S×S crop in the resized frame, in the reference's order."""
        size = self.input_size
        if self.num_crops == 1:
            return [((height - size) // 2, (width - size) // 2)]
        if width >= height:  # three crops along the long side: left, right, middle
            step = (width - size) // 2
            return [(0, 0), (0, 2 * step), (0, step)]
        step = (height - size) // 2  # top, bottom, middle
        return [(0, 0), (2 * step, 0), (step, 0)]

    @property
    def short_side(self) -> int:
        return int(256 / 224 * self.input_size) if self.num_crops == 1 else self.input_size

    def reduce(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [...,3,H,W] → the short-side-resized frames cut to the region the crops cover (uint8).

        Per frame or per clip, the numbers are the same (each frame is resized on its own), so a decoder applies
        this to each frame as it is decoded and never holds full-resolution frames (``VideoReader.read``).
        :meth:`finish` of the reduced clip is this transform's output: the crop boxes of the reduced region are
        the original boxes, shifted to its corner.
        """
        video = resize_short_side(video, self.short_side)
        boxes = self.crop_boxes(video.shape[-2], video.shape[-1])
        top, left = min(t for t, _ in boxes), min(x for _, x in boxes)
        bottom = max(t for t, _ in boxes) + self.input_size
        right = max(x for _, x in boxes) + self.input_size
        return video[..., top:bottom, left:right]

    def finish(self, reduced: torch.Tensor) -> torch.Tensor:
        """uint8 [T,3,h,w] from :meth:`reduce` → float32 [num_crops,T,3,S,S]."""
        _check_video(reduced)
        size = self.input_size
        boxes = self.crop_boxes(reduced.shape[-2], reduced.shape[-1])
        crops = torch.stack([reduced[..., top : top + size, left : left + size] for top, left in boxes])
        return _normalize(crops, self.mean, self.std)  # [num_crops,T,3,S,S]

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_video(video)
        return self.finish(self.reduce(video))


def build_train_transform(
    input_size: int = 224,
    scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
    flip_p: float = 0.5,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    consistent_jitter: bool = False,
    normalization: str = "authors",
) -> TrainTransform:
    """The paper's training augmentation; ``normalization`` is ``"authors"`` (default, SPEC §2.7) or ``"clip"``."""
    mean, std = _normalization(normalization)
    return TrainTransform(input_size, tuple(scales), flip_p, jitter_p, gray_p, consistent_jitter, mean, std)


def build_test_transform(
    input_size: int = 224, num_crops: int = 1, normalization: str = "authors"
) -> TestTransform:
    """1 crop: short side int(256/224·S) + centre crop. 3 crops: short side S + left, right, middle crops."""
    if num_crops not in NUM_CROPS:
        raise VificlipError(f"num_crops must be 1 or 3 (the reference supports only these), got {num_crops}")
    mean, std = _normalization(normalization)
    return TestTransform(input_size, num_crops, mean, std)
