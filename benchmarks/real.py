"""``real``: compress each shipped real network over each of its VNN-LIB input domains.

A VNN-LIB property may describe a disjunction of boxes; the network is compressed for their
union (a neuron counts as stable only with the same sign on every box) and verified on each.

Every case runs once per engine (:mod:`benchmarks.engines`): the code of an earlier commit
(the "previous engine", before branch and bound) and this checkout, each in a fresh child
process with the same boxes, options and budget, so both rows of a case come from one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .console import RichProgress
from .engines import CaseSpec, ChildResult, Engine, run_case
from .networks import RealNetwork, load_domain, vnnlib_domain
from .rows import RealRow


@dataclass(frozen=True)
class RealOptions:
    method: str = "fast"
    time_limit: float = 10.0
    jobs: int | None = None
    verify_time_limit: float = 120.0
    verify_tol: float | None = None  # None: the library's default
    budget: float | None = 600.0  # seconds of stability analysis per case (None: no limit)
    previous_budget: float | None = None  # the previous engine's budget (None: ``budget``)


def real_cases(nets: tuple[RealNetwork, ...]) -> list[tuple[RealNetwork, str]]:
    """Every (network, property path) pair."""
    return [(net, str(p)) for net in nets for p in net.props]


def prop_name(prop: str) -> str:
    """The property's file name without folder and ``.vnnlib``."""
    return prop.rsplit("/", 1)[-1].removesuffix(".vnnlib")


def run_real(
    cases: list[tuple[RealNetwork, str]],
    opts: RealOptions,
    bars: RichProgress,
    engines: Sequence[Engine],
    on_row: Callable[[list], None] | None = None,
) -> list[RealRow]:
    """Compress and verify each case with each engine; errors become rows, not crashes.

    ``on_row`` receives the rows so far after each row (the CLI saves them).
    """
    rows = []
    for net, prop in cases:
        name = prop_name(prop)
        for engine in engines:
            bars.row(f"{net.name} {name} ({engine.name})")
            try:
                rows.append(_one(net, prop, name, opts, engine))
            except Exception as exc:  # a failed case is a result too
                rows.append(_error(net, name, engine.name, f"{type(exc).__name__}: {exc}"))
            bars.row_done()
            if on_row is not None:
                on_row(rows)
    return rows


def _one(net: RealNetwork, prop: str, name: str, opts: RealOptions, engine: Engine) -> RealRow:
    from exactcomp.api import load

    n_inputs = load(net.onnx).input_size
    boxes = load_domain(vnnlib_domain(prop), n_inputs)
    spec = CaseSpec(
        model=str(net.onnx.resolve()),
        boxes=boxes,
        method=opts.method,
        time_limit=opts.time_limit,
        jobs=opts.jobs,
        budget=opts.previous_budget
        if engine.name == "previous" and opts.previous_budget is not None
        else opts.budget,
        verify_time_limit=opts.verify_time_limit,
        verify_tol=opts.verify_tol,
    )
    return to_row(net, name, len(boxes), engine.name, run_case(engine, spec))


def to_row(net: RealNetwork, name: str, n_boxes: int, engine: str, res: ChildResult) -> RealRow:
    """The row of one child run: what it wrote, and how far it got."""
    doc = res.doc
    status = res.status
    why = res.where
    if status.startswith("error: KeyboardInterrupt"):  # the budget's Ctrl-C landed outside
        status = "did not finish"  # the analysis (rewriting, re-checking): over budget
        why = f"Ctrl-C at the budget landed in {why or '?'}"
    if "neurons_before" not in doc:  # never got through compress
        row = _error(net, name, engine, status)
        return row if status != "did not finish" else _replace_status(row, status, why)
    before, after = doc["neurons_before"], doc["neurons_after"]
    stable = doc.get("active", 0) + doc.get("inactive", 0)
    verified = doc.get("stage") == "verified"
    if status == "ok" and doc.get("interrupted"):
        status = "budget"  # stopped at the budget; what is not proven stays and is kept
    return RealRow(
        network=net.name,
        prop=name,
        boxes=n_boxes,
        neurons_before=before,
        neurons_after=after,
        pct_removed=100.0 * (before - after) / before if before else 0.0,
        active=doc.get("active", -1),
        inactive=doc.get("inactive", -1),
        unstable=doc.get("unstable", -1),
        undecided=doc.get("undecided", -1),
        proofs={k: v for k, v in doc.get("proofs", {}).items() if v},
        seconds=float(doc["seconds"]),
        milps=int(doc.get("milps", -1)),
        verdict=doc["verdict"] if verified else "did not finish",
        verify_seconds=float(doc["verify_seconds"]) if verified else math.nan,
        verify_tol=float(doc.get("verify_tol", math.nan)) if verified else math.nan,
        verify_note=str(doc.get("verify_note", "") if verified else why)[:200],
        error=status[:300] if status.startswith("error") else "",
        parameters_before=int(doc["parameters_before"]),
        parameters_after=int(doc["parameters_after"]),
        bytes_before=net.onnx.stat().st_size,
        bytes_after=int(doc["bytes_after"]),
        channels_removed=int(doc.get("channels_removed", 0)),
        bab_nodes=int(doc.get("bab_nodes", -1)),
        engine=engine,
        status=status,
        cpu_seconds=float(doc.get("cpu_seconds", math.nan)),
        pct_stable=100.0 * stable / before if before else math.nan,
    )


def _replace_status(row: RealRow, status: str, why: str) -> RealRow:
    from dataclasses import replace

    return replace(row, status=status, verdict=status, error="", verify_note=why[:200])


def _error(net: RealNetwork, name: str, engine: str, message: str) -> RealRow:
    return RealRow(
        network=net.name,
        prop=name,
        boxes=0,
        neurons_before=-1,
        neurons_after=-1,
        pct_removed=math.nan,
        active=-1,
        inactive=-1,
        unstable=-1,
        undecided=-1,
        proofs={},
        seconds=math.nan,
        milps=-1,
        verdict="ERROR",
        verify_seconds=math.nan,
        error=message.splitlines()[0][:300] if message else "error",
        engine=engine,
        status="error",
    )


def engines_markdown(rows: Sequence[dict]) -> str:
    """Previous and current engine side by side, one line per case (rows as JSON dicts).

    ``a / b`` cells are previous / current; ``-`` where a figure is missing (an error, or a
    case stopped before it got that far); ``*`` marks an analysis stopped at its budget.
    """
    by_case: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault((r["network"], r["prop"]), {})[r["engine"]] = r

    def cell(r: dict | None, key: str, fmt: str = "{:.0f}") -> str:
        figures = r is not None and (r.get("neurons_before") or -1) >= 0
        v = r.get(key) if figures else None
        if v is None or (isinstance(v, (int, float)) and (v != v or v < 0)):
            return "-"
        text = fmt.format(v) if isinstance(v, (int, float)) else str(v)
        return text + ("*" if key == "undecided" and r.get("status") == "budget" else "")

    def pair(case: dict, key: str, fmt: str = "{:.0f}") -> str:
        return f"{cell(case.get('previous'), key, fmt)} / {cell(case.get('current'), key, fmt)}"

    def verdict(r: dict | None) -> str:
        if r is None:
            return "-"
        if r.get("status") == "error":
            text = str(r.get("error", "")).removeprefix("error: ").removeprefix("exactcomp.errors.")
            return "error: " + text[:70].replace("|", "/")
        return str(r.get("verdict", "-"))

    head = (
        "| network | prop | undecided | s wall | s CPU | MILPs | BaB nodes | neurons after "
        "(of) | stable % | params after (of) | bytes after (of) | channels removed | verify |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for (net, prop), case in by_case.items():
        known = [r for r in case.values() if (r.get("neurons_before") or -1) >= 0]
        first = known[0] if known else None  # the "before" figures, from either engine
        lines.append(
            "| "
            + " | ".join(
                [
                    net,
                    prop,
                    pair(case, "undecided"),
                    pair(case, "seconds", "{:.1f}"),
                    pair(case, "cpu_seconds", "{:.1f}"),
                    pair(case, "milps"),
                    cell(case.get("current"), "bab_nodes"),
                    f"{pair(case, 'neurons_after')} ({cell(first, 'neurons_before')})",
                    pair(case, "pct_stable", "{:.1f}"),
                    f"{pair(case, 'parameters_after')} ({cell(first, 'parameters_before')})",
                    f"{pair(case, 'bytes_after')} ({cell(first, 'bytes_before')})",
                    pair(case, "channels_removed"),
                    f"{verdict(case.get('previous'))} / {verdict(case.get('current'))}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)
