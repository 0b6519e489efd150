"""Evaluation: views summed after a per-view softmax, unreadable videos counted as wrong, metrics by hand."""

from __future__ import annotations

import json

import pytest
import torch

from vificlip.engine import builders
from vificlip.engine.distributed import shard_indices
from vificlip.engine.evaluate import EvalSpec, evaluate_config, wise_interpolate
from vificlip.engine.metrics import compute_metrics, harmonic_mean, mean_std, top_k, view_scores
from vificlip.model.loading import load_model


def test_view_scores_softmax_then_sum():
    logits = torch.tensor([[[0.0, 10.0], [10.0, 0.0], [0.0, 1.0]]])  # 1 video, 3 views, 2 classes
    expected = torch.tensor([[0.0, 10.0], [10.0, 0.0], [0.0, 1.0]]).softmax(-1).sum(0, keepdim=True)
    torch.testing.assert_close(view_scores(logits), expected)
    assert top_k(view_scores(logits), 5).tolist() == [[1, 0]]  # k capped at C; summed probs favour class 1


def test_metrics_against_hand_computed_values():
    labels = [0, 0, 1, 1, 1, 2]
    predictions = [[0, 1], [1, 0], [1, 2], [2, 1], [], [2, 0]]  # one unreadable video (label 1)
    result = compute_metrics(labels, predictions, 3)
    assert result.top1 == pytest.approx(100 * 3 / 6)
    assert result.top5 == pytest.approx(100 * 5 / 6)
    assert result.mean_class == pytest.approx(100 * (1 / 2 + 1 / 3 + 1) / 3)
    assert (result.num_videos, result.num_scored, result.num_unreadable) == (6, 5, 1)
    assert result.confusion == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert "5 of 6 videos scored, 1 unreadable" in result.summary()


def test_harmonic_mean_and_mean_std_by_hand():
    assert harmonic_mean(73.8, 53.3) == pytest.approx(2 * 73.8 * 53.3 / 127.1)
    assert harmonic_mean(0, 0) == 0
    mean, std = mean_std([50.0, 52.0, 51.0])
    assert mean == pytest.approx(51.0) and std == pytest.approx((2 / 3) ** 0.5)
    assert mean_std([4.0]) == (4.0, 0.0)


def test_shards_cover_every_video_once():
    shards = [shard_indices(7, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for s in shards for i in s) == list(range(7))


def test_unreadable_videos_count_as_wrong_and_are_reported(toy_task, tmp_path):
    (toy_task.root / "broken.mp4").write_bytes(b"not a video at all")
    with_bad = tmp_path / "val.txt"
    with_bad.write_text(toy_task.val_list.read_text() + "broken.mp4 0\n")
    cfg = toy_task.config(tmp_path / "run", {"data.val_list": str(with_bad)})
    model = load_model(toy_task.checkpoint)
    good_only = evaluate_config(
        toy_task.config(tmp_path / "r2"), model, EvalSpec("good"), torch.device("cpu")
    )
    result = evaluate_config(cfg, model, EvalSpec("bad"), torch.device("cpu"), tmp_path / "out")
    assert (result.num_videos, result.num_scored, result.num_unreadable) == (7, 6, 1)
    assert result.top1 == pytest.approx(good_only.top1 * 6 / 7)  # the denominator keeps the unreadable one
    saved = json.loads((tmp_path / "out" / "eval_bad.json").read_text())
    assert "6 of 7 videos scored, 1 unreadable" in saved["summary"]
    rows = (tmp_path / "out" / "confusion_bad.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == ["red", "green", "blue"] and len(rows) == 4


def test_multi_view_evaluation_scores_each_video_once(toy_task, tmp_path):
    cfg = toy_task.config(tmp_path / "run")
    model = load_model(toy_task.checkpoint)
    result = evaluate_config(cfg, model, EvalSpec("4x3", num_clips=4, num_crops=3), torch.device("cpu"))
    assert result.num_videos == 6 and result.num_scored == 6


def test_wise_interpolation_is_the_weighted_average(toy_task):
    zero_shot = load_model(toy_task.checkpoint)
    tuned = load_model(toy_task.checkpoint)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(1.0)
    mixed = wise_interpolate(zero_shot, tuned, 0.25)
    for key, value in mixed.clip.state_dict().items():
        start, end = zero_shot.clip.state_dict()[key], tuned.clip.state_dict()[key]
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * start + 0.25 * end)
    assert builders.class_names(toy_task.config(toy_task.root).data) == ["red", "green", "blue"]
