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


def _module_name(path: Path) -> str:
    parts = ("vificlip", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """vificlip modules a file imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("vificlip"):
                continue
            for alias in node.names:  # `from . import x` names a module; `from .x import y` names a symbol
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("vificlip."))
    return (found & known) - {name}


def import_cycles() -> list[list[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imported_modules(path, set(files)) for name, path in files.items()}
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node, [node])
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle in any package, counting imports inside functions and TYPE_CHECKING blocks."""
    assert import_cycles() == []


def test_cycle_finder_sees_the_prompt_model_edge() -> None:
    files = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    assert "vificlip.model.prompts" in imported_modules(PACKAGE / "model" / "vificlip.py", files)
    assert imported_modules(PACKAGE / "cli" / "__init__.py", files) >= {
        "vificlip.cli.train_cmd",
        "vificlip.errors",
    }


def test_one_file_sha256() -> None:
    """Files are fingerprinted by one function (vificlip/digest.py); no module defines its own."""
    owners = [
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "def file_sha256" in p.read_text()
    ]
    assert owners == ["digest.py"]


MAX_LINES = 400  # the project rule (issue 12): a file longer than this has more than one job; split it


def test_no_python_file_is_over_400_lines() -> None:
    root = PACKAGE.parents[1]
    lengths = {p.relative_to(root).as_posix(): len(p.read_text().splitlines())
               for top in ("src", "tests") for p in (root / top).rglob("*.py")}  # fmt: skip
    assert len(lengths) > 100 and lengths["tests/test_layering.py"] > 100  # the walk sees the whole tree
    offenders = sorted(f"{path} ({n} lines)" for path, n in lengths.items() if n > MAX_LINES)
    assert not offenders, f"over {MAX_LINES} lines: " + ", ".join(offenders)
