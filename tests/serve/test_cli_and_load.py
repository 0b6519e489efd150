"""`vificlip serve` refuses bad arguments before binding; the server removes its temp folder; the load benchmark
runs end to end (a tiny setting, not timed: speed figures live in `vificlip benchmark serve`)."""

from __future__ import annotations

import httpx
import pytest
from conftest import CHECKPOINT, CLASSES

from vificlip.cli import main
from vificlip.serve.config import ServeConfig
from vificlip.serve.loadtest import format_serve_benchmark, machine_ceiling, run_serve_benchmark
from vificlip.serve.server import running
from vificlip.serve.service import Service


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "no/such/model.safetensors"], "not found"),
        (["--checkpoint", CHECKPOINT, "--port", "0"], "--port"),
        (["--checkpoint", CHECKPOINT, "--max-classes", "0"], "--max-classes 0: expected a positive number"),
        (["--checkpoint", CHECKPOINT, "--model-threads", "-1"], "--model-threads -1: expected a positive"),
        (["--checkpoint", CHECKPOINT, "--max-upload-mb", "0"], "--max-upload-mb 0.0: expected a positive"),
        (["--checkpoint", CHECKPOINT, "--labels", "no-such-set"], "not a bundled label set"),
        (["--checkpoint", CHECKPOINT, "--root", "no/such/folder"], "not a folder"),
        (["--checkpoint", CHECKPOINT, "--index", "no/such/index.safetensors"], "no embedding index"),
    ],
)
def test_serve_refuses_bad_arguments(argv, message, capsys) -> None:
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_temp_folder_removed_on_shutdown(world) -> None:
    service = Service(ServeConfig(checkpoint=CHECKPOINT, root=world["videos"], device="cpu", frames=4))
    with running(service) as url:
        health = httpx.get(f"{url}/api/health").json()
        assert health["status"] == "ok" and health["index_videos"] is None
        r = httpx.post(f"{url}/api/search", json={"text": "red"})
        assert r.status_code == 404 and r.json()["error"].startswith("index: ")
        with open(world["videos"] / "red_circle" / "clip0.mp4", "rb") as handle:
            r = httpx.post(
                f"{url}/api/predict", files={"video": ("a.mp4", handle)}, data={"classes": ",".join(CLASSES)}
            )
        assert r.status_code == 200
        assert service.tmp.is_dir() and not any(service.tmp.iterdir())
    assert not service.tmp.exists()


def test_load_benchmark_runs_without_errors() -> None:
    result = run_serve_benchmark(CHECKPOINT, requests=6, clients=3, rounds=2, frames=4, warmup=2)
    assert result["errors"] == 0
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    for r in result["rounds"]:
        assert r["single"]["requests"] == r["concurrent"]["requests"] == 6
        assert r["single"]["p50_ms"] <= r["single"]["p95_ms"]
        assert (
            r["single"]["server_cpu_ms_per_request"] > 0 and r["concurrent"]["server_cpu_ms_per_request"] > 0
        )
        assert r["server_rss_mib"] > 50
    assert result["ratio"] > 0
    assert result["cores"] >= 1 and 0 < result["single_cores_busy"]
    assert 0 < result["ceiling"] <= 3  # never more than the client count
    assert result["share_of_ceiling"] == pytest.approx(result["ratio"] / result["ceiling"], abs=0.01)
    text = format_serve_benchmark(result)
    assert "errors: 0" in text and "3 clients / 1 client" in text and "can gain at most" in text


def test_machine_ceiling_is_cores_over_the_cores_one_client_used() -> None:
    assert machine_ceiling(1.25, clients=8, cores=2) == 1.6
    assert machine_ceiling(0.5, clients=8, cores=16) == 8  # at most the client count


def test_page_assets_are_package_data() -> None:
    """The page must work offline from an installed wheel: every static file matches pyproject's package-data."""
    import ast
    import fnmatch
    import re
    from pathlib import Path

    from vificlip.serve.app import STATIC

    root = Path(__file__).resolve().parents[2]
    table = (root / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    patterns = ast.literal_eval(
        re.search(r"^vificlip = (\[.*\])$", table, re.MULTILINE).group(1)
    )  # no tomllib on 3.10
    package = STATIC.parents[1]  # src/vificlip
    files = [p.relative_to(package).as_posix() for p in STATIC.iterdir()]
    assert {"serve/static/index.html", "serve/static/app.js", "serve/static/style.css"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), f"{name} would not ship"
    html = (STATIC / "index.html").read_text()
    assert "http://" not in html and "https://" not in html, (
        "the page must not load anything from the internet"
    )
