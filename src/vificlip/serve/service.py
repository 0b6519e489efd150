"""The loaded model behind the server: micro-batched recognition, attention overlays and index search.

Everything here is transport-free (no HTTP): ``app`` calls these coroutines. The model is loaded once, is touched
only on the model threads, and text features are kept per (template, class list) in a small LRU. Decoding runs in a
thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.labelsets import LABEL_SETS, read_label_set
from ..data.video_reader import VideoDecodeError
from ..digest import file_sha256
from ..errors import VificlipError
from ..model.text import check_class_names, split_class_names
from ..tools.embed_index import EmbeddingIndex, load_index
from ..tools.embed_search import SearchHit, nearest
from ..tools.predict import VIDEO_SUFFIXES, Prediction, load, load_video_tensor
from .batching import MicroBatcher
from .config import ServeConfig
from .errors import RequestError
from .paths import list_videos, resolve_under_root
from .previews import gif_preview, png_data_uri

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One recognition waiting for the model: decoded views [V,T,3,S,S] and its class list."""

    views: torch.Tensor
    classes: tuple[str, ...]


@dataclass
class JobResult:
    probabilities: torch.Tensor  # [C]
    model_ms: float
    batch_size: int


def use_torch_threads(count: int) -> None:
    """A pool thread's initializer: this thread's intra-op thread count. On a thread's first call torch resets the
    count to the last one any thread set; asking first triggers that reset now, so ``count`` stays."""
    torch.get_num_threads()
    torch.set_num_threads(count)


class Service:
    """The recogniser, the optional search index and the pools; build once, then ``await`` the methods."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.root = Path(config.root).resolve() if config.root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise VificlipError(f"--root {config.root}: not a folder")
        self.default_classes = list(check_class_names(read_label_set(config.labels))) if config.labels else []
        self.index: EmbeddingIndex | None = load_index(config.index) if config.index is not None else None
        # The cheap checks above fail before the model loads.
        self.recognizer = load(
            config.checkpoint, base=config.base, num_frames=config.frames, device=config.device
        )
        self.model = self.recognizer.model
        if self.index is not None:
            self._check_index(self.index)
        self.tmp = Path(tempfile.mkdtemp(prefix="vificlip-serve-"))
        # torch's intra-op thread count is per OS thread, so each pool sets its own. One decode spread over the
        # cores mostly waits at barriers (the load benchmark's clip: 7.0–8.7 ms of CPU on 2 threads,
        # 3.3–4.0 ms on one, in two measurements);
        # the pool's threads are the parallelism.
        model_threads = config.model_threads or torch.get_num_threads()
        self.decode_pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode",
                                              initializer=use_torch_threads, initargs=(1,))  # fmt: skip
        self.model_pool = ThreadPoolExecutor(config.model_workers, thread_name_prefix="model",
                                             initializer=use_torch_threads, initargs=(model_threads,))  # fmt: skip
        self.batcher: MicroBatcher[Job, JobResult] = MicroBatcher(
            self._run_batch,
            self.model_pool,
            config.batch_window_ms / 1000,
            config.max_batch,
            config.model_workers,
        )
        self._text: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._text_lock = threading.Lock()
        self._previews: OrderedDict[int, bytes] = OrderedDict()
        self._warm_up()
        self.started = time.time()

    @torch.no_grad()
    def _warm_up(self) -> None:
        """One tiny forward of each tower at start-up, so the first request does not pay for lazy initialisation."""
        size = self.model.arch.image_size
        clip = torch.zeros(1, 1, 3, size, size, device=self.recognizer.device)
        with self.recognizer._autocast():
            self.model.encode_video(clip)
            if self.default_classes:  # also proves every --labels prompt fits the text tower
                self._text_features(tuple(self.default_classes))
            else:
                self.model.encode_text(["warm up"])

    def _check_index(self, index: EmbeddingIndex) -> None:
        width = self.model.arch.embed_dim
        if len(index) and index.embeddings.shape[-1] != width:
            raise VificlipError(f"--index was made by a model with {index.embeddings.shape[-1]}-d embeddings; "
                                f"--checkpoint gives {width}-d: pass the checkpoint that made the index")  # fmt: skip
        if index.model.get("sha256") != file_sha256(self.recognizer.source):  # the weights load() resolved
            log.warning(
                "--index was made with another checkpoint than --checkpoint: search scores may mean little"
            )

    async def close(self) -> None:
        await self.batcher.stop()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.model_pool.shutdown(wait=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- class lists ------------------------------------------------------------------------------------
    def class_list(self, classes: str | list[str] | None, labels: str | None) -> tuple[str, ...]:
        """Typed names (``"a, b"`` / ``["a", "b"]``), else a bundled set by name, else the server's --labels."""
        if classes is not None and labels is not None:
            raise RequestError("classes", "give classes or labels, not both")
        if classes is not None:
            names = (
                split_class_names(classes) if isinstance(classes, str) else [str(c).strip() for c in classes]
            )
        elif labels is not None:
            if labels not in LABEL_SETS:
                raise RequestError(
                    "labels", f"{labels!r} is not a bundled label set ({', '.join(LABEL_SETS)})"
                )
            names = read_label_set(labels)
        elif self.default_classes:  # the server's own --labels: checked at start-up, no request limit
            return tuple(self.default_classes)
        else:
            raise RequestError("classes", "the class list is empty; type class names or choose a label set")
        limit = self.config.max_classes
        if len(names) > limit:
            raise RequestError(
                "classes", f"{len(names):,} class names; this server takes at most {limit:,}", 413
            )
        long = next((n for n in names if len(n) > self.config.max_class_chars), None)
        if long is not None:
            raise RequestError(
                "classes",
                f"a class name is {len(long)} characters long; at most {self.config.max_class_chars}",
            )
        try:
            return check_class_names(names)
        except VificlipError as exc:
            raise RequestError("classes", str(exc)) from None

    def labels(self) -> dict:
        return {
            "default": self.config.labels,
            "default_classes": self.default_classes,
            "sets": list(LABEL_SETS),
        }

    def label_set(self, name: str) -> list[str]:
        if name not in LABEL_SETS:
            raise RequestError("name", f"{name!r} is not a bundled label set ({', '.join(LABEL_SETS)})", 404)
        return read_label_set(name)

    def videos(self, limit: int = 1000) -> list[str]:
        return list_videos(self.root, VIDEO_SUFFIXES, limit) if self.root is not None else []

    def video_path(self, relative: str) -> Path:
        return resolve_under_root(self.root, relative)

    # ---- recognition ------------------------------------------------------------------------------------
    def _decode(self, path: Path, frames: int, part: str, num_frames: int | None = None, num_crops: int | None = None,
                normalization: str | None = None) -> torch.Tensor:  # fmt: skip
        r = self.recognizer
        try:
            return load_video_tensor(path, frames, r.model.arch.image_size, num_crops or r.num_crops,
                                     normalization or r.normalization, r.backend)  # fmt: skip
        except (VideoDecodeError, ValueError, IndexError) as exc:
            reason = exc.reason if isinstance(exc, VideoDecodeError) else f"{type(exc).__name__}: {exc}"
            reason = (
                reason.replace(f"'{path}'", "").replace(str(path), "").rstrip(": ")
            )  # the temp name means nothing
            raise RequestError(part, f"cannot decode the video ({reason})") from None

    async def decode(self, path: Path, frames: int, part: str, **pipeline) -> tuple[torch.Tensor, float]:
        """Decoded views off the event loop, and the milliseconds it took."""
        start = time.perf_counter()
        views = await asyncio.get_running_loop().run_in_executor(
            self.decode_pool, lambda: self._decode(path, frames, part, **pipeline)
        )
        return views, (time.perf_counter() - start) * 1000

    def _text_features(self, classes: tuple[str, ...]) -> torch.Tensor:
        """[C,D] text features, LRU-cached per (template, class list); on a model thread."""
        key = (self.model.template, classes)
        with self._text_lock:  # one encode per new class list, however many model threads ask for it at once
            if key in self._text:
                self._text.move_to_end(key)
                return self._text[key]
            features = self.model.encode_text(classes)
            self._text[key] = features
            while len(self._text) > self.config.text_cache_size:
                self._text.popitem(last=False)
            return features

    @torch.no_grad()
    def _run_batch(self, jobs: list[Job]) -> list[JobResult | BaseException]:
        """One encode_video call per clip shape over every job's views; per job its softmax, averaged over views
        (exactly ``VideoRecognizer.probabilities``, only with the videos of several requests in one batch)."""
        start = time.perf_counter()
        results: list[JobResult | BaseException] = [RuntimeError("not run")] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(tuple(job.views.shape[1:]), []).append(i)
        for members in groups.values():
            texts = {}
            for i in members:  # a class list the text tower refuses fails its own request, not the batch
                try:
                    with self.recognizer._autocast():  # the same dtype as VideoRecognizer's text features
                        texts[i] = self._text_features(jobs[i].classes)
                except VificlipError as exc:
                    results[i] = RequestError("classes", str(exc))
            members = [i for i in members if i in texts]
            if not members:
                continue
            try:
                views = torch.cat([jobs[i].views for i in members]).to(self.recognizer.device)
                with self.recognizer._autocast():
                    features = self.model.encode_video(views)  # [ΣV, D]
                    offset = 0
                    for i in members:
                        count = jobs[i].views.shape[0]
                        logits = self.model.logits(features[offset : offset + count], texts[i])
                        offset += count
                        results[i] = logits.float().softmax(dim=-1).mean(dim=0).cpu()
            except Exception as exc:  # noqa: BLE001 - reported to each request of the group
                log.exception("model call failed")
                for i in members:
                    results[i] = exc
        elapsed = (time.perf_counter() - start) * 1000
        return [r if isinstance(r, BaseException) else JobResult(r, elapsed, len(jobs)) for r in results]

    async def attention(self, views: torch.Tensor) -> tuple[list[str], list[str]]:
        """(frames, rollout overlays) of the first view as PNG data URIs: the rollout on the model thread, the
        PNG encoding in the decode pool, so a page asking for maps holds up other requests' batches no longer."""
        from ..tools.visualize import rollout_overlays

        loop = asyncio.get_running_loop()
        shown, overlays, _ = await loop.run_in_executor(
            self.model_pool, rollout_overlays, self.recognizer, views[:1]
        )
        return await loop.run_in_executor(
            self.decode_pool, lambda: ([png_data_uri(f) for f in shown], [png_data_uri(f) for f in overlays])
        )

    async def predict(self, path: Path, name: str, classes: tuple[str, ...], top_k: int, frames: int | None,
                      attention: bool, part: str) -> dict:  # fmt: skip
        """The ``predict --json`` object for one video, plus timings (and the rollout frames when asked)."""
        frames = frames or self.recognizer.num_frames
        if not 1 <= frames <= self.config.max_frames:
            raise RequestError("frames", f"{frames} frames; expected 1 to {self.config.max_frames}")
        started = time.perf_counter()
        with self.batcher.announce():
            views, decode_ms = await self.decode(path, frames, part)
        result = await self.batcher.submit(Job(views, classes))
        values, rows = result.probabilities.topk(min(top_k, len(classes)))
        prediction = Prediction(name, tuple(classes[i] for i in rows.tolist()), tuple(values.tolist()))
        answer = prediction.to_dict()
        answer["batch_size"] = result.batch_size
        attention_ms = 0.0
        if attention:
            attention_start = time.perf_counter()
            answer["frames"], answer["attention"] = await self.attention(views)
            attention_ms = (time.perf_counter() - attention_start) * 1000
        answer["timings_ms"] = {"decode": round(decode_ms, 2), "model": round(result.model_ms, 2),
                                "attention": round(attention_ms, 2),
                                "total": round((time.perf_counter() - started) * 1000, 2)}  # fmt: skip
        return answer

    # ---- search -----------------------------------------------------------------------------------------
    def _require_index(self) -> EmbeddingIndex:
        if self.index is None:
            raise RequestError("index", "this server was started without --index; search is off", 404)
        return self.index

    def _hits(self, found: list[tuple[int, SearchHit]]) -> list[dict]:
        index = self._require_index()
        return [{"id": row, "path": index.paths[row], "label": hit.label, "score": round(hit.score, 6),
                 "preview": f"/api/preview/{row}.gif"} for row, hit in found]  # fmt: skip

    async def search_text(self, text: str, k: int) -> list[dict]:
        index = self._require_index()
        if not text.strip():
            raise RequestError("text", "the search query is empty")
        if len(text) > self.config.max_class_chars:
            raise RequestError("text", f"{len(text)} characters; at most {self.config.max_class_chars}")

        def run() -> list[tuple[int, SearchHit]]:
            with torch.no_grad():
                query = (
                    self.model.encode_text([text]).float()[0].cpu()
                )  # the query through the prompt template
            return nearest(index, query, k)

        try:
            return self._hits(await asyncio.get_running_loop().run_in_executor(self.model_pool, run))
        except VificlipError as exc:  # e.g. a query longer than the text tower's context
            raise RequestError("text", str(exc)) from None

    async def search_like(self, ids: list[int], k: int) -> list[dict]:
        """Video → video: the mean of these rows' embeddings, the rows themselves left out ("more like these")."""
        index = self._require_index()
        bad = [i for i in ids if not 0 <= i < len(index)]
        if not ids or bad:
            raise RequestError("like", f"expected result ids 0…{len(index) - 1}, got {bad or 'none'}")
        query = index.embeddings[ids].float().mean(0)
        return self._hits(nearest(index, query, k, exclude=sorted(set(ids))))

    def describe_like(self, ids: list[int]) -> str:
        """How a "more like these" query reads on the page: the videos it started from."""
        paths = [self._require_index().paths[i] for i in ids[:3]]
        return "more like " + ", ".join(paths) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")

    async def search_video(self, path: Path, part: str, k: int) -> list[dict]:
        """A video (upload or --root path) decoded with the index's own pipeline, then ranked like text."""
        index = self._require_index()
        model_info = index.model
        views, _ = await self.decode(path, int(model_info.get("num_frames", self.recognizer.num_frames)), part,
                                     num_crops=model_info.get("num_crops"),
                                     normalization=model_info.get("normalization"))  # fmt: skip

        def run() -> torch.Tensor:
            with torch.no_grad(), self.recognizer._autocast():
                return self.model.encode_video(views.to(self.recognizer.device)).float().mean(0).cpu()

        query = await asyncio.get_running_loop().run_in_executor(self.model_pool, run)
        return self._hits(nearest(index, query, k))

    # ---- previews ---------------------------------------------------------------------------------------
    def _render_preview(self, row: int) -> bytes:
        index = self._require_index()
        try:
            return gif_preview(Path(index.root) / index.paths[row], self.recognizer.backend,
                               self.config.preview_frames, self.config.preview_height)  # fmt: skip
        except VideoDecodeError as exc:
            raise RequestError(
                "id", f"indexed video {index.paths[row]!r} cannot be read ({exc})", 404
            ) from None

    async def preview(self, row: int) -> bytes:
        index = self._require_index()
        if not 0 <= row < len(index):
            raise RequestError("id", f"no indexed video {row}; expected 0…{len(index) - 1}", 404)
        if row not in self._previews:
            data = await asyncio.get_running_loop().run_in_executor(
                self.decode_pool, self._render_preview, row
            )
            self._previews[row] = data
            while len(self._previews) > 256:
                self._previews.popitem(last=False)
        return self._previews[row]

    def health(self) -> dict:
        stats = self.batcher.stats
        return {"status": "ok", "checkpoint": str(self.config.checkpoint), "device": str(self.recognizer.device),
                "frames": self.recognizer.num_frames, "index_videos": len(self.index) if self.index else None,
                "root": self.root is not None, "labels": self.config.labels,
                "batches": stats.batches, "requests": stats.jobs, "largest_batch": stats.largest,
                "temp_files": sum(1 for _ in self.tmp.iterdir()), "uptime_s": round(time.time() - self.started, 1),
                "limits": {"max_upload_bytes": self.config.max_upload_bytes, "max_classes": self.config.max_classes,
                           "max_frames": self.config.max_frames, "max_results": self.config.max_results}}  # fmt: skip
