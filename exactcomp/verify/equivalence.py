r"""``verify_equivalence``: prove two networks equal on a box, or show where they differ.

The run has five phases, cheapest first; each can end it:

1. **sampling**: both networks on uniform points, the box corners (and points near them), the
   centre and the user's data rows; a difference above ``tol`` ends the run (NOT_EQUIVALENT).
1a. **shared body** (``linf``, ``f`` and ``g`` equal but for their last layer: a quantised or
   pruned output layer, a head fine-tuned on a frozen body): each output's difference is
   affine in the common last hidden layer, a question of one network that the stability
   engine decides (:mod:`exactcomp.verify.head`), within :data:`HEAD_SHARE` of the time left;
   after 1b on at most :data:`SPLIT_MAX_INPUTS` free inputs, before it beyond.
1b. **input splitting** (``linf``, networks of the same architecture; with more than
   :data:`SPLIT_MAX_INPUTS` free inputs, those with ``lower < upper``, only
   :data:`SPLIT_WIDE_NODES` boxes, enough when few splits suffice; at most
   :data:`SPLIT_UNPAIRED_NODES` when paired neurons look far apart): differential bounds of
   paired neurons, linear in the input, on sub-boxes split until each is proven (:mod:`exactcomp.verify.splitting`); within
   :data:`SPLIT_SHARE` of the time left. It proves quantised or perturbed copies that the
   phases below cannot; when it does not finish, its proven bounds carry over.
2. **bounds and differential**: proven stability verdicts and bounds of both networks, neurons
   of ``g`` paired with neurons of ``f`` that agree on the samples, and bounds on their
   differences computed in exact dyadic arithmetic, rounded outwards once at the end
   (:mod:`exactcomp.verify.differential`); if the output differences are
   proven within ``tol`` the run ends (EQUIVALENT, no solver). This settles compressed,
   permuted or re-exported networks in seconds.
3. **gradient**: projected gradient ascent on every objective still open, from the best
   sampled points.
4. **milp**: one Pyomo model with both networks on a shared input, tied by the proven links
   (:mod:`exactcomp.verify.formulation`); each objective is decided in turn by HiGHS with
   cut-offs (:mod:`exactcomp.verify.solve`). All objectives proven gives EQUIVALENT; a solver
   incumbent that reproduces in float64 gives NOT_EQUIVALENT; anything else gives UNKNOWN with
   the bounds reached.

**Time.** ``time_limit`` bounds the whole run. The stability analyses of phase 2 end by
:data:`STABILITY_SHARE` of the time left (no layer or MILP question starts past their
deadline; what they did not decide keeps only cheap bounds, its neurons their binaries), the
differential bounds stop linking at the deadline, and the phases after it are skipped once no
time is left. Running out of time gives UNKNOWN, never a proof.

Definitions (``tol`` = :math:`\tau`):

* ``linf``: EQUIVALENT iff :math:`\max_{x \in B} \|f(x) - g(x)\|_\infty \le \tau`.
* ``top1``: EQUIVALENT iff for every :math:`x \in B` and every top class :math:`i` of
  :math:`f(x)`, :math:`g_i(x) \ge \max_j g_j(x) - \tau`: ``g`` ranks every class that ``f``
  puts first within :math:`\tau` of its own best. A tie in ``f`` where ``g`` picks one of the
  tied classes is therefore *not* a counterexample (that class is a top class of ``f``); with
  :math:`\tau \to 0` the condition says that :math:`\arg\max f(x)` and :math:`\arg\max g(x)`
  always share a class. A counterexample is an input where ``g`` prefers some class by more
  than :math:`\tau` over *every* top class of ``f`` (confirmed in exact arithmetic). Ties on a
  boundary (the usual case) are proven like anything else; where ``f`` ties on a whole region
  (identical output rows) the answer may be UNKNOWN (see :mod:`exactcomp.verify.formulation`).

Proofs come in two kinds. *Differential bounds* (:mod:`exactcomp.verify.differential`) bound
``g - f`` directly when the neurons of ``g`` match neurons of ``f`` (a compressed, permuted or
re-exported network), with no solver and no rounding: every float64 is a dyadic rational
:math:`m 2^e`, the back-substitution is carried exactly on integers, and only each final bound
is rounded, outwards, to a float64 (so it is of the order of the networks' own round-off). The
*MILP* handles the rest; its dual bound is trusted only with the margin
:func:`~exactcomp.highs.margins.solver_margin` of ``M``, the largest a-priori output
magnitude, so a ``tol`` at or below that margin (about ``1e-6`` with the default tolerances)
cannot be proven by the MILP: the answer is then UNKNOWN, with the reason in the result. Pass a larger ``tol`` (e.g.
``1e-4``, which also absorbs float32 rounding of a saved network) for unrelated networks.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ..domain import Box
from ..errors import InvalidNetworkError, InvalidOptionError
from ..highs.margins import solver_margin
from ..network import Network
from ..progress import SILENT, Progress
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import StabilityReport
from . import coupling, differential, falsify, head, splitting
from .formulation import (
    StabilityBudget,
    build_joint_model,
    linf_objective,
    proven_encoding,
    set_top1_condition,
    top1_objective,
    with_linear_output,
)
from .result import Counterexample, EquivalenceResult, EquivalenceStatus
from .solve import Decision, ObjectiveSolver

MODES = ("linf", "top1")
SAMPLES = 4096  # uniform points in the falsification phase
GRADIENT_STARTS = 4  # starting points per objective for gradient ascent
MATCH_POINTS = 512  # sampled inputs used to pair neurons of f and g
FALSIFY_SHARE = 0.2  # at most this share of the time limit goes to sampling + gradients
DIFFERENTIAL_SECONDS = 10.0  # linking neurons may take this long when time allows
STABILITY_SHARE = 0.5  # the stability analyses of f and g end by this share of the time left
MIN_MILP_SECONDS = 0.05  # the shortest per-MILP limit of the stability analyses
SPLIT_MAX_INPUTS = 12  # input splitting runs in full for at most this many free inputs
SPLIT_WIDE_NODES = 64  # ... and with more free inputs, bounds at most this many boxes
SPLIT_SHARE = 0.75  # input splitting may use this share of the time left after sampling
# ... and bounds at most this many boxes when paired neurons differ by more than a quarter of
# their size (permuted copies; but also ACAS Xu 1_1 at 2 or 4 bits or pruned, whose outputs
# differ by 0.007-0.03: proven with 361-3,317 boxes, benchmarks/RESULTS.md "acasq8")
SPLIT_UNPAIRED_NODES = 4096
# networks that share every hidden layer: the stability engine may use this share of the time
# left after sampling (digits l1 = 0, output layer at 8 bits: EQUIVALENT at tol 0.4 in
# 12 s where the later phases end at 0.86 in 60 s; benchmarks/RESULTS.md "head14")
HEAD_SHARE = 0.75


def verify_equivalence(
    f: Network,
    g: Network,
    box: Box,
    *,
    mode: str = "linf",
    tol: float | None = None,
    time_limit: float = 60.0,
    data: np.ndarray | None = None,
    progress: Progress = SILENT,
    seed: int = 0,
    tolerances: Tolerances = DEFAULT,
    known_f: StabilityReport | None = None,
    outputs: Sequence[int] | None = None,
) -> EquivalenceResult:
    """Prove ``f`` and ``g`` equivalent on ``box``, or find an input where they differ.

    Parameters
    ----------
    f, g:
        Networks with the same numbers of inputs and outputs (any widths and depths).
    box:
        The input domain.
    mode:
        ``"linf"`` (``max ||f - g||_inf <= tol``) or ``"top1"`` (see the module docstring).
    tol:
        The allowed difference (default ``tolerances.equivalence``); must exceed the solver
        margin to be provable.
    time_limit:
        Seconds for the whole run; when it runs out the result is UNKNOWN with the bounds
        reached.
    data:
        Optional input rows (``(n, input_size)``) tried first as candidate counterexamples.
    progress:
        Receives the phases and the objectives done.
    seed:
        Seeds the sampling (results are deterministic for a given seed).
    tolerances:
        The solver margins (:class:`~exactcomp.tolerances.Tolerances`).
    known_f:
        Stability verdicts of ``f`` over ``box`` that were *already re-proven independently*
        (:func:`~exactcomp.verify.recheck_certificates`; the public API does that before
        passing them). Used instead of a fresh analysis of ``f``: a compressed ``g`` then
        needs only cheap bounds, because its neurons are linked one to one to ``f``'s.
    outputs:
        ``linf`` only: the output indices compared (default all); the others are ignored.

    Returns
    -------
    EquivalenceResult
        EQUIVALENT only with a proof; NOT_EQUIVALENT only with a counterexample re-evaluated
        in float64 with the networks' own weights; otherwise UNKNOWN.
    """
    tol = tolerances.equivalence if tol is None else tol
    _check(f, g, box, mode, tol, time_limit)
    outputs = _outputs(outputs, mode, f.output_size)
    run = _Run(f, g, box, mode, tol, time_limit, progress, tolerances, outputs)
    run.known_f = known_f
    return run.execute(np.random.default_rng(seed), data)


def _check(f: Network, g: Network, box: Box, mode: str, tol: float, time_limit: float) -> None:
    if mode not in MODES:
        raise InvalidOptionError(f"mode must be one of {MODES}, got {mode!r}")
    if not (isinstance(tol, numbers.Real) and np.isfinite(float(tol)) and tol >= 0):
        raise InvalidOptionError(f"tol must be a finite number >= 0, got {tol!r}")
    if not time_limit > 0:
        raise InvalidOptionError(f"the time limit must be > 0 seconds, got {time_limit}")
    if f.input_size != g.input_size or f.output_size != g.output_size:
        raise InvalidNetworkError(
            f"the networks are not comparable: {f.describe()} has {f.input_size} inputs and "
            f"{f.output_size} outputs, {g.describe()} has {g.input_size} and {g.output_size}"
        )
    box.check_size(f.input_size)


def _outputs(outputs: Sequence[int] | None, mode: str, m: int) -> list[int]:
    """The compared output indices: all by default; a subset only in ``linf`` mode."""
    if outputs is None:
        return list(range(m))
    if mode != "linf":
        raise InvalidOptionError("a subset of outputs can be compared only in linf mode")
    out = [int(i) for i in outputs]
    if not out:
        raise InvalidOptionError("the list of outputs to compare is empty")
    bad = [i for i in out if not 0 <= i < m]
    if bad:
        raise InvalidOptionError(f"output {bad[0]} does not exist (the networks have {m})")
    if len(set(out)) != len(out):
        raise InvalidOptionError(f"outputs {out} name an output twice")
    return out


class _Run:
    """The state of one verification run (the time budget and what has been found so far)."""

    def __init__(self, f, g, box, mode, tol, time_limit, progress, tolerances, outputs) -> None:
        self.f, self.g, self.box, self.mode, self.tol = f, g, box, mode, float(tol)
        self.progress, self.tolerances = progress, tolerances
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + time_limit
        self.timings: dict[str, float] = {}
        self.lower = 0.0  # largest difference seen at a concrete input
        self.points = box.center[None, :]  # the sampled inputs (for neuron matching)
        self.links = 0  # neurons of g proven to match a neuron of f
        self.known: dict[tuple, float] = {}  # objective -> bound proven without a solver
        self.box_bounds = (box.lower, box.upper)
        self.known_f: StabilityReport | None = None  # re-proven verdicts of f, if given
        self.margin = float("nan")  # the solver margin, once the MILP model is built
        m = f.output_size
        self.outputs = outputs  # compared outputs (linf)
        self.boxes = 0  # boxes bounded by input splitting
        if mode == "linf":
            self.objectives = [(i, s) for i in outputs for s in (1.0, -1.0)]
        else:
            self.objectives = [(i, j) for i in range(m) for j in range(m) if i != j]

    # ------------------------------------------------------------------ helpers
    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def measure(self, x: np.ndarray) -> np.ndarray:
        """The difference measured at each row of ``x`` (float64, original weights)."""
        fx, gx = self.f.forward(x), self.g.forward(x)
        if self.mode == "linf":
            return np.abs(fx - gx)[:, self.outputs].max(axis=1)
        return falsify.top1_disagreement(fx, gx)

    def counterexample(self, x: np.ndarray, source: str) -> Counterexample | None:
        """A counterexample at the best row of ``x`` if one differs by more than ``tol``."""
        x = self.box.clip(np.atleast_2d(x))
        d = self.measure(x)
        k = int(np.argmax(d))
        if not d[k] > self.tol:
            self.lower = max(self.lower, float(d[k]))
            return None
        # confirmed in exact arithmetic: float64 rounding must not fabricate a difference
        exact = falsify.exact_difference(self.f, self.g, x[k], self.mode, self.outputs)
        self.lower = max(self.lower, float(exact))
        if not exact > Fraction(self.tol):
            return None
        return Counterexample(
            x[k], self.f.forward(x[k]), self.g.forward(x[k]), float(exact), source
        )

    def finish(self, status, upper, cex=None, milps=0, proven=0, reason="") -> EquivalenceResult:
        self.timings["total"] = time.perf_counter() - self.t0
        return EquivalenceResult(
            status=status,
            mode=self.mode,
            tol=self.tol,
            upper_bound=float(upper),
            lower_bound=self.lower,
            counterexample=cex,
            milps=milps,
            objectives_proven=proven,
            objectives_total=len(self.objectives),
            links=self.links,
            boxes=self.boxes,
            timings=self.timings,
            reason=reason,
            margin=self.margin,
        )

    def timed(self, phase: str, t: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t

    # ------------------------------------------------------------------ phases
    def execute(self, rng: np.random.Generator, data) -> EquivalenceResult:
        cex = self.sample(rng, data)
        if cex is not None:
            return self.finish(EquivalenceStatus.NOT_EQUIVALENT, np.inf, cex, reason=cex.source)
        # on few inputs input splitting proves a last-layer change 4-10x faster than the
        # stability engine (ACAS Xu, output layer at 4 bits, RESULTS.md "head14"); beyond, the
        # engine first (mnist-net_256x2/256x4: 1.9-7.9 s against 25-43 s or UNKNOWN)
        # (an unchanged last layer, e.g. the same network twice, is exact and instant there)
        free = int(np.count_nonzero(self.box.upper > self.box.lower))
        same_rows = head.shared_body(self.f, self.g) and np.array_equal(
            self.f.layers[-1].weight, self.g.layers[-1].weight
        )
        first = free > SPLIT_MAX_INPUTS or same_rows
        phases = (self.head, self.split) if first else (self.split, self.head)
        for phase in phases:
            done = phase()
            if done is not None:
                return done
        return self.prove()

    def sample(self, rng: np.random.Generator, data) -> Counterexample | None:
        """Phase 1: both networks on the candidate points (uniform, corners, data)."""
        t = time.perf_counter()
        self.progress.task("sampling", 1)
        self.points = falsify.candidate_points(self.box, SAMPLES, rng, data)
        cex = self.counterexample(self.points, "sampling")
        self.progress.advance(1)
        self.timed("sampling", t)
        return cex

    def split(self) -> EquivalenceResult | None:
        """Phase 1b: input splitting over differential bounds, when it applies; a result when
        it settles the question, else None (its proven bounds are kept in ``self.known``)."""
        f, g = self.f, self.g
        if self.mode != "linf" or SPLIT_MAX_INPUTS <= 0:
            return None
        free = int(np.count_nonzero(self.box.upper > self.box.lower))  # fixed inputs never split
        if not splitting.comparable(f, g):
            return None
        nodes = 2_000_000 if free <= SPLIT_MAX_INPUTS else SPLIT_WIDE_NODES
        if not splitting.paired(f, g, self.points[:MATCH_POINTS]):
            nodes = min(nodes, SPLIT_UNPAIRED_NODES)
        t = time.perf_counter()
        self.progress.task("input splitting", 1)
        out = splitting.split_verify(
            f,
            g,
            self.box,
            self.outputs,
            self.tol,
            t + SPLIT_SHARE * self.left(),
            max_nodes=nodes,
            tolerances=self.tolerances,
        )
        self.boxes = out.nodes
        cex = self.counterexample(out.x, "splitting")
        self.progress.advance(1, f"{out.nodes} boxes")
        self.timed("splitting", t)
        if cex is not None:
            return self.finish(EquivalenceStatus.NOT_EQUIVALENT, np.inf, cex, reason=cex.source)
        for o, b in out.bounds.items():  # with what the shared body proved, if it ran
            self.known[o] = min(self.known.get(o, np.inf), b)
        if out.proven:
            return self.finish(
                EquivalenceStatus.EQUIVALENT,
                max(*out.bounds.values(), 0.0),
                proven=len(self.objectives),
                reason=f"input splitting over differential bounds ({out.nodes} boxes)",
            )
        return None

    def head(self) -> EquivalenceResult | None:
        """Phase 1a (``linf``, networks that share every hidden layer exactly; after 1b on
        few inputs): each side of
        each compared output is a row on the shared body, asked of the stability engine
        (:mod:`exactcomp.verify.head`) within :data:`HEAD_SHARE` of the time left; a result
        when it settles the question, else None (its proven bounds are kept in ``self.known``
        and carried by the phases after it)."""
        if self.mode != "linf" or not head.shared_body(self.f, self.g):
            return None
        todo = [o for o in self.objectives if not self.known.get(o, np.inf) <= self.tol]
        t = time.perf_counter()
        self.progress.task("shared body", 1)
        out = head.head_bounds(
            self.f,
            self.g,
            self.box,
            todo,
            self.tol,
            deadline=t + HEAD_SHARE * self.left(),
            tol=self.tolerances,
        )
        self.progress.advance(1)
        self.timed("shared body", t)
        cex = self.counterexample(out.points, "shared body") if len(out.points) else None
        if cex is not None:
            return self.finish(EquivalenceStatus.NOT_EQUIVALENT, np.inf, cex, reason=cex.source)
        for o, b in out.bounds.items():
            self.known[o] = min(self.known.get(o, np.inf), b)
        if all(self.known.get(o, np.inf) <= self.tol for o in self.objectives):
            return self.finish(
                EquivalenceStatus.EQUIVALENT,
                max(*self.known.values(), 0.0),
                proven=len(self.objectives),
                reason="the shared hidden layers: each output's difference proven as a row "
                "on them (exactcomp.verify.head)",
            )
        return None

    def gradient(self) -> Counterexample | None:
        """Phase 2 (when the differential bounds did not prove everything): gradient ascent
        on each objective still open, from the best sampled points."""
        pts = self.points
        t = time.perf_counter()
        budget = t + FALSIFY_SHARE * self.left()
        todo = [o for o in self.objectives if not self.known.get(o, np.inf) <= self.tol]
        self.progress.task("gradient search", len(todo))
        fx, gx = self.f.forward(pts), self.g.forward(pts)
        m = self.f.output_size
        cex = None
        for obj in todo:
            if time.perf_counter() > budget:
                break
            if self.mode == "linf":
                i, s = obj
                score = s * (fx[:, i] - gx[:, i])
                coef = falsify.linf_coefficients(m, i, s)
            else:
                i, j = obj
                score = gx[:, j] - gx[:, i] - np.maximum(fx.max(axis=1) - fx[:, i], 0.0)
                coef = falsify.top1_coefficients(i, j)
            starts = pts[np.argsort(-score)[:GRADIENT_STARTS]]
            cex = self.counterexample(
                falsify.ascend(self.f, self.g, self.box, starts, coef), "gradient"
            )
            self.progress.advance(1)
            if cex is not None:
                break
        self.timed("gradient", t)
        return cex

    def out_of_time(self, phase: str) -> EquivalenceResult:
        """UNKNOWN: the time limit ran out before ``phase`` (nothing proven is lost: the
        differential bounds found so far, if any, are the upper bound)."""
        known = self.known
        return self.finish(
            EquivalenceStatus.UNKNOWN,
            max(*known.values(), self.lower) if known else np.inf,
            proven=sum(b <= self.tol for b in known.values()),
            reason=f"time limit reached before the {phase}",
        )

    def stability_budgets(self) -> tuple[float, float, float]:
        """Per-MILP seconds and the deadlines of the stability analyses of ``f`` and ``g``.

        Together they end by :data:`STABILITY_SHARE` of the time left (``f`` first, with half
        of it; ``g`` gets what ``f`` leaves), so that the differential bounds and the MILPs
        keep the rest. No layer or MILP question of an analysis starts past its deadline and a
        running question is capped to it, so an analysis overruns it by one cheap phase at most.
        """
        left = self.left()
        now = time.perf_counter()
        window = STABILITY_SHARE * left
        per_milp = max(MIN_MILP_SECONDS, min(2.0, 0.01 * left))
        return per_milp, now + 0.5 * window, now + window

    def prove(self) -> EquivalenceResult:
        t = time.perf_counter()
        self.progress.task("bounds and stable neurons", 2)
        fl, gl = with_linear_output(self.f), with_linear_output(self.g)
        per_milp, deadline_f, deadline_g = self.stability_budgets()
        if self.known_f is not None:
            enc_f = proven_encoding(fl, self.box, self.tolerances, None, known=self.known_f)
            self.progress.advance(1)
            enc_g = proven_encoding(gl, self.box, self.tolerances, None)
        else:
            budget_f = StabilityBudget(per_milp, deadline_f)
            enc_f = proven_encoding(fl, self.box, self.tolerances, budget_f)
            self.progress.advance(1)
            budget_g = StabilityBudget(per_milp, deadline_g)
            enc_g = proven_encoding(gl, self.box, self.tolerances, budget_g)
        self.progress.advance(1)
        self.timed("bounds", t)
        if self.left() <= 0:
            return self.out_of_time("differential bounds")
        t = time.perf_counter()
        self.progress.task("differential bounds", 1)
        fs, gs = differential.Side(fl, *enc_f), differential.Side(gl, *enc_g)
        pairs = coupling.match_neurons(fl, gl, self.points[:MATCH_POINTS])
        # half the time left (the rest is for the MILPs), or more when time is short; never
        # past the deadline (the links not proven by then are bounded by intervals)
        budget = min(max(0.5 * self.left(), DIFFERENTIAL_SECONDS), self.left())
        diff = differential.bound_differences(
            fs, gs, pairs, self.box_bounds, deadline=time.perf_counter() + budget
        )
        links = diff.links
        self.links = len(links)
        broken = coupling.inconsistency(fs, gs, links, self.points, self.tolerances)
        if broken is not None:
            return self.finish(
                EquivalenceStatus.UNKNOWN, np.inf, reason=f"internal check failed: {broken}"
            )
        self.known = {  # with what input splitting proved, if it ran
            o: min(b, self.known.get(o, np.inf))
            for o, b in self.differential_objective_bounds(diff.outputs).items()
        }
        self.progress.advance(1, f"{len(links)} links")
        self.timed("differential", t)
        if all(b <= self.tol for b in self.known.values()):
            return self.finish(  # the bound is exact; a sampled float64 difference may exceed it
                EquivalenceStatus.EQUIVALENT,
                max(*self.known.values(), self.lower, 0.0),
                proven=len(self.objectives),
                reason="exact argument: differential bounds (no MILP needed)",
            )
        cex = self.gradient()
        if cex is not None:
            return self.finish(EquivalenceStatus.NOT_EQUIVALENT, np.inf, cex, reason=cex.source)
        if self.left() <= 0:
            return self.out_of_time("MILP")
        t = time.perf_counter()
        jm = build_joint_model(fl, gl, self.box, enc_f[0], enc_g[0], enc_f[1], enc_g[1])
        coupling.add_links(jm.model, links, enc_f, enc_g)
        self.timed("build", t)
        margin = solver_margin(self.tolerances, jm.scale)
        self.margin = margin
        if self.tol <= margin:
            return self.finish(
                EquivalenceStatus.UNKNOWN,
                max(self.known.values()),
                proven=sum(b <= self.tol for b in self.known.values()),
                reason=f"tol {self.tol:g} is not above the solver margin {margin:.2g}; "
                "no MILP bound can prove it",
            )
        return self.solve_objectives(jm, ObjectiveSolver(jm.model, jm.x), margin)

    def differential_objective_bounds(self, out) -> dict[tuple, float]:
        """Sound upper bounds on each objective from the differential bounds of the outputs.

        With ``g_i - f_i`` in ``[lo_i, hi_i]``: ``linf`` objective ``(i, +1)`` (``f_i - g_i``)
        is at most ``-lo_i`` and ``(i, -1)`` at most ``hi_i``; the ``top1`` pair ``(i, j)``
        (``g_j - g_i`` where ``f_i >= f_j``) is at most
        ``(g_j - f_j) + (f_j - f_i) + (f_i - g_i) <= hi_j - lo_i``.
        """
        if self.mode == "linf":
            return {(i, s): (-out[i][0] if s > 0 else out[i][1]) for i, s in self.objectives}
        return {(i, j): out[j][1] - out[i][0] for i, j in self.objectives}

    def solve_objectives(self, jm, solver: ObjectiveSolver, margin: float) -> EquivalenceResult:
        """Decide each objective in turn; time-outs get a second pass with the time left."""
        t = time.perf_counter()
        bounds = dict(self.known)  # objective -> best proven upper bound
        pending = [o for o in self.objectives if not bounds.get(o, np.inf) <= self.tol]
        condition = None  # the class i whose "top class of f" constraints are in the model
        statuses: set[str] = set()  # solver statuses of the objectives left undecided
        self.progress.task("milp", len(pending))
        for attempt in range(2):
            undecided = []
            for n, obj in enumerate(pending):
                share = self.left() / (len(pending) - n)
                if share <= 0:
                    undecided.append(obj)
                    continue
                if self.mode == "linf":
                    expr = linf_objective(jm, *obj)
                else:
                    if condition != obj[0]:
                        condition = obj[0]
                        set_top1_condition(jm, condition)
                    expr = top1_objective(jm, *obj)
                out = solver.solve(expr, self.tol, margin, share)
                bounds[obj] = min(bounds.get(obj, np.inf), out.upper_bound)
                if out.decision is Decision.FOUND and out.x is not None:
                    cex = self.counterexample(out.x, "milp")
                    if cex is not None:
                        self.timed("milp", t)
                        return self.finish(
                            EquivalenceStatus.NOT_EQUIVALENT,
                            np.inf,
                            cex,
                            milps=solver.solves,
                            proven=sum(b <= self.tol for b in bounds.values()),
                            reason="found by the MILP",
                        )
                if out.decision is Decision.PROVEN:
                    self.progress.advance(1, f"{obj}: <= {out.upper_bound:.2g}")
                else:
                    undecided.append(obj)
                    statuses.add(out.status)
            pending = undecided
            if not pending or self.left() <= 0 or attempt == 1:
                break
        self.timed("milp", t)
        proven = len(self.objectives) - len(pending)
        upper = max(bounds.get(o, np.inf) for o in self.objectives)
        if pending:
            return self.finish(
                EquivalenceStatus.UNKNOWN,
                max(upper, self.lower),
                milps=solver.solves,
                proven=proven,
                reason=f"{len(pending)} objective(s) undecided (solver: "
                f"{', '.join(sorted(statuses)) or 'no time left'})",
            )
        return self.finish(
            EquivalenceStatus.EQUIVALENT,
            upper,
            milps=solver.solves,
            proven=proven,
            reason="every objective proven by the MILP",
        )
