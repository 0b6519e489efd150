"""Data-pipeline benchmark: decode + sample + augment clips/s per worker, before and after ``vificlip prepare``.

One run generates Kinetics-like sources (10 s, 340×256, H.264 with a keyframe every 250 frames), prepares them with
the ``prepare`` defaults (short side 256, a keyframe every 8 frames), then times the training path — open,
TSN-sample T frames, decode them, the paper's augmentation — in this single process with one torch thread and one
decoder thread (= one DataLoader worker on one core), for each installed decoder backend, on the originals and on
the prepared clips. The baseline in the same run is the naive pipeline: decode every frame sequentially, then
index (what a reader without seeking does). Rates are clips per CPU-second of this process (= clips/s on one
otherwise idle core; robust when other jobs share the machine), with wall-clock clips/s alongside; ratios and
goals use the CPU rates. Goals (issue 3): ≥ 2× the naive pipeline on originals, ≥ 14 clips/s per core on prepared
clips (16 frames), i.e. 225 clips/s from 16 cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np
import torch

from ..data.annotations import write_video_list
from ..data.decode import available_backends, open_video
from ..data.sampling import train_indices
from ..data.transforms import build_train_transform
from ..data.writer import write_video
from .prepare import PrepareOptions, prepare_dataset

SOURCE_GOP = 250  # Kinetics clips: a keyframe every ~10 s at 25 fps, i.e. about one per clip
WIDTH, HEIGHT, FPS = 340, 256, 25
GOAL_VS_NAIVE = 2.0
GOAL_PREPARED_CLIPS_PER_SEC = 14.0


def synthetic_frames(num_frames: int, seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """uint8 [T,H,W,3]: a drifting colour texture, moving blocks and sensor-like noise.

    The noise keeps the bitrate near that of real Kinetics clips (a few hundred kbit/s at 340×256), so decode
    cost is realistic; a flat synthetic picture would decode several times faster than real video.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        for c in range(3):
            wave = np.sin((xx + 2.0 * t) / (11 + 7 * c) + phase[c]) + np.cos((yy - 1.5 * t) / (13 + 5 * c))
            frames[t, :, :, c] = (wave * 60 + 128).astype(np.uint8)
        side = max(1, min(height, width) // 5)
        for block in range(3):
            top = (40 * block + 3 * t) % max(1, height - side)
            left = (90 * block + 5 * t * (block + 1)) % max(1, width - side)
            frames[t, top : top + side, left : left + side] = (60 * block + 40, 200 - 50 * block, 90)
    noise = rng.integers(-16, 17, size=frames.shape, dtype=np.int16)
    return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_benchmark_videos(directory: Path, num_videos: int, seconds: float) -> list[Path]:
    """Write ``num_videos`` Kinetics-like H.264 mp4 clips of ``seconds`` seconds."""
    num_frames = max(1, round(seconds * FPS))
    paths = []
    for index in range(num_videos):
        path = directory / f"clip_{index:03d}.mp4"
        write_video(
            path,
            synthetic_frames(num_frames, seed=index),
            fps=FPS,
            keyframe_interval=SOURCE_GOP,
            options={"x264-params": "scenecut=0"},
        )  # one keyframe every 250 frames, like Kinetics
        paths.append(path)
    return paths


def naive_clip(path: Path, num_segments: int, generator: torch.Generator) -> torch.Tensor:
    """Baseline: decode every frame in order with PyAV, then pick the sampled indices. uint8 [T,3,H,W]."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    indices = train_indices(len(frames), num_segments, generator)
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(0, 3, 1, 2)


def backend_clip(backend: str) -> Callable[[Path, int, torch.Generator], torch.Tensor]:
    def read(path: Path, num_segments: int, generator: torch.Generator) -> torch.Tensor:
        with open_video(path, backend, threads=1) as reader:
            return reader.read(train_indices(reader.num_frames, num_segments, generator))

    return read


def _time_pipeline(
    read: Callable[[Path, int, torch.Generator], torch.Tensor],
    paths: Sequence[Path],
    num_frames: int,
    clips: int,
) -> dict[str, float]:
    """Clips/s of read + augment over ``clips`` clips (round-robin over ``paths``), after one untimed warm-up."""
    transform = build_train_transform(input_size=224)
    generator = torch.Generator().manual_seed(0)
    transform(read(paths[0], num_frames, generator), generator)
    decode_cpu = 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    for index in range(clips):
        before = time.process_time()
        frames = read(paths[index % len(paths)], num_frames, generator)
        decode_cpu += time.process_time() - before
        video = transform(frames, generator)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if video.shape[0] != num_frames:
        raise AssertionError(f"pipeline returned {video.shape[0]} frames, expected {num_frames}")
    return {
        "clips_per_cpu_sec": clips / max(cpu, 1e-9), "cpu_ms_per_clip": 1000 * cpu / clips,
        "decode_cpu_ms": 1000 * decode_cpu / clips, "augment_cpu_ms": 1000 * (cpu - decode_cpu) / clips,
        "clips_per_sec": clips / elapsed, "ms_per_clip": 1000 * elapsed / clips,
    }  # fmt: skip


def _file_backends(backends: list[str] | None) -> tuple[list[str], dict[str, str]]:
    installed = [b for b in available_backends() if b != "frames"]
    wanted = backends or ["pyav", "torchcodec", "decord"]
    unavailable = {b: "not installed or not usable here" for b in wanted if b not in installed}
    return [b for b in wanted if b in installed], unavailable


def _size_mb(paths: Sequence[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def run_data_benchmark(
    work_dir: Path,
    num_videos: int = 4,
    seconds: float = 10.0,
    num_frames: int = 16,
    backends: list[str] | None = None,
    clips_per_measurement: int | None = None,
) -> dict:
    """Generate, prepare and time; returns a JSON-able dict (see ``format_data_benchmark``)."""
    work_dir = Path(work_dir)
    clips = clips_per_measurement or max(16, 4 * num_videos)
    for stale in [*work_dir.glob("original/clip_*.mp4"), *work_dir.glob("prepared/clip_*.mp4")]:
        stale.unlink()  # only our own clips: ones of another size would skew both timings
    sources = make_benchmark_videos(work_dir / "original", num_videos, seconds)
    options = PrepareOptions()
    clip_list = write_video_list(work_dir / "bench_clips.txt", [(p.name, 0) for p in sources])
    report = prepare_dataset(
        work_dir / "original", work_dir / "prepared", [clip_list], workers=1, options=options, progress=False
    )
    if report.failed:
        raise RuntimeError(f"prepare failed on generated clips: {report.failed}")
    prepared = [work_dir / "prepared" / p.name for p in sources]
    names, unavailable = _file_backends(backends)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as in one DataLoader worker
    try:
        rows = []
        for clip_set, paths in (("original", sources), ("prepared", prepared)):
            rows.append(
                {
                    "pipeline": "naive",
                    "clips": clip_set,
                    **_time_pipeline(naive_clip, paths, num_frames, clips),
                }
            )
            for name in names:
                timing = _time_pipeline(backend_clip(name), paths, num_frames, clips)
                rows.append({"pipeline": name, "clips": clip_set, **timing})
    finally:
        torch.set_num_threads(threads)
    return {
        "config": {
            "num_videos": num_videos, "seconds": seconds, "fps": FPS, "resolution": f"{WIDTH}x{HEIGHT}",
            "source_gop": SOURCE_GOP, "prepared_gop": options.gop, "num_frames": num_frames,
            "clips_per_measurement": clips, "torch_threads": 1, "decoder_threads": 1,
        },
        "prepare": {"seconds": report.seconds, "videos": report.transcoded + report.skipped_existing,
                    "source_mb": _size_mb(sources), "prepared_mb": _size_mb(prepared)},
        "rows": rows,
        "speedup_vs_naive": _speedups(rows),
        "goals": _goals(rows),
        "unavailable": unavailable,
    }  # fmt: skip


def _speedups(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per clip set: each backend's clips/s divided by the naive pipeline's on the same clips."""
    naive = {r["clips"]: r["clips_per_cpu_sec"] for r in rows if r["pipeline"] == "naive"}
    result: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["pipeline"] != "naive":
            result.setdefault(r["clips"], {})[r["pipeline"]] = r["clips_per_cpu_sec"] / naive[r["clips"]]
    return result


def _goals(rows: list[dict]) -> list[dict]:
    """The two acceptance goals, judged on the best installed backend."""
    speedups = _speedups(rows).get("original", {})
    prepared = {
        r["pipeline"]: r["clips_per_cpu_sec"]
        for r in rows
        if r["clips"] == "prepared" and r["pipeline"] != "naive"
    }
    goals = []
    if speedups:
        best = max(speedups, key=speedups.get)
        goals.append({"name": "speed-up vs naive on originals", "backend": best, "value": speedups[best],
                      "target": GOAL_VS_NAIVE, "met": speedups[best] >= GOAL_VS_NAIVE})  # fmt: skip
    if prepared:
        best = max(prepared, key=prepared.get)
        goals.append({"name": "clips/s per core on prepared clips", "backend": best, "value": prepared[best],
                      "target": GOAL_PREPARED_CLIPS_PER_SEC, "met": prepared[best] >= GOAL_PREPARED_CLIPS_PER_SEC})  # fmt: skip
    return goals


def format_data_benchmark(result: dict) -> str:
    """Human-readable table of a ``run_data_benchmark`` result."""
    cfg, prep = result["config"], result["prepare"]
    lines = [
        f"data pipeline benchmark: {cfg['num_videos']} × {cfg['seconds']:g} s {cfg['resolution']} h264 clips "
        f"(GOP {cfg['source_gop']} → prepared GOP {cfg['prepared_gop']}), {cfg['num_frames']} frames/clip, "
        f"1 torch thread, 1 decoder thread, {cfg['clips_per_measurement']} clips per measurement",
        f"prepare: {prep['videos']} videos in {prep['seconds']:.1f} s ({prep['source_mb']:.1f} MB → "
        f"{prep['prepared_mb']:.1f} MB)",
        "",
        f"{'pipeline':<12}{'clips':<10}{'clips/cpu-s':>12}{'cpu ms':>8}{'decode':>8}{'augment':>9}{'vs naive':>10}"
        f"{'wall clips/s':>14}",
    ]
    speedups = result["speedup_vs_naive"]
    for row in result["rows"]:
        ratio = 1.0 if row["pipeline"] == "naive" else speedups[row["clips"]][row["pipeline"]]
        lines.append(
            f"{row['pipeline']:<12}{row['clips']:<10}{row['clips_per_cpu_sec']:>12.1f}{row['cpu_ms_per_clip']:>8.1f}"
            f"{row['decode_cpu_ms']:>8.1f}{row['augment_cpu_ms']:>9.1f}{ratio:>9.2f}×{row['clips_per_sec']:>14.1f}"
        )
    lines.append("")
    for goal in result["goals"]:
        verdict = "met" if goal["met"] else "NOT met"
        lines.append(
            f"goal {goal['name']} ({goal['backend']}): {goal['value']:.2f} (target ≥ {goal['target']:g}) {verdict}"
        )
    for backend, reason in result["unavailable"].items():
        lines.append(f"{backend}: skipped ({reason})")
    return "\n".join(lines)
