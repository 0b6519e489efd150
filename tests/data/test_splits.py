"""Split builders: the base/novel rule (incl. the HMDB tie), seeded K-shot draws, zero-shot subsets, leakage, CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from vificlip.cli import main
from vificlip.data.annotations import read_label_csv, read_video_list, write_label_csv, write_video_list
from vificlip.data.records import VideoRecord
from vificlip.data.splits import (
    SplitError,
    SplitLeakageWarning,
    base_training_draws,
    check_leakage,
    few_shot_splits,
    find_leaks,
    sample_few_shot,
    split_base_novel,
    subset_records,
    write_base_novel,
    zero_shot_subsets,
)


def make_records(counts: list[int]) -> list[VideoRecord]:
    return [
        VideoRecord(Path(f"c{label}_v{i}.avi"), label, f"train.txt:{label * 1000 + i}")
        for label, count in enumerate(counts)
        for i in range(count)
    ]


def test_hmdb_all_equal_counts_reproduce_the_reference_tie():
    split = split_base_novel(make_records([70] * 51), 51)
    assert split.novel == tuple(range(25))  # first 25 alphabetically
    assert split.base == tuple(range(25, 51))  # last 26


def test_most_frequent_half_is_base_in_ascending_count_order():
    # counts by id: 0→3, 1→1, 2→2, 3→2, 4→5; ascending (count, id): 1, 2, 3, 0, 4
    split = split_base_novel(make_records([3, 1, 2, 2, 5]), 5)
    assert split.novel == (1, 2)
    assert split.base == (3, 0, 4)  # the odd class goes to base (UCF: 51 base / 50 novel)
    names = ["a", "b", "c", "d", "e"]
    assert split.names(names, "base") == ["d", "a", "e"]
    relabelled = split.relabel(make_records([3, 1, 2, 2, 5]), "base")
    assert sorted({(r.path.name.split("_")[0], r.label) for r in relabelled}) == [
        ("c0", 1),
        ("c3", 0),
        ("c4", 2),
    ]


def test_few_shot_is_seeded_per_class_and_independent_across_k():
    train = make_records([20] * 6)
    draws = few_shot_splits(train, [2, 4], seed=1)
    assert draws == few_shot_splits(train, [2, 4], seed=1)  # reproducible
    assert draws[2] != few_shot_splits(train, [2], seed=2)[2]
    for k, picked in draws.items():
        assert [r.label for r in picked] == [c for c in range(6) for _ in range(k)]  # class-major
        assert len(set(picked)) == len(picked) and set(picked) <= set(train)
    nested = all(
        {r for r in draws[2] if r.label == c} <= {r for r in draws[4] if r.label == c} for c in range(6)
    )
    assert not nested  # independent draws, not the first K of one shuffle


def test_few_shot_errors_name_the_class():
    with pytest.raises(SplitError, match="class 1 has 3 training videos; 4-shot needs at least 4"):
        sample_few_shot(make_records([5, 3]), 4, seed=0)
    with pytest.raises(SplitError, match="1 classes have no training video"):
        sample_few_shot(make_records([5, 5]), 2, seed=0, num_classes=3)


def test_base_training_draws_are_three_independent_subsets():
    draws = base_training_draws(make_records([30] * 4), shots=16, draws=3, seed=1)
    assert [len(d) for d in draws] == [64, 64, 64]
    assert len({tuple(d) for d in draws}) == 3


def test_write_base_novel_files_read_back(tmp_path):
    names = ["climb", "dive", "eat", "fall", "golf"]
    train = make_records([20, 17, 18, 19, 16])  # ascending: golf(4), dive(1), eat(2), fall(3), climb(0)
    val = [VideoRecord(Path(f"val_{c}.avi"), c) for c in range(5)]
    split = split_base_novel(train, 5)
    write_base_novel(tmp_path, split, names, train, val, shots=4, draws=3, seed=1, prefix="toy_")
    assert read_label_csv(tmp_path / "toy_base_labels.csv") == ["eat", "fall", "climb"]
    assert read_label_csv(tmp_path / "toy_novel_labels.csv") == ["golf", "dive"]
    base_train = read_video_list(tmp_path / "base_train.txt")
    assert len(base_train) == 18 + 19 + 20 and {r.label for r in base_train} == {0, 1, 2}
    assert all(r.path.name.startswith(f"c{[2, 3, 0][r.label]}_") for r in base_train)
    for i in (1, 2, 3):
        draw = read_video_list(tmp_path / f"fs_base_s{i}_train.txt")
        assert [r.label for r in draw] == [0] * 4 + [1] * 4 + [2] * 4
    assert [(r.path.name, r.label) for r in read_video_list(tmp_path / "novel_val.txt")] == [
        ("val_1.avi", 1),
        ("val_4.avi", 0),
    ]
    assert [r.path.name for r in read_video_list(tmp_path / "base_val.txt")] == [
        "val_0.avi",
        "val_2.avi",
        "val_3.avi",
    ]


def test_zero_shot_subsets_exclude_seen_classes():
    k600 = [f"class {i}" for i in range(30)] + ["Abseiling", "air_drumming"]
    k400 = ["abseiling", "Air Drumming"] + [f"class {i}" for i in range(10)]
    subsets = zero_shot_subsets(k600, k400, num_classes=8, num_splits=3, seed=1)
    assert subsets == zero_shot_subsets(k600, k400, num_classes=8, num_splits=3, seed=1)
    candidates = [f"class {i}" for i in range(10, 30)]
    for subset in subsets:
        assert len(subset) == len(set(subset)) == 8 and set(subset) <= set(candidates)
        assert subset == sorted(subset, key=candidates.index)
    assert len({tuple(s) for s in subsets}) == 3
    with pytest.raises(SplitError, match="only 20 classes remain"):
        zero_shot_subsets(k600, k400, num_classes=21)


def test_subset_records_relabels_to_local_ids():
    videos = [VideoRecord(Path(f"v{c}.mp4"), c) for c in range(4)]
    assert [(r.path.name, r.label) for r in subset_records(videos, ["a", "b", "c", "d"], ["d", "b"])] == [
        ("v1.mp4", 1),
        ("v3.mp4", 0),
    ]


def test_leakage_found_by_basename_and_warned():
    train = [VideoRecord(Path("a.avi"), 0, "train.txt:1"), VideoRecord(Path("b.avi"), 1, "train.txt:2")]
    evaluation = [
        VideoRecord(Path("Class/b.avi"), 1, "val2.txt:7"),
        VideoRecord(Path("c.avi"), 0, "val2.txt:8"),
    ]
    with pytest.warns(SplitLeakageWarning, match=r"1 videos of val2 are also in train .*val2\.txt:7"):
        leaks = check_leakage(train, evaluation, "train", "val2")
    assert leaks == [(train[1], evaluation[0])]
    assert find_leaks(train, evaluation, key="path") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_leakage(train, evaluation[1:]) == []


def test_cli_splits_commands(tmp_path, capsys):
    names = [f"class_{i}" for i in range(4)]
    write_label_csv(tmp_path / "labels.csv", names)
    train = make_records([6, 6, 6, 6])
    write_video_list(tmp_path / "train.txt", train)
    write_video_list(tmp_path / "val.txt", [*train[:6], VideoRecord(Path("new.avi"), 2)])  # class 0 leaks

    assert main(["splits", "base-novel", "--train", str(tmp_path / "train.txt"), "--labels",
                 str(tmp_path / "labels.csv"), "--shots", "2", "--out", str(tmp_path / "b2n")]) == 0  # fmt: skip
    assert read_label_csv(tmp_path / "b2n" / "base_labels.csv") == ["class_2", "class_3"]

    out = tmp_path / "fs"
    code = main(["splits", "few-shot", "--train", str(tmp_path / "train.txt"), "--shots", "2,4", "--out", str(out),
                 "--labels", str(tmp_path / "labels.csv"), "--eval", str(tmp_path / "val.txt")])  # fmt: skip
    assert [len(read_video_list(out / f"train1_few_shot_{k}.txt")) for k in (2, 4)] == [8, 16]
    assert code == 1 and "LEAK" in capsys.readouterr().out

    assert main(["splits", "check-leak", "--train", str(tmp_path / "train.txt"),
                 "--eval", str(tmp_path / "val.txt")]) == 1  # fmt: skip
    assert "LEAK: 6 videos" in capsys.readouterr().out

    write_label_csv(tmp_path / "seen.csv", names[:1])
    assert main(["splits", "zero-shot", "--labels", str(tmp_path / "labels.csv"), "--exclude",
                 str(tmp_path / "seen.csv"), "--classes", "2", "--videos", str(tmp_path / "train.txt"),
                 "--tag", "TOY", "--out", str(tmp_path / "zs")]) == 0  # fmt: skip
    subset = read_label_csv(tmp_path / "zs" / "ZS_split3_TOY.csv")
    assert len(subset) == 2 and "class_0" not in subset
    assert len(read_video_list(tmp_path / "zs" / "ZS_split3_TOY_eval.txt")) == 12

    assert main(["splits", "few-shot", "--train", str(tmp_path / "train.txt"), "--shots", "7",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "7-shot needs at least 7" in capsys.readouterr().err
