"""Dataset presets: every shipped YAML loads, its numbers agree with SPEC §2.10/§8, and bad presets are named."""

from __future__ import annotations

import pytest

from vificlip.data.presets import PresetError, list_dataset_presets, load_dataset_preset

EXPECTED = {"k400": (400, 200, 200), "hmdb51": (51, 26, 25), "ucf101": (101, 51, 50), "ssv2": (174, 87, 87)}


def test_all_presets_load_with_the_reference_numbers():
    assert list_dataset_presets() == ["hmdb51", "k400", "k600", "ssv2", "ucf101"]
    for name, (classes, base, novel) in EXPECTED.items():
        preset = load_dataset_preset(name)
        assert (preset.num_classes, preset.base_novel.num_base, preset.base_novel.num_novel) == (
            classes,
            base,
            novel,
        )
        assert base + novel == classes and len(preset.base_novel.train) == 3
        assert preset.num_frames == 32 and preset.eval
    k600 = load_dataset_preset("kinetics600")
    assert k600.num_classes == 160 and len(k600.zero_shot) == 3 and k600.base_novel is None
    assert k600.zero_shot[1].labels == "labels/ZS_split2_K600.csv"
    hmdb = load_dataset_preset("HMDB")
    assert hmdb.layout == "per-class" and sorted(hmdb.few_shot) == [2, 4, 8, 16]
    assert hmdb.few_shot_eval == ("datasets_splits/hmdb_splits/val1.txt",)  # split 1 only (quirk 19)


def test_missing_files_against_an_annotation_dir(tmp_path):
    preset = load_dataset_preset("ucf101")
    files = preset.files()
    assert len(files) == len(set(files)) and "labels/ucf_101_labels.csv" in files
    for name in files[1:]:
        path = preset.path(tmp_path, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    assert preset.missing_files(tmp_path) == [files[0]]


def test_unknown_and_malformed_presets(tmp_path):
    with pytest.raises(PresetError, match="unknown dataset preset 'k700'; expected one of hmdb51"):
        load_dataset_preset("k700")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntitle: X\nnum_classes: 3\nnum_frames: 8\nlayout: flat\nframes: 8\n")
    with pytest.raises(PresetError, match=r"bad\.yaml: unknown keys \['frames'\]"):
        load_dataset_preset(str(bad))
    bad.write_text("name: x\ntitle: X\nnum_classes: three\nnum_frames: 8\nlayout: flat\n")
    with pytest.raises(PresetError, match="key 'num_classes' is 'three', expected int"):
        load_dataset_preset(str(bad))
    bad.write_text("name: x\ntitle: X\nnum_classes: 3\nnum_frames: 8\nlayout: nested\n")
    with pytest.raises(PresetError, match="layout is 'nested'"):
        load_dataset_preset(str(bad))
