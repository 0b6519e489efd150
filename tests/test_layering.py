"""One-way imports (STYLE.md §2): cli → serve → tools → engine → {model, data}; model and data never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vificlip"

# layer -> layers it must never import
FORBIDDEN = {
    "model": {"data", "engine", "tools", "serve", "cli"},
    "data": {"model", "engine", "tools", "serve", "cli"},
    "engine": {"tools", "serve", "cli"},
    "tools": {"serve", "cli"},
    "serve": {"cli"},
}


def imported_layers(path: Path) -> set[str]:
    """Top-level vificlip subpackages a module imports (absolute or relative)."""
    layer_depth = len(path.relative_to(PACKAGE).parts) - 1  # 1 for vificlip/model/x.py
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("vificlip."):
                layers.add(node.module.split(".")[1])
            elif (
                node.level > layer_depth and node.module
            ):  # e.g. `from ..data import x` inside vificlip/model/
                layers.add(node.module.split(".")[0])
            elif node.level > layer_depth:
                layers.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            layers.update(a.name.split(".")[1] for a in node.names if a.name.startswith("vificlip."))
    return layers


def test_imports_point_one_way() -> None:
    violations = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            bad = imported_layers(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_checker_sees_relative_imports() -> None:
    # model/text.py does `from ..errors import VificlipError` and `from .x import` only within model/.
    assert imported_layers(PACKAGE / "model" / "text.py") == {"errors"}
    assert imported_layers(PACKAGE / "tools" / "predict.py") >= {"data", "model", "errors"}
