"""Micro-batching: requests that arrive together share one model call.

The collector takes the first waiting job, then keeps collecting for at most ``window_s`` — but only while other
requests are still on their way (announced, i.e. decoding). A lone client therefore never waits for the window,
and under load the batch fills up while the previous ones run. At most ``workers`` batches run at once, each on its
own thread of ``executor`` (``executor`` needs that many threads); the next batch is collected only once one is
free, so whatever queued meanwhile joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    batches: int = 0
    jobs: int = 0
    largest: int = 0


class MicroBatcher(Generic[T, R]):
    """``await submit(job)`` → ``run(jobs)[i]``; ``run`` returns one result or exception per job, in order."""

    def __init__(
        self,
        run: Callable[[list[T]], list[R | BaseException]],
        executor: Executor,
        window_s: float = 0.005,
        max_batch: int = 16,
        workers: int = 1,
    ) -> None:
        self.run, self.executor = run, executor
        self.window_s, self.max_batch, self.workers = window_s, max_batch, workers
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._announced = 0
        self._running: set[asyncio.Task] = set()

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Mark a request as coming (e.g. while its video decodes) so a batch being collected waits for it."""
        self._announced += 1
        try:
            yield
        finally:
            self._announced -= 1

    async def submit(self, job: T) -> R:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._collect())
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def stop(self) -> None:
        for task in [self._task, *self._running]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        self._running.clear()

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        free = asyncio.Semaphore(self.workers)
        while True:
            await free.acquire()  # a worker is free: what queued meanwhile joins this batch
            batch = [await queue.get()]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if self._announced == 0 or remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(job, future) for job, future in batch if not future.done()]  # cancelled: client gone
            if not live:
                free.release()
                continue
            self.stats.batches += 1
            self.stats.jobs += len(live)
            self.stats.largest = max(self.stats.largest, len(live))
            task = asyncio.create_task(self._dispatch(live, free))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, live: list[tuple[T, asyncio.Future]], free: asyncio.Semaphore) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.run, [job for job, _ in live]
            )
        except Exception as exc:  # the whole call failed: every job of it gets the error
            results = [exc] * len(live)
        finally:
            free.release()
        for (_, future), result in zip(live, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
