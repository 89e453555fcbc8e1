r"""Solving stability questions on a compiled prefix MILP with HiGHS, with early termination.

The Pyomo model of :mod:`exactcomp.milp.encoding` is compiled once per layer to matrix form
(Pyomo's standard-form compiler) and handed to highspy directly; between neurons only the
objective changes. Nothing here adds or alters a constraint, so the Pyomo model stays the
single source of the formulation (a test checks both give the same optimum).

The question and its decision
-----------------------------
For target neuron :math:`j` of layer :math:`k` and a sign :math:`s \in \{+1, -1\}`, the
question is "can :math:`s\, z_j > 0` somewhere in the box?". With the margin
:math:`m = \text{solver\_abs} + \text{solver\_rel}\cdot M + \varepsilon A_j`
(:math:`M` the neuron's a-priori bound magnitude, :math:`\varepsilon` the solver's
feasibility tolerance and :math:`A_j` its amplification through the encoded prefix, see
:func:`~exactcomp.milp.encoding.tolerance_amplification`) we pose it as a *minimisation* (HiGHS' termination options are not
sign-flipped for maximisation):

.. math::

    \min_{(x, z, h, a) \in \mathcal{P}} \; -s\, z_j .

* ``mode="early"`` sets ``objective_bound`` :math:`= m` (a cut-off: only solutions with
  :math:`-s z_j \le m` are kept) and ``objective_target`` :math:`= -m` (stop at the first
  solution with :math:`s z_j \ge m`). Then

  - status *infeasible*: no point of the (tolerance-relaxed) polytope has
    :math:`s z_j \ge -m`, so :math:`\max s z_j < -m`: **proven** (stable with sign
    :math:`-s`: inactive for :math:`s=+1`, active for :math:`s=-1`);
  - *target reached* (or any status with a solution): a **candidate witness**; it counts
    only once the caller re-evaluates its input in float64 and sees :math:`s z_j > 0`
    with margin;
  - *optimal*: nothing is read from it. HiGHS may finish (e.g. at the root) ignoring the
    cut-off and report a solution beyond it, so the question is re-solved in the time left
    by ``mode="row"`` below.

  After a cut-off run ``mip_dual_bound`` is not a global bound, so it is never read here.
* ``mode="row"`` (the ``fast`` engine's questions, and the re-solve above): the cut-off is
  also a constraint, one extra row :math:`s\, z_j \ge -m` added to this question's copy of
  the model, with the same objective, cut-off option and target. Status *infeasible* is the
  same proof as above; *optimal* means a point with :math:`s z_j \ge -m` exists (nothing
  proven), so HiGHS cannot end a search that ignored the cut-off with a decision-free
  *optimal*. (Re-solving to optimality instead took twice as long, 24 s against 11 s, on the
  question where this happens most, digits ``l1=1e-4``. Without the cut-off option, HiGHS'
  root heuristics spent up to 10 s seeking a point in the row's empty region:
  mnist-net_256x2 prop_1 neuron 42, 9.9 s without the option, 0.6 s with it.)
* ``mode="optimal"`` (the ``naive`` baseline): no cut-off or target; proven iff the status
  is *optimal* and the dual bound ``mip_dual_bound`` :math:`\ge m`.

Any other status (time limit, interrupt, numerical trouble, solver error) proves nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import highspy
import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from ..solver import PRESOLVE_RULES_OFF, new_highs, run

_INF = highspy.kHighsInf
_MAX_INCUMBENTS = 16
FEASIBILITY_TOLERANCE = 1e-6
"""HiGHS' ``mip_feasibility_tolerance`` (its default, set explicitly on every solve): how far
the solver lets a row, bound or integrality slip. Margins scale it by
:func:`~exactcomp.milp.encoding.tolerance_amplification`."""
PRECISE_FEASIBILITY_TOLERANCE = 1e-9
"""The tolerance of a *precise* question (``Question.feasibility``): the MILP, primal and dual
feasibility tolerances all set to it, for near ties, neurons whose extreme lies within the
default margin of 0 (mnist-net_256x2 prop_1 neuron 82: max z = -6.3e-4, margin 6.9e-4 at
the default tolerance, 2e-6 at this one)."""


@dataclass(frozen=True, eq=False)
class CompiledMilp:
    r"""Matrix form of a Pyomo MILP: :math:`\ell_r \le A v \le u_r`, :math:`\ell_c \le v \le u_c`.

    ``integer[i]`` marks binary/integer columns; ``x_cols`` are the columns of the input
    variables (in input order) and ``target_cols`` those of the target variables ``z_k``.
    """

    a: sp.csc_array
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray
    x_cols: np.ndarray
    target_cols: np.ndarray

    @property
    def num_cols(self) -> int:
        return int(self.a.shape[1])


def compile_model(
    model: pyo.Block, x: pyo.Var, targets: pyo.Var
) -> tuple[CompiledMilp, list[pyo.Var]]:
    """Compile a linear Pyomo model (its constraints and variable bounds) to matrix form.

    The objective is ignored (each question sets its own). ``x`` and ``targets`` are placed
    first among the columns so that solutions are read back without a lookup. Also returns
    the Pyomo variable of every column (to build warm starts from variable values).
    """
    xs = [x[i] for i in sorted(x.keys())]
    ts = [targets[j] for j in sorted(targets.keys())]
    info = LinearStandardFormCompiler().write(
        model, mixed_form=True, column_order=xs + ts, set_sense=None
    )
    # The compiler drops variables that appear in no constraint (an input with an all-zero
    # weight column): put x and targets first anyway, as empty columns where dropped.
    position = {id(v): i for i, v in enumerate(info.columns)}
    first = xs + ts
    rest = [v for v in info.columns if id(v) not in {id(u) for u in first}]
    cols = first + rest
    a_in = sp.csc_array(info.A)
    zero = a_in.shape[1]  # index of an all-zero column appended below
    a_ext = sp.hstack([a_in, sp.csc_array((a_in.shape[0], 1))], format="csc")
    perm = np.array([position.get(id(v), zero) for v in cols], dtype=np.int64)
    a = sp.csc_array(a_ext[:, perm])
    rhs = np.asarray(info.rhs, dtype=np.float64)
    kind = np.array([row.bound_type for row in info.rows], dtype=np.int64)
    # bound_type 0: equality (rhs both sides), 1: A v <= rhs, -1: A v >= rhs.
    row_lower = np.where(kind == 1, -_INF, rhs)
    row_upper = np.where(kind == -1, _INF, rhs)
    col_lower = np.array([-_INF if v.lb is None else float(v.lb) for v in cols])
    col_upper = np.array([_INF if v.ub is None else float(v.ub) for v in cols])
    integer = np.array([v.is_integer() or v.is_binary() for v in cols], dtype=bool)
    nx = len(xs)
    milp = CompiledMilp(
        a=a,
        row_lower=row_lower,
        row_upper=row_upper,
        col_lower=col_lower,
        col_upper=col_upper,
        integer=integer,
        x_cols=np.arange(nx),
        target_cols=np.arange(nx, nx + len(ts)),
    )
    return milp, list(cols)


def column_values(columns: list[pyo.Var]) -> np.ndarray:
    """The current values of the columns' variables (``nan`` where unset)."""
    return np.array([np.nan if v.value is None else float(v.value) for v in columns])


SMALL_MATRIX_VALUE = 1e-12
"""HiGHS drops matrix entries below ``small_matrix_value``; we lower it from 1e-9 to its
minimum and count what it may still drop as rounding doubt (:func:`rounding_doubt`)."""
_ROW_TOLERANCE = 1e-7  # HiGHS' primal_feasibility_tolerance, the tightest row tolerance
_ROUNDING_BUDGET = 0.1  # share of the row tolerance that float64 rounding may use


def rounding_doubt(
    milp: CompiledMilp, target_magnitude: np.ndarray, row_tolerance: float = _ROW_TOLERANCE
) -> float:
    r"""How close float64 rounding brings the model to the solver's own row tolerance (<= 1 ok).

    A solver checks :math:`\ell_r \le a_r^\top v \le u_r` up to an absolute tolerance
    :math:`\tau` (after scaling the row by at most its largest coefficient). If evaluating a
    row in float64 can err by more than a fraction of :math:`\tau`, the solver may reject
    truly feasible points, and its "infeasible"/"optimal" claims may be false: this happens
    on networks whose pre-activations reach ~1e10, where exact cancellation matters. Per row,

    .. math::

        \rho_r = \frac{2^{-52} (n_r + 1) \left(\sum_j |a_{rj}| M_j + |\text{rhs}_r|\right)
        + \sum_{|a_{rj}| < s} |a_{rj}| M_j}{\beta\, \tau \min(1, \max_j |a_{rj}|)}

    with :math:`M_j` the magnitude bound of column :math:`j` (``target_magnitude`` for the
    free target columns), :math:`s` = :data:`SMALL_MATRIX_VALUE` and :math:`\beta = 0.1`.
    Returns :math:`\max_r \rho_r`; the caller trusts no proof from a model where it
    exceeds 1. ``row_tolerance`` is :math:`\tau` (lower for a precise question).
    """
    mag = np.maximum(np.abs(milp.col_lower), np.abs(milp.col_upper))
    mag[milp.target_cols] = np.asarray(target_magnitude, dtype=np.float64)
    if not np.isfinite(mag).all():
        return np.inf
    a = sp.csr_array(milp.a)
    if a.nnz == 0:
        return 0.0
    absa = abs(a)
    terms = absa @ mag
    rhs = np.where(np.isfinite(milp.row_lower), np.abs(milp.row_lower), 0.0)
    rhs = np.maximum(rhs, np.where(np.isfinite(milp.row_upper), np.abs(milp.row_upper), 0.0))
    nnz = np.diff(a.indptr)
    small = absa.copy()
    small.data = np.where(small.data < SMALL_MATRIX_VALUE, small.data, 0.0)
    tiny = small @ mag
    biggest = absa.max(axis=1).toarray().ravel()
    err = 2.0**-52 * (nnz + 1) * (terms + rhs) + tiny
    allowed = _ROUNDING_BUDGET * row_tolerance * np.minimum(1.0, biggest)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err > 0, err / allowed, 0.0)
    return float(np.max(ratio)) if ratio.size else 0.0


SEARCH_OPTIONS: dict[str, object] = {
    # RINS and RENS (sub-MIP heuristics) took half the time of hard stability questions and,
    # after a cut-off, returned points beyond it that turn a clean "infeasible" into an
    # "optimal" needing a re-solve. Sampling and gradient search find witnesses more
    # cheaply. mnist-net_256x2 layer 2, 16 questions at 8 s: 11 proven instead of 9, in 56 s
    # instead of 65 s.
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    # Branch on pseudo-costs from the start instead of strong branching until they are
    # "reliable": strong-branching LPs were 80% of the simplex iterations of the hard
    # questions, whose answer is mostly an infeasibility proof. Simplex iterations (a
    # load-independent measure): digits l1=1e-4's hardest question 29,005 (timed out at
    # 10 s) -> 11,441 (proven); 14 hard mnist-net_256x2 prop_1 questions 180k -> 134k, one
    # more decided within 15 s.
    "mip_pscost_minreliable": 0,
    # Separate cuts at the root only. At the nodes, separation on our dense rows (every
    # first-layer pre-activation is a row over all inputs) cost more than the nodes it saved:
    # 39 mnist-net_256x2 prop_1 questions 80.8 s -> 51.4 s (with the cut-off below), two
    # more decided within 10 s; the hard digits l1=1e-4 question 3.2 s -> 2.2 s.
    "mip_allow_cut_separation_at_nodes": False,
}
"""How HiGHS searches, for every MILP of the package (the stability questions here and the
re-check's and verification's MILPs in :mod:`exactcomp.verify.solve`). These options change
the speed only: what counts as a proof does not depend on them."""


def milp_options(feasibility: float = FEASIBILITY_TOLERANCE) -> dict[str, object]:
    """The HiGHS options of every MILP of the package at the feasibility tolerance
    ``feasibility`` (the margins assume them): the MILP tolerance at ``feasibility``, the LP
    tolerances at it too where it is below their default, the matrix entries kept that
    :func:`rounding_doubt` assumes, the presolve rules off
    (:data:`~exactcomp.solver.PRESOLVE_RULES_OFF`) and :data:`SEARCH_OPTIONS`. Every
    tolerance is set explicitly, so that a persistent instance never keeps a precise one."""
    lp_tolerance = min(feasibility, _ROW_TOLERANCE)
    return {
        "mip_feasibility_tolerance": feasibility,
        "primal_feasibility_tolerance": lp_tolerance,
        "dual_feasibility_tolerance": lp_tolerance,
        "small_matrix_value": SMALL_MATRIX_VALUE,
        "presolve_rule_off": PRESOLVE_RULES_OFF,
        **SEARCH_OPTIONS,
    }


@dataclass(frozen=True)
class Question:
    """Can ``sign * z[neuron] > 0``? (see the module docstring for the margins)."""

    neuron: int
    sign: int
    margin: float
    mode: str = "early"  # "early" (cut-off + target), "row" (cut-off as a row), "optimal"
    time_limit: float = 10.0
    start: np.ndarray | None = field(default=None, compare=False)  # full column vector
    continuous: np.ndarray | None = field(default=None, compare=False)
    """Integer columns to solve as continuous for this question: only ones whose
    integrality provably cannot change the answer (see
    :func:`~exactcomp.milp.encoding.feeding_binaries`)."""
    feasibility: float = FEASIBILITY_TOLERANCE
    """The solver's feasibility tolerance; ``margin`` must be computed with it."""


@dataclass(frozen=True, eq=False)
class Answer:
    """What one solve established.

    ``proven``: ``sign * z <= -margin`` holds on the whole box (a proof, by the rules above).
    ``points``: inputs of solutions the solver found (the final one first, then every
    improving incumbent); candidate witnesses only, to be re-checked in float64.
    """

    question: Question
    proven: bool
    status: str
    points: np.ndarray
    seconds: float


def _highs_for(milp: CompiledMilp, q: Question) -> highspy.Highs:
    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_ = milp.num_cols
    lp.num_row_ = int(milp.a.shape[0])
    cost = np.zeros(milp.num_cols)
    cost[milp.target_cols[q.neuron]] = -float(q.sign)
    lp.col_cost_ = cost
    lp.col_lower_ = milp.col_lower
    lp.col_upper_ = milp.col_upper
    lp.row_lower_ = milp.row_lower
    lp.row_upper_ = milp.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = milp.a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = milp.a.indices.astype(np.int32)
    lp.a_matrix_.value_ = milp.a.data.astype(np.float64)
    integer = milp.integer
    if q.continuous is not None and len(q.continuous):
        relaxed = np.asarray(q.continuous, dtype=np.int64)
        integer = integer.copy()
        integer[relaxed] = False
        if not integer.any():
            # without integer columns HiGHS runs its LP solver, whose statuses and bounds
            # follow other rules (no mip_dual_bound): keep one binary, so it stays a MILP
            integer[relaxed[0]] = True
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in integer
    ]
    h.passModel(lp)
    h.setOptionValue("time_limit", max(float(q.time_limit), 1e-3))
    for name, value in milp_options(q.feasibility).items():
        h.setOptionValue(name, value)
    if q.mode == "early":
        h.setOptionValue("objective_bound", float(q.margin))
        h.setOptionValue("objective_target", -float(q.margin))
    elif q.mode == "row":
        col = np.array([milp.target_cols[q.neuron]], dtype=np.int32)
        lo, hi = (-float(q.margin), _INF) if q.sign > 0 else (-_INF, float(q.margin))
        h.addRow(lo, hi, 1, col, np.array([1.0]))
        h.setOptionValue("objective_bound", float(q.margin))
        h.setOptionValue("objective_target", -float(q.margin))
    elif q.mode != "optimal":
        raise ValueError(f"unknown question mode {q.mode!r}")
    return h


def solve_question(milp: CompiledMilp, q: Question) -> Answer:
    """Answer one question with a fresh HiGHS instance (safe to call in a worker process).

    A fresh instance per question keeps answers independent of what was solved before, so
    results do not depend on how questions are spread over processes. An early-mode run that
    ends *optimal* (HiGHS may finish at the root, ignoring the cut-off, and report a
    solution beyond it) decides nothing by itself: the question is then re-solved with the
    cut-off as a row (``mode="row"``) in the time left.
    """
    t0 = time.perf_counter()
    status, proven, points = _run(milp, q)
    if q.mode == "early" and status == "Optimal" and not proven:
        left = q.time_limit - (time.perf_counter() - t0)
        if left > 0:
            again = replace(q, mode="row", time_limit=left)
            status2, proven, more = _run(milp, again)
            status = f"{status}; then {status2}"
            points = np.concatenate([points, more])
    return Answer(q, bool(proven), status, points, time.perf_counter() - t0)


@contextlib.contextmanager
def _ctrl_c_after_run() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives during a HiGHS run and deliver it after the run.

    Python raises ``KeyboardInterrupt`` wherever the main thread is running Python code; during
    a run that is our incumbent callback, and HiGHS swallows an exception raised there (the
    run ends as "Solve error" and the analysis would go on, ignoring the Ctrl-C). So while the
    solver runs, SIGINT only sets a flag; afterwards the previous handler gets the signal
    (the default one raises ``KeyboardInterrupt``; an ignored SIGINT stays ignored). Only
    possible in the main thread (elsewhere, e.g. a Dask worker thread, nothing changes).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        # None: a handler not installed from Python (embedding); the default is the closest
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if pending and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:  # SIG_DFL or unknown: the same as Python's default
            raise KeyboardInterrupt


def _incumbent_input(event, x_cols: np.ndarray) -> np.ndarray:
    """The input part of the solution an improving-solution callback reports."""
    return np.array(event.data_out.mip_solution, dtype=np.float64)[x_cols]


def _run(milp: CompiledMilp, q: Question) -> tuple[str, bool, np.ndarray]:
    """One HiGHS run: (status text, proven by the rule of ``q.mode``, solution inputs)."""
    h = _highs_for(milp, q)
    found: list[np.ndarray] = []
    xc = milp.x_cols

    def _on_incumbent(event) -> None:
        if len(found) < _MAX_INCUMBENTS:
            found.append(_incumbent_input(event, xc))

    h.cbMipImprovingSolution.subscribe(_on_incumbent)
    if q.start is not None:
        h.setSolution(int(q.start.size), np.arange(q.start.size, dtype=np.int32), q.start)
    try:
        with _ctrl_c_after_run():
            run(h)
        status = h.getModelStatus()
        info = h.getInfo()
        has_solution = info.primal_solution_status == highspy.kSolutionStatusFeasible
        final = np.array(h.getSolution().col_value, dtype=np.float64)[xc] if has_solution else None
        dual = float(info.mip_dual_bound)
        text = h.modelStatusToString(status)
    except Exception as exc:  # any solver error proves nothing
        return f"error: {exc}", False, np.empty((0, xc.size))
    finally:
        h.cbMipImprovingSolution.clear()
    M = highspy.HighsModelStatus
    if q.mode in ("early", "row"):
        proven = status == M.kInfeasible
    else:
        proven = status == M.kOptimal and np.isfinite(dual) and dual >= q.margin
    rows = ([final] if final is not None else []) + found[::-1]
    points = np.array(rows) if rows else np.empty((0, xc.size))
    return text, bool(proven), points
