"""``vificlip benchmark serve``: the server under load, over loopback, in a separate process.

The server runs as ``vificlip serve`` in a child process (so its resident memory is its own); client threads send
multipart uploads of one small video over keep-alive connections. Per round: N requests with 1 client, then N with
C clients; requests/s, p50/p95 latency, errors, and the server's RSS after the round. The C-vs-1 throughput ratio is
measured within the same run, so it compares like with like on whatever machine runs it.

The ratio also has a ceiling set by the machine, reported beside it: if one client's requests already keep B of the
machine's N cores busy (server and load generator together, from their CPU times), no server can answer more than
N / B times as many per second, however many clients wait. On 2 cores with a CPU model, B is above 1 and the ceiling
below 2; the share of the ceiling reached says how well the server turns concurrency into throughput. (The ceiling
counts CPU only: on a GPU the device may bind first.)
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .server import LOOPBACK, free_port

CLASSES = ("red circle", "blue square", "green star", "yellow triangle", "pink diamond", "orange ring",
           "white cross", "cyan bar", "purple circle", "red square")  # fmt: skip


def _test_video(folder: Path) -> Path:
    import numpy as np

    from ..data.synthetic import render_video
    from ..data.writer import write_video

    frames = render_video(
        "sliding sideways", "red", "circle", "black", np.random.default_rng(0), num_frames=32
    )
    return write_video(folder / "bench.mp4", frames)


def _multipart(video: Path, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{video.name}"\r\n'
                 "Content-Type: video/mp4\r\n\r\n".encode() + video.read_bytes() + b"\r\n")  # fmt: skip
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _wait_healthy(port: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before it was ready")
        try:
            connection = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /api/health within {timeout:.0f} s")


def _load(port: int, body: bytes, content_type: str, requests: int, clients: int, server_pid: int) -> dict:
    """``requests`` POSTs from ``clients`` threads (one keep-alive connection each) → rate, latency, errors, and
    the server's CPU time per request (which, unlike requests/s, does not depend on what else the machine runs)."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body=body, headers={"Content-Type": content_type})
                response = connection.getresponse()
                payload = response.read()
                ok = response.status == 200 and json.loads(payload)["top_k"]
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                ok, payload = False, str(exc).encode()
                connection.close()
                connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - start)
                if not ok:
                    errors.append(payload[:200].decode("utf-8", "replace"))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu_start, client_cpu_start = cpu_seconds(server_pid), time.process_time()  # the clients are this process
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(server_pid) - cpu_start
    client_cpu = time.process_time() - client_cpu_start
    ordered = sorted(latencies)
    return {"clients": clients, "requests": requests, "seconds": round(elapsed, 3),
            "requests_per_s": round(requests / elapsed, 2),
            "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "server_cpu_ms_per_request": round(1000 * cpu / requests, 2),
            "client_cpu_ms_per_request": round(1000 * client_cpu / requests, 2),
            "cores_busy": round((cpu + client_cpu) / elapsed, 2),
            "errors": len(errors), "first_error": errors[0] if errors else None}  # fmt: skip


def machine_ceiling(cores_busy: float, clients: int, cores: int) -> float:
    """The most ``clients`` clients can gain over one on ``cores`` cores, given the cores one client kept busy."""
    return round(min(clients, cores / max(cores_busy, 1e-9)), 2)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_serve_benchmark(checkpoint: str = "synthetic-tiny-clip", requests: int = 64, clients: int = 8,
                        rounds: int = 3, frames: int = 16, warmup: int = 8, device: str = "cpu",
                        server_args: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Start the server, measure ``rounds`` × (1 client, ``clients`` clients), stop it; the result as a dict."""
    with tempfile.TemporaryDirectory(prefix="vificlip-bench-serve-") as scratch:
        video = _test_video(Path(scratch))
        body, content_type = _multipart(video, {"classes": ", ".join(CLASSES), "top_k": "3"})
        port = free_port()
        command = [sys.executable, "-m", "vificlip", "serve", "--checkpoint", checkpoint, "--port", str(port),
                   "--device", device, "--frames", str(frames), *server_args]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            _wait_healthy(port, process)
            _load(
                port, body, content_type, warmup, clients, process.pid
            )  # allocator, caches and thread pools warm
            result_rounds = []
            cores = available_cores()
            for index in range(rounds):
                single = _load(port, body, content_type, requests, 1, process.pid)
                many = _load(port, body, content_type, requests, clients, process.pid)
                result_rounds.append({"round": index + 1, "single": single, "concurrent": many,
                                      "ratio": round(many["requests_per_s"] / single["requests_per_s"], 2),
                                      "ceiling": machine_ceiling(single["cores_busy"], clients, cores),
                                      "server_rss_mib": round(rss_mib(process.pid), 1)})  # fmt: skip
            health = json.loads(_get(port, "/api/health"))
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    rss = [r["server_rss_mib"] for r in result_rounds]
    single_rate = sum(r["single"]["requests"] for r in result_rounds) / sum(
        r["single"]["seconds"] for r in result_rounds
    )
    many_rate = sum(r["concurrent"]["requests"] for r in result_rounds) / sum(
        r["concurrent"]["seconds"] for r in result_rounds
    )
    single_busy = sum(r["single"]["cores_busy"] * r["single"]["seconds"] for r in result_rounds) / sum(
        r["single"]["seconds"] for r in result_rounds
    )
    ceiling = machine_ceiling(single_busy, clients, cores)
    ratio = round(many_rate / single_rate, 2)
    return {"checkpoint": checkpoint, "device": device, "frames": frames, "video": f"{video.name}, {len(body):,} B upload",
            "requests_per_round": requests, "clients": clients, "rounds": result_rounds,
            "ratio": ratio, "cores": cores, "single_cores_busy": round(single_busy, 2), "ceiling": ceiling,
            "share_of_ceiling": round(ratio / ceiling, 2),
            "errors": sum(r["single"]["errors"] + r["concurrent"]["errors"] for r in result_rounds),
            "rss_growth_mib": round(rss[-1] - rss[0], 1), "largest_batch": health["largest_batch"],
            "mean_batch": round(health["requests"] / max(1, health["batches"]), 2)}  # fmt: skip


def _get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    connection.request("GET", path)
    return connection.getresponse().read()


def format_serve_benchmark(result: dict) -> str:
    lines = [f"vificlip serve under load: {result['checkpoint']} on {result['device']}, {result['frames']} frames, {result['video']}, "
             f"{result['requests_per_round']} requests per measurement, over loopback",
             f"{'round':>5}  {'clients':>7}  {'req/s':>7}  {'p50 ms':>7}  {'p95 ms':>7}  {'errors':>6}  {'CPU ms/req':>10}  {'cores busy':>10}  {'server RSS':>10}"]  # fmt: skip
    for r in result["rounds"]:
        for key in ("single", "concurrent"):
            m = r[key]
            rss = f"{r['server_rss_mib']:.0f} MiB" if key == "concurrent" else ""
            lines.append(f"{r['round']:>5}  {m['clients']:>7}  {m['requests_per_s']:>7.1f}  {m['p50_ms']:>7.1f}  "
                         f"{m['p95_ms']:>7.1f}  {m['errors']:>6}  {m['server_cpu_ms_per_request']:>10.1f}  "
                         f"{m['cores_busy']:>10.2f}  {rss:>10}")  # fmt: skip
    lines.append(
        f"throughput {result['clients']} clients / 1 client: {result['ratio']:.2f}× (per round: "
        + ", ".join(f"{r['ratio']:.2f}×" for r in result["rounds"])
        + ")"
    )
    lines.append(f"this machine's ceiling: 1 client kept {result['single_cores_busy']:.2f} of {result['cores']} cores "
                 f"busy (server and load generator), so {result['clients']} clients can gain at most "
                 f"{result['ceiling']:.2f}×; measured {result['share_of_ceiling']:.0%} of it")  # fmt: skip
    lines.append(f"errors: {result['errors']}; server RSS change round 1 → {len(result['rounds'])}: "
                 f"{result['rss_growth_mib']:+.1f} MiB; batches: largest {result['largest_batch']}, "
                 f"mean {result['mean_batch']}")  # fmt: skip
    return "\n".join(lines)
