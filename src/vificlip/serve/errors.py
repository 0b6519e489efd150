"""The one error type of a request: HTTP status + the request part it is about, sent as ``{"error": "one line"}``."""

from __future__ import annotations

from ..errors import VificlipError


class RequestError(VificlipError):
    """Bad input in one part of a request (``video``, ``path``, ``classes``, ``body`` …); ``status`` is a 4xx."""

    def __init__(self, part: str, message: str, status: int = 400) -> None:
        super().__init__(f"{part}: {message}")
        self.part, self.status = part, status

    @property
    def message(self) -> str:
        """One line: newlines in a wrapped cause (e.g. a decoder's) would break the contract."""
        return " ".join(str(self).split())
