"""``stable_neurons``: classify every ReLU neuron over a box, cheapest proof first.

Layer by layer (progressive tightening: the bounds and verdicts proven for layer ``k`` are the
big-M constants and the binaries-or-not of every MILP of layer ``k+1``), each neuron goes
through the phases below until one settles it; every verdict records the phase that did.

=============  =====================================================================
phase          settles
=============  =====================================================================
interval       ``u <= 0`` (INACTIVE) or ``l >= 0`` (ACTIVE) from interval arithmetic
linear         the same from CROWN-style back-substitution bounds
constant       a pre-activation the weights make the constant ``b`` on every input: INACTIVE
               if ``b <= 0`` (a tie at 0 included), else ACTIVE
               (:mod:`exactcomp.stability.constants`)
witness        UNSTABLE: concrete inputs (samples, data, gradient and LP region search,
               MILP incumbents) show both signs
lp             the same as interval, from the triangle-relaxation LP, then from that LP
               tightened by ideal-formulation cuts (:mod:`exactcomp.bounds.ideal_cuts`)
bab            the same as interval, on every leaf of a tree of input splits
               (:mod:`exactcomp.bab`; only for at most ``bab.split.MAX_INPUTS`` inputs)
relu_split     the same, on every leaf of a tree of ReLU splits of earlier layers, each
               bounded by the LP with the split rows (:mod:`exactcomp.bab.relu`; for
               more than ``bab.split.MAX_INPUTS`` inputs, after the ideal cuts, or
               instead of them on the last ReLU layer)
milp           the remaining sign question, early-stopped (see :mod:`exactcomp.milp.highs`);
               a near tie is asked again at a finer solver tolerance
tighten        (below the last ReLU layer, with ReLU splits) the neurons left without a
               claim get ideal-cut LP bounds on both sides, for every later layer
=============  =====================================================================

Methods: ``fast`` runs every phase. ``leo`` (CPAIOR 2020 style) runs interval bounds, then a
MILP per neuron and sign with early stop, progressive bounds, and no sharing of solutions
between neurons. ``naive`` uses interval big-M constants from the box alone and solves one
MILP per neuron and sign to optimality. They differ in speed only: each verdict is proven,
so when nothing is undecided the stable sets coincide.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..bounds import interval_bounds, interval_layer
from ..bounds.interval import Bounds
from ..domain import Box, sample_rows
from ..errors import InvalidOptionError
from ..network import Network
from ..progress import SILENT, Progress
from ..search import candidate_inputs
from ..tolerances import DEFAULT, Tolerances, underflow_tolerances
from ..verdicts import METHODS, SOLVERS, LayerStability, Proof, StabilityReport, Verdict
from .claims import BoxRun
from .constants import layer_classes
from .layer import LayerRun
from .merge import compact_witnesses, merge_reports
from .milp_phase import Workers
from .options import Options
from .witnesses import WitnessPool

_SAMPLES = 1024  # uniform samples; as many box vertices and near-vertex points again
LATE_RESERVE = 0.04
"""Part of a budget (``deadline``) kept for each later ReLU layer's cheap phases
(:func:`layer_deadline`): 4.8 s of a 120 s budget, where the witness search of a 256-wide
layer of mnist-net_256x4 takes 1.2-1.6 s of CPU and 5.4 s of wall time at load 8."""


def stable_neurons(
    net: Network,
    domain: Box | Sequence[Box],
    *,
    method: str = "fast",
    time_limit: float = 10.0,
    jobs: int | None = None,
    data: np.ndarray | None = None,
    solver: str = "highs",
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
    seed: int = 0,
    partial: bool = False,
    cluster: str | None = None,
    deadline: float | None = None,
) -> StabilityReport:
    """Classify every ReLU neuron of ``net`` over ``domain`` (a box, or a union of boxes).

    Parameters
    ----------
    net:
        The network.
    domain:
        A :class:`~exactcomp.domain.Box`, or a sequence of boxes meaning their union: a neuron
        is stable over the union only if stable with the same sign on every box.
    method:
        ``"fast"`` (default), ``"leo"`` or ``"naive"`` (baselines; see the module docstring).
    time_limit:
        Seconds per MILP, CPU seconds of the solving process (so that verdicts do not
        depend on the machine's load; wall-clock at most ten times as long, and within
        ``deadline``); a MILP that runs out proves nothing (its neuron is UNDECIDED). The
        ideal-cut LPs that tighten a layer's bounds for later layers get as much, in all.
    jobs:
        Worker processes for the MILPs of a layer (default: all cores; ``1``: in-process).
        The result does not depend on it.
    cluster:
        Address of a Dask scheduler (e.g. ``"tcp://scheduler:8786"``; needs the ``cluster``
        extra) to solve the MILPs on instead of local processes (``jobs`` is then unused).
        The result does not depend on it (see :mod:`exactcomp.stability.milp_phase`); if the
        cluster fails midway the remaining MILPs run in-process. ``stats["cluster_milps"]``
        counts the answers that came from the cluster.
    data:
        Optional inputs (rows) used as extra witness candidates by ``fast``.
    solver:
        ``"highs"`` (default; compiled and driven through highspy) or any Pyomo MILP solver
        name among ``gurobi``, ``cplex``, ``scip``, ``cbc`` (solved to optimality, in-process).
    progress, tol, seed:
        Progress receiver, tolerances, and the seed of the random witness candidates.
    partial:
        On Ctrl-C (``KeyboardInterrupt``), return the verdicts proven so far instead of
        raising: the layer in progress and all later ones are UNDECIDED, which is always
        sound (undecided neurons are kept). ``stats["interrupted"]`` is then 1.
    deadline:
        A ``time.perf_counter()`` value after which no LP, search or MILP question is
        started (a running one is capped to the time left): what was not decided stays UNDECIDED,
        which is sound. ``stats["out_of_time"]`` is then 1. Each ReLU layer but the last
        stops its proof phases early enough to leave every later layer a reserve for its
        bounds and witness search (:func:`layer_deadline`); a layer reached past the deadline
        keeps only its interval claims and the pooled witnesses. For callers with an overall
        budget (``verify``, ``benchmarks real``, ``stability --budget``); the result then
        depends on the machine's speed.

    Returns
    -------
    StabilityReport
        Verdicts, proof kinds, sound bounds and witness rows per ReLU layer, and ``stats``.
    """
    if method not in METHODS:
        raise InvalidOptionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if solver not in SOLVERS:
        raise InvalidOptionError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if not (np.isfinite(time_limit) and time_limit > 0):
        raise InvalidOptionError(f"the time limit must be a positive number, got {time_limit}")
    if jobs is not None and int(jobs) < 1:
        raise InvalidOptionError(f"jobs must be at least 1, got {jobs}")
    if cluster is not None and not (isinstance(cluster, str) and cluster.strip()):
        raise InvalidOptionError(f"the cluster must be a scheduler address, got {cluster!r}")
    boxes = [domain] if isinstance(domain, Box) else list(domain)
    if not boxes:
        raise InvalidOptionError("the domain is an empty union of boxes")
    for box in boxes:
        box.check_size(net.input_size)
    if data is not None:
        data = sample_rows(data, net.input_size)
    # the rounding pad covers this network's underflow (tolerances.amplification)
    tol = underflow_tolerances(tol, [net], boxes)
    opts = Options(method, float(time_limit), solver, tol, int(seed), data, bool(partial), deadline)
    t0 = time.perf_counter()
    reports: list[StabilityReport] = []
    with Workers(jobs, cluster, progress) as workers:
        for box in boxes:
            if reports and reports[-1].stats.get("interrupted"):  # Ctrl-C with partial=True
                reports.append(_nothing_proven(net, reports[-1].witnesses[:0]))
            else:
                reports.append(_analyse_box(net, box, opts, workers, progress))
    report = reports[0] if len(reports) == 1 else merge_reports(net, boxes, reports, tol)
    stats = dict(report.stats)
    stats["seconds"] = time.perf_counter() - t0
    stats["boxes"] = len(boxes)
    for key in ("interrupted", "out_of_time"):
        if any(r.stats.get(key) for r in reports):
            stats[key] = 1
    if cluster is not None:
        stats["cluster_milps"] = workers.remote
        stats["cluster_failed"] = int(workers.broken)
    trees = tuple(t for r in reports for t in r.trees)  # each names its box
    return StabilityReport(report.layers, report.witnesses, stats, trees)


def _undecided(net: Network, k: int) -> LayerStability:
    """Layer ``k`` with nothing proven (used after an interrupt or past the deadline)."""
    return LayerStability.undecided(k, net.layers[k].out_features)


def _nothing_proven(net: Network, no_rows: np.ndarray) -> StabilityReport:
    layers = tuple(_undecided(net, k) for k in net.relu_layers)
    return StabilityReport(layers, no_rows, {"interrupted": 1})


def _analyse_box(
    net: Network, box: Box, opts: Options, workers: Workers, progress: Progress
) -> StabilityReport:
    """One box: every layer in order, each with the phases of ``opts.method``."""
    stats: dict[str, float] = {"milps": 0, "milp_neurons": 0}
    start = time.perf_counter()
    pool = WitnessPool(net, box, opts.tol)
    if opts.method == "fast":
        t = time.perf_counter()
        rng = np.random.default_rng(opts.seed)
        pool.add_until(candidate_inputs(box, _SAMPLES, rng, opts.data), opts.deadline)
        stats["seconds_witness"] = time.perf_counter() - t
    box_bounds = interval_bounds(net, box, tol=opts.tol) if opts.method == "naive" else None
    classes = tuple(layer_classes(net)) if opts.method == "fast" else ()
    shared = BoxRun(net, box, pool, opts, workers, stats, progress, classes=classes)
    bounds: list[Bounds] = []
    verdicts: list[np.ndarray | None] = []
    layers: list[LayerStability] = []
    last = max(net.relu_layers, default=-1)
    for k in range(last + 1):
        layer = net.layers[k]
        if box_bounds is not None:
            prior = box_bounds[k]
        else:
            lo, hi = (box.lower, box.upper) if k == 0 else _post(net, k - 1, bounds[k - 1])
            prior = interval_layer(layer, lo, hi, opts.tol)
        later = sum(j > k for j in net.relu_layers)
        own = layer_deadline(opts.deadline, start, later)
        run = LayerRun(shared, k, prior, bounds, verdicts, own, later + 1)
        try:
            late = opts.deadline is not None and time.perf_counter() >= opts.deadline
            result = run.late() if late else run.classify()
        except KeyboardInterrupt:
            if not opts.partial:
                raise
            stats["interrupted"] = 1
            layers += [_undecided(net, j) for j in net.relu_layers if j >= k]
            break
        if layer.relu:
            layers.append(result)
            verdicts.append(result.verdict)
        else:
            verdicts.append(None)
        if box_bounds is not None:
            bounds.append(box_bounds[k])
        else:
            bounds.append((result.lower, result.upper))
    stats["undecided"] = sum(ls.count(Verdict.UNDECIDED) for ls in layers)
    if stats["undecided"] and opts.deadline is not None and time.perf_counter() >= opts.deadline:
        stats["out_of_time"] = 1  # the deadline passed within a layer's phases
    layers_c, rows = compact_witnesses(layers, pool.rows())
    return StabilityReport(tuple(layers_c), rows, stats, tuple(shared.trees))


def layer_deadline(deadline: float | None, start: float, later: int) -> float | None:
    """The deadline of one layer's proof phases: the caller's ``deadline`` less a reserve of
    :data:`LATE_RESERVE` of the whole budget (``deadline - start``) for each of the ``later``
    ReLU layers, so that a budget stop still gives every later layer its interval and linear
    bounds and its gradient witness search, the cheapest decisions
    (:meth:`~exactcomp.stability.layer.LayerRun.classify`: past its own deadline a layer
    runs nothing more). What a layer does not use passes to the later ones, and the last
    ReLU layer runs to the caller's deadline itself. A layer reached past the caller's
    deadline computes nothing: its interval bounds and the signs the pooled inputs already
    show (:meth:`~exactcomp.stability.layer.LayerRun.late`).

    Why: on mnist-net_256x4 prop_1_0.05 with a 120 s budget, layer 1's ReLU splits and
    MILPs (48 open neurons) took the whole budget, and layers 2 and 3 (512 neurons) were
    reported undecided without a bound or witness search of their own.
    """
    if deadline is None or later <= 0:
        return deadline
    return deadline - LATE_RESERVE * later * max(deadline - start, 0.0)


def _post(net: Network, k: int, b: Bounds) -> Bounds:
    """Bounds on the output ``h_k`` of layer ``k`` from bounds on its pre-activation."""
    if net.layers[k].relu:
        return np.maximum(b[0], 0.0), np.maximum(b[1], 0.0)
    return b


__all__ = ["stable_neurons", "METHODS", "SOLVERS", "Options", "Proof"]
