"""Train/test pipelines (SPEC §2.5-2.7): crop geometry, one crop/flip/grey per clip, shapes, dtypes, constants."""

from __future__ import annotations

import pytest
import torch

from vificlip.data.transforms import (
    AUTHORS_MEAN,
    AUTHORS_STD,
    CLIP_MEAN,
    CLIP_STD,
    TrainParams,
    adjust_hue,
    build_test_transform,
    build_train_transform,
    resize_short_side,
)
from vificlip.errors import VificlipError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def still_clip(num_frames: int = 6, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    """num_frames copies of one random (asymmetric) image: any per-frame difference in geometry would show."""
    image = torch.randint(0, 256, (1, 3, height, width), generator=gen(seed), dtype=torch.uint8)
    return image.expand(num_frames, -1, -1, -1).contiguous()


def denormalize(video: torch.Tensor, mean=AUTHORS_MEAN, std=AUTHORS_STD) -> torch.Tensor:
    shape = (3, 1, 1)
    return video * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)


def test_normalisation_constants():
    assert AUTHORS_MEAN == (123.675, 116.28, 103.53)
    assert AUTHORS_STD == (58.395, 57.12, 57.375)
    assert CLIP_MEAN == pytest.approx((122.7709383, 116.7460125, 104.09373615))
    assert CLIP_STD == pytest.approx((68.5005327, 66.6321579, 70.32316305))


@pytest.mark.parametrize(("normalization", "mean", "std"), [("authors", AUTHORS_MEAN, AUTHORS_STD),
                                                            ("clip", CLIP_MEAN, CLIP_STD)])  # fmt: skip
def test_normalise_constant_colour(normalization, mean, std):
    video = torch.empty(2, 3, 40, 50, dtype=torch.uint8)
    colour = (200, 100, 30)
    for c, value in enumerate(colour):
        video[:, c] = value
    out = build_test_transform(input_size=32, normalization=normalization)(video)
    assert out.dtype == torch.float32 and out.shape == (1, 2, 3, 32, 32)
    for c in range(3):
        assert torch.allclose(out[:, :, c], torch.tensor((colour[c] - mean[c]) / std[c]))
    with pytest.raises(VificlipError, match="normalization"):
        build_train_transform(normalization="imagenet")


def test_resize_short_side_rounding():
    assert resize_short_side(torch.zeros(1, 3, 64, 96, dtype=torch.uint8), 256).shape[-2:] == (256, 384)
    assert resize_short_side(torch.zeros(1, 3, 100, 133, dtype=torch.uint8), 256).shape[-2:] == (
        256,
        340,
    )  # 340.48
    assert resize_short_side(torch.zeros(1, 3, 300, 200, dtype=torch.uint8), 224).shape[-2:] == (336, 224)


def test_crop_candidates_are_the_reference_pairs():
    pairs = build_train_transform().crop_candidates(256, 341)
    assert pairs == [(256, 256), (224, 256), (256, 224), (224, 224), (192, 224),
                     (224, 192), (192, 192), (168, 192), (192, 168), (168, 168)]  # fmt: skip
    snapped = build_train_transform(input_size=170).crop_candidates(256, 256)  # 168 is within 2 px of 170
    assert 170 in {w for w, _ in snapped} and 168 not in {w for w, _ in snapped}
    unsnapped = build_train_transform(input_size=171).crop_candidates(256, 256)  # 3 px away: kept
    assert 168 in {w for w, _ in unsnapped}


def test_crop_offsets_are_the_five_fixed_positions():
    transform = build_train_transform()
    generator = gen()
    seen = set()
    for _ in range(400):
        top, left, crop_h, crop_w = transform.sample_params(256, 341, generator).crop
        if (crop_h, crop_w) == (224, 224):
            seen.add((left, top))
    w_step, h_step = (341 - 224) // 4, (256 - 224) // 4
    assert seen == {
        (0, 0),
        (4 * w_step, 0),
        (0, 4 * h_step),
        (4 * w_step, 4 * h_step),
        (2 * w_step, 2 * h_step),
    }


def test_train_output_shape_dtype_and_reproducibility():
    transform = build_train_transform(input_size=32)
    video = still_clip()
    out = transform(video, gen(1))
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, transform(video, gen(1)))
    assert not torch.equal(out, transform(video, gen(2)))


@pytest.mark.parametrize("seed", range(6))
def test_same_crop_flip_and_grey_on_every_frame(seed):
    transform = build_train_transform(input_size=32, jitter_p=0.0, gray_p=0.5)
    out = transform(still_clip(seed=seed), gen(seed))
    assert all(torch.equal(out[0], frame) for frame in out)


def test_consistent_jitter_keeps_frames_identical_and_default_does_not():
    video = still_clip()
    per_frame = build_train_transform(input_size=32, jitter_p=1.0)(video, gen())
    assert not torch.equal(per_frame[0], per_frame[1])  # reference behaviour: new factors per frame
    consistent = build_train_transform(input_size=32, jitter_p=1.0, consistent_jitter=True)(video, gen())
    assert all(torch.equal(consistent[0], frame) for frame in consistent)


@pytest.mark.parametrize("hue_factor", [-0.5, -0.1, -0.03, 0.0, 0.07, 0.1, 0.5])
def test_fast_hue_matches_torchvision(hue_factor):
    from torchvision.transforms.v2 import functional as F

    images = torch.rand(3, 3, 20, 24, generator=gen())
    images[0, :, :5] = 0.4  # grey pixels (no chroma)
    images[1, 0] = images[1, 1]  # ties between channels
    assert torch.allclose(adjust_hue(images, hue_factor), F.adjust_hue(images, hue_factor), atol=1e-5)


def test_flip_mirrors_the_whole_clip():
    video = still_clip()
    flipped = build_train_transform(input_size=32, flip_p=1.0, jitter_p=0.0, gray_p=0.0)(video, gen(3))
    plain = build_train_transform(input_size=32, flip_p=0.0, jitter_p=0.0, gray_p=0.0)(video, gen(3))
    assert torch.equal(flipped, plain.flip(-1))


def test_grayscale_makes_channels_equal_on_every_frame():
    out = build_train_transform(input_size=32, gray_p=1.0, jitter_p=0.0)(still_clip(), gen())
    pixels = denormalize(out)
    assert torch.allclose(pixels[:, 0], pixels[:, 1], atol=1e-3) and torch.allclose(
        pixels[:, 1], pixels[:, 2], atol=1e-3
    )


def test_apply_uses_the_drawn_crop_exactly():
    video = torch.randint(0, 256, (3, 3, 256, 300), generator=gen(), dtype=torch.uint8)
    transform = build_train_transform(input_size=224)
    params = TrainParams(crop=(8, 40, 224, 224), flip=False, jitter=False, gray=False)
    out = transform.apply(video, params)
    assert torch.allclose(denormalize(out), video[..., 8:232, 40:264].float(), atol=1e-3)


def test_test_transform_centre_crop_positions():
    video = torch.randint(
        0, 256, (4, 3, 256, 321), generator=gen(), dtype=torch.uint8
    )  # short side already 256
    out = build_test_transform(input_size=224)(video)
    assert out.shape == (1, 4, 3, 224, 224) and out.dtype == torch.float32
    top, left = (256 - 224) // 2, (321 - 224) // 2  # 16, 48 (mmaction floors; torchvision would round to 49)
    assert torch.allclose(
        denormalize(out[0]), video[..., top : top + 224, left : left + 224].float(), atol=1e-3
    )


@pytest.mark.parametrize(("height", "width"), [(224, 300), (300, 224)])
def test_three_crops_in_reference_order(height, width):
    video = torch.randint(0, 256, (2, 3, height, width), generator=gen(), dtype=torch.uint8)
    out = build_test_transform(input_size=224, num_crops=3)(video)
    assert out.shape == (3, 2, 3, 224, 224)
    step = (max(height, width) - 224) // 2  # 38
    for crop, offset in zip(out, [0, 2 * step, step], strict=True):  # left/top, right/bottom, middle
        if width > height:
            expected = video[..., :, offset : offset + 224]
        else:
            expected = video[..., offset : offset + 224, :]
        assert torch.allclose(denormalize(crop), expected.float(), atol=1e-3)


def test_unsupported_crop_count_and_bad_input():
    with pytest.raises(VificlipError, match="num_crops"):
        build_test_transform(num_crops=2)
    with pytest.raises(ValueError, match="uint8"):
        build_test_transform()(torch.zeros(2, 3, 64, 64))
