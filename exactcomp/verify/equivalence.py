r"""``verify_equivalence``: prove two networks equal on a box, or show where they differ.

The run has five phases, cheapest first; each can end it:

1. **sampling**: both networks on uniform points, the box corners (and points near them), the
   centre and the user's data rows; a difference above ``tol`` ends the run (NOT_EQUIVALENT).
1a. **shared body** (``linf``, ``f`` and ``g`` equal but for their last layer: a quantised or
   pruned output layer, a head fine-tuned on a frozen body): each output's difference is
   affine in the common last hidden layer, a question of one network that the stability
   engine decides (:mod:`exactcomp.verify.head`), within :data:`~exactcomp.verify.phases.HEAD_SHARE` of the time left;
   after 1b on at most :data:`~exactcomp.verify.phases.SPLIT_MAX_INPUTS` free inputs, before it beyond.
1b. **input splitting** (``linf``, networks of the same architecture; with more than
   :data:`~exactcomp.verify.phases.SPLIT_MAX_INPUTS` free inputs, those with ``lower < upper``, only
   :data:`~exactcomp.verify.phases.SPLIT_WIDE_NODES` boxes, enough when few splits suffice; at most
   :data:`~exactcomp.verify.phases.SPLIT_UNPAIRED_NODES` when paired neurons look far apart): differential bounds of
   paired neurons, linear in the input, on sub-boxes split until each is proven (:mod:`exactcomp.verify.splitting`); within
   :data:`~exactcomp.verify.phases.SPLIT_SHARE` of the time left. It proves quantised or perturbed copies that the
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
:data:`~exactcomp.verify.run.STABILITY_SHARE` of the time left (no layer or MILP question
starts past their deadline; what they did not decide keeps only cheap bounds, its neurons
their binaries), the differential bounds stop linking at the deadline, and the phases after
it are skipped once no time is left. Running out of time gives UNKNOWN, never a proof.

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

import time
from collections.abc import Sequence

import numpy as np

from ..domain import Box
from ..highs.margins import solver_margin
from ..network import Network
from ..progress import SILENT, Progress
from ..tolerances import DEFAULT, Tolerances, underflow_tolerances
from ..verdicts import StabilityReport
from . import coupling, differential, head, phases
from .differential import Side
from .formulation import StabilityBudget, build_joint_model, proven_encoding, with_linear_output
from .phases import MATCH_POINTS, SearchPhases
from .result import EquivalenceResult, EquivalenceStatus
from .run import check_arguments, compared_outputs
from .seethrough import prove_unpaired
from .solve import ObjectiveSolver, solve_objectives

DIFFERENTIAL_SECONDS = 10.0  # linking neurons may take this long when time allows
UNPAIRED_SHARE = 0.5  # of the time left: proofs of f's neurons g has no partner of (seethrough)


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
    check_arguments(f, g, box, mode, tol, time_limit)
    outputs = compared_outputs(outputs, mode, f.output_size)
    tolerances = underflow_tolerances(tolerances, [f, g], [box])
    run = _Run(f, g, box, mode, tol, time_limit, progress, tolerances, outputs)
    run.known_f = known_f
    return run.execute(np.random.default_rng(seed), data)


class _Run(SearchPhases):
    """One verification run: its phases in the order of the module docstring (1, 1a, 1b and 3
    from :class:`~exactcomp.verify.phases.SearchPhases`; the proof phases 2 and 4 here)."""

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
        first = free > phases.SPLIT_MAX_INPUTS or same_rows
        order = (self.head, self.split) if first else (self.split, self.head)
        for phase in order:
            done = phase()
            if done is not None:
                return done
        return self.prove()

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
        pairs = coupling.match_neurons(fl, gl, self.points[:MATCH_POINTS], 2, twins=coupling.TWINS)
        until = time.perf_counter() + UNPAIRED_SHARE * self.left()
        enc_f, self.unpaired = prove_unpaired(fl, self.box, enc_f, pairs, self.tolerances, until)
        flip = [(fk, p, gk, q) for gk, q, fk, p in pairs]  # g's own, as in either order
        enc_g, more = prove_unpaired(gl, self.box, enc_g, flip, self.tolerances, until)
        self.unpaired, fs, gs = self.unpaired + more, Side(fl, *enc_f), Side(gl, *enc_g)

        # half the time left (the rest is for the MILPs), or more when time is short; never
        # past the deadline (the links not proven by then are bounded by intervals)
        def linking() -> float:
            return time.perf_counter() + min(
                max(0.5 * self.left(), DIFFERENTIAL_SECONDS), self.left()
            )

        start = time.perf_counter()
        diff = differential.bound_differences(fs, gs, pairs, self.box_bounds, deadline=linking())
        self.links, out = len(diff.links), diff.outputs
        broken = coupling.inconsistency(
            fs, gs, diff.links, self.points, self.tolerances, deadline=self.deadline
        )
        if broken is None and not self.proves(out):  # f's twins g merged (coupling docstring)
            now = time.perf_counter()  # as long as the forward one took, 1 s at least
            until = min(linking(), now + max(now - start, 1.0))
            back = coupling.swapped_outputs(
                fs, gs, self.points, MATCH_POINTS, self.box_bounds, self.tolerances, until
            )
            broken = back if isinstance(back, str) else None
            if broken is None:  # the intersection of two proofs
                out = tuple(
                    (max(a, c), min(b, d)) for (a, b), (c, d) in zip(out, back, strict=True)
                )
        if broken is not None:
            return self.finish(
                EquivalenceStatus.UNKNOWN, np.inf, reason=f"internal check failed: {broken}"
            )
        self.known = self.merged(out)  # with what input splitting proved, if it ran
        self.progress.advance(1, f"{self.links} links, {self.unpaired} unpaired proven")
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
        coupling.add_links(jm.model, diff.links, enc_f, enc_g)
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
        return solve_objectives(self, jm, ObjectiveSolver(jm.model, jm.x), margin)
