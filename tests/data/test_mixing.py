"""Mixup / CutMix / label smoothing (SPEC §2.8): targets sum to 1, one cut box for all frames, λ from the box area."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vificlip.data.mixing import MixupCutmix, smooth_one_hot, soft_target_cross_entropy

NUM_CLASSES = 10


def constant_batch(batch: int = 4, frames: int = 3, size: int = 16) -> torch.Tensor:
    """Sample i is filled with the value i, so every output pixel tells which sample it came from."""
    return (
        torch.arange(batch, dtype=torch.float32)
        .view(batch, 1, 1, 1, 1)
        .expand(batch, frames, 3, size, size)
        .clone()
    )


def test_label_smoothing_only_when_alphas_are_zero():
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.1)
    videos = constant_batch()
    labels = torch.tensor([0, 3, 3, 9])
    out, targets = mixer(videos, labels)
    assert out is videos
    assert targets.dtype == torch.float32 and targets.shape == (4, NUM_CLASSES)
    expected = torch.full((4, NUM_CLASSES), 0.01)
    expected[torch.arange(4), labels] = 0.91  # 1 - ε + ε/C
    assert torch.allclose(targets, expected)


def test_cutmix_same_box_on_every_frame_and_lambda_from_area():
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, seed=0)
    labels = torch.tensor([1, 2, 5, 7])
    boxes_checked = 0
    for _ in range(20):
        videos = constant_batch()
        out, targets = mixer(videos, labels)
        assert torch.equal(videos, constant_batch())  # the input is not modified
        y1, y2, x1, x2 = mixer.last_box
        area = (y2 - y1) * (x2 - x1) / (16 * 16)
        for i in range(4):
            changed = out[i] != i  # [T,3,H,W]
            inside = torch.zeros(16, 16, dtype=torch.bool)
            inside[y1:y2, x1:x2] = True
            partner = int(out[i, 0, 0, y1, x1]) if area > 0 else i
            if partner != i:
                assert all(torch.equal(changed[t, c], inside) for t in range(3) for c in range(3))
                boxes_checked += 1
            assert torch.isclose(targets[i].sum(), torch.tensor(1.0))
            expected = torch.zeros(NUM_CLASSES)
            expected[labels[i]] += 1 - area
            expected[labels[partner]] += area
            assert torch.allclose(targets[i], expected, atol=1e-6)
    assert boxes_checked > 10


def test_mixup_is_a_convex_combination_with_matching_targets():
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=1)
    labels = torch.tensor([0, 1, 2, 3])
    out, targets = mixer(constant_batch(), labels)
    assert torch.allclose(targets.sum(dim=1), torch.ones(4))
    for i in range(4):
        value = out[i].flatten()
        assert torch.allclose(value, value[0])  # every pixel of every frame mixed with the same λ
        # value = λ·i + (1-λ)·j and the target weight of class i (label i) is λ·0.9 + 0.01 (+ same for j)
        weights = (targets[i] - 0.01) / 0.9
        mixed = sum(float(weights[c]) * c for c in range(4))
        assert value[0].item() == pytest.approx(mixed, abs=1e-5)


def test_switch_uses_both_modes_and_targets_always_sum_to_one():
    mixer = MixupCutmix(NUM_CLASSES, seed=2)
    modes = set()
    for _ in range(20):
        _, targets = mixer(torch.rand(4, 2, 3, 8, 8), torch.randint(0, NUM_CLASSES, (4,)))
        modes.add("cutmix" if mixer.last_box is not None else "mixup")
        assert torch.allclose(targets.sum(dim=1), torch.ones(4))
    assert modes == {"cutmix", "mixup"}


def test_reproducible_from_seed():
    videos, labels = torch.rand(4, 2, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    first = MixupCutmix(NUM_CLASSES, seed=7)(videos, labels)
    second = MixupCutmix(NUM_CLASSES, seed=7)(videos, labels)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_soft_target_cross_entropy_matches_torch():
    logits = torch.randn(5, NUM_CLASSES)
    labels = torch.tensor([0, 4, 9, 2, 2])
    assert torch.allclose(soft_target_cross_entropy(logits, F.one_hot(labels, NUM_CLASSES).float()),
                          F.cross_entropy(logits, labels))  # fmt: skip
    smoothed = smooth_one_hot(labels, NUM_CLASSES, 0.1)
    assert torch.allclose(
        soft_target_cross_entropy(logits, smoothed), F.cross_entropy(logits, labels, label_smoothing=0.1)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_batch_device():
    out, targets = MixupCutmix(NUM_CLASSES, seed=0)(torch.rand(4, 2, 3, 8, 8, device="cuda"),
                                                    torch.tensor([0, 1, 2, 3], device="cuda"))  # fmt: skip
    assert out.device.type == "cuda" and targets.device.type == "cuda"
