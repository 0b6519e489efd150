"""Locating listed videos: flat folders, per-class archives by basename (one walk), missing and ambiguous files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vificlip.data import locate
from vificlip.data.locate import FileIndex, MissingVideosError, locate_records, resolve_records
from vificlip.data.records import VideoRecord


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def records(*names: str) -> list[VideoRecord]:
    return [VideoRecord(Path(name), i, f"list.txt:{i + 1}") for i, name in enumerate(names)]


def test_flat_layout_as_split_files_name_it(tmp_path):
    touch(tmp_path / "train" / "a_000001_000011.mp4")
    touch(tmp_path / "val" / "b_000002_000012.mp4")
    found = resolve_records(records("train/a_000001_000011.mp4", "val/b_000002_000012.mp4"), tmp_path, "flat")
    assert [r.path for r in found] == [
        tmp_path / "train/a_000001_000011.mp4",
        tmp_path / "val/b_000002_000012.mp4",
    ]
    assert [(r.label, r.source) for r in found] == [(0, "list.txt:1"), (1, "list.txt:2")]


def test_ucf_per_class_layout_resolved_by_basename_with_one_walk(tmp_path, monkeypatch):
    names = [f"v_{c}_g{g:02d}_c01.avi" for c in ("ApplyEyeMakeup", "Archery") for g in range(1, 6)]
    for name in names:
        touch(tmp_path / name.split("_")[1] / name)
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(locate.os, "walk", lambda *a, **k: walks.append(a) or real_walk(*a, **k))
    for layout in ("auto", "per-class"):
        walks.clear()
        found = resolve_records(records(*names), tmp_path, layout)
        assert [r.path for r in found] == [tmp_path / n.split("_")[1] / n for n in names]
        assert len(walks) == 1  # one index for ten videos, not a search per item


def test_auto_prefers_the_listed_path_and_builds_no_index_when_all_exist(tmp_path, monkeypatch):
    touch(tmp_path / "a.avi")
    monkeypatch.setattr(locate.os, "walk", lambda *a, **k: pytest.fail("no walk needed"))
    assert resolve_records(records("a.avi"), tmp_path)[0].path == tmp_path / "a.avi"


def test_class_prefix_in_list_with_flat_folder_and_frame_folders(tmp_path):
    touch(tmp_path / "v_Archery_g01_c01.avi")
    frames = tmp_path / "Archery" / "v_Archery_g02_c01"
    for i in range(1, 4):
        touch(frames / f"img_{i:05d}.jpg")
    found = resolve_records(records("Archery/v_Archery_g01_c01.avi", "v_Archery_g02_c01"), tmp_path)
    assert [r.path for r in found] == [tmp_path / "v_Archery_g01_c01.avi", frames]
    index = FileIndex.build(tmp_path)
    assert "img_00001.jpg" not in index.by_name  # frames inside frame folders are not indexed


def test_missing_policies(tmp_path):
    touch(tmp_path / "brush_hair" / "a.avi")
    listed = records("a.avi", "gone.avi", "also_gone.avi")
    with pytest.raises(MissingVideosError, match=r"2 of 3 listed videos not found .*list\.txt:2: gone\.avi"):
        resolve_records(listed, tmp_path)
    assert [r.path for r in resolve_records(listed, tmp_path, missing="skip")] == [
        tmp_path / "brush_hair/a.avi"
    ]
    kept = resolve_records(listed, tmp_path, missing="keep")
    assert [r.path for r in kept] == [
        tmp_path / "brush_hair/a.avi",
        tmp_path / "gone.avi",
        tmp_path / "also_gone.avi",
    ]
    found, missing = locate_records(listed, tmp_path, "flat")  # flat never looks inside class folders
    assert found == [] and len(missing) == 3


def test_ambiguous_basename_uses_listed_folders_or_fails(tmp_path):
    touch(tmp_path / "k400" / "train" / "x.mp4")
    touch(tmp_path / "k400" / "val" / "x.mp4")
    assert resolve_records(records("val/x.mp4"), tmp_path)[0].path == tmp_path / "k400/val/x.mp4"
    with pytest.raises(MissingVideosError, match=r"list\.txt:1: x\.mp4 matches 2 files"):
        resolve_records(records("x.mp4"), tmp_path)


def test_records_with_root_already_joined(tmp_path):
    touch(tmp_path / "Class" / "v.avi")
    joined = [VideoRecord(tmp_path / "v.avi", 0, "l:1")]
    assert resolve_records(joined, tmp_path)[0].path == tmp_path / "Class" / "v.avi"


def test_bad_arguments(tmp_path):
    with pytest.raises(MissingVideosError, match="not a directory"):
        resolve_records(records("a.avi"), tmp_path / "nope", "per-class")
    with pytest.raises(Exception, match="layout"):
        resolve_records(records("a.avi"), tmp_path, "nested")
    with pytest.raises(Exception, match="missing policy"):
        resolve_records(records("a.avi"), tmp_path, missing="ignore")
