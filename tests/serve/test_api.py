"""The JSON API over a real server: answers match `vificlip predict --json`, batching changes no number, search
finds the queried object, and nothing is left in the upload folder."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from conftest import CHECKPOINT, CLASSES, FRAMES, OBJECTS

from vificlip.cli import main
from vificlip.serve.batching import MicroBatcher


def predict_cli(video, capsys, classes=CLASSES, top_k=3) -> dict:
    capsys.readouterr()
    argv = ["predict", str(video), "--checkpoint", CHECKPOINT, "--classes", ",".join(classes), "--frames",
            str(FRAMES), "--device", "cpu", "--top-k", str(top_k), "--json"]  # fmt: skip
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def assert_same_prediction(api: dict, cli: dict) -> None:
    assert [c["class"] for c in api["top_k"]] == [c["class"] for c in cli["top_k"]]
    for a, c in zip(api["top_k"], cli["top_k"]):
        assert a["probability"] == pytest.approx(c["probability"], abs=1e-4)


def test_upload_matches_cli_predict_json(server, world, capsys) -> None:
    video = world["videos"] / "blue_square" / "clip0.mp4"
    with open(video, "rb") as handle:
        r = httpx.post(f"{server}/api/predict", files={"video": ("mine.mp4", handle, "video/mp4")},
                       data={"classes": "\n".join(CLASSES), "top_k": "3"})  # fmt: skip
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["video"] == "mine.mp4"
    assert set(answer["timings_ms"]) == {"decode", "model", "attention", "total"}
    assert "frames" not in answer
    assert_same_prediction(answer, predict_cli(video, capsys))
    assert httpx.get(f"{server}/api/health").json()["temp_files"] == 0


def test_path_under_root_with_attention(server, world, capsys) -> None:
    r = httpx.post(f"{server}/api/predict", json={"path": "red_circle/clip0.mp4", "classes": CLASSES,
                                                  "attention": True, "top_k": 2})  # fmt: skip
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["video"] == "red_circle/clip0.mp4"
    assert len(answer["top_k"]) == 2
    assert len(answer["frames"]) == len(answer["attention"]) == FRAMES
    assert all(f.startswith("data:image/png;base64,") for f in answer["frames"] + answer["attention"])
    assert answer["frames"] != answer["attention"]
    assert_same_prediction(answer, predict_cli(world["videos"] / "red_circle" / "clip0.mp4", capsys, top_k=2))


def test_the_tiny_model_names_the_objects(server) -> None:
    for colour, shape in OBJECTS:
        r = httpx.post(
            f"{server}/api/predict", json={"path": f"{colour}_{shape}/clip1.mp4", "classes": CLASSES}
        )
        assert r.json()["top_k"][0]["class"] == f"{colour} {shape}"


def test_concurrent_requests_share_model_calls_and_numbers(server, service) -> None:
    paths = [f"{c}_{s}/clip{i}.mp4" for c, s in OBJECTS for i in range(2)] * 2
    alone = {
        p: httpx.post(f"{server}/api/predict", json={"path": p, "classes": CLASSES}).json() for p in paths[:8]
    }
    before = service.batcher.stats.batches
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(lambda p: httpx.post(f"{server}/api/predict", json={"path": p, "classes": CLASSES},
                                                     timeout=60).json(), paths))  # fmt: skip
    assert max(a["batch_size"] for a in answers) > 1, "no two requests shared a model call"
    assert service.batcher.stats.batches - before < len(paths)
    for path, answer in zip(paths, answers):
        assert_same_prediction(answer, alone[path])


def test_bundled_label_set_and_labels_api(server) -> None:
    labels = httpx.get(f"{server}/api/labels").json()
    assert "ucf101" in labels["sets"] and labels["default"] is None
    ucf = httpx.get(f"{server}/api/labels/ucf101").json()["classes"]
    assert len(ucf) == 101
    r = httpx.post(
        f"{server}/api/predict", json={"path": "red_circle/clip0.mp4", "labels": "ucf101", "top_k": 3}
    )
    assert r.status_code == 200
    assert {c["class"] for c in r.json()["top_k"]} <= set(ucf)
    assert httpx.get(f"{server}/api/labels/nope").status_code == 404


def test_videos_listing_stays_inside_root(server) -> None:
    videos = httpx.get(f"{server}/api/videos").json()["videos"]
    assert "red_circle/clip0.mp4" in videos and len(videos) == 2 * len(OBJECTS)
    assert "escape.mp4" not in videos


def test_text_search_ranks_the_queried_object_first(server) -> None:
    for colour, shape in OBJECTS:
        r = httpx.post(f"{server}/api/search", json={"text": f"{colour} {shape}", "k": 2})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 2
        assert results[0]["path"].startswith(f"{colour}_{shape}/"), results
        assert results[0]["score"] >= results[1]["score"]


def test_more_like_these_and_video_query(server, world) -> None:
    first = httpx.post(f"{server}/api/search", json={"text": "green star", "k": 1}).json()["results"][0]
    like = httpx.post(f"{server}/api/search", json={"like": [first["id"]], "k": 3}).json()["results"]
    assert first["id"] not in [hit["id"] for hit in like]
    assert like[0]["label"] == "green_star"  # its sibling clip is the nearest video
    with open(world["videos"] / "yellow_triangle" / "clip0.mp4", "rb") as handle:
        r = httpx.post(
            f"{server}/api/search", files={"video": ("q.mp4", handle, "video/mp4")}, data={"k": "1"}
        )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["path"] == "yellow_triangle/clip0.mp4"  # itself: same pipeline as the index


def test_preview_is_an_animated_gif(server) -> None:
    r = httpx.get(f"{server}/api/preview/0.gif")
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(r.content))
    assert image.n_frames > 1 and image.height == 96
    assert httpx.get(f"{server}/api/preview/999.gif").status_code == 404


def test_openapi_documents_the_api(server) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    for path in ("/api/predict", "/api/search", "/api/health", "/api/labels"):
        assert path in spec["paths"]
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "video" in body["multipart/form-data"]["schema"]["properties"]
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert httpx.get(f"{server}/static/app.js").status_code == 200
    assert httpx.get(f"{server}/docs").status_code == 404  # Swagger UI would load from a CDN: off


def test_text_features_cached_per_class_list(service) -> None:
    calls = []
    original = service.model.encode_text

    def counting(names):
        calls.append(tuple(names))
        return original(names)

    service.model.encode_text = counting
    try:
        first = service._text_features(("a cat", "a dog"))
        service._text_features(("a bird",))
        again = service._text_features(("a cat", "a dog"))
    finally:
        del service.model.encode_text
    assert calls == [("a cat", "a dog"), ("a bird",)]
    assert torch.equal(first, again)


def test_micro_batcher_waits_only_for_announced_requests() -> None:
    seen: list[list[int]] = []

    def run(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        return [2 * j for j in jobs]

    async def scenario() -> None:
        pool = ThreadPoolExecutor(1)
        batcher = MicroBatcher(run, pool, window_s=5.0, max_batch=4)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await batcher.submit(1) == 2  # nobody else announced: no 5 s window
        assert loop.time() - start < 1.0

        async def announced(j: int) -> int:
            with batcher.announce():
                await asyncio.sleep(0.01 * j)
            return await batcher.submit(j)

        assert await asyncio.gather(*(announced(j) for j in range(1, 7))) == [2, 4, 6, 8, 10, 12]
        await batcher.stop()
        pool.shutdown()

    asyncio.run(scenario())
    assert seen[0] == [1]
    assert [len(b) for b in seen[1:]] == [4, 2]  # max_batch respected, the rest in the next call


def test_class_lists_typed_with_commas_or_newlines(service) -> None:
    assert service.class_list("a, b\nc,,\n d ", None) == ("a", "b", "c", "d")
    assert service.class_list([" a", "b "], None) == ("a", "b")
    assert len(service.class_list(None, "hmdb51")) == 51


def test_a_bad_class_list_fails_only_its_own_request_in_a_batch(service, world) -> None:
    from vificlip.serve.errors import RequestError
    from vificlip.serve.service import Job, JobResult

    views = service._decode(world["videos"] / "red_circle" / "clip0.mp4", FRAMES, "video")
    good, bad = Job(views, tuple(CLASSES)), Job(views, ("red " * 40,))
    results = service._run_batch([good, bad, good])
    assert isinstance(results[0], JobResult) and isinstance(results[2], JobResult)
    assert torch.equal(results[0].probabilities, results[2].probabilities)
    assert isinstance(results[1], RequestError) and results[1].part == "classes"
