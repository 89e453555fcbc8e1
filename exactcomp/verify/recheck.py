r"""Re-check the stability claims a compression rests on, independently of the compressor.

A compressed network is exact only if every neuron it removed was truly inactive and every
neuron it folded truly active on the domain. This module re-proves each such claim from
scratch, trusting nothing in the report but the claims themselves:

1. **fresh bounds**: interval arithmetic, then linear (CROWN-style) bounds, computed here from
   the original weights and the box, then, for the claims still open, the LP with ideal cuts
   (:mod:`exactcomp.bounds.ideal_cuts`) on those bounds. An INACTIVE claim holds if
   :math:`u_{kj} \le 0`, an ACTIVE claim if :math:`l_{kj} \ge 0` (the bounds are padded, so
   this is sound).
   For inputs of at most :data:`~exactcomp.bab.split.MAX_INPUTS` dimensions, the claims
   still open are then sought by branch and bound over input splits
   (:func:`exactcomp.bab.prove_signs`), re-run here from scratch on these fresh bounds. Both
   are the engine's own phase functions (:mod:`exactcomp.stability.phases`), asked about
   the claims with this module's bounds.
2. **per-neuron MILP** for the claims the bounds cannot settle: layers ``< k`` are encoded with
   the fresh bounds as big-M constants (tightened only by claims *this module* has already
   re-proven, layer by layer), and the solver decides
   :math:`\max z_{kj} \le 0` (INACTIVE) or :math:`\max (-z_{kj}) \le 0` (ACTIVE) with the margin
   :func:`~exactcomp.highs.margins.solver_margin` (:mod:`exactcomp.verify.solve`) plus how far
   the solver's feasibility tolerance and its dropping of tiny coefficients can move :math:`z_{kj}`
   (:func:`~exactcomp.milp.encoding.tolerance_amplification`,
   :func:`~exactcomp.milp.encoding.negligible_contribution`); a layer whose model float64
   rounding cannot represent within the solver's tolerance
   (:func:`~exactcomp.highs.margins.rounding_doubt`) gets no MILP proof at all. A claim whose
   extreme the solver finds within the margin of 0 (a near tie) is solved once more at
   :data:`~exactcomp.tolerances.PRECISE_FEASIBILITY_TOLERANCE`, with the margin that
   tolerance allows, where rounding permits it. A solver
   incumbent on the wrong side is re-evaluated in float64: if it reproduces, the claim is
   *refuted*.
3. **witnesses** of UNSTABLE claims are evaluated by a float64 forward pass: the neuron must be
   positive at its positive witness and negative at its negative one, with the witness margin.

**Exact relaxation.** For the question :math:`\max s\, z_{kj}` nothing in the prefix model
reads :math:`h_{k-1}` but :math:`z_{kj}` (the other targets are free variables), and a
binary :math:`a_{k-1,i}` with :math:`s\, W_{k,ji} \le 0` wants :math:`h_{k-1,i}` as small as
allowed; relaxed to :math:`a \in [0, 1]`, the big-M rows still force
:math:`h \ge \max(0, z)`, the true ReLU, and allow it. So those binaries are solved as
continuous for that claim (the optimum, hence every proof, is unchanged) and made binary
again afterwards: the branch and bound has about half the binaries (the compressor does the
same, :func:`~exactcomp.milp.encoding.feeding_binaries`). An input the relaxed solver
returns is still re-evaluated in float64 before it refutes anything. When every binary is
relaxed HiGHS solves an LP; its statuses (*optimal*, with the optimum as the bound) map
through :func:`~exactcomp.highs.status.decide` like a MILP's.

**Time.** All claims share one deadline; each box of a union gets an equal share of what
is left. Each MILP gets ``left / remaining``, ``remaining`` counting the box's MILP claims not
yet tried (plus one for the second pass once some claim has timed out), so time that easy
claims do not use rolls over to the later ones. A claim that ran out of time gets a second
pass at the end, with an equal share of whatever is left (the claims that had the least
time first), unless that share is no longer than its first try.

A claim that is neither re-proven nor refuted in the time limit is listed as a failure with
``refuted=False``. (That each fold is algebraically exact is checked by comparing the rewritten
network with the original on the domain: :func:`exactcomp.verify.verify_equivalence`.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition as TC

from ..bab.split import split_inputs
from ..bounds import Bounds, interval_bounds
from ..domain import Box
from ..highs.margins import milp_doubt, rounding_doubt, solver_margin
from ..milp.encoding import (
    build_prefix_model,
    feeding_binary_vars,
    negligible_contribution,
    tolerance_amplification,
)
from ..milp.highs import compile_model
from ..network import Network
from ..progress import SILENT, Progress
from ..search import witness_margin
from ..stability.phases import PhaseInput, PhaseResult, ideal_cut_phase, input_split_phase
from ..tolerances import (
    DEFAULT,
    FEASIBILITY_TOLERANCE,
    PRECISE_FEASIBILITY_TOLERANCE,
    Tolerances,
)
from ..verdicts import StabilityReport, Verdict
from .falsify import candidate_points
from .formulation import best_bounds
from .result import ClaimFailure, RecheckResult
from .solve import Decision, ObjectiveSolver, SolveOutcome

_SAMPLES = 256  # uniform inputs per box (plus centre and corners) that sanity-check a proof


def recheck_certificates(
    original: Network,
    report: StabilityReport,
    box: Box | Sequence[Box],
    *,
    time_limit: float = 60.0,
    tol: Tolerances = DEFAULT,
    progress: Progress = SILENT,
) -> RecheckResult:
    """Re-prove every INACTIVE/ACTIVE claim of ``report`` and re-check every UNSTABLE witness.

    Parameters
    ----------
    original:
        The network the report describes (before compression).
    report:
        The stability report the compression used.
    box:
        The domain of the report (a union of boxes: each claim must hold on every box).
    time_limit:
        Seconds for all the MILPs together; claims left when it runs out are failures that
        were not refuted.
    tol:
        Margins for bounds, the solver and witnesses.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    boxes = [box] if isinstance(box, Box) else list(box)
    checked = {"interval": 0, "linear": 0, "lp": 0, "bab": 0, "milp": 0, "witness": 0}
    failures: list[ClaimFailure] = []
    milps = 0
    claims = _claims(report)
    progress.task("re-checking certificates", len(claims))
    open_claims = set(claims)
    for n_box, b in enumerate(boxes):
        b.check_size(original.input_size)
        # each box gets an equal share of what is left; an easy box's leftover rolls over
        share = (deadline - time.perf_counter()) / (len(boxes) - n_box)
        box_deadline = time.perf_counter() + share
        proven, refuted, n = _recheck_box(original, report, b, claims, box_deadline, tol, checked)
        milps += n
        failures += [f for f in refuted if (f.layer, f.neuron) in open_claims]
        open_claims -= {(f.layer, f.neuron) for f in refuted}
        for key in [c for c in open_claims if c not in proven]:
            k, j = key
            failures.append(ClaimFailure(k, j, claims[key].name, False, "not re-proven in time"))
            open_claims.discard(key)
    progress.advance(len(claims))
    failures += _check_witnesses(original, report, boxes, tol, checked)
    failures.sort(key=lambda c: (c.layer, c.neuron))
    return RecheckResult(checked, tuple(failures), time.perf_counter() - t0, milps)


def _claims(report: StabilityReport) -> dict[tuple[int, int], Verdict]:
    """The stability claims (INACTIVE/ACTIVE) of the report, by (layer, neuron)."""
    out = {}
    for ls in report.layers:
        for j in np.flatnonzero(np.isin(ls.verdict, (Verdict.INACTIVE, Verdict.ACTIVE))):
            out[(ls.layer, int(j))] = Verdict(int(ls.verdict[j]))
    return out


def _holds(v: Verdict, b: Bounds, j: int) -> bool:
    return bool(b[1][j] <= 0.0) if v == Verdict.INACTIVE else bool(b[0][j] >= 0.0)


def _proves(res: PhaseResult, v: Verdict, j: int) -> bool:
    """Whether a phase proves claim ``v`` of neuron ``j``: by its bounds (:func:`_holds`, the
    re-check's one bound test) or, for a phase without bounds, by its claim masks."""
    if res.bounds is not None:
        return _holds(v, res.bounds, j)
    return bool(res.inactive[j] if v == Verdict.INACTIVE else res.active[j])


@dataclass
class _Attempt:
    """One MILP claim of one box: the solver of its layer's prefix model and its question."""

    solver: ObjectiveSolver
    zk: object
    k: int
    j: int
    verdict: Verdict
    margin: float
    precise_margin: float | None = None  # at PRECISE_FEASIBILITY_TOLERANCE; None: not allowed
    limit: float = 0.0  # the time limit of the last try
    seen: float = -np.inf  # the largest s * z_kj at the box's sample inputs (s: 1 inactive)


def relaxable_binaries(model, net: Network, k: int, j: int, sign: float) -> list:
    r"""The binaries :math:`a_{k-1,i}` of a :func:`build_prefix_model` model with
    :math:`s\, W_{k,ji} \le 0`: solving them as continuous leaves :math:`\max s\, z_{kj}`
    unchanged (module docstring)."""
    a = feeding_binary_vars(model, k)
    if a is None:
        return []
    w = net.layers[k].weight[j]
    return [a[i] for i in a if sign * float(w[i]) <= 0.0]


@contextmanager
def relaxed(binaries: Sequence) -> Iterator[None]:
    """Solve ``binaries`` as continuous in ``[0, 1]`` inside the block, binary again after.

    The persistent HiGHS interface compares each variable's domain at the next solve and
    passes a change on as a change of column integrality, so nothing has to be rebuilt.
    """
    for v in binaries:
        v.domain = pyo.UnitInterval
    try:
        yield
    finally:
        for v in binaries:
            v.domain = pyo.Binary


def _try(net, box, att: _Attempt, limit: float) -> tuple[SolveOutcome, ClaimFailure | None]:
    """Solve one claim's MILP (feeding binaries relaxed) in ``limit`` seconds; a refutation
    only if the solver's input reproduces in float64."""
    att.limit = limit
    s = 1.0 if att.verdict == Verdict.INACTIVE else -1.0  # maximise s * z: must be <= 0
    model = att.solver.model
    margin = att.margin
    with relaxed(relaxable_binaries(model, net, att.k, att.j, s)):
        out = att.solver.solve(-s * att.zk[att.j], 0.0, margin, limit)
        left = limit - out.seconds
        if (
            out.decision is Decision.UNDECIDED
            and out.status != TC.maxTimeLimit.name
            and att.precise_margin is not None
            and left > 0
        ):
            # a near tie (the extreme lies within the margin of 0): once more at the finer
            # tolerance, whose margin is smaller (as the compressor does)
            margin = att.precise_margin
            out = att.solver.solve(
                -s * att.zk[att.j], 0.0, margin, left, PRECISE_FEASIBILITY_TOLERANCE
            )
    if out.decision is Decision.PROVEN and att.seen >= -margin:
        # a sampled input meets the row the solver called infeasible: a solver error (seen on
        # badly scaled networks at the precise tolerance), so no proof (as the compressor)
        out = replace(out, decision=Decision.UNDECIDED, status="contradicted by a sample")
    if out.decision is Decision.FOUND and out.x is not None:
        z = net.preactivations(box.clip(out.x))[att.k][0, att.j]
        if s * z > 0:
            detail = f"z = {z:.6g} at a MILP input"
            return out, ClaimFailure(att.k, att.j, att.verdict.name, True, detail)
    return out, None


@dataclass
class _BoxCheck:
    """The re-check of one box: what is proven, refuted or to be retried, and the MILP count."""

    net: Network
    box: Box
    claims: dict[tuple[int, int], Verdict]
    deadline: float
    tol: Tolerances
    checked: dict[str, int]
    proven: set[tuple[int, int]] = field(default_factory=set)
    refuted: list[ClaimFailure] = field(default_factory=list)
    retry: list[_Attempt] = field(default_factory=list)
    milps: int = 0
    remaining: int = 0  # MILP claims not yet tried (each MILP's share of the time left)

    def ask(self, k: int, bounds: list[Bounds], todo: list[tuple[int, Verdict]]) -> PhaseInput:
        """The phase question for the claims ``todo`` of layer ``k``, on the re-check's bounds."""
        neurons = np.array([j for j, _ in todo], dtype=np.int64)
        sides = np.array(_sides(todo), dtype=np.int64)
        known = bounds[: k + 1]
        return PhaseInput(self.net, self.box, k, known, neurons, sides, self.tol, self.deadline)

    def mark(self, k: int, todo: list[tuple[int, Verdict]], res: PhaseResult, kind: str) -> list:
        """Count the claims of ``todo`` that the phase result proves; return those still open."""
        held = [_proves(res, v, j) for j, v in todo]
        for (j, _), ok in zip(todo, held, strict=True):
            if ok:
                self.proven.add((k, j))
                self.checked[kind] += 1
                self.remaining -= 1
        return [c for c, ok in zip(todo, held, strict=True) if not ok]

    def attempt(self, att: _Attempt, limit: float) -> None:
        """One MILP try of a claim in ``limit`` seconds (:func:`_try`)."""
        out, refutation = _try(self.net, self.box, att, limit)
        self.milps += 1
        if out.decision is Decision.PROVEN:
            self.proven.add((att.k, att.j))
            self.checked["milp"] += 1
        elif refutation is not None:
            self.refuted.append(refutation)
        elif out.decision is Decision.UNDECIDED and out.status == TC.maxTimeLimit.name:
            self.retry.append(att)


def _sides(todo: list[tuple[int, Verdict]]) -> list[int]:
    """The side each claim asks a phase to prove: ``+1`` INACTIVE, ``-1`` ACTIVE."""
    return [1 if v == Verdict.INACTIVE else -1 for _, v in todo]


def _recheck_box(net, report, box, claims, deadline, tol, checked):
    """Re-prove the claims on one box; returns (proven keys, refutations, MILPs solved).

    The phases of the engine (:mod:`exactcomp.stability.phases`), on this module's own bounds:
    interval, then linear, then per layer the LP with ideal cuts, input splits and the MILP.
    """
    fresh_i = interval_bounds(net, box, tol=tol)
    fresh = best_bounds(net, box, tol)
    run = _BoxCheck(net, box, claims, deadline, tol, checked)
    for key, v in claims.items():
        k, j = key
        if _holds(v, fresh_i[k], j):
            run.proven.add(key)
            checked["interval"] += 1
        elif _holds(v, fresh[k], j):
            run.proven.add(key)
            checked["linear"] += 1
    run.remaining = sum(1 for key in claims if key not in run.proven)
    # real inputs, against which a solver's "infeasible" is sanity-checked (see _try)
    samples = candidate_points(box, _SAMPLES, np.random.default_rng(0))
    # Layer by layer, so that claims re-proven in earlier layers tighten the big-Ms of later ones.
    bounds = [(lo.copy(), hi.copy()) for lo, hi in fresh]
    for k in sorted({k for k, _ in claims}):
        todo = [(j, claims[(kk, j)]) for kk, j in claims if kk == k and (kk, j) not in run.proven]
        if todo and k > 0:
            # LP with ideal cuts: most claims the linear bounds miss, for a fraction of a MILP
            todo = run.mark(k, todo, ideal_cut_phase(run.ask(k, bounds, todo)), "lp")
        if todo and k > 0 and net.input_size <= split_inputs():
            # input splits on this module's own bounds: the search is re-run from scratch
            todo = run.mark(k, todo, input_split_phase(run.ask(k, bounds, todo)), "bab")
        if todo:
            _milp_layer(run, k, bounds, todo, samples)
        for j in range(len(bounds[k][0])):
            v = claims.get((k, j))
            if v is not None and (k, j) in run.proven:
                bounds[k][1 if v == Verdict.INACTIVE else 0][j] = 0.0
    # Second pass: the claims that ran out of time share what is left (a claim proven now no
    # longer tightens the later layers' models, which were built without it: still sound).
    first = sorted(run.retry, key=lambda a: a.limit)
    for n, att in enumerate(first):
        left = (deadline - time.perf_counter()) / (len(first) - n)
        if left > att.limit:  # not if no longer than the first try: it would time out again
            run.attempt(att, left)
    return run.proven, run.refuted, run.milps


def _milp_layer(run: _BoxCheck, k: int, bounds: list, todo: list, samples: np.ndarray) -> None:
    """The MILP phase of layer ``k``: one claim at a time, each with its share of the time."""
    net, box, tol, deadline = run.net, run.box, run.tol, run.deadline
    model, zk = build_prefix_model(net, box, k, bounds)
    magnitude = np.maximum(np.abs(bounds[k][0]), np.abs(bounds[k][1]))
    compiled = compile_model(model, model.x, zk)[0]
    precise = rounding_doubt(compiled, magnitude, PRECISE_FEASIBILITY_TOLERANCE) <= 1.0
    if rounding_doubt(compiled, magnitude) > 1.0:
        # float64 rounding reaches the solver's own tolerance: no answer is a proof
        run.remaining -= len(todo)
        return
    solver = ObjectiveSolver(model, model.x)
    zs = net.preactivations(samples)[k]
    # what the solver's tolerances and its dropping of tiny coefficients can move
    # z_k by (the same allowance as the compressor's, on this module's own bounds)
    amp = tolerance_amplification(net, box, k, bounds)
    negligible = negligible_contribution(net, box, k, bounds)
    doubt = milp_doubt(FEASIBILITY_TOLERANCE, amp, negligible)
    fine = milp_doubt(PRECISE_FEASIBILITY_TOLERANCE, amp, negligible)
    for j, v in todo:
        # once a claim has timed out, the second pass counts as one more claim
        left = (deadline - time.perf_counter()) / (run.remaining + bool(run.retry))
        run.remaining -= 1
        if left <= 0:
            continue
        base = solver_margin(tol, max(abs(bounds[k][0][j]), abs(bounds[k][1][j])))
        fine_margin = base + float(fine[j]) if precise else None
        s = 1.0 if v == Verdict.INACTIVE else -1.0
        seen = float(np.max(s * zs[:, j]))
        att = _Attempt(solver, zk, k, j, v, base + float(doubt[j]), fine_margin, seen=seen)
        run.attempt(att, left)


def _check_witnesses(net, report, boxes, tol, checked) -> list[ClaimFailure]:
    """Every UNSTABLE claim needs a positive and a negative witness inside the domain."""
    failures = []
    wit = np.asarray(report.witnesses, dtype=np.float64)
    inside = np.zeros(len(wit), dtype=bool)
    for b in boxes:
        if len(wit):
            inside |= b.contains(wit)
    pre = net.preactivations(wit) if len(wit) else None
    for ls in report.layers:
        layer = net.layers[ls.layer]
        for j in ls.indices(Verdict.UNSTABLE):
            ok, detail = True, ""
            for idx, sign in ((ls.witness_pos[j], 1.0), (ls.witness_neg[j], -1.0)):
                if idx < 0 or idx >= len(wit) or not inside[idx]:
                    ok, detail = False, f"no {'positive' if sign > 0 else 'negative'} witness"
                    break
                z = pre[ls.layer][idx, j]
                h = wit[idx] if ls.layer == 0 else _input_of(net, pre, ls.layer, idx)
                w, b = layer.weight[j : j + 1], layer.bias[j : j + 1]
                if not sign * z > witness_margin(h[None, :], w, b, tol)[0, 0]:
                    ok, detail = False, f"witness {idx} gives z = {z:.3g}"
                    break
            if ok:
                checked["witness"] += 1
            else:
                failures.append(ClaimFailure(ls.layer, int(j), "UNSTABLE", False, detail))
    return failures


def _input_of(net: Network, pre: list[np.ndarray], k: int, row: int) -> np.ndarray:
    z = pre[k - 1][row]
    return np.maximum(z, 0.0) if net.layers[k - 1].relu else z
