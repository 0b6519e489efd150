"""Soak: SIGKILL a tiny training run at random moments, ``--resume auto`` after each, compare with an uninterrupted run.

    python benchmarks/soak_resume.py [--kills 20] [--seed 0] [--keep DIR]      (or: make soak)

Cycle i starts ``vificlip train CONFIG --resume auto``, draws a random optimiser step from the i-th twentieth of
the run, waits until the run has logged it, sleeps a random 0…1.5 step-times and sends SIGKILL: the kills spread
over the whole run and land at random moments of it (a step, a checkpoint write, an evaluation, the restore after
a kill), never in Python's start-up. A last ``--resume auto`` finishes the run.

Reports: kills that landed on a live process, restarts that continued the run (from a checkpoint, or from the start
when the kill came before the first one), and whether the final weights and the logged steps equal the
uninterrupted run's. Exit status 0 only when all of it holds. Takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from conftest import write_task  # noqa: E402  (the engine tests' toy task: real clips, lists, a tiny CLIP)

from vificlip.engine import runs  # noqa: E402
from vificlip.engine.config import to_yaml  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
OVERRIDES = {"train.epochs": 8, "train.batch_size": 2, "train.accumulation_steps": 2, "train.save_every_steps": 1,
             "optim.warmup_epochs": 1, "train.print_freq": 1}  # 6 micro-batches, 3 optimiser steps per epoch  # fmt: skip
STARTED = "training videos"  # the trainer's first log line of a run (fresh or resumed)


def command(config: Path) -> list[str]:
    return [sys.executable, "-m", "vificlip", "train", str(config), "--resume", "auto"]


def count_started(run_dir: Path) -> int:
    log = run_dir / "log.txt"
    return log.read_text(encoding="utf-8").count(STARTED) if log.is_file() else 0


def wait_started(process: subprocess.Popen, run_dir: Path, before: int, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if count_started(run_dir) > before:
            return True
        time.sleep(0.01)
    return False


def train_steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in runs.read_metrics(run_dir, "train")]


def wait_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (
        time.monotonic() < deadline and process.poll() is None and max(train_steps(run_dir), default=0) < step
    ):
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.keep or tempfile.mkdtemp(prefix="vificlip-soak-"))
    task = write_task(work / "task")

    reference = task.config(work / "reference", OVERRIDES)
    ref_config = work / "reference.yaml"
    ref_config.write_text(to_yaml(reference))
    tick = time.monotonic()
    process = subprocess.Popen(
        command(ref_config), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_started(process, reference.run_dir, 0)
    started = time.monotonic()
    if process.wait() != 0:
        print("uninterrupted run failed", file=sys.stderr)
        return 1
    run_seconds = time.monotonic() - started
    print(f"uninterrupted run: {started - tick:.1f} s start-up, {run_seconds:.1f} s of training")
    total_steps = reference.train.epochs * 3  # 6 micro-batches of 2, 2 per optimiser step
    step_seconds = run_seconds / total_steps
    slices = [
        round(i * (total_steps - 2) / args.kills) for i in range(args.kills + 1)
    ]  # the last 2 steps: spare

    soaked = task.config(work / "soaked", OVERRIDES)
    config = work / "soaked.yaml"
    config.write_text(to_yaml(soaked))
    landed = continued = from_checkpoint = 0
    failures: list[str] = []
    for cycle in range(1, args.kills + 1):
        before = count_started(soaked.run_dir)
        from_checkpoint += cycle > 1 and runs.latest_checkpoint(soaked.run_dir, resumable=True) is not None
        log = work / f"cycle{cycle:02d}.err"
        with open(log, "w") as err:
            process = subprocess.Popen(command(config), env=ENV, stdout=subprocess.DEVNULL, stderr=err)
            if not wait_started(process, soaked.run_dir, before):
                failures.append(f"cycle {cycle}: exited {process.poll()} before training ({log})")
                break
            continued += 1
            wait_step(
                process,
                soaked.run_dir,
                rng.randint(slices[cycle - 1], max(slices[cycle] - 1, slices[cycle - 1])),
            )
            time.sleep(rng.uniform(0, 1.5 * step_seconds))
            if process.poll() is not None:
                failures.append(f"cycle {cycle}: the run ended (status {process.returncode}) before the kill")
                break
            process.kill()
            process.wait()
            landed += 1
            latest = runs.latest_checkpoint(soaked.run_dir)
            print(f"kill {cycle:2d}: at step {(train_steps(soaked.run_dir) or [0])[-1]:3d}, latest complete "
                  f"checkpoint {latest.name if latest else '(none yet)'}")  # fmt: skip
    # The restart after the last kill finishes the run (its resume counts like the others).
    from_checkpoint += runs.latest_checkpoint(soaked.run_dir, resumable=True) is not None
    final = subprocess.run(command(config), env=ENV, capture_output=True, text=True)
    if final.returncode != 0:
        failures.append(f"final resume failed: {final.stderr.strip().splitlines()[-1:]}")
    restarts = landed  # every kill is followed by one restart (the next cycle or the final run)
    ok_restarts = continued - 1 + (final.returncode == 0)

    want = load_file(str(runs.model_file(reference.run_dir)))
    got = load_file(str(runs.model_file(soaked.run_dir))) if final.returncode == 0 else {}
    same = want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    honest = train_steps(soaked.run_dir) == train_steps(reference.run_dir)
    print(f"soak: {landed}/{args.kills} SIGKILLs landed mid-run; {ok_restarts}/{restarts} restarts with "
          f"--resume auto continued the run ({from_checkpoint} from a checkpoint, the rest from the start, killed "
          f"before the first checkpoint); final weights {'EQUAL' if same else 'DIFFER from'} the uninterrupted run's; "
          f"metrics.jsonl steps {'each logged once' if honest else 'DIFFER'}")  # fmt: skip
    for failure in failures:
        print("  " + failure)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if landed == ok_restarts == restarts == args.kills and same and honest and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
