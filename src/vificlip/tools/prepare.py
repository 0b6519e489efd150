"""``vificlip prepare``: transcode a dataset once into clips that are cheap to sample from.

Kinetics-style sources (h264, a keyframe every ~250 frames) cost a full decode from the last keyframe for every
sampled frame, which no CPU budget can sustain at the GPU's training rate. Prepared clips have:

* short side ``short_side`` (256 = the pipeline's first resize, so training sees the same pixels up to codec loss);
  smaller sources are not upscaled; sides are rounded to even numbers (yuv420p needs it);
* a keyframe every ``gop`` frames (default 8), so reaching any frame decodes at most ``gop − 1`` others; H.264 is
  written with ``tune=fastdecode`` and no B-frames, which makes those decodes cheaper still;
* the same frames at the same frame rate (frame i of the output is frame i of the source; no drops, no dups;
  variable-frame-rate sources are re-timed at their average rate), no audio;
* upright pixels: a source's display rotation (phone videos) is applied to the frames and not written as a tag,
  so every reader sees what a player shows.

Sources are the files :data:`~vificlip.data.video_files.VIDEO_SUFFIXES` names and ``img_*.jpg`` frame folders, as for
``predict`` and ``embed``. A source with fewer frames than its container declares (a half-downloaded file) is
unreadable unless ``allow_truncated`` (``--allow-truncated``) is set; then it is transcoded, and counted.

File names are kept — ``<dst>/<listed path>`` — so the *same annotation files* point into the new root. The
codec follows the container: H.264 (libx264) for .mp4/.avi/.mkv/.mov and the rest, VP9 for .webm (WebM cannot
hold H.264); suffixes whose container holds neither (.gif, .ogv, .dv …) get H.264 in Matroska under the same
name (see ``MUXER_BY_SUFFIX``). With ``--list``, only the listed videos are prepared and they are found like the dataset does
(per-class archives are resolved by basename), so the output is laid out exactly as the lists expect. Frame
folders are copied as they are. Work runs in worker processes, is resumable (finished outputs are skipped;
each output is written to a temp file and moved into place with ``os.replace``), and unreadable sources are
skipped and listed in ``prepare_report.json`` and ``unreadable.txt`` in the destination root.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from ..data.annotations import read_video_list
from ..data.decode import open_video
from ..data.locate import locate_records
from ..data.video_files import expand_videos
from ..data.video_reader import VideoDecodeError
from ..errors import VificlipError

log = logging.getLogger(__name__)

REPORT_NAME = "prepare_report.json"
UNREADABLE_NAME = "unreadable.txt"
# Fast, fixed VP9 settings for .webm targets (SSv2); quality roughly comparable to x264 crf 18-20 at this size.
VP9_OPTIONS = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}


class PrepareError(VificlipError):
    """A source that cannot be transcoded (no video stream, no frames) or bad prepare arguments."""


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    short_side: int = 256
    gop: int = 8  # 16 costs ~1.5x the decode time per 16-frame clip (data benchmark); 8 meets 14 clips/s/core
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 1
    allow_truncated: bool = False  # the decoders' truncation policy (data/video_reader.py)

    def __post_init__(self) -> None:
        if self.short_side < 16 or self.short_side % 2:
            raise PrepareError(f"short_side is {self.short_side}, expected an even number ≥ 16")
        if self.gop < 1:
            raise PrepareError(f"gop is {self.gop}, expected ≥ 1")


@dataclasses.dataclass(frozen=True)
class PrepareJob:
    source: Path
    target: Path
    relative: str


@dataclasses.dataclass
class PrepareReport:
    """What one ``prepare`` run did; ``failed``/``missing`` hold (relative path, reason)."""

    source_root: str
    target_root: str
    options: dict
    total: int = 0
    transcoded: int = 0
    copied: int = 0
    skipped_existing: int = 0
    truncated: list[str] = dataclasses.field(default_factory=list)  # transcoded with missing frames
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    missing: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.total} videos: {self.transcoded} transcoded, {self.copied} frame folders copied, "
            f"{self.skipped_existing} already done, {len(self.failed)} unreadable, {len(self.missing)} missing"
            + (f", {len(self.truncated)} truncated (used with missing frames)" if self.truncated else "")
            + f" ({self.seconds:.1f} s)"
        )


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side is ``short_side`` (never upscale); each side becomes the even number nearest to its
    exact scaled length (yuv420p needs even sides), never above the source side."""
    scale = min(1.0, short_side / min(width, height))
    sides = [min(2 * int(side * scale / 2 + 0.5), side - side % 2) for side in (width, height)]
    return max(2, sides[0]), max(2, sides[1])


# Suffixes whose own container cannot hold H.264 (GIF, Ogg, DV, raw streams): the prepared clip is H.264 in
# Matroska under the same name, so the annotation lists still point at it (decoders probe content, not names).
MUXER_BY_SUFFIX = {".gif": "matroska", ".ogv": "matroska", ".ogg": "matroska", ".dv": "matroska",
                   ".m2v": "matroska", ".y4m": "matroska", ".divx": "avi"}  # fmt: skip


def _encoder(suffix: str, options: PrepareOptions) -> tuple[str, dict[str, str]]:
    if suffix.lower() == ".webm":
        return "libvpx-vp9", {**VP9_OPTIONS, "threads": str(options.threads)}
    # fastdecode (no CABAC, no deblocking) and no B-frames: ~1.5-2x faster seeks + decodes for ~25% larger files.
    return "libx264", {
        "crf": str(options.crf), "preset": options.preset, "tune": "fastdecode", "bf": "0",
        "threads": str(options.threads),
    }  # fmt: skip


def _upright(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` resized to ``width``×``height`` as shown (after its display rotation), rotated upright, yuv420p."""
    turns = round(frame.rotation / 90) % 4
    if not turns:
        return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")
    coded = (height, width) if turns % 2 else (width, height)
    image = frame.reformat(width=coded[0], height=coded[1], format="rgb24", interpolation="BILINEAR")
    upright = np.ascontiguousarray(
        np.rot90(image.to_ndarray(), turns)
    )  # counter-clockwise, as players turn it
    return av.VideoFrame.from_ndarray(upright, format="rgb24").reformat(format="yuv420p")


def _decoded(container, video):
    """Frames in order; the cut-off last packet of a truncated file (allowed by then) is not decoded."""
    for packet in container.demux(video):
        if not packet.is_corrupt:
            yield from packet.decode()


def transcode_video(source: Path, target: Path, options: PrepareOptions) -> tuple[int, int]:
    """Re-encode ``source`` into ``target`` (format from ``target``'s suffix), upright; returns (frames written,
    frames the source's container declares but does not have)."""
    codec, codec_options = _encoder(target.suffix, options)
    with open_video(source, "pyav", allow_truncated=options.allow_truncated) as reader:  # the shared checks
        missing = reader.missing_frames
    with av.open(str(source)) as container:
        if not container.streams.video:
            raise PrepareError(f"{source}: no video stream")
        video = container.streams.video[0]
        video.codec_context.thread_count = options.threads
        rate = video.average_rate or video.guessed_rate or video.base_rate or Fraction(25)
        if video.codec_context.width <= 0 or video.codec_context.height <= 0:
            raise PrepareError(f"{source}: the video stream has no frame size")
        frames = _decoded(container, video)
        first = next(frames, None)
        if first is None:
            raise PrepareError(f"{source}: no frames could be decoded")
        shown = (first.height, first.width) if round(first.rotation / 90) % 2 else (first.width, first.height)
        width, height = output_size(*shown, options.short_side)
        count = 0
        with av.open(str(target), mode="w", format=MUXER_BY_SUFFIX.get(target.suffix.lower())) as output:
            rate = Fraction(rate).limit_denominator(100000)
            stream = output.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = options.gop
            stream.options = codec_options
            for frame in itertools.chain([first], frames):
                resized = _upright(frame, width, height)
                resized.pts, resized.time_base = count, 1 / rate
                count += 1
                output.mux(stream.encode(resized))
            output.mux(stream.encode(None))
    return count, missing


def _temp_path(target: Path) -> Path:
    """Hidden sibling with the same suffix (FFmpeg picks the container from it); a rerun overwrites leftovers."""
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def run_job(job: PrepareJob, options: PrepareOptions) -> tuple[str, str, str]:
    """(status, relative path, detail) for one video; status is done/copied/skipped/failed. Runs in a worker."""
    if job.target.exists():
        return "skipped", job.relative, ""
    job.target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(job.target)
    try:
        if job.source.is_dir():  # a frame folder is already random-access: copy it as it is
            shutil.rmtree(temp, ignore_errors=True)
            shutil.copytree(job.source, temp)
            os.replace(temp, job.target)
            return "copied", job.relative, ""
        frames, missing = transcode_video(job.source, temp, options)
        os.replace(temp, job.target)
        return ("truncated" if missing else "done"), job.relative, str(frames)
    except (av.FFmpegError, OSError, ValueError, PrepareError, VideoDecodeError) as exc:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        return "failed", job.relative, f"{type(exc).__name__}: {exc}"


def plan_jobs(
    source_root: Path, target_root: Path, lists: Sequence[str | Path] = ()
) -> tuple[list[PrepareJob], list[tuple[str, str]]]:
    """Jobs for the listed videos (found as the dataset would find them), or for every video file under the root."""
    if not source_root.is_dir():
        raise PrepareError(f"source root {source_root} is not a directory")
    if source_root.resolve() == target_root.resolve():
        raise PrepareError(f"source and destination are the same folder ({source_root}); choose a new root")
    if not lists:
        paths = [p for p in expand_videos(source_root) if target_root.resolve() not in p.resolve().parents]
        rel = [p.relative_to(source_root).as_posix() for p in paths]
        return [PrepareJob(p, target_root / r, r) for p, r in zip(paths, rel, strict=True)], []
    records = {r.path.as_posix(): r for path in lists for r in read_video_list(path)}  # dedupe across lists
    listed_by_source = {r.source: listed for listed, r in records.items()}
    found, missing = locate_records(list(records.values()), source_root)
    jobs = [
        PrepareJob(r.path, target_root / listed_by_source[r.source], listed_by_source[r.source])
        for r in found
    ]
    return jobs, [(r.path.as_posix(), f"not found under {source_root} ({r.source})") for r in missing]


def _write_report(report: PrepareReport, target_root: Path) -> Path:
    """JSON report plus a plain list of unreadable/missing paths (one per line), both written atomically."""
    target_root.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(report)
    data["failed"] = [{"path": p, "error": e} for p, e in report.failed]
    data["missing"] = [{"path": p, "error": e} for p, e in report.missing]
    for name, text in (
        (REPORT_NAME, json.dumps(data, indent=2) + "\n"),
        (UNREADABLE_NAME, "".join(f"{p}\n" for p, _ in report.failed + report.missing)),
    ):
        temp = target_root / f".{name}.tmp"
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, target_root / name)
    return target_root / REPORT_NAME


def _results(jobs: list[PrepareJob], options: PrepareOptions, workers: int) -> Iterable[tuple[str, str, str]]:
    """Run jobs in-process (1 worker) or in a process pool, yielding results as they finish."""
    if workers <= 1:
        for job in jobs:
            yield run_job(job, options)
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, job, options) for job in jobs]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except BaseException:  # Ctrl-C or a consumer error: do not wait for the whole queue
            for future in futures:
                future.cancel()
            raise


def prepare_dataset(
    source_root: str | Path,
    target_root: str | Path,
    lists: Sequence[str | Path] = (),
    workers: int | None = None,
    options: PrepareOptions | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Transcode every listed video (or every video under ``source_root``) into ``target_root``; see module doc."""
    started = time.perf_counter()
    source_root, target_root = Path(source_root), Path(target_root)
    options = options or PrepareOptions()
    workers = max(1, workers or os.cpu_count() or 1)
    jobs, missing = plan_jobs(source_root, target_root, lists)
    report = PrepareReport(
        str(source_root), str(target_root), dataclasses.asdict(options), total=len(jobs) + len(missing)
    )
    report.missing = missing
    todo = [job for job in jobs if not job.target.exists()]  # resume: finished outputs never reach a worker
    report.skipped_existing = len(jobs) - len(todo)
    counters = {"done": "transcoded", "copied": "copied", "skipped": "skipped_existing"}
    bar = tqdm(total=len(todo), unit="video", desc="prepare", disable=not progress)
    for status, relative, detail in _results(todo, options, min(workers, max(1, len(todo)))):
        if status == "failed":
            report.failed.append((relative, detail))
            log.warning("unreadable, skipped: %s (%s)", relative, detail)
        elif status == "truncated":
            report.transcoded += 1
            report.truncated.append(relative)
        else:
            setattr(report, counters[status], getattr(report, counters[status]) + 1)
        bar.update(1)
    bar.close()
    report.failed.sort()
    report.seconds = time.perf_counter() - started
    _write_report(report, target_root)
    log.info("prepare: %s; report in %s", report.summary(), target_root / REPORT_NAME)
    return report
