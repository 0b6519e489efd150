"""VideoDataset + build_loader on real encoded videos: which frames each item holds, view layout, bad-video policy."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from vificlip.data import sampling
from vificlip.data.dataset import VideoDataset
from vificlip.data.decode import open_video
from vificlip.data.loader import build_loader
from vificlip.data.records import VideoRecord
from vificlip.data.transforms import build_test_transform, build_train_transform
from vificlip.errors import VificlipError

T = 8


def raw(video: torch.Tensor) -> torch.Tensor:
    """Identity transform: items keep the decoded uint8 frames, so their painted indices can be read back."""
    return video


def records_for(indexed_video, counts, suffix=".mp4", codec="libx264") -> list[VideoRecord]:
    return [VideoRecord(indexed_video(n, suffix=suffix, codec=codec), label=i % 5, source=f"list.txt:{i + 1}")
            for i, n in enumerate(counts)]  # fmt: skip


def test_train_items_hold_the_tsn_sampled_frames(indexed_video, codec, backend, frame_ids):
    suffix, encoder = codec
    records = records_for(indexed_video, [5, 8, 45], suffix, encoder)  # F < T, F = T, F > T
    dataset = VideoDataset(records, T, "train", transform=raw, backend=backend, seed=3)
    generator = torch.Generator().manual_seed(3)  # the main process draws from seed, item after item
    for index, num_frames in enumerate([5, 8, 45]):
        item = dataset[index]
        assert item["index"] == index and item["label"] == records[index].label
        assert frame_ids(item["video"]) == sampling.train_indices(num_frames, T, generator)


def test_test_items_single_and_multi_view(indexed_video, codec, backend, frame_ids):
    suffix, encoder = codec
    records = records_for(indexed_video, [5, 45], suffix, encoder)
    single = VideoDataset(records, T, "test", transform=raw, backend=backend)
    multi = VideoDataset(records, T, "test", transform=raw, num_clips=3, backend=backend)
    for index, num_frames in enumerate([5, 45]):
        item = single[index]
        assert item["ok"] and item["video"].shape == (1, T, 3, 64, 96)
        assert frame_ids(item["video"][0]) == sampling.test_indices(num_frames, T)
        views = multi[index]["video"]
        assert views.shape == (3, T, 3, 64, 96)
        assert [frame_ids(view) for view in views] == sampling.multi_clip_indices(num_frames, T, 3)


def test_random_multi_clip_mode_is_reproducible_per_item(indexed_video, frame_ids):
    records = records_for(indexed_video, [45, 45])
    dataset = VideoDataset(records, T, "test", transform=raw, num_clips=2, clip_mode="random", seed=4)
    expected = sampling.multi_clip_indices(
        45, T, 2, "random", torch.Generator().manual_seed(4 * 1_000_003 + 1)
    )
    assert [frame_ids(view) for view in dataset[1]["video"]] == expected
    assert torch.equal(dataset[1]["video"], dataset[1]["video"])


def test_views_are_crop_major_then_clip(indexed_video):
    records = records_for(indexed_video, [30])
    transform = build_test_transform(input_size=32, num_crops=3)
    dataset = VideoDataset(records, T, "test", transform=transform, num_clips=2)
    video = dataset[0]["video"]
    assert video.shape == (6, T, 3, 32, 32) and video.dtype == torch.float32
    with open_video(records[0].path) as reader:
        clips = sampling.multi_clip_indices(30, T, 2)
        expected = transform(reader.read(clips[0] + clips[1]))  # [crops, clips·T, 3, S, S]
    for view in range(6):
        crop, clip = divmod(view, 2)
        assert torch.equal(video[view], expected[crop, clip * T : (clip + 1) * T])


def test_default_transforms_and_frame_folders(frame_folder, frame_ids):
    folder = frame_folder(20)
    train = VideoDataset([VideoRecord(folder, 1)], T, "train")[0]
    assert train["video"].shape == (T, 3, 224, 224) and train["video"].dtype == torch.float32
    test = VideoDataset([VideoRecord(folder, 1)], T, "test", transform=raw)[0]
    assert frame_ids(test["video"][0]) == sampling.test_indices(20, T)


def test_bad_training_video_is_logged_counted_and_replaced(indexed_video, bad_video, bad_kind, caplog):
    records = records_for(indexed_video, [12] * 9) + [
        VideoRecord(bad_video(bad_kind), label=4, source="list.txt:10")
    ]
    dataset = VideoDataset(records, T, "train", transform=raw, max_bad_fraction=0.1)
    with caplog.at_level(logging.WARNING, logger="vificlip.data.dataset"):
        item = dataset[9]
    assert item["index"] != 9 and item["label"] == records[item["index"]].label
    assert dataset.num_bad == 1 and dataset.bad_indices() == [9]
    assert str(records[9].path) in caplog.text and "list.txt:10" in caplog.text
    dataset[9]  # the same video failing again is not counted twice
    assert dataset.num_bad == 1


def test_training_stops_when_bad_fraction_exceeds_the_limit(indexed_video, bad_video):
    bad = [VideoRecord(bad_video(kind), 0) for kind in ("corrupt", "empty")]
    dataset = VideoDataset(records_for(indexed_video, [12] * 8) + bad, T, "train", transform=raw,
                           max_bad_fraction=0.1)  # fmt: skip
    dataset[8]  # 1 of 10 = 10%: at the limit, still fine
    with pytest.raises(
        VificlipError, match=r"2 of 10 training videos could not be decoded .*max_bad_fraction"
    ):
        dataset[9]


def test_test_mode_never_drops_a_video(indexed_video, bad_video, bad_kind):
    records = records_for(indexed_video, [12]) + [VideoRecord(bad_video(bad_kind), label=3)]
    transform = build_test_transform(input_size=32, num_crops=3)
    dataset = VideoDataset(records, T, "test", transform=transform, num_clips=2, max_bad_fraction=0.0)
    good, bad = dataset[0], dataset[1]
    assert good["ok"] and not bad["ok"]
    assert bad["video"].shape == good["video"].shape == (6, T, 3, 32, 32)
    assert not bad["video"].any() and bad["label"] == 3 and bad["index"] == 1
    assert dataset.num_bad == 1


def test_invalid_arguments(indexed_video):
    records = records_for(indexed_video, [5])
    for kwargs in ({"mode": "val"}, {"clip_mode": "uniform"}, {"num_clips": 2}, {"max_bad_fraction": 2.0}):
        with pytest.raises(VificlipError):
            VideoDataset(records, T, **{"mode": "train", **kwargs})
    with pytest.raises(VificlipError, match="no videos"):
        VideoDataset([], T, "test")


def test_loader_batches_and_counts_bad_videos_across_workers(indexed_video, bad_video):
    records = records_for(indexed_video, [12] * 6) + [VideoRecord(bad_video("corrupt"), 0)]
    dataset = VideoDataset(records, T, "test", transform=build_test_transform(input_size=32))
    loader = build_loader(dataset, batch_size=4, shuffle=False, num_workers=2)
    assert loader.pin_memory == torch.cuda.is_available() and loader.persistent_workers
    batches = list(loader)
    assert batches[0]["video"].shape == (4, 1, T, 3, 32, 32)
    assert batches[0]["label"].dtype == torch.int64 and batches[0]["ok"].dtype == torch.bool
    ok = torch.cat([b["ok"] for b in batches])
    assert ok.tolist() == [True] * 6 + [False]  # the evaluator counts "6 of 7 scored, 1 unreadable"
    assert dataset.num_bad == 1  # counted in a worker, visible here (shared memory)


def test_bad_fraction_limit_holds_across_workers(indexed_video, bad_video):
    bad = [VideoRecord(bad_video(kind), 0) for kind in ("corrupt", "empty", "truncated")]
    dataset = VideoDataset(records_for(indexed_video, [12] * 7) + bad, T, "train", transform=raw,
                           max_bad_fraction=0.2)  # fmt: skip
    loader = build_loader(dataset, batch_size=1, shuffle=False, num_workers=2)
    with pytest.raises(VificlipError, match="3 of 10 training videos could not be decoded"):
        list(loader)  # the workers split the bad videos between them; the count they share reaches 3


def test_loader_is_reproducible_for_a_seed(indexed_video):
    records = records_for(indexed_video, [30] * 6)
    dataset = VideoDataset(records, T, "train", transform=build_train_transform(input_size=32))

    def run(seed):
        loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=2, seed=seed)
        return [(batch["index"], batch["video"]) for batch in loader]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


def test_loader_uses_a_distributed_sampler_when_initialised(indexed_video, tmp_path):
    dataset = VideoDataset(records_for(indexed_video, [5] * 3), T, "test", transform=raw)
    assert build_loader(dataset, 2, shuffle=False).sampler.__class__.__name__ == "SequentialSampler"
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = build_loader(dataset, 2, shuffle=True)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.shuffle
    finally:
        dist.destroy_process_group()


def test_seed_per_item_depends_on_seed_epoch_and_index_only(indexed_video, frame_ids):
    records = records_for(indexed_video, [60, 61])
    dataset = VideoDataset(records, T, "train", transform=raw, seed=5, seed_per_item=True)
    dataset.set_epoch(2)
    second_first = frame_ids(dataset[1]["video"])  # order of access does not matter
    first = frame_ids(dataset[0]["video"])
    expected = sampling.train_indices(60, T, torch.Generator().manual_seed(5 * 1_000_003 + 2 * 100_003 + 0))
    assert first == expected
    assert frame_ids(dataset[1]["video"]) == second_first and frame_ids(dataset[0]["video"]) == first
    epochs = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        epochs.add(tuple(frame_ids(dataset[0]["video"])))
    assert len(epochs) > 1  # a new epoch draws new segments
