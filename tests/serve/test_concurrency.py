"""Several model calls at once: the batcher's worker limit, each pool's torch threads, and attention maps that stay
the same while other requests run through the same model (the served world runs two model workers)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import torch
from conftest import CLASSES, MODEL_WORKERS, OBJECTS

from vificlip.serve.batching import MicroBatcher


def run_batches(workers: int, jobs: int) -> tuple[int, list[list[int]]]:
    """Submit ``jobs`` one by one to a batcher whose calls each last 0.2 s; (most calls seen at once, batches)."""
    state = {"now": 0, "most": 0}
    seen: list[list[int]] = []
    lock = threading.Lock()

    def run(batch: list[int]) -> list[int]:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            seen.append(batch)
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return [j * 10 for j in batch]

    async def scenario() -> list[int]:
        pool = ThreadPoolExecutor(workers)
        batcher = MicroBatcher(run, pool, window_s=0.0, max_batch=1, workers=workers)

        async def one(j: int) -> int:
            await asyncio.sleep(0.01 * j)  # arrive one after another
            return await batcher.submit(j)

        answers = await asyncio.gather(*(one(j) for j in range(jobs)))
        await batcher.stop()
        pool.shutdown()
        return answers

    assert asyncio.run(scenario()) == [j * 10 for j in range(jobs)]
    return state["most"], seen


def test_batcher_runs_as_many_calls_at_once_as_it_has_workers() -> None:
    assert run_batches(workers=1, jobs=3)[0] == 1
    most, seen = run_batches(workers=2, jobs=5)
    assert most == 2  # two calls overlapped, never a third
    assert sorted(j for batch in seen for j in batch) == list(range(5))


def test_each_pool_sets_its_own_torch_threads(service) -> None:
    assert service.decode_pool.submit(torch.get_num_threads).result() == 1
    assert service.model_pool.submit(torch.get_num_threads).result() == service.config.model_threads
    assert service.batcher.workers == MODEL_WORKERS


def test_attention_maps_are_unchanged_by_requests_running_beside_them(server) -> None:
    """The rollout hooks the model's blocks; forwards of other requests on the other model worker must not leak in."""
    looked_at = {"path": "green_star/clip0.mp4", "classes": CLASSES, "attention": True}
    alone = httpx.post(f"{server}/api/predict", json=looked_at, timeout=60).json()
    others = [{"path": f"{c}_{s}/clip{i}.mp4", "classes": CLASSES} for c, s in OBJECTS for i in range(2)] * 3
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: httpx.post(f"{server}/api/predict", json=body, timeout=60).json(),
                                [looked_at, *others, looked_at, looked_at]))  # fmt: skip
    for answer in (answers[0], *answers[-2:]):
        assert answer["attention"] == alone["attention"]
        assert answer["frames"] == alone["frames"]
