"""The synthetic world: deterministic rendering, captions, order-only actions, and a benchmark in the real formats."""

from __future__ import annotations

import numpy as np
import pytest

from vificlip.data.annotations import read_label_csv, read_video_list
from vificlip.data.decode import open_video
from vificlip.data.presets import load_dataset_preset
from vificlip.data.synthetic import (
    ACTIONS,
    HELD_OUT_OBJECTS,
    ImageFacts,
    caption,
    captioned_images,
    pretraining_objects,
    render_video,
)
from vificlip.data.synthetic_benchmark import SIZES, BenchmarkError, ensure_benchmark


def test_captioned_images_are_a_function_of_the_seed():
    images, captions, facts = captioned_images(12, seed=3)
    again, captions_again, _ = captioned_images(12, seed=3)
    other, _, _ = captioned_images(12, seed=4)
    assert images.shape == (12, 36, 36, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, again)
    assert captions == captions_again
    assert not np.array_equal(images, other)
    for text, fact in zip(captions, facts):
        assert f"{fact.colour} {fact.shape}" in text


def test_caption_forms():
    facts = ImageFacts("small", "red", "circle", "top left", "grey")
    assert caption(facts, 0) == "a small red circle at the top left"
    assert caption(facts, 1) == "a small red circle at the top left on a grey background"
    assert (
        caption(ImageFacts("large", "blue", "star", "centre", "black"), 0)
        == "a large blue star in the centre"
    )


def test_held_out_objects_never_appear_in_pretraining():
    seen = set(pretraining_objects())
    assert not seen & set(HELD_OUT_OBJECTS)
    _, _, facts = captioned_images(300, seed=0)
    assert not {(f.colour, f.shape) for f in facts} & set(HELD_OUT_OBJECTS)


def test_growing_and_shrinking_differ_only_in_frame_order():
    def frames(action):
        return render_video(action, "red", "square", "black", np.random.default_rng(5), num_frames=16)

    growing, shrinking = frames("growing"), frames("shrinking")
    assert not np.array_equal(growing, shrinking)
    # Same object sizes in reverse order: the frame *averages* match up to the per-frame sensor noise.
    assert np.abs(growing.astype(float).mean(0) - shrinking.astype(float).mean(0)).max() < 6
    assert growing[0].astype(float).std() < growing[-1].astype(float).std()  # small → large


def test_frame_averages_separate_the_other_actions():
    averages = {
        a: render_video(a, "blue", "cross", "black", np.random.default_rng(1), 16).astype(float).mean(0)
        for a in ACTIONS
    }
    still = averages["standing still"]
    for action in ("sliding sideways", "bouncing up and down", "blinking", "changing colour", "spinning"):
        assert np.abs(averages[action] - still).mean() > 2, action


def test_unknown_benchmark_size(tmp_path):
    with pytest.raises(BenchmarkError, match="unknown benchmark size"):
        ensure_benchmark(tmp_path, size="huge")


@pytest.mark.slow
def test_benchmark_is_written_in_the_real_formats_and_reused(tmp_path):
    ticks = []
    bench = ensure_benchmark(tmp_path / "bench", seed=1, size="quick", progress=lambda: ticks.append(1))
    source, target = SIZES["quick"]
    u = load_dataset_preset(str(bench.preset_path("synthetic_u")))
    k = load_dataset_preset(str(bench.preset_path("synthetic_k")))
    assert u.missing_files(bench.annotation_dir) == [] and k.missing_files(bench.annotation_dir) == []
    names = read_label_csv(bench.annotation_dir / u.labels)
    assert names == target.class_names and len(names) == u.num_classes == 16
    assert not set(names) & set(read_label_csv(bench.annotation_dir / k.labels))  # disjoint class sets
    assert sorted(u.few_shot) == [2, 4, 8, 16] and len(u.zero_shot) == 3
    b2n = u.base_novel
    assert (b2n.num_base, b2n.num_novel) == (8, 8)
    base = read_label_csv(bench.annotation_dir / b2n.base_labels)
    novel = read_label_csv(bench.annotation_dir / b2n.novel_labels)
    assert sorted(base + novel) == sorted(names)
    for draw in b2n.train:
        records = read_video_list(bench.annotation_dir / draw)
        assert len(records) == 16 * 8 and {r.label for r in records} == set(range(8))
    shots = read_video_list(bench.annotation_dir / u.few_shot[4], root=bench.video_root("synthetic_u"))
    assert len(shots) == 4 * 16
    evaluated = {r.path.name for r in read_video_list(bench.annotation_dir / u.eval[0])}
    assert not evaluated & {r.path.name for r in shots}  # no train/test leak

    # A listed video decodes through the data pipeline's reader to what was drawn (lossy codec: small error).
    record = shots[0]
    reader = open_video(record.path)
    frames = reader.read(list(range(reader.num_frames)))
    assert tuple(frames.shape) == (16, 3, 36, 36)
    assert names[record.label].replace(" ", "_") in record.path.name

    manifest = (bench.root / "manifest.json").stat().st_mtime_ns
    again = ensure_benchmark(tmp_path / "bench", seed=1, size="quick", progress=lambda: ticks.append(2))
    assert again == bench and 2 not in ticks and (bench.root / "manifest.json").stat().st_mtime_ns == manifest
