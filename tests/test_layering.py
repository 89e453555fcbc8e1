"""Dependencies point one way: a module may import only modules of its own or a lower rank.

errors/tolerances/progress -> network/domain, highs -> verdicts/exact -> io, bounds, search
-> milp, bab -> stability -> rewrite -> verify -> api, testing -> report -> cli (testing's soak
checks drive the engine). The IR (network,
domain, verdicts) depends on numpy only. Heavy third-party packages stay in the modules listed
here (highspy in highs/ only; torch, pyomo, onnx where listed), no module imports another's
private names, the module graph has no cycle (imports inside functions count), and no engine
module imports exactcomp.testing.
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
    "network": 1,
    "highs": 1,
    "conv": 1,
    "conv_eval": 1,
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
    "lossy_result": 7,
    "strategies": 7,
    "exact_reference": 7,
    "exact_gap": 7,
    "float_candidate": 7,
    "phase_plan": 7,
    "second_pass": 7,
    "quantize_plan": 8,
    "api": 8,
    "approx": 8,
    "quantization": 8,
    "source_quantization": 8,
    "report": 9,
    "cli": 10,
    "__main__": 11,
    "__init__": 11,
}
NUMPY_ONLY = {
    "network",
    "conv",
    "conv_eval",
    "domain",
    "verdicts",
    "exact",
    "errors",
    "tolerances",
    "progress",
}


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


# Where each heavy third-party package may be imported (paths under exactcomp/; a folder ends
# with "/"). A new module that needs one is added here on purpose, in review.
ALLOWED_THIRD_PARTY = {
    # the test oracle builds its own LPs (no model, status rule or margin of highs/ shared)
    "highspy": {"highs/", "testing/regions.py"},
    "torch": {
        "bab/beta.py",  # autograd of the batched ReLU-split bounds, imported when it runs
        "io/torch_chain.py",
        "io/torch_conv.py",
        "io/torch_io.py",
        "io/torch_script.py",
        "io/torch_state.py",
    },
    "pyomo": {
        "__init__.py",  # only to switch off a slow Pyomo import hook, see its docstring
        "milp/encoding.py",
        "milp/highs.py",
        "milp/solvers.py",
        "verify/coupling.py",
        "verify/formulation.py",
        "verify/solve.py",
    },
    "onnx": {
        "io/onnx_build.py",
        "io/onnx_consts.py",
        "io/onnx_graph.py",
        "io/onnx_handlers.py",
        "io/onnx_io.py",
        "io/onnx_means.py",
        "io/onnx_quant.py",
        "io/onnx_requant.py",
        "io/onnx_sparse.py",
        "io/onnx_types.py",
    },
    "onnxruntime": {"io/onnx_check.py", "io/onnx_means.py"},
}


def _allowed(rel: str, places: set[str]) -> bool:
    return any(rel.startswith(p) if p.endswith("/") else rel == p for p in places)


@pytest.mark.parametrize("package", sorted(ALLOWED_THIRD_PARTY))
def test_heavy_packages_only_where_listed(package: str) -> None:
    places = ALLOWED_THIRD_PARTY[package]
    bad = []
    for path in MODULES:
        rel = path.relative_to(PKG).as_posix()
        roots = {t.split(".")[0] for t, level in _imports(path) if level == 0}
        if package in roots and not _allowed(rel, places):
            bad.append(rel)
    assert not bad, f"{package} imported outside {sorted(places)}: {bad}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {_module_name(p): p for p in MODULES}


def _edges(path: Path) -> list[tuple[str, str | None]]:
    """(imported exactcomp module, imported name or None) of every import in ``path``, at
    module level or inside functions; ``from pkg import sub`` resolves to the submodule."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.split(".")[0] == "exactcomp"]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
                if base.split(".")[0] != "exactcomp":
                    continue
            else:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None) if sub in NAMES else (base, a.name))
    return out


def test_no_private_name_is_imported_across_modules() -> None:
    bad = [
        f"{_module_name(p)} imports {name} from {target}"
        for p in MODULES
        for target, name in _edges(p)
        if name is not None
        and name.startswith("_")
        and not name.startswith("__")
        and target != _module_name(p)
    ]
    assert not bad, "make the name public in its module, or move it: " + "; ".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    graph = {
        name: {t for t, _ in _edges(path) if t in NAMES and t != name}
        for name, path in NAMES.items()
    }
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_engine_modules_never_import_testing() -> None:
    bad = [
        f"{_module_name(p)} imports {t}"
        for p in MODULES
        if p.relative_to(PKG).parts[0] != "testing"
        for t, _ in _edges(p)
        if t == "exactcomp.testing" or t.startswith("exactcomp.testing.")
    ]
    assert not bad, bad
