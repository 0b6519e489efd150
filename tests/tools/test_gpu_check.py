"""`make gpu-check` without a GPU: a clear message and exit 0; the table lists every row."""

from __future__ import annotations

import torch

from vificlip.tools import gpu_check


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu-check: no CUDA device") and "make gpu-check" in out


def test_the_table_marks_failed_rows():
    rows = [
        gpu_check.Row("benchmark, compile off", True, "1.0 videos/s", 3.2),
        gpu_check.Row("torchrun", False, "x", 1),
    ]
    table = gpu_check.format_table(rows, "### gpu-check")
    assert (
        "| benchmark, compile off | yes | 1.0 videos/s | 3 |" in table
        and "| torchrun | NO | x | 1 |" in table
    )


def test_serve_row_reads_the_load_benchmark() -> None:
    """The row `make gpu-check` adds for the server, run here at a smoke size on the CPU."""
    row = gpu_check.check_serve("cpu")
    assert row.ok, row.figures
    assert "2 clients / 1:" in row.figures and "errors 0" in row.figures and "ceiling" in row.figures
