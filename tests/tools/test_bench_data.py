"""Data benchmark at a tiny size: the report has every pipeline × clip set, ratios against naive, and both goals.

Timings are never asserted (shared CI cores); only the structure and the arithmetic of the ratios.
"""

from __future__ import annotations

import av
import pytest

from vificlip.tools.bench_data import format_data_benchmark, run_data_benchmark, synthetic_frames


def test_synthetic_frames_are_deterministic_and_vary():
    a, b = synthetic_frames(3, seed=0, height=32, width=48), synthetic_frames(3, seed=0, height=32, width=48)
    assert a.shape == (3, 32, 48, 3) and a.dtype.name == "uint8"
    assert (a == b).all() and (a[0] != a[1]).any()


def test_benchmark_report_structure(tmp_path):
    result = run_data_benchmark(tmp_path, num_videos=2, seconds=0.8, num_frames=4, clips_per_measurement=2)
    assert result["config"]["num_videos"] == 2 and result["config"]["num_frames"] == 4
    with av.open(str(tmp_path / "original" / "clip_000.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames) == (340, 256, 20)
    pairs = {(row["pipeline"], row["clips"]) for row in result["rows"]}
    assert {("naive", "original"), ("naive", "prepared"), ("pyav", "original"), ("pyav", "prepared")} <= pairs
    for row in result["rows"]:
        assert row["clips_per_sec"] > 0 and row["ms_per_clip"] == pytest.approx(1000 / row["clips_per_sec"])
        assert row["cpu_ms_per_clip"] == pytest.approx(1000 / row["clips_per_cpu_sec"])
        assert row["decode_cpu_ms"] + row["augment_cpu_ms"] == pytest.approx(row["cpu_ms_per_clip"])
    naive = {r["clips"]: r["clips_per_cpu_sec"] for r in result["rows"] if r["pipeline"] == "naive"}
    pyav = {r["clips"]: r["clips_per_cpu_sec"] for r in result["rows"] if r["pipeline"] == "pyav"}
    for clips in ("original", "prepared"):
        assert result["speedup_vs_naive"][clips]["pyav"] == pytest.approx(pyav[clips] / naive[clips])
    assert [g["target"] for g in result["goals"]] == [2.0, 14.0]
    assert all(isinstance(g["met"], bool) for g in result["goals"])
    assert result["prepare"]["videos"] == 2 and result["prepare"]["prepared_mb"] > 0

    text = format_data_benchmark(result)
    assert "naive" in text and "pyav" in text and "prepared" in text and "target ≥ 14" in text
    assert len(text.splitlines()) >= 6 + len(result["rows"])
