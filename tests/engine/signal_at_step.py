"""Run the `vificlip` CLI, pausing or signalling itself right after optimiser step STEP is logged (a test helper).

    python signal_at_step.py STEP park  -- train CONFIG ...   # print "parked" and wait for a signal from outside
    python signal_at_step.py STEP TERM  -- train CONFIG ...   # send SIGTERM to itself (rank RANK_ONLY, if set)

Works under torchrun too (each rank runs this file). Deterministic: the signal arrives at a known step.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from vificlip.cli import main
from vificlip.engine import logging as engine_logging
from vificlip.engine import stop as stop_module

step, mode = int(sys.argv[1]), sys.argv[2]
args = sys.argv[sys.argv.index("--") + 1 :]
received: list[int] = []
real_handle = stop_module.StopSignals._handle
real_write = engine_logging.MetricsWriter.write


def handle(self, signum, frame):
    received.append(signum)
    real_handle(self, signum, frame)


def write(self, kind, at, values):  # called on every rank (the writer itself is a no-op off rank 0)
    real_write(self, kind, at, values)
    if kind != "train" or at != step:
        return
    if mode == "park":
        print("parked", flush=True)
        while not received:
            time.sleep(0.01)
    elif os.environ.get("RANK_ONLY", os.environ.get("RANK", "0")) == os.environ.get("RANK", "0"):
        os.kill(os.getpid(), getattr(signal, f"SIG{mode}"))


stop_module.StopSignals._handle = handle
engine_logging.MetricsWriter.write = write
sys.exit(main(args))
