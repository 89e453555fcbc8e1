r"""Solving stability questions on a compiled prefix MILP with HiGHS, with early termination.

The Pyomo model of :mod:`exactcomp.milp.encoding` is compiled once per layer to matrix form
(Pyomo's standard-form compiler) and handed to highspy directly; between neurons only the
objective changes. Nothing here adds or alters a constraint, so the Pyomo model stays the
single source of the formulation (a test checks both give the same optimum).

The question and its decision
-----------------------------
For target neuron :math:`j` of layer :math:`k` and a sign :math:`s \in \{+1, -1\}`, the
question is "can :math:`s\, z_j > 0` somewhere in the box?". With the margin
:math:`m = \mu(M) + \varepsilon A_j + N_j` of :func:`~exactcomp.highs.margins.milp_margin`
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

Any other status (time limit, interrupt, numerical trouble, solver error) proves nothing. The
rules are those of :mod:`exactcomp.highs.status` (:func:`~exactcomp.highs.status.cutoff_empty`,
:func:`~exactcomp.highs.status.bound_proves`); the solver is driven by
:func:`exactcomp.highs.milp.run_milp`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from ..highs.milp import run_milp
from ..highs.runtime import INF, milp_options
from ..highs.status import Termination, bound_proves, cutoff_empty
from ..tolerances import FEASIBILITY_TOLERANCE

_MAX_INCUMBENTS = 16


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

    @property
    def matrix(self) -> sp.csc_array:
        """The constraint matrix (the name :mod:`exactcomp.highs.matrix` reads)."""
        return self.a


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
    row_lower = np.where(kind == 1, -INF, rhs)
    row_upper = np.where(kind == -1, INF, rhs)
    col_lower = np.array([-INF if v.lb is None else float(v.lb) for v in cols])
    col_upper = np.array([INF if v.ub is None else float(v.ub) for v in cols])
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
    cpu_limit: float | None = None
    """CPU seconds of this process the question may use (``None``: only ``time_limit``, which
    is wall-clock); see :func:`exactcomp.highs.milp.run_milp`."""
    deep: bool = False
    """Whether the MILP has binaries in two or more layers: HiGHS then branches with
    reliability branching (:data:`~exactcomp.highs.runtime.DEEP_OPTIONS`); speed only."""


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
    timed_out: bool = False
    """Whether the (last) run ended at its time limit: a longer try may still decide it."""


def solve_question(milp: CompiledMilp, q: Question) -> Answer:
    """Answer one question with a fresh HiGHS instance (safe to call in a worker process).

    A fresh instance per question keeps answers independent of what was solved before, so
    results do not depend on how questions are spread over processes. An early-mode run that
    ends *optimal* (HiGHS may finish at the root, ignoring the cut-off, and report a
    solution beyond it) decides nothing by itself: the question is then re-solved with the
    cut-off as a row (``mode="row"``) in the time left.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    status, proven, points, timed_out = _run(milp, q)
    if q.mode == "early" and status == "Optimal" and not proven:
        left = q.time_limit - (time.perf_counter() - t0)
        cpu = None if q.cpu_limit is None else q.cpu_limit - (time.process_time() - c0)
        if left > 0 and (cpu is None or cpu > 0):
            again = replace(q, mode="row", time_limit=left, cpu_limit=cpu)
            status2, proven, more, timed_out = _run(milp, again)
            status = f"{status}; then {status2}"
            points = np.concatenate([points, more])
    return Answer(q, bool(proven), status, points, time.perf_counter() - t0, timed_out)


def _incumbent_input(event, x_cols: np.ndarray) -> np.ndarray:
    """The input part of the solution an improving-solution callback reports."""
    return np.array(event.data_out.mip_solution, dtype=np.float64)[x_cols]


def _run(milp: CompiledMilp, q: Question) -> tuple[str, bool, np.ndarray, bool]:
    """One HiGHS run: (status text, proven by the rule of ``q.mode``, solution inputs, whether
    it ended at its time limit)."""
    if q.mode not in ("early", "row", "optimal"):
        raise ValueError(f"unknown question mode {q.mode!r}")
    found: list[np.ndarray] = []
    xc = milp.x_cols

    def _on_incumbent(event) -> None:
        if len(found) < _MAX_INCUMBENTS:
            found.append(_incumbent_input(event, xc))

    cost = np.zeros(milp.num_cols)
    cost[milp.target_cols[q.neuron]] = -float(q.sign)
    integer = milp.integer
    if q.continuous is not None and len(q.continuous):
        relaxed = np.asarray(q.continuous, dtype=np.int64)
        integer = integer.copy()
        integer[relaxed] = False
        if not integer.any():
            # without integer columns HiGHS runs its LP solver, whose statuses and bounds
            # follow other rules (no mip_dual_bound): keep one binary, so it stays a MILP
            integer[relaxed[0]] = True
    cut = q.mode in ("early", "row")
    row = None
    if q.mode == "row":
        col = int(milp.target_cols[q.neuron])
        row = (col, -float(q.margin), INF) if q.sign > 0 else (col, -INF, float(q.margin))
    out = run_milp(
        milp,
        cost,
        integer,
        time_limit=q.time_limit,
        options=milp_options(q.feasibility, q.deep),
        cutoff=float(q.margin) if cut else None,
        target=-float(q.margin) if cut else None,
        row=row,
        start=q.start,
        on_incumbent=_on_incumbent,
        cpu_limit=q.cpu_limit,
    )
    if out.error is not None:
        return out.text, False, np.empty((0, xc.size)), False
    proven = (
        cutoff_empty(out.termination) if cut else bound_proves(out.termination, out.dual, q.margin)
    )
    rows = ([out.values[xc]] if out.values is not None else []) + found[::-1]
    points = np.array(rows) if rows else np.empty((0, xc.size))
    timed_out = out.termination is Termination.TIME_LIMIT
    return out.text, bool(proven), points, timed_out
