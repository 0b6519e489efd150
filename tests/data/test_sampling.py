"""TSN sampling (SPEC §2.4): hand-computed expectations for F < T, F = T, F > T, and the reference's NumPy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vificlip.data import sampling  # module import: pytest would collect a bare `test_indices` as a test


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_test_offsets(num_frames: int, num_segments: int) -> list[int]:
    """mmaction SampleFrames._get_test_clips with clip_len=1, frame_interval=1, then the 'loop' wrap."""
    avg = (num_frames - 1 + 1) / float(num_segments)
    if num_frames > 0:
        offsets = (np.arange(num_segments) * avg + avg / 2.0).astype(np.int64)
        return (offsets % num_frames).tolist()
    return [0] * num_segments


@pytest.mark.parametrize(
    ("num_frames", "num_segments", "expected"),
    [
        (40, 8, [2, 7, 12, 17, 22, 27, 32, 37]),  # F > T: seg 5, centres k·5 + 2.5
        (10, 3, [1, 5, 8]),  # seg 3.33: int(1.67), int(5.0), int(8.33)
        (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),  # F = T
        (3, 8, [0, 0, 0, 1, 1, 2, 2, 2]),  # F < T: int(0.375k + 0.1875)
        (0, 4, [0, 0, 0, 0]),  # F < 1
    ],
)
def test_test_indices_hand_computed(num_frames, num_segments, expected):
    assert sampling.test_indices(num_frames, num_segments) == expected


def test_test_indices_equal_the_reference_formula():
    for num_frames in range(0, 130):
        for num_segments in (1, 2, 3, 7, 8, 16, 32):
            expected = reference_test_offsets(num_frames, num_segments)
            assert sampling.test_indices(num_frames, num_segments) == expected, (num_frames, num_segments)


def test_train_indices_f_greater_than_t_stay_in_their_segment_and_cover_it():
    seen = [set() for _ in range(8)]
    generator = gen()
    for _ in range(200):
        indices = sampling.train_indices(43, 8, generator)  # seg = 43 // 8 = 5; frames 40..42 never sampled
        for k, index in enumerate(indices):
            assert 5 * k <= index < 5 * k + 5
            seen[k].add(index)
    assert seen == [set(range(5 * k, 5 * k + 5)) for k in range(8)]


def test_train_indices_f_equals_t_is_every_frame():
    assert sampling.train_indices(8, 8, gen()) == list(range(8))


@pytest.mark.parametrize(
    ("num_frames", "expected"),
    [
        (3, [0, 0, 1, 1, 2, 2, 2, 0]),  # round(0.375k), half to even (1.5 -> 2), then 3 wraps to 0
        (5, [0, 1, 1, 2, 2, 3, 4, 4]),  # round(0.625k): 2.5 -> 2 (half to even)
        (1, [0] * 8),
    ],
)
def test_train_indices_f_less_than_t_hand_computed(num_frames, expected):
    assert sampling.train_indices(num_frames, 8, gen()) == expected


def test_train_indices_f_less_than_t_equal_numpy_around():
    for num_frames in range(1, 32):
        ratio = num_frames / 32
        expected = (np.around(np.arange(32) * ratio).astype(np.int64) % num_frames).tolist()
        assert sampling.train_indices(num_frames, 32, gen()) == expected


def test_train_indices_reproducible_from_the_generator():
    assert sampling.train_indices(300, 16, gen(3)) == sampling.train_indices(300, 16, gen(3))
    assert sampling.train_indices(300, 16, gen(3)) != sampling.train_indices(300, 16, gen(4))


def test_multi_clip_even_is_deterministic_and_interleaved():
    assert sampling.multi_clip_indices(40, 4, 2) == [[2, 12, 22, 32], [7, 17, 27, 37]]  # offsets 2.5 and 7.5
    assert sampling.multi_clip_indices(40, 4, 4) == [[1, 11, 21, 31], [3, 13, 23, 33], [6, 16, 26, 36],
                                                     [8, 18, 28, 38]]  # fmt: skip
    for num_frames in (0, 5, 16, 77):
        assert sampling.multi_clip_indices(num_frames, 8, 1) == [sampling.test_indices(num_frames, 8)]


def test_multi_clip_random_is_the_training_sampler_repeated():
    clips = sampling.multi_clip_indices(100, 8, 3, mode="random", generator=gen(5))
    generator = gen(5)
    assert clips == [sampling.train_indices(100, 8, generator) for _ in range(3)]
    assert len({tuple(clip) for clip in clips}) == 3


def test_multi_clip_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        sampling.multi_clip_indices(10, 4, 2, mode="uniform")
    with pytest.raises(ValueError, match="num_clips"):
        sampling.multi_clip_indices(10, 4, 0)
