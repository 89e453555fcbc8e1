"""Structural rules checked by reading the source (``ast``), beside ``test_layering.py``.

- No test sleeps: a test of a time limit advances a fake clock
  (:class:`exactcomp.testing.clock.FakeClock`) and waits on events, never on wall time.
- Every exactcomp module that reads the clock does it through ``import time`` and is listed in
  ``exactcomp.testing.clock.CLOCKED``, so that the fake clock reaches it.
- ``benchmarks/`` uses exactcomp only through its API: the top-level package, ``api``, the IR
  types, ``report`` and ``exactcomp.testing``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from exactcomp.testing.clock import CLOCKED

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exactcomp"

#: What ``benchmarks/`` may import from exactcomp (a module, or a package and everything in it).
BENCHMARK_ALLOWED = (
    "exactcomp",
    "exactcomp.api",
    "exactcomp.network",
    "exactcomp.domain",
    "exactcomp.verdicts",
    "exactcomp.errors",
    "exactcomp.tolerances",
    "exactcomp.report",
    "exactcomp.cli",  # the console entry point: the degenerate soak runs it end to end
)
BENCHMARK_ALLOWED_PACKAGES = ("exactcomp.testing",)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(path: Path) -> str:
    """The package a relative import in ``path`` starts from."""
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(tree: ast.Module, package: str) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) of every import in ``tree``, relative ones resolved from
    ``package`` (the package of the module the tree is from)."""
    parts = package.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if node.level and not node.module or name in ("exactcomp",):
                # ``from . import api`` / ``from exactcomp import api``: the names are modules
                for alias in node.names:
                    yield f"{name}.{alias.name}", node.lineno
            else:
                yield name, node.lineno


def _sleeps(tree: ast.Module) -> list[int]:
    """Lines that call ``time.sleep`` or import ``sleep`` from ``time``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "sleep":
            if isinstance(node.value, ast.Name) and node.value.id == "time":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            if any(a.name == "sleep" for a in node.names):
                lines.append(node.lineno)
    return lines


def test_no_test_sleeps() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line in _sleeps(_tree(path))
    ]
    assert not found, "tests must not sleep (use a FakeClock or an event): " + ", ".join(found)


def test_the_scan_finds_a_sleep() -> None:
    assert _sleeps(ast.parse("import time\ntime.sleep(1)\n")) == [2]
    assert _sleeps(ast.parse("from time import sleep\n")) == [1]
    assert _sleeps(ast.parse("clock.sleep(1)\n")) == []


def test_every_clock_reading_module_is_reached_by_the_fake_clock() -> None:
    reading, from_time = set(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name.startswith("exactcomp.testing"):
            continue
        tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "time":
                from_time.append(f"{name}:{node.lineno}")
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "time"
                and node.attr in ("perf_counter", "monotonic", "time")
            ):
                reading.add(name)
    assert not from_time, (
        f"read the clock as time.perf_counter(), not from time import: {from_time}"
    )
    reading = {m for m in reading if m.split(".")[:2] != ["exactcomp", "cli"]}  # it measures only
    assert reading <= set(CLOCKED), (
        f"add to testing.clock.CLOCKED: {sorted(reading - set(CLOCKED))}"
    )
    missing = [m for m in CLOCKED if not (ROOT / (m.replace(".", "/") + ".py")).is_file()]
    assert not missing, f"testing.clock.CLOCKED names modules that do not exist: {missing}"


def _allowed_in_benchmarks(name: str) -> bool:
    return name in BENCHMARK_ALLOWED or any(
        name == p or name.startswith(p + ".") for p in BENCHMARK_ALLOWED_PACKAGES
    )


def _exactcomp_imports(path: Path) -> Iterator[tuple[str, int]]:
    """The exactcomp modules a benchmark file imports (``from exactcomp import X``: the module
    ``exactcomp.X`` if there is one, else the top-level package)."""
    for name, line in _imports(_tree(path), "benchmarks"):
        if not name.startswith("exactcomp"):
            continue
        parts = name.split(".")
        if len(parts) == 2 and not _is_module(name):
            name = "exactcomp"  # a public name of the package, e.g. exactcomp.compress
        yield name, line


def _is_module(name: str) -> bool:
    rel = ROOT / name.replace(".", "/")
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def test_benchmarks_use_only_the_api() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / "benchmarks").glob("*.py"))
        for name, line in _exactcomp_imports(path)
        if not _allowed_in_benchmarks(name)
    ]
    assert not found, "benchmarks/ may import only exactcomp's API and IR types: " + "; ".join(
        found
    )


def test_the_benchmark_rule_sees_an_internal_import(tmp_path) -> None:
    tree = ast.parse(
        "from exactcomp.io import load\nfrom exactcomp import api\nimport exactcomp.bounds\n"
        "from exactcomp.testing.oracle import exact_analysis\n"
    )
    names = [n for n, _ in _imports(tree, "benchmarks")]
    assert names == [
        "exactcomp.io",
        "exactcomp.api",
        "exactcomp.bounds",
        "exactcomp.testing.oracle",
    ]
    assert [n for n in names if not _allowed_in_benchmarks(n)] == [
        "exactcomp.io",
        "exactcomp.bounds",
    ]


def test_the_engine_never_imports_testing() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name.startswith("exactcomp.testing"):
            continue
        for target, line in _imports(_tree(path), _package(path)):
            if target.startswith("exactcomp.testing"):
                found.append(f"{name}:{line}")
    assert not found, f"exactcomp.testing is test support, never imported by the engine: {found}"


def test_relative_imports_are_resolved() -> None:
    tree = ast.parse(
        "from ..testing import oracle\nfrom .layer import LayerRun\nfrom . import merge\n"
    )
    assert [n for n, _ in _imports(tree, "exactcomp.stability")] == [
        "exactcomp.testing",
        "exactcomp.stability.layer",
        "exactcomp.stability.merge",
    ]
