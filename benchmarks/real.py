"""``real``: compress each shipped real network over each of its VNN-LIB input domains.

A VNN-LIB property may describe a disjunction of boxes; the network is compressed for their
union (a neuron counts as stable only with the same sign on every box) and verified on each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .console import RichProgress
from .measure import bab_nodes, milp_count, proof_counts, verdict_counts, verify_boxes
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


def real_cases(nets: tuple[RealNetwork, ...]) -> list[tuple[RealNetwork, str]]:
    """Every (network, property path) pair."""
    return [(net, str(p)) for net in nets for p in net.props]


def run_real(
    cases: list[tuple[RealNetwork, str]],
    opts: RealOptions,
    bars: RichProgress,
    on_row: Callable[[list], None] | None = None,
) -> list[RealRow]:
    """Compress and verify each case; errors become rows, not crashes.

    ``on_row`` receives the rows so far after each case (the CLI saves them).
    """
    rows = []
    for net, prop in cases:
        name = prop.rsplit("/", 1)[-1].removesuffix(".vnnlib")
        bars.row(f"{net.name} {name}")
        try:
            rows.append(_one(net, prop, name, opts, bars))
        except Exception as exc:  # a failed case is a result too
            rows.append(_error(net, name, f"{type(exc).__name__}: {exc}"))
        bars.row_done()
        if on_row is not None:
            on_row(rows)
    return rows


def _one(net: RealNetwork, prop: str, name: str, opts: RealOptions, bars: RichProgress) -> RealRow:
    from exactcomp.api import compress, load

    original = load(net.onnx)
    boxes = load_domain(vnnlib_domain(prop), original.input_size)
    # the budget: nothing new starts after it, what is left stays UNDECIDED (and is kept)
    deadline = None if opts.budget is None else time.perf_counter() + opts.budget
    result = compress(
        original,
        list(boxes),
        method=opts.method,
        time_limit=opts.time_limit,
        jobs=opts.jobs,
        progress=bars,
        deadline=deadline,
    )
    bars.task("verifying equivalence", 1)
    ver = verify_boxes(
        original,
        result.network,
        boxes,
        time_limit=opts.verify_time_limit,
        tol=opts.verify_tol,
        certificates=result.stability,
    )
    bars.advance()
    before, after = original.num_neurons, result.network.num_neurons
    written = _written_bytes(result.network)
    structure = result.report.get("structure", {})
    counts = verdict_counts(result.stability)
    return RealRow(
        network=net.name,
        prop=name,
        boxes=len(boxes),
        neurons_before=before,
        neurons_after=after,
        pct_removed=100.0 * (before - after) / before if before else 0.0,
        proofs={k: v for k, v in proof_counts(result.stability).items() if v},
        seconds=float(result.seconds),
        milps=milp_count(result.stability),
        bab_nodes=bab_nodes(result.stability),
        verdict=ver.verdict,
        verify_seconds=ver.seconds,
        verify_tol=ver.tol,
        verify_note=ver.note[:200],
        parameters_before=original.num_parameters,
        parameters_after=result.network.num_parameters,
        bytes_before=net.onnx.stat().st_size,
        bytes_after=written,
        channels_removed=sum(structure.get("channels_removed", {}).values()),
        **counts,
    )


def _written_bytes(network) -> int:
    """Size of the ONNX file ``exactcomp compress -o out.onnx`` writes for ``network``."""
    import tempfile
    from pathlib import Path

    from exactcomp.api import save, stored

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.onnx"
        save(stored(network), out)
        return out.stat().st_size


def _error(net: RealNetwork, name: str, message: str) -> RealRow:
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
    )
