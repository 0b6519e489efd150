"""Annotation files: video lists, label CSVs and label maps read back exactly; bad input names file:line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vificlip.data.annotations import (
    AnnotationError,
    check_class_count,
    read_label_csv,
    read_label_map,
    read_labels,
    read_video_list,
    validate_records,
    write_label_csv,
    write_video_list,
)
from vificlip.data.records import VideoRecord
from vificlip.errors import VificlipError


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_video_list_spaces_crlf_blank_lines_no_final_newline(tmp_path):
    path = write_bytes(
        tmp_path / "list.txt",
        b"a.mp4 0\r\n\r\nsub dir/clip with spaces.avi 12\r\n   \r\ntrain/x_000001_000011.mp4\t3",
    )
    records = read_video_list(path)
    assert [(r.path, r.label) for r in records] == [
        (Path("a.mp4"), 0),
        (Path("sub dir/clip with spaces.avi"), 12),
        (Path("train/x_000001_000011.mp4"), 3),
    ]
    assert [r.source for r in records] == [f"{path}:1", f"{path}:3", f"{path}:5"]


def test_video_list_root_is_joined_and_frame_folders_are_paths(tmp_path):
    path = write_bytes(tmp_path / "list.txt", b"frames/vid_0001 4\n")
    (record,) = read_video_list(path, root=tmp_path / "data")
    assert record.path == tmp_path / "data" / "frames" / "vid_0001"
    assert record.label == 4


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b"only_a_path.mp4", "no label field"),
        (b"a.mp4 x", "label field 'x'"),
        (b"a.mp4 1_0", "label field '1_0'"),
        (b"a.mp4 -1", "label field -1"),
    ],
)
def test_video_list_bad_lines_name_file_line_and_field(tmp_path, line, field):
    path = write_bytes(tmp_path / "list.txt", b"ok.mp4 0\n\n" + line + b"\n")
    with pytest.raises(AnnotationError, match=rf"list\.txt:3: .*{field}"):
        read_video_list(path)


def test_empty_video_list_is_an_error(tmp_path):
    with pytest.raises(AnnotationError, match="no videos"):
        read_video_list(write_bytes(tmp_path / "list.txt", b"\r\n\n"))


def test_json_list_mmaction_style(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"filename": "a.mp4", "label": [2]}, {"filename": "b c.mp4", "label": 0}]))
    records = read_video_list(path, root="/data")
    assert [(r.path, r.label, r.source) for r in records] == [
        (Path("/data/a.mp4"), 2, f"{path}:#0"),
        (Path("/data/b c.mp4"), 0, f"{path}:#1"),
    ]
    path.write_text(json.dumps([{"filename": "a.mp4", "label": [1, 2]}]))
    with pytest.raises(AnnotationError, match=r"#0: field 'label' has 2 entries"):
        read_video_list(path)


def test_label_csv_quoted_names_crlf_and_bom(tmp_path):
    path = write_bytes(
        tmp_path / "labels.csv",
        b'\xef\xbb\xbfid,name\r\n0,"Removing something, revealing something behind"\r\n1,abseiling\r\n2,"say ""hi"""\r\n',
    )
    assert read_label_csv(path) == ["Removing something, revealing something behind", "abseiling", 'say "hi"']


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"idx,name\n0,a\n", r":1: expected the header 'id,name'"),
        (b"id,name\n0,a\n2,b\n", r":3: field 'id' is '2', expected 1"),
        (b"id,name\n1,a\n", r":2: field 'id' is '1', expected 0"),
        (b"id,name\n0,a\n1,b, with comma\n", r":3: expected 2 fields"),
        (b"id,name\n0,\n", r":2: field 'name' is empty"),
        (b"id,name\n", "no classes"),
    ],
)
def test_label_csv_errors_name_line_and_field(tmp_path, body, match):
    with pytest.raises(AnnotationError, match=match):
        read_label_csv(write_bytes(tmp_path / "labels.csv", body))


def test_label_map_and_dispatch(tmp_path):
    label_map = write_bytes(tmp_path / "label_map.txt", b"abseiling\r\nair drumming\n\n\n")
    assert read_label_map(label_map) == ["abseiling", "air drumming"]
    assert read_labels(label_map) == ["abseiling", "air drumming"]
    csv_without_suffix = write_bytes(tmp_path / "labels", b"id,name\n0,a\n1,b\n")
    assert read_labels(csv_without_suffix) == ["a", "b"]
    with pytest.raises(AnnotationError, match=r"label_map2\.txt:2: empty class name"):
        read_label_map(write_bytes(tmp_path / "label_map2.txt", b"a\n\nb\n"))


def test_validate_records_and_class_count():
    records = [VideoRecord(Path("a.mp4"), 0, "l.txt:1"), VideoRecord(Path("b.mp4"), 3, "l.txt:2")]
    validate_records(records, 4)
    with pytest.raises(AnnotationError, match=r"l\.txt:2: label field 3 is out of range .* expected 0\.\.2"):
        validate_records(records, 3, "labels.csv")
    assert check_class_count(["a", "b"], 2, "labels.csv") == 2
    assert check_class_count(["a", "b"], None, "labels.csv") == 2
    with pytest.raises(VificlipError, match="labels.csv: has 2 classes but num_classes is 3"):
        check_class_count(["a", "b"], 3, "labels.csv")


def test_writers_round_trip_in_reference_format(tmp_path):
    names = ["abseiling", "Removing something, revealing something behind", 'say "hi"']
    csv_path = write_label_csv(tmp_path / "out" / "labels.csv", names)
    assert csv_path.read_bytes() == (
        b'id,name\n0,abseiling\n1,"Removing something, revealing something behind"\n2,"say ""hi"""\n'
    )
    assert read_label_csv(csv_path) == names

    records = [VideoRecord(tmp_path / "root" / "a b.mp4", 2), VideoRecord(tmp_path / "root" / "x/y.avi", 0)]
    list_path = write_video_list(tmp_path / "out" / "list.txt", records, root=tmp_path / "root")
    assert list_path.read_text() == "a b.mp4 2\nx/y.avi 0\n"
    assert [(r.path, r.label) for r in read_video_list(list_path)] == [
        (Path("a b.mp4"), 2),
        (Path("x/y.avi"), 0),
    ]
    write_video_list(list_path, [("v_A_g01_c01.avi", 1)])
    assert list_path.read_text() == "v_A_g01_c01.avi 1\n"
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temp files left behind
    with pytest.raises(AnnotationError, match="cannot write path"):
        write_video_list(tmp_path / "bad.txt", [("bad\nname.mp4", 0)])
