"""VideoDataset: record → open → sample frame indices → decode those frames → transform (SPEC §2.3-2.6, §2.9).

Bad videos (missing, empty, corrupt, undecodable) never crash a run:

* **train**: the failure is logged with its path and counted, and another (random, not known-bad) video is returned
  in its place; once more than ``max_bad_fraction`` of the dataset has failed, a :class:`VificlipError` stops the
  run. The count lives in shared memory, so it is one count across all DataLoader workers of this process.
* **test**: nothing is dropped or replaced. The item comes back with ``ok=False`` and an all-zero video, so the
  evaluator can report "N of M scored, K unreadable" from the ``ok`` flags (which survive worker processes).
"""

from __future__ import annotations

import ctypes
import inspect
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, get_worker_info

from vificlip.data.decode import open_video
from vificlip.data.records import VideoRecord
from vificlip.data.sampling import multi_clip_indices, train_indices
from vificlip.data.transforms import build_test_transform, build_train_transform
from vificlip.data.video_reader import VideoDecodeError
from vificlip.errors import VificlipError

log = logging.getLogger(__name__)

MODES = ("train", "test")
CLIP_MODES = ("even", "random")
_BLANK_SIZE = (
    256  # side of the dummy clip pushed through the transform to learn the output shape of a zero video
)


class VideoDataset(Dataset):
    """Items are dicts. train: ``video`` float [T,3,S,S], ``label`` int, ``index`` int (of the video actually
    returned, which differs from the requested one after a substitution). test: ``video`` float [V,T,3,S,S] with
    V = num_crops·num_clips laid out crop-major then clip (SPEC §2.6), ``label``, ``index``, ``ok`` bool.

    ``transform=None`` uses the paper's pipeline for the mode (224 px, authors' normalisation). A custom transform
    gets the uint8 frames [N,3,H,W] (N = num_clips·T) and, if it takes a ``generator`` keyword, the sample's
    ``torch.Generator``; otherwise it should draw from torch's global RNG (seeded per worker by ``build_loader``).

    ``seed_per_item=True`` makes a training item's randomness a function of (seed, epoch, index) alone (call
    :meth:`set_epoch` each epoch): the same augmentation whatever the worker count or order, so an interrupted and
    resumed run sees exactly what an uninterrupted one saw.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        num_frames: int,
        mode: str,
        transform: Callable[..., torch.Tensor] | None = None,
        num_clips: int = 1,
        clip_mode: str = "even",
        backend: str = "auto",
        max_bad_fraction: float = 0.01,
        seed: int = 0,
        seed_per_item: bool = False,
    ):
        if mode not in MODES:
            raise VificlipError(f"dataset mode must be one of {MODES}, got {mode!r}")
        if clip_mode not in CLIP_MODES:
            raise VificlipError(f"clip_mode must be one of {CLIP_MODES}, got {clip_mode!r}")
        if num_frames < 1 or num_clips < 1:
            raise VificlipError(f"num_frames and num_clips must be >= 1, got {num_frames} and {num_clips}")
        if mode == "train" and num_clips != 1:
            raise VificlipError(f"num_clips={num_clips} applies to test mode only; training samples one clip")
        if not 0 <= max_bad_fraction <= 1:
            raise VificlipError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        if not records:
            raise VificlipError("the dataset has no videos (empty annotation list?)")
        self.records = list(records)
        self.num_frames = num_frames
        self.mode = mode
        if transform is None:
            transform = build_train_transform() if mode == "train" else build_test_transform()
        self.transform = transform
        self._transform_takes_generator = _takes_generator(transform)
        self.num_clips = num_clips
        self.clip_mode = clip_mode
        self.backend = backend
        self.max_bad_fraction = max_bad_fraction
        self.seed = seed
        self.seed_per_item = seed_per_item
        self.epoch = 0
        # One flag per video in shared memory, inherited by DataLoader workers (fork or spawn). Setting a flag is
        # idempotent and the count is read from the flags, so no lock is needed (locks do not cross contexts).
        self._bad_flags = multiprocessing.RawArray(ctypes.c_bool, len(self.records))
        self._rng: torch.Generator | None = None
        self._rng_key: tuple[int, int | None] | None = None
        self._blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_bad(self) -> int:
        """Distinct videos that failed to decode so far (all workers of this process together)."""
        return bytes(self._bad_flags).count(1)

    def bad_indices(self) -> list[int]:
        """Indices of the videos that failed so far, e.g. to list their paths after a run."""
        flags = bytes(self._bad_flags)
        return [i for i, bad in enumerate(flags) if bad]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.records)} videos")
        if self.mode == "train":
            return self._train_item(index)
        return self._test_item(index)

    def _train_item(self, index: int) -> dict[str, Any]:
        generator = self._item_generator(index) if self.seed_per_item else self._generator()
        for _ in range(len(self.records)):  # bounded: the bad-fraction limit stops a run long before this
            try:
                video = self._load(index, generator)
                return {"video": video, "label": self.records[index].label, "index": index}
            except VideoDecodeError as error:
                self._count_bad(index, error)
                index = self._substitute(generator)
        raise VificlipError("no video in the dataset could be decoded")

    def _test_item(self, index: int) -> dict[str, Any]:
        # A per-item generator keeps the "random" clip mode reproducible whatever worker loads the item.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        record = self.records[index]
        try:
            video, ok = self._load(index, generator), True
        except VideoDecodeError as error:
            self._count_bad(index, error)
            video, ok = self._blank_video(generator), False
        return {"video": video, "label": record.label, "index": index, "ok": ok}

    def _load(self, index: int, generator: torch.Generator) -> torch.Tensor:
        """Decode the sampled frames of one video and transform them; test clips reshaped to [V,T,3,S,S]."""
        with open_video(self.records[index].path, self.backend) as reader:
            if self.mode == "train":
                indices = train_indices(reader.num_frames, self.num_frames, generator)
            else:
                clips = multi_clip_indices(
                    reader.num_frames, self.num_frames, self.num_clips, self.clip_mode, generator
                )
                indices = [i for clip in clips for i in clip]  # clip-major, as the reference concatenates
            frames = reader.read(indices)  # uint8 [N,3,H,W], N = num_clips·T
        return self._apply_transform(frames, generator)

    def _apply_transform(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self._transform_takes_generator:
            video = self.transform(frames, generator=generator)
        else:
            video = self.transform(frames)
        if self.mode == "test":
            if video.ndim == 4:  # a transform without a crop dimension: one crop
                video = video.unsqueeze(0)
            num_crops = video.shape[0]
            # [crops, clips·T, 3, S, S] -> [crops·clips, T, 3, S, S]: crop-major, then clip (SPEC §2.6)
            video = video.reshape(num_crops * self.num_clips, self.num_frames, *video.shape[2:])
        return video

    def _blank_video(self, generator: torch.Generator) -> torch.Tensor:
        """An all-zero video of the shape a readable one would have (learned once from a dummy clip)."""
        if self._blank is None:
            dummy = torch.zeros(
                self.num_clips * self.num_frames, 3, _BLANK_SIZE, _BLANK_SIZE, dtype=torch.uint8
            )
            self._blank = torch.zeros_like(self._apply_transform(dummy, generator))
        return self._blank.clone()

    def _count_bad(self, index: int, error: VideoDecodeError) -> None:
        """Log and count a failure once per video; in training, stop when too many videos have failed."""
        new = not self._bad_flags[index]
        self._bad_flags[index] = True
        count = self.num_bad
        total = len(self.records)
        if new:
            record = self.records[index]
            listed = f", listed at {record.source}" if record.source else ""
            log.warning(
                "unreadable video %s (%s%s); %d of %d bad so far",
                record.path,
                error.reason,
                listed,
                count,
                total,
            )
        if self.mode == "train" and count > self.max_bad_fraction * total:
            raise VificlipError(
                f"{count} of {total} training videos could not be decoded ({count / total:.1%}), more than "
                f"max_bad_fraction={self.max_bad_fraction:.1%}; last: {error}. Fix or remove the bad files, "
                f"or raise the limit"
            )

    def _substitute(self, generator: torch.Generator) -> int:
        """A random video not yet known to be bad (falls back to a scan when random draws keep hitting bad ones)."""
        total = len(self.records)
        for _ in range(32):
            candidate = int(torch.randint(total, (1,), generator=generator))
            if not self._bad_flags[candidate]:
                return candidate
        good = [i for i in range(total) if not self._bad_flags[i]]
        if not good:
            raise VificlipError(f"none of the {total} videos in the dataset could be decoded")
        return good[int(torch.randint(len(good), (1,), generator=generator))]

    def set_epoch(self, epoch: int) -> None:
        """The epoch that ``seed_per_item`` mixes into each item's seed (workers must start after this call)."""
        self.epoch = epoch

    def _item_generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 100_003 + index) % 2**63)

    def _generator(self) -> torch.Generator:
        """One generator per process: seeded from ``seed`` in the main process, from the worker's seed in a worker.

        A DataLoader worker's seed is base_seed + worker_id, where base_seed comes from the loader's generator
        (``build_loader`` seeds it), so a run is reproducible for a given seed and worker count.
        """
        info = get_worker_info()
        key = (os.getpid(), info.seed if info is not None else None)
        if self._rng is None or self._rng_key != key:
            seed = self.seed if info is None else (info.seed + self.seed * 0x9E3779B1) % (2**63)
            self._rng, self._rng_key = torch.Generator().manual_seed(seed), key
        return self._rng


def _takes_generator(transform: Callable[..., torch.Tensor]) -> bool:
    try:
        return "generator" in inspect.signature(transform).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
