"""Timing and memory on any device for ``vificlip benchmark``: seconds per call, peak memory, the matmul peak."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type != "cpu" and hasattr(torch, "accelerator"):
        torch.accelerator.synchronize(device)


def time_per_call(fn: Callable[[], object], device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per call of ``fn``: CUDA events on CUDA (no host-side gaps counted), a wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000 / steps
    begin = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - begin) / steps


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak allocated accelerator memory since the last reset; None on the CPU (no allocator statistics)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def matmul_tflops(device: torch.device, steps: int = 10) -> tuple[float, str]:
    """Achieved TFLOP/s of a large square matmul: bf16 8192³ on GPUs (the MFU denominator), fp32 1024³ on CPUs."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_per_call(lambda: a @ b, device, steps, warmup=3)
    return 2 * n**3 / seconds / 1e12, f"{str(dtype).removeprefix('torch.')} {n}³ matmul"
