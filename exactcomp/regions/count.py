"""Count the activation regions of a network over a box, exactly where reachable.

Two exact counters, picked by the input dimension:

* 2 inputs, or a 2-D slice of the box (``plane``): polygon splitting
  (:mod:`exactcomp.regions.planar`), no LP, and the polygons are the picture;
* otherwise depth-first splitting with one LP per candidate part
  (:mod:`exactcomp.regions.splitting`).

Both skip the neurons ``fixed`` by the stability engine (proven stable on the box: they
never split a region), and both stop at ``limit`` regions or on Ctrl-C, the count then being
a lower bound. Bounds and an estimate come with every count (:mod:`.estimates`).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..domain import Box
from ..errors import InvalidOptionError
from ..network import Network
from ..progress import SILENT, Progress
from ..tolerances import DEFAULT, Tolerances
from . import planar
from .estimates import RegionEstimate, network_upper_bound, sample_bounds
from .plane import Plane
from .splitting import SplitStats, resume, split_regions

Fixed = Sequence[np.ndarray | None]


class _Stop(Exception):
    """Raised inside a counter to stop it at the limit."""


@dataclass(frozen=True, eq=False)
class RegionCount:
    """The number of activation regions (nonempty interior) of a network over a box.

    Attributes
    ----------
    regions:
        The exact count when ``exact``; otherwise the regions found before stopping.
    exact:
        True iff every region was enumerated (no limit, no Ctrl-C, no doubtful LP).
    lower_bound, upper_bound:
        ``lower_bound``: the most of the exact (partial) count and the distinct patterns seen
        on samples and lines (almost surely). ``upper_bound``: Serra et al.'s bound for the
        network with its stable neurons removed (``upper_bound_original``: without removal).
    seconds, count_seconds, lps:
        Wall-clock time (all of it: stability proofs, bounds, count), the exact count's share
        of it, and the LPs it solved (0 for polygon splitting).
    fixed_neurons, neurons, neurons_after:
        Neurons proven stable (never split), all ReLU neurons, and those left in the exactly
        compressed network the upper bound was taken on.
    """

    regions: int
    exact: bool
    lower_bound: int
    upper_bound: int
    seconds: float
    lps: int = 0
    count_seconds: float = 0.0
    method: str = ""
    upper_bound_original: int = 0
    estimate: RegionEstimate | None = None
    sampled: int = 0
    stopped: str | None = None
    fixed_neurons: int = 0
    neurons: int = 0
    neurons_after: int = 0
    doubtful_lps: int = 0
    cells: tuple[planar.Cell, ...] = field(default=(), repr=False)

    @property
    def rate(self) -> float:
        """Regions counted per second of the exact count."""
        return self.regions / self.count_seconds if self.count_seconds > 0 else 0.0

    def to_json(self) -> dict:
        """The JSON report (keys documented in the README)."""
        return {
            "regions": int(self.regions),
            "exact": bool(self.exact),
            "lower_bound": int(self.lower_bound),
            "upper_bound": int(self.upper_bound),
            "upper_bound_original": int(self.upper_bound_original),
            "upper_bound_kind": "Serra et al. 2018 (widths and ranks), stable neurons removed",
            "lower_bound_kind": "max(exact count so far, distinct patterns on samples and lines)",
            "estimate": None if self.estimate is None else self.estimate.to_json(),
            "seconds": round(self.seconds, 4),
            "lps": int(self.lps),
            "doubtful_lps": int(self.doubtful_lps),
            "method": self.method,
            "stopped": self.stopped,
            "neurons": int(self.neurons),
            "fixed_neurons": int(self.fixed_neurons),
            "neurons_after_compression": int(self.neurons_after),
            "count_seconds": round(self.count_seconds, 4),
            "regions_per_second": round(self.rate, 1) if self.count_seconds > 0 else None,
        }


class _Ticker:
    """Progress updates at most every 0.2 s, with the rate in regions per second."""

    def __init__(self, progress: Progress, limit: int | None) -> None:
        self.progress, self.n, self.shown = progress, 0, 0
        self.t0 = self.last = time.perf_counter()
        progress.task("counting regions", limit or 0)

    def add(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if now - self.last >= 0.2:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        rate = self.n / max(now - self.t0, 1e-9)
        self.progress.advance(self.n - self.shown, f"{self.n} regions, {rate:,.0f}/s")
        self.shown, self.last = self.n, now


def count_regions(
    net: Network,
    box: Box,
    *,
    fixed: Fixed = (),
    limit: int | None = None,
    jobs: int | None = 1,
    exact: bool = True,
    keep_cells: bool = False,
    samples: int = 20_000,
    lines: int = 20,
    seed: int = 0,
    compressed: Network | None = None,
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
) -> RegionCount:
    """Count the activation regions of ``net`` over ``box``.

    ``fixed[r][j]`` is 1/0 for a neuron of ReLU layer ``r`` proven active/inactive on the box,
    -1 when free (default: all free). ``compressed`` is the network with its stable neurons
    removed, for the upper bound (default: ``net``). ``exact=False`` skips the exact count
    (bounds and estimate only). ``keep_cells`` keeps the polygons (planar counts only).
    """
    t0 = time.perf_counter()
    box.check_size(net.input_size)
    if limit is not None and limit < 1:
        raise InvalidOptionError(f"--limit must be >= 1, got {limit}")
    if jobs is not None and jobs < 1:
        raise InvalidOptionError(f"--jobs must be >= 1, got {jobs}")
    fixed = list(fixed)
    radius = tol.region_radius * max(1.0, float(np.max(np.abs([box.lower, box.upper]))))
    planar_path = net.input_size == 2
    ub_orig = network_upper_bound(net)
    ub = min(ub_orig, network_upper_bound(compressed)) if compressed is not None else ub_orig
    sampled = sample_bounds(net, box, samples, lines, seed)

    found, stopped, lps, doubtful, cells_out = 0, None, 0, 0, []
    method = "polygon splitting" if planar_path else "depth-first splitting + LP"
    t_count = time.perf_counter()
    if exact:
        ticker = _Ticker(progress, limit)
        try:
            if planar_path:
                plane = Plane(np.zeros(2), np.eye(2))
                found, stopped = _planar(
                    net, box, plane, fixed, radius, limit, jobs, keep_cells, ticker, cells_out
                )
            else:
                found, stopped, lps, doubtful = _lp_split(
                    net, box, fixed, radius, limit, jobs, ticker
                )
        finally:
            ticker.flush()
    else:
        method, stopped = "bounds only", "not counted"
    t_count = time.perf_counter() - t_count
    complete = exact and stopped is None and doubtful == 0
    lower = max(found, sampled.distinct)
    if complete:
        lower = found
    n_fixed = sum(int(np.count_nonzero(f >= 0)) for f in fixed if f is not None)
    return RegionCount(
        regions=found,
        exact=complete,
        lower_bound=lower,
        upper_bound=ub,
        seconds=time.perf_counter() - t0,
        lps=lps,
        count_seconds=t_count if exact else 0.0,
        method=method,
        upper_bound_original=ub_orig,
        estimate=sampled.estimate,
        sampled=sampled.distinct,
        stopped=stopped,
        fixed_neurons=n_fixed,
        neurons=net.num_neurons,
        neurons_after=(compressed or net).num_neurons,
        doubtful_lps=doubtful,
        cells=tuple(cells_out),
    )


def _lp_split(net, box, fixed, radius, limit, jobs, ticker) -> tuple[int, str | None, int, int]:
    state = {"n": 0}

    def on_region(pattern: np.ndarray, point: np.ndarray) -> None:
        state["n"] += 1
        ticker.add()
        if limit is not None and state["n"] >= limit:
            raise _Stop

    stopped = None
    cut = max(1, int(np.ceil(np.log2(8 * jobs)))) if jobs is not None and jobs > 1 else None
    nodes: list = []
    stats = SplitStats()
    try:
        _, nodes = split_regions(net, box, fixed, radius, on_region, cut_depth=cut, stats=stats)
    except _Stop:
        stopped = "limit"
    except KeyboardInterrupt:
        stopped = "interrupted"
    lps, doubtful = stats.lps, stats.doubtful
    if nodes and stopped is None:
        cap = limit - state["n"] if limit is not None else 2**62
        args = [(net.layers, box, list(fixed), radius, node, cap) for node in nodes]
        n, stopped, more_lps, more_doubtful = _in_pool(resume_count, args, jobs, cap, ticker)
        state["n"] += n
        lps, doubtful = lps + more_lps, doubtful + more_doubtful
    return state["n"], stopped, lps, doubtful


def resume_count(args) -> tuple[int, int, int]:
    """Worker: regions below one cut-off node (at most ``limit``), LPs, doubtful LPs."""
    layers, box, fixed, radius, node, limit = args
    net = Network(layers)  # a Network's meta does not pickle; its layers do
    state = {"n": 0}
    stats = SplitStats()

    def on_region(pattern: np.ndarray, point: np.ndarray) -> None:
        state["n"] += 1
        if state["n"] >= limit:
            raise _Stop

    try:
        resume(net, box, fixed, radius, node, on_region, stats)
    except _Stop:
        pass
    return state["n"], stats.lps, stats.doubtful


def _in_pool(func, args, jobs, cap, ticker) -> tuple[int, str | None, int, int]:
    """Run ``func`` over ``args`` in ``jobs`` processes; stop at ``cap`` regions or Ctrl-C."""
    fork = "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    n, lps, doubtful = 0, 0, 0
    with ctx.Pool(jobs) as pool:
        try:
            for k, more_lps, more_doubtful in pool.imap_unordered(func, args):
                n, lps, doubtful = n + k, lps + more_lps, doubtful + more_doubtful
                ticker.add(k)
                if n >= cap:
                    pool.terminate()
                    return min(n, cap), "limit", lps, doubtful
        except KeyboardInterrupt:
            pool.terminate()
            return n, "interrupted", lps, doubtful
    return n, None, lps, doubtful


def _planar(net, box, plane, fixed, radius, limit, jobs, keep, ticker, out):
    poly = (
        planar.rectangle(box.lower, box.upper)
        if net.input_size == 2
        else planar.plane_polygon(box.lower, box.upper, plane.origin, plane.basis)
    )
    if len(poly) < 3:
        raise InvalidOptionError("the plane misses the box's interior: no region to count")
    root = planar.start(net, poly, plane.origin, plane.basis)
    n, stopped = 0, None
    try:
        if jobs is not None and jobs > 1 and not keep:
            return _planar_parallel(net, root, fixed, radius, limit, jobs, ticker)
        for cell in planar.cells(net, [root], fixed, radius):
            n += 1
            ticker.add()
            if keep:
                out.append(cell)
            if limit is not None and n >= limit:
                stopped = "limit"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    return n, stopped


def _planar_parallel(net, root, fixed, radius, limit, jobs, ticker) -> tuple[int, str | None]:
    """Split the top of the tree into at least ``16 * jobs`` cells, then count below each in a
    worker process; the cells are disjoint, so the counts add up."""
    todo, done = planar.frontier(net, root, fixed, radius, 16 * jobs)
    n = len(done)
    ticker.add(n)
    cap = limit if limit is not None else 2**62
    if n >= cap:
        return cap, "limit"
    chunks = [todo[i :: 4 * jobs] for i in range(4 * jobs)]
    args = [(net.layers, c, list(fixed), radius, cap - n) for c in chunks if c]
    more, stopped, _, _ = _in_pool(planar.count_items, args, jobs, cap - n, ticker)
    return n + more, stopped


def slice_cells(
    net: Network,
    box: Box,
    plane: Plane,
    *,
    fixed: Fixed = (),
    limit: int | None = None,
    tol: Tolerances = DEFAULT,
) -> tuple[planar.Cell, ...]:
    """The activation regions of ``net`` on the slice ``plane`` of ``box``, as polygons in the
    plane's ``(s, t)`` coordinates (for pictures; at most ``limit``)."""
    radius = tol.region_radius * max(1.0, float(np.max(np.abs([box.lower, box.upper]))))
    out: list[planar.Cell] = []
    _planar(net, box, plane, list(fixed), radius, limit, 1, True, _Ticker(SILENT, None), out)
    return tuple(out)
