"""Which frames to decode: TSN segment sampling exactly as the reference (SPEC §2.4, mmaction ``SampleFrames``).

A video of F frames is cut into T segments and one frame is taken per segment: a random one for training, the
centre for testing. All functions are pure; randomness comes only from the ``torch.Generator`` passed in, so a
sample is reproducible from its seed. Indices are Python ints in ``0..F-1`` (the reference's "loop" policy wraps
them modulo F).
"""

from __future__ import annotations

import torch


def train_indices(num_frames: int, num_segments: int, generator: torch.Generator | None = None) -> list[int]:
    """TSN random sampling: frame k is uniform in segment k = [k·seg, (k+1)·seg), seg = F // T.

    When F < T (seg = 0) the reference takes ``round(k·F/T)`` (NumPy's round-half-to-even, which Python's
    ``round`` matches), so some frames repeat. F < 1 gives all zeros.
    """
    if num_frames < 1:
        return [0] * num_segments
    seg = num_frames // num_segments
    if seg > 0:
        offsets = torch.randint(0, seg, (num_segments,), generator=generator).tolist()
        indices = [k * seg + offset for k, offset in enumerate(offsets)]
    else:
        ratio = num_frames / num_segments  # k * ratio, as np.arange(T) * ratio, for identical float ties
        indices = [round(k * ratio) for k in range(num_segments)]
    return [index % num_frames for index in indices]


def test_indices(num_frames: int, num_segments: int) -> list[int]:
    """Deterministic segment centres: frame k = int(k·seg + seg/2) with seg = F / T (float); all zeros if F < 1."""
    return _offset_indices(num_frames, num_segments, 0.5)


def multi_clip_indices(
    num_frames: int,
    num_segments: int,
    num_clips: int,
    mode: str = "even",
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """``num_clips`` clips of ``num_segments`` frames each, for multi-view testing (clip-major).

    * ``"even"`` (our default, deterministic): clip c takes the point at fraction (c + ½)/n of every segment, so
      the clips interleave evenly; with n = 1 this is exactly :func:`test_indices`.
    * ``"random"``: the reference's behaviour (SPEC quirk 15): n independent draws of the *training* sampler, so
      scores vary slightly from run to run. Use it (with a fixed generator) to reproduce the paper's protocol.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if mode == "even":
        return [_offset_indices(num_frames, num_segments, (c + 0.5) / num_clips) for c in range(num_clips)]
    if mode == "random":
        return [train_indices(num_frames, num_segments, generator) for _ in range(num_clips)]
    raise ValueError(f"unknown multi-clip mode {mode!r}; expected 'even' or 'random'")


def _offset_indices(num_frames: int, num_segments: int, fraction: float) -> list[int]:
    """int(k·seg + fraction·seg) with seg = F / T; fraction ½ reproduces the reference's test formula bit for bit."""
    if num_frames < 1:
        return [0] * num_segments
    seg = num_frames / num_segments
    offset = seg * fraction
    return [int(k * seg + offset) % num_frames for k in range(num_segments)]
