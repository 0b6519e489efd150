"""Multipart uploads streamed straight into the server's temp folder, size-limited while they arrive.

Starlette's own form parser spools every file to the system temp dir with no size limit; here each chunk is
written as it comes, the count is checked on every chunk, and the file is removed by the caller (``Upload.remove``)
whatever happens. python-multipart does the parsing.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .errors import RequestError

DRAIN_FACTOR = (
    8  # an over-limit body is read (and discarded) up to this many limits, so the client sees the 413
)


@dataclass
class Upload:
    """Text fields of a multipart form and at most one file (saved under the temp folder)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    filename: str | None = None
    size: int = 0

    def remove(self) -> None:
        if self.file is not None:
            self.file.unlink(missing_ok=True)


def _safe_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"


class _FormReader:
    """python-multipart callbacks → an :class:`Upload`; limits checked per chunk."""

    def __init__(self, folder: Path, file_field: str, max_file: int, max_fields: int) -> None:
        self.folder, self.file_field = folder, file_field
        self.max_file, self.max_fields = max_file, max_fields
        self.upload = Upload()
        self.error: RequestError | None = None
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._is_file = False
        self._text = bytearray()
        self._handle: BinaryIO | None = None
        self._field_bytes = 0

    # -- python-multipart callbacks --
    def on_part_begin(self) -> None:
        self._headers, self._text, self._is_file = {}, bytearray(), False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._is_file = filename is not None
        if self._is_file and self.error is None:
            if self._name != self.file_field:
                self.error = RequestError(
                    self._name or "body", f"unexpected file field; send the video as '{self.file_field}'"
                )
            elif self.upload.file is not None:
                self.error = RequestError(self.file_field, "send one video per request")
            else:
                self.upload.filename = filename.decode("utf-8", "replace") or "upload"
                fd, name = tempfile.mkstemp(
                    prefix="upload-", suffix=_safe_suffix(self.upload.filename), dir=self.folder
                )
                self.upload.file = Path(name)
                self._handle = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self._is_file:
            self.upload.size += end - start
            if self.upload.size > self.max_file:
                self.error = RequestError(
                    self.file_field,
                    f"upload is larger than the server's limit of {self.max_file:,} bytes",
                    413,
                )
                return
            if self._handle is not None:
                self._handle.write(data[start:end])
        else:
            self._field_bytes += end - start
            if self._field_bytes > self.max_fields:
                self.error = RequestError(
                    self._name or "body", f"form fields exceed {self.max_fields:,} bytes", 413
                )
                return
            self._text += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self.close()
        elif self.error is None:
            self.upload.fields[self._name] = self._text.decode("utf-8", "replace")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


async def read_multipart(
    request: Request, folder: Path, file_field: str, max_file: int, max_fields: int
) -> Upload:
    """Parse ``request``'s multipart body; the caller must ``remove()`` the result (also on error paths)."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError("body", "multipart/form-data without a boundary")
    cap = DRAIN_FACTOR * (max_file + max_fields)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise RequestError(file_field, f"upload is larger than the server's limit of {max_file:,} bytes", 413)
    reader = _FormReader(folder, file_field, max_file, max_fields)
    callbacks = {name: getattr(reader, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished")}  # fmt: skip
    parser = MultipartParser(boundary, callbacks)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if reader.error is not None:  # keep reading (and discarding) so the client gets our answer
                if received > cap:
                    break
                continue
            parser.write(chunk)
        if reader.error is None:
            parser.finalize()
    except MultipartParseError as exc:
        reader.close()
        reader.upload.remove()
        raise RequestError("body", f"malformed multipart form ({exc})") from None
    except BaseException:
        reader.close()
        reader.upload.remove()
        raise
    reader.close()
    if reader.error is not None:
        reader.upload.remove()
        raise reader.error
    return reader.upload
