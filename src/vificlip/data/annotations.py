"""Read and write the annotation files of the authors' repository (SPEC §2.1, §8).

Formats:
* video list — ``<relative/path> <label>`` per line. The label is the *last* whitespace-separated field, so paths
  may contain spaces (the reference splits on whitespace and cannot, SPEC quirk 18). CRLF, blank lines and a
  missing final newline are accepted. An mmaction-style ``.json`` list (``filename`` + ``label``) is also read.
* label CSV — header ``id,name``, one row per class; ids must be 0..C−1 in row order (quirk 17). Read with the
  csv module: names with commas are quoted, several files use CRLF.
* label map — mmaction style, one class name per line.

A path may name a video file or a frame folder (``img_00001.jpg`` …); the decoder tells them apart.
Every error names ``file:line`` and the offending field, because annotation files are edited by hand.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import VificlipError
from .records import VideoRecord

LABEL_CSV_HEADER = ("id", "name")


class AnnotationError(VificlipError):
    """A malformed annotation or label file; the message names file:line, the field and what was expected."""


def _read_text(path: Path) -> str:
    """Whole file as text; ``utf-8-sig`` drops a BOM that would otherwise glue itself to the first path/header."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _join(root: str | Path | None, relative: str) -> Path:
    return Path(root) / relative if root is not None else Path(relative)


def parse_list_line(line: str, where: str) -> tuple[str, int] | None:
    """``'a dir/clip 1.mp4 3'`` → ``('a dir/clip 1.mp4', 3)``; ``None`` for a blank line."""
    text = line.strip()
    if not text:
        return None
    fields = text.rsplit(maxsplit=1)
    if len(fields) != 2:
        raise AnnotationError(f"{where}: expected '<relative/path> <label>', got {text!r} (no label field)")
    relative, label_text = fields[0].strip(), fields[1]
    if not re.fullmatch(r"-?[0-9]+", label_text):  # int() would also take "1_0" and non-ASCII digits
        raise AnnotationError(
            f"{where}: label field {label_text!r} is not an integer (expected '<relative/path> <label>')"
        )
    label = int(label_text)
    if label < 0:
        raise AnnotationError(f"{where}: label field {label} is negative (expected a class index ≥ 0)")
    return relative, label


def read_video_list(path: str | Path, root: str | Path | None = None) -> list[VideoRecord]:
    """Records of a video list; ``root`` is joined to every path (left relative when ``None``)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _read_json_list(path, root)
    records = []
    for number, line in enumerate(io.StringIO(_read_text(path), newline=None), start=1):
        where = f"{path}:{number}"
        parsed = parse_list_line(line, where)
        if parsed is not None:
            records.append(VideoRecord(_join(root, parsed[0]), parsed[1], where))
    if not records:
        raise AnnotationError(f"{path}: no videos listed (expected lines '<relative/path> <label>')")
    return records


def _read_json_list(path: Path, root: str | Path | None) -> list[VideoRecord]:
    """mmaction-style ``[{"filename": ..., "label": [k] or k}, ...]``; ``source`` is ``file:#index``."""
    try:
        items = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(items, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{'filename', 'label'}} objects")
    records = []
    for index, item in enumerate(items):
        where = f"{path}:#{index}"
        if not isinstance(item, dict) or "filename" not in item or "label" not in item:
            raise AnnotationError(f"{where}: expected an object with 'filename' and 'label', got {item!r}")
        label = item["label"]
        if isinstance(label, list):
            if len(label) != 1:
                raise AnnotationError(
                    f"{where}: field 'label' has {len(label)} entries; multi-label is unsupported"
                )
            label = label[0]
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise AnnotationError(f"{where}: field 'label' is {label!r}, expected a class index ≥ 0")
        records.append(VideoRecord(_join(root, str(item["filename"])), label, where))
    if not records:
        raise AnnotationError(f"{path}: no videos listed")
    return records


def read_label_csv(path: str | Path) -> list[str]:
    """Class names of an ``id,name`` CSV in row order, after checking that the ids are 0..C−1 in order."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise AnnotationError(f"{path}:1: malformed CSV header ({exc})") from None
    if header is None or tuple(field.strip().lower() for field in header) != LABEL_CSV_HEADER:
        raise AnnotationError(f"{path}:1: expected the header 'id,name', got {','.join(header or [])!r}")
    names: list[str] = []
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: name the line the row starts on
        try:
            row = next(reader, None)
        except csv.Error as exc:  # strict: a quote left open runs to the end of the file
            raise AnnotationError(
                f"{path}:{start}: malformed CSV row ({exc}); is a quote left open?"
            ) from None
        if row is None:
            break
        where = f"{path}:{start}"
        if not row or all(not field.strip() for field in row):
            continue
        if any("\n" in field or "\r" in field for field in row):
            raise AnnotationError(f"{where}: a quoted field spans several lines; is a quote left open?")
        if len(row) != 2:
            raise AnnotationError(
                f"{where}: expected 2 fields 'id,name', got {len(row)} {row!r} (quote names that contain commas)"
            )
        id_text, name = row[0].strip(), row[1].strip()
        if id_text != str(len(names)):
            raise AnnotationError(
                f"{where}: field 'id' is {id_text!r}, expected {len(names)} (ids are 0..C-1 in order)"
            )
        if not name:
            raise AnnotationError(f"{where}: field 'name' is empty")
        names.append(name)
    if not names:
        raise AnnotationError(f"{path}: no classes after the header")
    return names


def read_label_map(path: str | Path) -> list[str]:
    """Class names of a one-name-per-line file (mmaction label map); trailing blank lines are ignored."""
    path = Path(path)
    lines = [line.strip() for line in io.StringIO(_read_text(path), newline=None)]
    while lines and not lines[-1]:
        lines.pop()
    for number, name in enumerate(lines, start=1):
        if not name:
            raise AnnotationError(
                f"{path}:{number}: empty class name (a blank line would shift every later index)"
            )
    if not lines:
        raise AnnotationError(f"{path}: no class names")
    return lines


def read_labels(path: str | Path) -> list[str]:
    """Class names from a label CSV (``.csv`` suffix or an ``id,name`` first line) or a plain label map."""
    path = Path(path)
    first_line = next(io.StringIO(_read_text(path), newline=None), "")
    is_csv = path.suffix.lower() == ".csv" or first_line.strip().replace(" ", "").lower() == "id,name"
    return read_label_csv(path) if is_csv else read_label_map(path)


def validate_records(records: Iterable[VideoRecord], num_classes: int, source: str = "") -> None:
    """Raise on the first label outside 0..num_classes−1, naming its file:line (the record's source)."""
    for record in records:
        if not 0 <= record.label < num_classes:
            where = record.source or str(record.path)
            against = f" of {source}" if source else ""
            raise AnnotationError(
                f"{where}: label field {record.label} is out of range for the {num_classes} classes{against};"
                f" expected 0..{num_classes - 1}"
            )


def check_class_count(names: Sequence[str], num_classes: int | None, source: str) -> int:
    """The class count, checked against a configured one (the reference trusts NUM_CLASSES blindly, quirk 16)."""
    if num_classes is not None and num_classes != len(names):
        raise AnnotationError(f"{source}: has {len(names)} classes but num_classes is {num_classes}")
    return len(names)


def write_video_list(
    path: str | Path,
    records_or_pairs: Iterable[VideoRecord | tuple[str | Path, int]],
    root: str | Path | None = None,
) -> Path:
    """Write ``<path> <label>`` lines (LF, final newline), paths made relative to ``root`` when given."""
    lines = []
    for item in records_or_pairs:
        video, label = (item.path, item.label) if isinstance(item, VideoRecord) else item
        video = Path(video)
        if root is not None and video.is_absolute():
            video = video.relative_to(root)
        text = video.as_posix()
        if not text.strip() or "\n" in text or "\r" in text or text != text.strip():
            raise AnnotationError(f"{path}: cannot write path {text!r} (empty, newline or edge whitespace)")
        lines.append(f"{text} {int(label)}\n")
    return atomic_write_text(Path(path), "".join(lines))


def write_label_csv(path: str | Path, names: Iterable[str]) -> Path:
    """Write an ``id,name`` CSV (LF), quoting names that contain commas or quotes, as the authors' files do."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(LABEL_CSV_HEADER)
    for index, name in enumerate(names):
        if not name.strip() or "\n" in name or "\r" in name:
            raise AnnotationError(f"{path}: class {index} has an empty or multi-line name {name!r}")
        writer.writerow((index, name))
    return atomic_write_text(Path(path), buffer.getvalue())
