"""Dependencies point one way: a module may import only modules of its own or a lower rank.

errors/tolerances/progress -> network/domain -> verdicts/exact -> io, bounds, search -> milp,
bab -> stability -> rewrite -> verify -> api, testing -> report -> cli (the engine never imports
testing; testing's soak checks drive the engine). The IR (network, domain, verdicts)
depends on numpy only, and ONNX stays inside io/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "exactcomp"

RANK = {
    "errors": 0,
    "tolerances": 0,
    "progress": 0,
    "solver": 0,
    "network": 1,
    "conv": 1,
    "domain": 1,
    "exact": 2,
    "verdicts": 2,
    "io": 3,
    "bounds": 3,
    "search": 3,
    "testing": 8,
    "regions": 4,
    "milp": 4,
    "bab": 4,
    "stability": 5,
    "rewrite": 6,
    "verify": 7,
    "api": 8,
    "approx": 8,
    "report": 9,
    "cli": 10,
    "__main__": 11,
    "__init__": 11,
}
NUMPY_ONLY = {"network", "conv", "domain", "verdicts", "exact", "errors", "tolerances", "progress"}


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(target, level) of every import in ``path``: level 0 absolute, >0 relative."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.module or "", 0))
            else:
                base = node.module or ""
                names = [a.name for a in node.names] if not base else [base]
                out += [(n, node.level) for n in names]
    return out


def _internal_target(path: Path, target: str, level: int) -> str | None:
    if level == 0:
        if target.startswith("exactcomp."):
            return target.split(".")[1]
        return None
    here = path.relative_to(PKG).parts[:-1]  # package parts of the importing module
    up = here[: len(here) - (level - 1)] if level > 1 else here
    parts = list(up) + target.split(".")
    return parts[0] if parts else None


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_one_way(path: Path) -> None:
    me = _top(path)
    assert me in RANK, f"add {me} to the layering table"
    for target, level in _imports(path):
        dep = _internal_target(path, target, level)
        if dep is None or dep == me:
            continue
        dep = dep.removesuffix(".py")
        assert dep in RANK, f"{path.name} imports unknown internal module {dep}"
        assert RANK[dep] <= RANK[me], f"{path.relative_to(PKG)} ({me}) must not import {dep}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_third_party_imports_stay_in_place(path: Path) -> None:
    me = _top(path)
    for target, level in _imports(path):
        if level:
            continue
        root = target.split(".")[0]
        if me in NUMPY_ONLY:
            assert root in {"numpy", "__future__"} or root in _STDLIB, f"{path.name} imports {root}"
        if root == "onnx" or root == "onnxruntime":
            assert me == "io", f"{path.relative_to(PKG)} imports {root}; ONNX belongs in io/"


_STDLIB = {
    "collections",
    "dataclasses",
    "enum",
    "fractions",
    "json",
    "math",
    "pathlib",
    "types",
    "typing",
    "warnings",
    "functools",
    "itertools",
    "abc",
}
