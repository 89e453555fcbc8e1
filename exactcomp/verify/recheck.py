r"""Re-check the stability claims a compression rests on, independently of the compressor.

A compressed network is exact only if every neuron it removed was truly inactive and every
neuron it folded truly active on the domain. This module re-proves each such claim from
scratch, trusting nothing in the report but the claims themselves:

1. **fresh bounds**: interval arithmetic, then linear (CROWN-style) bounds, computed here from
   the original weights and the box. An INACTIVE claim holds if :math:`u_{kj} \le 0`, an
   ACTIVE claim if :math:`l_{kj} \ge 0` (the bounds are padded, so this is sound); a
   pre-activation the weights make a constant ``b`` (:mod:`exactcomp.stability.constants`,
   read here from the original weights) has the exact bounds ``[b, b]``. The claims
   still open then go, layer by layer, through the search phases (:func:`_proof_phases`), each
   re-run here from scratch on these fresh bounds: for inputs of at most
   :data:`~exactcomp.bab.split.MAX_INPUTS` dimensions, branch and bound over input splits
   (:func:`exactcomp.bab.prove_signs`), then the LP with ideal cuts
   (:mod:`exactcomp.bounds.ideal_cuts`); for more inputs, the cuts, then branch and bound over
   ReLU splits (:func:`exactcomp.bab.prove_signs_relu`). All are the engine's own phase
   functions (:mod:`exactcomp.stability.phases`), asked about the claims with this module's
   bounds. Given the analysis's records of its input-split trees (``trees``, in memory within
   one ``compress --verify``), the input splits walk them instead of searching the same
   trees again (:func:`exactcomp.bab.replay.replay_signs`): a record says only where to cut;
   every bound is computed here, and a claim a walk leaves is searched for.
2. **per-neuron MILP** for the claims the bounds cannot settle: layers ``< k`` are encoded with
   the fresh bounds as big-M constants (tightened only by claims *this module* has already
   re-proven, layer by layer), and the solver decides
   :math:`\max z_{kj} \le 0` (INACTIVE) or :math:`\max (-z_{kj}) \le 0` (ACTIVE). The layer's
   model, the margin (:func:`~exactcomp.highs.margins.milp_margin`), the rounding check
   (:func:`~exactcomp.highs.margins.rounding_doubt`: a layer whose model float64 rounding
   cannot represent within the solver's tolerance gets no MILP proof at all) and the feeding
   binaries solved as continuous come from :mod:`exactcomp.milp.layer`, and each question is
   answered by :func:`~exactcomp.milp.highs.solve_question`: the engine's own question
   and solver call, built here from this module's bounds. A claim whose extreme the solver
   finds within the margin of 0 (a near tie) is solved once more at
   :data:`~exactcomp.tolerances.PRECISE_FEASIBILITY_TOLERANCE`, with the margin that
   tolerance allows, where rounding permits it. Every input the solver returns is
   re-evaluated in float64: if one is on the wrong side, the claim is *refuted*.
3. **witnesses** of UNSTABLE claims are evaluated by a float64 forward pass: the neuron must be
   positive at its positive witness and negative at its negative one, with the witness margin
   (:mod:`exactcomp.verify.witnesses`).

**Why its own MILP driver.** The engine's MILP phase
(:meth:`exactcomp.stability.milp_questions.MilpQuestions.run`) asks an ordered list of questions,
possibly in worker processes, and lets each answer's incumbents settle later questions. The
re-check must learn nothing from one claim for another and must spread one deadline over the
claims, so it asks one claim at a time, in this process, with the time rules below.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..bab.relu import relu_splits
from ..bab.split import split_inputs
from ..bab.split_tree import SplitTree
from ..bounds import Bounds, interval_bounds
from ..domain import Box
from ..milp.highs import Answer, solve_question
from ..milp.layer import LayerMilp, layer_milp
from ..network import Network
from ..progress import SILENT, Progress
from ..stability.constants import constant_bounds, layer_classes
from ..stability.phases import (
    PhaseInput,
    PhaseResult,
    ideal_cut_phase,
    input_split_phase,
    relu_split_phase,
    replay_split_phase,
)
from ..tolerances import DEFAULT, Tolerances, underflow_tolerances
from ..verdicts import StabilityReport, Verdict
from .falsify import candidate_points
from .formulation import best_bounds
from .result import ClaimFailure, RecheckResult
from .witnesses import check_witnesses

_SAMPLES = 256  # uniform inputs per box (plus centre and corners) that sanity-check a proof


def recheck_certificates(
    original: Network,
    report: StabilityReport,
    box: Box | Sequence[Box],
    *,
    time_limit: float = 60.0,
    tol: Tolerances = DEFAULT,
    progress: Progress = SILENT,
    trees: Sequence[SplitTree] = (),
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
    trees:
        Records of the input-split trees the analysis grew (``report.trees`` of the
        analysis, in memory): a hint where to cut, which the input-split phase replays with
        this module's own bounds (:func:`exactcomp.bab.replay.replay_signs`); a record that
        does not fit the layer and box is ignored, and a claim it leaves is searched for.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    boxes = [box] if isinstance(box, Box) else list(box)
    tol = underflow_tolerances(tol, [original], boxes)
    checked = {
        "interval": 0,
        "linear": 0,
        "lp": 0,
        "bab": 0,
        "relu_split": 0,
        "milp": 0,
        "witness": 0,
        "constant": 0,
    }
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
        hints = [t for t in trees if isinstance(t, SplitTree)]
        proven, refuted, n = _recheck_box(
            original, report, b, claims, box_deadline, tol, checked, hints
        )
        milps += n
        failures += [f for f in refuted if (f.layer, f.neuron) in open_claims]
        open_claims -= {(f.layer, f.neuron) for f in refuted}
        for key in [c for c in open_claims if c not in proven]:
            k, j = key
            failures.append(ClaimFailure(k, j, claims[key].name, False, "not re-proven in time"))
            open_claims.discard(key)
    progress.advance(len(claims))
    failures += check_witnesses(original, report, boxes, tol, checked)
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
    """One MILP claim of one box: its layer's MILP and the claim."""

    layer: LayerMilp
    k: int
    j: int
    verdict: Verdict
    precise: bool  # whether a near tie may be asked again at the precise tolerance
    limit: float = 0.0  # the time limit of the last try
    seen: float = -np.inf  # the largest s * z_kj at the box's sample inputs (s: 1 inactive)

    @property
    def sign(self) -> int:
        """``+1``: the claim is INACTIVE (maximise ``z``), ``-1``: ACTIVE."""
        return 1 if self.verdict == Verdict.INACTIVE else -1


def _refutation(net: Network, box: Box, att: _Attempt, answer: Answer) -> ClaimFailure | None:
    """The claim's refutation by an input the solver returned, if one reproduces in float64."""
    if not len(answer.points):
        return None
    z = net.preactivations(box.clip(answer.points))[att.k][:, att.j]
    i = int(np.argmax(att.sign * z))
    if att.sign * z[i] > 0:
        return ClaimFailure(att.k, att.j, att.verdict.name, True, f"z = {z[i]:.6g} at a MILP input")
    return None


def _try(net, box, tol, att: _Attempt, limit: float) -> tuple[Answer, bool, ClaimFailure | None]:
    """Solve one claim's question in ``limit`` seconds: (the last answer, proven, refutation).

    Not proven when a sampled input meets the row the solver called infeasible (a solver
    error, seen on badly scaled networks at the precise tolerance), as in the engine."""
    att.limit = limit
    q = att.layer.question(tol, att.j, att.sign, limit)
    answer = solve_question(att.layer.milp, q)
    refuted = _refutation(net, box, att, answer)
    left = limit - answer.seconds
    if not (answer.proven or refuted or answer.timed_out) and att.precise and left > 0:
        # a near tie (the extreme lies within the margin of 0): once more at the finer
        # tolerance, whose margin is smaller (as the compressor does)
        q = att.layer.question(tol, att.j, att.sign, left, precise=True)
        answer = solve_question(att.layer.milp, q)
        refuted = _refutation(net, box, att, answer)
    proven = answer.proven and att.seen < -q.margin
    return answer, proven, refuted


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
        answer, proven, refutation = _try(self.net, self.box, self.tol, att, limit)
        self.milps += 1
        if proven:
            self.proven.add((att.k, att.j))
            self.checked["milp"] += 1
        elif refutation is not None:
            self.refuted.append(refutation)
        elif answer.timed_out:
            self.retry.append(att)


def _sides(todo: list[tuple[int, Verdict]]) -> list[int]:
    """The side each claim asks a phase to prove: ``+1`` INACTIVE, ``-1`` ACTIVE."""
    return [1 if v == Verdict.INACTIVE else -1 for _, v in todo]


def _recheck_box(net, report, box, claims, deadline, tol, checked, trees=()):
    """Re-prove the claims on one box; returns (proven keys, refutations, MILPs solved).

    The phases of the engine (:mod:`exactcomp.stability.phases`), on this module's own bounds:
    interval, then linear, then per layer the LP with ideal cuts, input splits and the MILP.
    """
    fresh_i = interval_bounds(net, box, tol=tol)
    fresh = best_bounds(net, box, tol)
    const = [constant_bounds(net, k, c) for k, c in enumerate(layer_classes(net))]
    run = _BoxCheck(net, box, claims, deadline, tol, checked)
    for key, v in claims.items():
        k, j = key
        if _holds(v, fresh_i[k], j):
            run.proven.add(key)
            checked["interval"] += 1
        elif _holds(v, fresh[k], j):
            run.proven.add(key)
            checked["linear"] += 1
        elif _holds(v, const[k], j):
            run.proven.add(key)
            checked["constant"] += 1
    run.remaining = sum(1 for key in claims if key not in run.proven)
    # real inputs, against which a solver's "infeasible" is sanity-checked (see _try)
    samples = candidate_points(box, _SAMPLES, np.random.default_rng(0))
    # Layer by layer, so that claims re-proven in earlier layers tighten the big-Ms of later ones.
    bounds = [(lo.copy(), hi.copy()) for lo, hi in fresh]
    for k in sorted({k for k, _ in claims}):
        todo = [(j, claims[(kk, j)]) for kk, j in claims if kk == k and (kk, j) not in run.proven]
        fit = [t for t in trees if t.fits(box.lower, box.upper, k)]
        for phase, kind in _proof_phases(net, fit) if k > 0 else ():
            if todo:
                todo = run.mark(k, todo, phase(run.ask(k, bounds, todo)), kind)
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


def _proof_phases(
    net: Network, trees: Sequence[SplitTree] = ()
) -> list[tuple[Callable[[PhaseInput], PhaseResult], str]]:
    """The bound phases a layer's open claims go through before the MILP, in order, with the
    ``checked`` key each counts under.

    Few inputs (at most :func:`~exactcomp.bab.split.split_inputs`): input splits first, then
    the LP with ideal cuts for what the trees leave, the analysis's order (it runs the
    triangle LP, not the cuts, before its trees). The trees settle nearly every claim the
    linear bounds miss there, and the cuts asked first cost LPs that the trees then re-prove:
    on ACAS Xu 1_6 over prop_1, the cuts took 2.5 s of CPU for layers 1-5 and proved 7 of 100
    claims (layer 1 only), all of which a tree proves in a few dozen nodes. Many inputs: the
    cuts first, then ReLU splits (when on), each re-run from scratch on this module's bounds.

    ``trees``: the analysis's records of this layer's trees on this box; with one, the input
    splits walk it (:func:`~exactcomp.bab.replay.replay_signs`: where to cut comes from the
    record, every bound from this module) instead of searching the same tree again.
    """
    if net.input_size <= split_inputs():
        splits = partial(replay_split_phase, trees=tuple(trees)) if trees else input_split_phase
        return [(splits, "bab"), (ideal_cut_phase, "lp")]
    out = [(ideal_cut_phase, "lp")]
    if relu_splits():
        out.append((relu_split_phase, "relu_split"))
    return out


def _milp_layer(run: _BoxCheck, k: int, bounds: list, todo: list, samples: np.ndarray) -> None:
    """The MILP phase of layer ``k``: one claim at a time, each with its share of the time.

    The model, margins and relaxation are the engine's (:mod:`exactcomp.milp.layer`), on this
    module's own bounds; why the driver is not the engine's: the module docstring."""
    magnitude = np.maximum(np.abs(bounds[k][0]), np.abs(bounds[k][1]))
    layer = layer_milp(run.net, run.box, k, bounds, magnitude)
    if not layer.trusted():
        # float64 rounding reaches the solver's own tolerance: no answer is a proof
        run.remaining -= len(todo)
        return
    precise = layer.trusted(precise=True)
    zs = run.net.preactivations(samples)[k]
    for j, v in todo:
        # once a claim has timed out, the second pass counts as one more claim
        left = (run.deadline - time.perf_counter()) / (run.remaining + bool(run.retry))
        run.remaining -= 1
        if left <= 0:
            continue
        att = _Attempt(layer, k, j, v, precise)
        att.seen = float(np.max(att.sign * zs[:, j]))
        run.attempt(att, left)
