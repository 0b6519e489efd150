"""``make gpu-check``: is this machine's GPU ready for the paper's runs? One script, one table, ≤ 8 minutes.

1. ``vificlip benchmark`` at the paper's sizes (ViT-B/16, 16 frames, 400 classes; bf16 autocast, fused AdamW;
   inference batch 32, training batch 16), with ``torch.compile`` off and on;
2. a CUDA train → kill → resume → eval on the synthetic benchmark (tiny CLIP), beside an uninterrupted run of the
   same config: the resumed run must finish, and its weights are compared with the uninterrupted ones;
3. ``torchrun`` with one GPU: an NCCL process group with DDP doing one training step, and ``vificlip train``
   under the launcher;
4. ``vificlip benchmark serve`` with the model on the GPU: throughput at 8 clients over 1, on a machine with the
   cores that the 2-core development machine lacks.

Every step runs as a subprocess of the CLI (what a user runs), so a crash is a failed row, not a lost table. On a
machine without CUDA it says so and exits 0 (CI stays green); ``--device cpu`` runs the same steps at tiny sizes as
a smoke test of this script (not a GPU check).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PAPER = ["--arch", "ViT-B/16", "--frames", "16", "--batch", "32", "--train-batch", "16", "--classes", "400"]
SMOKE = ["--arch", "tiny", "--frames", "4", "--batch", "2", "--train-batch", "2", "--classes", "8", "--steps", "2",
         "--warmup", "1"]  # fmt: skip
STEP_TIMEOUT_S = 300


@dataclasses.dataclass
class Row:
    check: str
    ok: bool
    figures: str
    seconds: float


def _cli(
    args: list[str], timeout: float = STEP_TIMEOUT_S, launcher: list[str] | None = None
) -> tuple[int, str]:
    """Run ``vificlip ARGS`` (optionally under a launcher); (exit status, combined output)."""
    command = [*(launcher or [sys.executable]), "-m", "vificlip", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return 124, f"timed out after {timeout:.0f} s: {exc.output or ''}"
    return done.returncode, done.stdout + done.stderr


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "(no output)"


def check_benchmark(device: str, compile_: bool) -> Row:
    tick = time.perf_counter()
    sizes = PAPER if device.startswith("cuda") else SMOKE
    status, out = _cli(
        ["benchmark", "model", *sizes, "--device", device, "--json", *(["--compile"] * compile_)]
    )
    name = f"benchmark, compile {'on' if compile_ else 'off'}"
    if status != 0:
        return Row(name, False, _last_line(out), time.perf_counter() - tick)
    result, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])  # warnings may follow the JSON
    opt, speed = result["optimised"], result["speedup"]
    figures = (f"{opt['inference']['videos_per_s']:.1f} videos/s, {opt['training']['clips_per_s']:.1f} clips/s "
               f"({opt['settings']}); optimised/naive {speed['inference']:.2f}× / {speed['training']:.2f}×")  # fmt: skip
    if "mfu" in result:
        figures += f"; MFU training {result['mfu']['optimised_training']:.1%}"
    return Row(name, True, figures, time.perf_counter() - tick)


def check_serve(device: str) -> Row:
    tick = time.perf_counter()
    small = [] if device.startswith("cuda") else ["--requests", "8", "--clients", "2", "--rounds", "1"]
    status, out = _cli(["benchmark", "serve", "--device", device, "--json", *small])
    if status != 0:
        return Row("serve under load", False, _last_line(out), time.perf_counter() - tick)
    result, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    single = sum(r["single"]["requests_per_s"] for r in result["rounds"]) / len(result["rounds"])
    many = sum(r["concurrent"]["requests_per_s"] for r in result["rounds"]) / len(result["rounds"])
    figures = (f"{single:.0f} → {many:.0f} req/s, {result['clients']} clients / 1: {result['ratio']:.2f}× "
               f"({result['cores']} cores, ceiling {result['ceiling']:.2f}×); errors {result['errors']}; "
               f"RSS change {result['rss_growth_mib']:+.0f} MiB")  # fmt: skip
    return Row("serve under load", result["errors"] == 0, figures, time.perf_counter() - tick)


def _train_config(out: Path, device: str) -> Path:
    """A short synthetic-benchmark run (the demo's ViFi-CLIP row on Synthetic-K), saving every optimiser step."""
    from ..data.synthetic_benchmark import ensure_benchmark
    from ..engine.config import apply_overrides, config_from_dict, to_dict, to_yaml
    from ..tools.demo import DemoPlan, build_config

    plan = DemoPlan(out, quick=True, device=device)
    bench = ensure_benchmark(out / "benchmark", plan.benchmark_seed, plan.size)
    cfg = build_config(plan, bench, "zeroshot", "vifi")
    data = apply_overrides(to_dict(cfg), {"train.epochs": 4, "train.eval_freq": 4, "train.save_every_steps": 1,
                                          "protocol.targets": [], "protocol.target_roots": {}})  # fmt: skip
    path = out / "train.yaml"
    path.write_text(to_yaml(config_from_dict(data)))
    return path


def _kill_after_first_checkpoint(args: list[str], run_dir: Path, timeout: float) -> str:
    from ..engine.runs import read_pointer

    process = subprocess.Popen([sys.executable, "-m", "vificlip", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        pointer = read_pointer(run_dir)
        if pointer is not None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return f"killed at {pointer.get('dir', '?')}"
        time.sleep(0.05)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return "no checkpoint before the timeout"
    return "finished before it could be killed"


def _max_weight_difference(a: Path, b: Path) -> float:
    from ..engine.runs import MODEL_FILE, pointer_dir
    from ..model.loading import load_model

    x, y = (load_model(pointer_dir(p) / MODEL_FILE).state_dict() for p in (a, b))
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def check_resume(out: Path, device: str) -> Row:
    tick = time.perf_counter()
    config = _train_config(out, device)
    whole, killed = out / "uninterrupted", out / "resumed"
    status, log = _cli(["train", str(config), "--output", str(whole), "--device", device])
    if status != 0:
        return Row(
            "train → kill → resume → eval",
            False,
            f"uninterrupted run: {_last_line(log)}",
            time.perf_counter() - tick,
        )
    how = _kill_after_first_checkpoint(["train", str(config), "--output", str(killed), "--device", device], killed,
                                       STEP_TIMEOUT_S)  # fmt: skip
    status, log = _cli(
        ["train", str(config), "--output", str(killed), "--device", device, "--resume", "auto"]
    )
    if status != 0 or not how.startswith("killed"):
        return Row(
            "train → kill → resume → eval",
            False,
            f"{how}; resume: {_last_line(log)}",
            time.perf_counter() - tick,
        )
    status, log = _cli(["eval", str(config), "--checkpoint", str(killed), "--device", device])
    diff = _max_weight_difference(whole, killed)
    figures = f"{how}; resumed eval: {_last_line(log)}; largest weight difference vs uninterrupted {diff:.3g}"
    return Row("train → kill → resume → eval", status == 0, figures, time.perf_counter() - tick)


def check_torchrun(out: Path, device: str) -> Row:
    tick = time.perf_counter()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    probe = subprocess.run([*launcher, "-m", "vificlip.tools.gpu_check", "--ddp-probe", "--device", device],
                           capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
    config = out / "train.yaml"
    status, log = _cli(["train", str(config), "--output", str(out / "torchrun"), "--device", device,
                        "--set", "train.save_every_steps=0"], launcher=launcher)  # fmt: skip
    ok = probe.returncode == 0 and status == 0
    figures = f"DDP probe: {_last_line(probe.stdout + probe.stderr)}; vificlip train: {_last_line(log)}"
    return Row("torchrun, 1 process", ok, figures, time.perf_counter() - tick)


def ddp_probe(device: str) -> int:
    """Under torchrun: a process group (NCCL on CUDA), DDP around a tiny ViFiCLIP, one all-reduced training step."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ..model.vificlip import ViFiCLIP
    from .benchmark import resolve_arch

    cuda = device.startswith("cuda")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if cuda else "gloo")
    model = ViFiCLIP.from_arch(resolve_arch("tiny")).to(dev)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cuda)
    video = torch.randn(2, 2, 3, model.arch.image_size, model.arch.image_size, device=dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
        loss = ddp(video, ["a", "b"]).logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    total = torch.ones(1, device=dev)
    dist.all_reduce(total)
    print(
        f"backend {dist.get_backend()}, world {dist.get_world_size()}, all-reduce {total.item():g}, loss {loss.item():.4f}"
    )
    dist.destroy_process_group()
    return 0


def _guarded(name: str, check) -> Row:
    """A check that raises is a failed row with the error, never a lost table."""
    tick = time.perf_counter()
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return Row(name, False, f"{type(exc).__name__}: {str(exc)[:150]}", time.perf_counter() - tick)


def format_table(rows: list[Row], header: str) -> str:
    lines = [header, "", "| check | ok | figures | s |", "|---|---|---|---|"]
    lines += [f"| {r.check} | {'yes' if r.ok else 'NO'} | {r.figures.replace('|', '/')} | {r.seconds:.0f} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vificlip.tools.gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke run")
    parser.add_argument("--out", help="work folder (default: a temporary one)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--ddp-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_probe:
        return ddp_probe(args.device)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device (torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
              "nothing to check here. Run `make gpu-check` on a machine with a GPU.")  # fmt: skip
        return 0
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU (smoke run)"
    with tempfile.TemporaryDirectory(prefix="vificlip-gpu-check-") as scratch:
        out = Path(args.out or scratch)
        checks = [("benchmark, compile off", lambda: check_benchmark(args.device, False)),
                  ("benchmark, compile on", lambda: check_benchmark(args.device, True)),
                  ("train → kill → resume → eval", lambda: check_resume(out, args.device)),
                  ("torchrun, 1 process", lambda: check_torchrun(out, args.device)),
                  ("serve under load", lambda: check_serve(args.device))]  # fmt: skip
        rows = [_guarded(name, check) for name, check in checks]
    print(format_table(rows, f"### gpu-check on {name}, torch {torch.__version__}"))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1) + "\n")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
