"""Every bad request gets a 4xx and {"error": "<part>: one line"}; the server stays healthy and keeps no upload."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from conftest import CLASSES, MAX_CLASSES, MAX_UPLOAD

from vificlip.data.synthetic import render_video
from vificlip.data.writer import write_video
from vificlip.serve.errors import RequestError
from vificlip.serve.paths import resolve_under_root


def upload(name: str, data: bytes, classes: str = ", ".join(CLASSES)) -> dict:
    return {"files": {"video": (name, data, "video/mp4")}, "data": {"classes": classes}}


def truncated_video(tmp_path) -> bytes:
    frames = render_video("spinning", "red", "circle", "black", np.random.default_rng(1), num_frames=48)
    data = write_video(tmp_path / "whole.mp4", frames).read_bytes()
    return data[: len(data) // 2]


CASES = {
    "zero-byte file": (lambda tmp: upload("empty.mp4", b""), 400, "video", "empty"),
    "text named .mp4": (lambda tmp: upload("notes.mp4", b"these are my notes, not a video\n" * 20), 400, "video",
                        "cannot decode"),
    "truncated video": (lambda tmp: upload("cut.mp4", truncated_video(tmp)), 400, "video", "cannot decode"),
    "upload over the limit": (lambda tmp: upload("big.mp4", bytes(2 * MAX_UPLOAD)), 413, "video", "limit"),
    "dot-dot path": (lambda tmp: {"json": {"path": "../../etc/passwd", "classes": CLASSES}}, 403, "path", ".."),
    "absolute path": (lambda tmp: {"json": {"path": "/etc/passwd", "classes": CLASSES}}, 403, "path", "absolute"),
    "symlink out of root": (lambda tmp: {"json": {"path": "escape.mp4", "classes": CLASSES}}, 403, "path",
                            "outside --root"),
    "missing file": (lambda tmp: {"json": {"path": "nope.mp4", "classes": CLASSES}}, 404, "path", "no such file"),
    "10,000 class names": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4",
                                                 "classes": [f"class {i}" for i in range(10_000)]}}, 413, "classes",
                           f"at most {MAX_CLASSES}"),
    "empty class list": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "classes": " , \n"}}, 400, "classes",
                         "empty"),
    "class name too long for the text tower": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4",
                                                                     "classes": ["red circle", "red " * 40]}},
                                               400, "classes", "tokens long"),
    "duplicate classes": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "classes": "a, b, a"}}, 400,
                          "classes", "duplicate"),
    "malformed JSON body": (lambda tmp: {"content": b'{"path": "red_circle/clip0.mp4", "classes": [',
                                         "headers": {"content-type": "application/json"}}, 400, "body", "malformed JSON"),
    "JSON that is not an object": (lambda tmp: {"json": ["a"]}, 400, "body", "object"),
    "unknown field": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "classes": CLASSES, "checkpoint": "x"}},
                      400, "checkpoint", "Extra inputs"),
    "top_k not a number": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "classes": CLASSES, "top_k": "many"}},
                           400, "top_k", "integer"),
    "top_k over the limit": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "classes": CLASSES, "top_k": 10_000}},
                             400, "top_k", "at most 100"),
    "too many frames": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "classes": CLASSES, "frames": 10_000}},
                        400, "frames", "expected 1 to"),
    "no video": (lambda tmp: {"json": {"classes": CLASSES}}, 400, "video", "no video"),
    "unknown label set": (lambda tmp: {"json": {"path": "red_circle/clip0.mp4", "labels": "/etc/passwd"}}, 400,
                          "labels", "not a bundled label set"),
    "plain-text body": (lambda tmp: {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "body",
                        "content type"),
    "multipart without boundary": (lambda tmp: {"content": b"x", "headers": {"content-type": "multipart/form-data"}},
                                   400, "body", "boundary"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_predict_request(server, tmp_path, case) -> None:
    make, status, part, words = CASES[case]
    r = httpx.post(f"{server}/api/predict", **make(tmp_path), timeout=60)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    message = body["error"]
    assert "\n" not in message and message.startswith(f"{part}: "), message
    assert words in message, message
    health = httpx.get(f"{server}/api/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["temp_files"] == 0, "an upload was left in the server's temp folder"


def test_streamed_uploads_are_limited_while_they_arrive(server) -> None:
    """Chunked bodies have no Content-Length: the limit is checked per chunk, the client still gets the 413."""
    boundary = "vificlip-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="classes"\r\n\r\na, b\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'
    ).encode()

    def chunks():
        yield head
        for _ in range(4 * MAX_UPLOAD // 4096):
            yield bytes(4096)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = httpx.post(f"{server}/api/predict", content=chunks(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert r.status_code == 413 and r.json()["error"].startswith("video: upload is larger"), r.text
    r = httpx.post(f"{server}/api/predict", content=b"[" + b"1," * 600_000 + b"1]",
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413 and r.json()["error"].startswith("body: JSON body larger"), r.text
    assert httpx.get(f"{server}/api/health").json()["temp_files"] == 0


SEARCH_CASES = {
    "empty text": ({"text": "  "}, 400, "text"),
    "two queries": ({"text": "red", "like": [0]}, 400, "body"),
    "unknown result id": ({"like": [12345]}, 400, "like"),
    "k too large": ({"text": "red", "k": 10_000}, 400, "k"),
    "path outside root": ({"path": "../index.safetensors"}, 403, "path"),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES))
def test_bad_search_request(server, case) -> None:
    body, status, part = SEARCH_CASES[case]
    r = httpx.post(f"{server}/api/search", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"].startswith(f"{part}: ")
    assert httpx.get(f"{server}/api/health").json()["status"] == "ok"


def test_unknown_route_is_a_json_error(server) -> None:
    r = httpx.get(f"{server}/api/nothing")
    assert r.status_code == 404 and r.json()["error"].startswith("/api/nothing: ")


def test_a_good_request_still_works_after_the_bad_ones(server) -> None:
    r = httpx.post(f"{server}/api/predict", json={"path": "red_circle/clip0.mp4", "classes": CLASSES})
    assert r.status_code == 200 and r.json()["top_k"][0]["class"] == "red circle"


def test_resolve_under_root(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "v.mp4").write_bytes(b"x")
    (tmp_path / "out.mp4").write_bytes(b"x")
    (root / "inside_link.mp4").symlink_to(root / "a" / "v.mp4")
    (root / "outside_link.mp4").symlink_to(tmp_path / "out.mp4")
    (root / "dir_link").symlink_to(tmp_path)
    root = root.resolve()
    assert resolve_under_root(root, "a/v.mp4") == root / "a" / "v.mp4"
    assert resolve_under_root(root, "inside_link.mp4") == root / "a" / "v.mp4"
    for bad, status in [("../out.mp4", 403), ("a/../../out.mp4", 403), (str(tmp_path / "out.mp4"), 403),
                        ("outside_link.mp4", 403), ("dir_link/out.mp4", 403), ("C:\\x.mp4", 403),
                        ("a\\..\\..\\out.mp4", 403), ("", 400), ("a", 404), ("a/missing.mp4", 404)]:  # fmt: skip
        with pytest.raises(RequestError) as caught:
            resolve_under_root(root, bad)
        assert caught.value.status == status, bad
    with pytest.raises(RequestError):
        resolve_under_root(None, "a/v.mp4")
