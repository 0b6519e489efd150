"""Protocol results and the paper-layout tables: what a protocol run writes (results.json, results.md) and reads.

Each result carries the accuracy of the model after the **last** epoch (vificlip's default, what the paper's
tables report) and, where training evaluated it, the **best evaluated epoch** (what the authors' logs call
``max_accuracy``: the best validation top-1 seen during training). The tables label both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .config_schema import ConfigError
from .runs import RESULTS_FILE, read_json

# The protocols and their table titles: every list of protocol names (CLI choices, the demo) derives from this.
TITLES = {"zeroshot": "Zero-shot (top-1, mean ± std over 3 splits)", "base2novel": "Base-to-novel (Base / Novel / HM)",
          "fewshot": "Few-shot (all-way K-shot, top-1)", "supervised": "Fully supervised"}  # fmt: skip
PROTOCOLS = tuple(TITLES)
BEST_SUFFIX = ", best evaluated epoch"
BEST_NOTE = (f"Rows without a suffix: the model after the last epoch (vificlip's default). Rows marked "
             f"'{BEST_SUFFIX.lstrip(', ')}': the best validation top-1 during training, at the epoch it was reached "
             "(the authors' max_accuracy; base classes only for base-to-novel).")  # fmt: skip


@dataclasses.dataclass
class ProtocolResult:
    """One table row (more with WiSE-FT or a best epoch): ``cells`` maps a column title to its text;
    ``summary`` the numbers (``summary["best"]``: the best evaluated epoch per sub-run, when known)."""

    protocol: str
    method: str
    input: str
    cells: dict[str, str]
    summary: dict
    runs: list[dict]
    wise_cells: dict[str, str] | None = None
    best_cells: dict[str, str] | None = None

    def rows(self) -> list[tuple[str, str, dict[str, str]]]:
        rows = [(self.method, self.input, self.cells)]
        if self.best_cells:
            rows.append((f"{self.method}{BEST_SUFFIX}", self.input, self.best_cells))
        if self.wise_cells is not None:
            rows.append(
                (f"{self.method} + WiSE-FT (α={self.summary['wise_alpha']:g})", self.input, self.wise_cells)
            )
        return rows


def best_epoch(evals: Sequence[dict]) -> dict | None:
    """The first epoch with the highest top-1 among a training's per-epoch evaluations (the authors'
    ``max_accuracy``), with the last epoch's beside it; ``None`` when training evaluated nothing."""
    rows = [r for r in evals if isinstance(r.get("epoch"), int) and "views" not in r]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["top1"])  # max keeps the first of equal values
    return {"epoch": best["epoch"], "top1": best["top1"], "top5": best.get("top5"), "last_epoch": rows[-1]["epoch"],
            "last_top1": rows[-1]["top1"]}  # fmt: skip


def markdown_table(results: Sequence[ProtocolResult]) -> str:
    """One table per protocol in the paper's layout: a row per method and input, a column per dataset."""
    out = []
    for protocol in dict.fromkeys(r.protocol for r in results):
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for result in (r for r in results if r.protocol == protocol):
            for method, size, cells in result.rows():
                rows.setdefault((method, size), {}).update(cells)
        columns = list(dict.fromkeys(c for cells in rows.values() for c in cells))
        lines = [f"### {TITLES[protocol]}", "", "| Method | Input | " + " | ".join(columns) + " |",
                 "|---|---|" + "---|" * len(columns)]  # fmt: skip
        lines += [f"| {m} | {s} | " + " | ".join(cells.get(c, "–") for c in columns) + " |"
                  for (m, s), cells in rows.items()]  # fmt: skip
        if any(m.endswith(BEST_SUFFIX) for m, _ in rows):
            lines += ["", BEST_NOTE]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def load_result(path: Path) -> ProtocolResult:
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{path}: no {RESULTS_FILE} (not a protocol run folder)")
    data = read_json(file)
    fields = {f.name: f for f in dataclasses.fields(ProtocolResult)}
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    if not isinstance(data, dict) or set(data) - set(fields) or set(required) - set(data):
        raise ConfigError(f"{file}: not a protocol result; expected a JSON object with the fields "
                          f"{', '.join(required)} (as `vificlip run` writes)")  # fmt: skip
    return ProtocolResult(**data)


def merge_reports(paths: Sequence[Path]) -> str:
    """``vificlip report``: the tables of several protocol runs merged (rows by method, columns by dataset)."""
    return markdown_table([load_result(p) for p in paths])
