"""The paper's annotation files shipped in the package: label sets by name, the split lists, the preset default."""

from __future__ import annotations

import argparse
import csv
import io
import tarfile

import pytest

from vificlip.data import labelsets
from vificlip.data.annotations import read_video_list, validate_records
from vificlip.data.labelsets import ARCHIVE, LABEL_SETS, bundled_annotation_dir, read_label_set
from vificlip.data.presets import default_annotation_dir, list_dataset_presets, load_dataset_preset

# Class counts from the bundle's README (the authors' files).
COUNTS = {"k400": 400, "k400-base": 200, "k400-novel": 200, "k600": 600, "k600-zs1": 160, "k600-zs2": 160,
          "k600-zs3": 160, "ucf101": 101, "ucf101-base": 51, "ucf101-novel": 50, "hmdb51": 51, "hmdb51-base": 26,
          "hmdb51-novel": 25, "ssv2": 174, "ssv2-base": 87, "ssv2-novel": 87}  # fmt: skip
# The two K400 training lists the authors' repository does not hold (README of the bundle).
NOT_SHIPPED = {"k400": ["datasets_splits/k400_splits/train.txt"]}


def _csv_in_archive(member: str) -> list[str]:
    """Names straight from the archive with the csv module: independent of vificlip's readers."""
    with tarfile.open(ARCHIVE, "r:xz") as tar:
        text = tar.extractfile(member).read().decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "name"]
    return [name for _, name in rows[1:] if name]


def test_every_bundled_label_set_parses_with_the_id_check():
    assert set(LABEL_SETS) == set(COUNTS)
    for name in LABEL_SETS:
        names = read_label_set(name)  # read_label_csv: header id,name and ids 0..C-1 in order
        assert len(names) == COUNTS[name] == len(set(names)), name


def test_labels_k400_gives_the_400_names_of_the_csv_in_order():
    from vificlip.cli.options import parse_classes

    names = parse_classes(argparse.Namespace(classes=None, labels="k400"))
    assert names == _csv_in_archive("labels/kinetics_400_labels.csv")
    assert len(names) == 400 and names[0] == "abseiling" and names[-1] == "zumba"


def test_the_bundle_unpacks_into_the_vificlip_cache_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VIFICLIP_CACHE", str(tmp_path / "cache"))
    folder = bundled_annotation_dir()
    assert folder.parent.parent == tmp_path / "cache" and (folder / "labels" / "ucf_101_labels.csv").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left behind
    (folder / "labels" / "marker").write_text("kept")  # a second call does not unpack again
    assert bundled_annotation_dir() == folder and (folder / "labels" / "marker").is_file()


def test_unknown_label_set_is_a_clear_error():
    with pytest.raises(
        labelsets.VificlipError, match=r"labels 'k401': no such file, and not a bundled label set"
    ):
        read_label_set("k401")


def _checked(preset, ann, lists, labels):
    num_classes = len(read_label_set(ann / labels))
    for relative in lists:
        records = read_video_list(ann / relative)
        assert records, relative
        validate_records(records, num_classes, source=labels)


@pytest.mark.parametrize("dataset", list_dataset_presets())
def test_every_split_list_of_the_presets_is_bundled_and_fits_its_label_set(dataset):
    preset = load_dataset_preset(dataset)
    ann = default_annotation_dir(dataset)
    assert ann == bundled_annotation_dir()
    assert preset.missing_files(ann) == NOT_SHIPPED.get(preset.name, [])
    shipped = [name for name in (preset.train, *preset.eval, *preset.few_shot.values(), *preset.few_shot_eval)
               if name and name not in NOT_SHIPPED.get(preset.name, [])]  # fmt: skip
    if preset.labels:
        _checked(preset, ann, shipped, preset.labels)
    for split in preset.zero_shot:
        _checked(preset, ann, [split.eval], split.labels)
    if preset.base_novel is not None:
        b2n = preset.base_novel
        _checked(preset, ann, [*b2n.train, b2n.base_val], b2n.base_labels)
        _checked(preset, ann, [b2n.novel_val], b2n.novel_labels)


def test_a_preset_of_ones_own_has_no_default():
    assert default_annotation_dir(None) is None
    assert default_annotation_dir("/data/my_preset.yaml") is None
