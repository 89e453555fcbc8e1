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
   (:func:`exactcomp.bab.prove_signs`), re-run here from scratch on these fresh bounds; for
   more inputs, by branch and bound over ReLU splits (:func:`exactcomp.bab.prove_signs_relu`),
   likewise re-run from scratch.
2. **per-neuron MILP** for the claims the bounds cannot settle: layers ``< k`` are encoded with
   the fresh bounds as big-M constants (tightened only by claims *this module* has already
   re-proven, layer by layer), and the solver decides
   :math:`\max z_{kj} \le 0` (INACTIVE) or :math:`\max (-z_{kj}) \le 0` (ACTIVE) with the margin
   ``solver_abs + solver_rel * M`` (:mod:`exactcomp.verify.solve`) plus how far the solver's
   feasibility tolerance and its dropping of tiny coefficients can move :math:`z_{kj}`
   (:func:`~exactcomp.milp.encoding.tolerance_amplification`,
   :func:`~exactcomp.milp.encoding.negligible_contribution`); a layer whose model float64
   rounding cannot represent within the solver's tolerance
   (:func:`~exactcomp.milp.highs.rounding_doubt`) gets no MILP proof at all. A claim whose
   extreme the solver finds within the margin of 0 (a near tie) is solved once more at
   :data:`~exactcomp.milp.highs.PRECISE_FEASIBILITY_TOLERANCE`, with the margin that
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
through :func:`~exactcomp.verify.solve.decide` like a MILP's.

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
from dataclasses import dataclass, replace

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition as TC

from ..bab.relu import prove_signs_relu, relu_splits
from ..bab.split import prove_signs, split_inputs
from ..bounds import Bounds, interval_bounds
from ..bounds.ideal_cuts import ideal_cut_layer_result
from ..domain import Box
from ..milp.encoding import (
    build_prefix_model,
    feeding_binary_vars,
    negligible_contribution,
    tolerance_amplification,
)
from ..milp.highs import (
    FEASIBILITY_TOLERANCE,
    PRECISE_FEASIBILITY_TOLERANCE,
    compile_model,
    rounding_doubt,
)
from ..network import Network
from ..progress import SILENT, Progress
from ..tolerances import DEFAULT, Tolerances
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
    checked = {
        "interval": 0,
        "linear": 0,
        "lp": 0,
        "bab": 0,
        "relu_split": 0,
        "milp": 0,
        "witness": 0,
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


def _recheck_box(net, report, box, claims, deadline, tol, checked):
    """Re-prove the claims on one box; returns (proven keys, refutations, MILPs solved)."""
    fresh_i = interval_bounds(net, box, tol=tol)
    fresh = best_bounds(net, box, tol)
    proven: set[tuple[int, int]] = set()
    refuted: list[ClaimFailure] = []
    milps = 0
    for key, v in claims.items():
        k, j = key
        if _holds(v, fresh_i[k], j):
            proven.add(key)
            checked["interval"] += 1
        elif _holds(v, fresh[k], j):
            proven.add(key)
            checked["linear"] += 1
    remaining = sum(1 for key in claims if key not in proven)
    retry: list[_Attempt] = []
    # real inputs, against which a solver's "infeasible" is sanity-checked (see _try)
    samples = candidate_points(box, _SAMPLES, np.random.default_rng(0))

    def attempt(att: _Attempt, limit: float) -> None:
        nonlocal milps
        out, refutation = _try(net, box, att, limit)
        milps += 1
        if out.decision is Decision.PROVEN:
            proven.add((att.k, att.j))
            checked["milp"] += 1
        elif refutation is not None:
            refuted.append(refutation)
        elif out.decision is Decision.UNDECIDED and out.status == TC.maxTimeLimit.name:
            retry.append(att)

    # Layer by layer, so that claims re-proven in earlier layers tighten the big-Ms of later ones.
    bounds = [(lo.copy(), hi.copy()) for lo, hi in fresh]
    for k in sorted({k for k, _ in claims}):
        todo = [(j, claims[(kk, j)]) for kk, j in claims if kk == k and (kk, j) not in proven]
        if todo and k > 0:
            # LP with ideal cuts: most claims the linear bounds miss, for a fraction of a MILP
            sides = [1 if v == Verdict.INACTIVE else -1 for _, v in todo]
            left = max(deadline - time.perf_counter(), 0.0)
            lp = ideal_cut_layer_result(
                net,
                box,
                k,
                bounds[: k + 1],
                [j for j, _ in todo],
                sides,
                tol,
                deadline=time.monotonic() + left,
            ).bounds
            for j, v in todo:
                if _holds(v, lp, j):
                    proven.add((k, j))
                    checked["lp"] += 1
                    remaining -= 1
            todo = [(j, v) for j, v in todo if (k, j) not in proven]
        few = net.input_size <= split_inputs()
        if todo and k > 0 and (few or relu_splits()):
            # input splits (few inputs) or ReLU splits (many) on this module's own bounds:
            # the search is re-run from scratch
            search, kind = (prove_signs, "bab") if few else (prove_signs_relu, "relu_split")
            sides = [1 if v == Verdict.INACTIVE else -1 for _, v in todo]
            res = search(
                net,
                box,
                k,
                bounds[: k + 1],
                [j for j, _ in todo],
                sides,
                tol=tol,
                deadline=deadline,
            )
            for i, (j, v) in enumerate(todo):
                if res.inactive[i] if v == Verdict.INACTIVE else res.active[i]:
                    proven.add((k, j))
                    checked[kind] += 1
                    remaining -= 1
            todo = [(j, v) for j, v in todo if (k, j) not in proven]
        if todo:
            model, zk = build_prefix_model(net, box, k, bounds)
            magnitude = np.maximum(np.abs(bounds[k][0]), np.abs(bounds[k][1]))
            compiled = compile_model(model, model.x, zk)[0]
            precise = rounding_doubt(compiled, magnitude, PRECISE_FEASIBILITY_TOLERANCE) <= 1.0
            if rounding_doubt(compiled, magnitude) > 1.0:
                # float64 rounding reaches the solver's own tolerance: no answer is a proof
                remaining -= len(todo)
                todo = []
        if todo:
            solver = ObjectiveSolver(model, model.x)
            zs = net.preactivations(samples)[k]
            # what the solver's tolerances and its dropping of tiny coefficients can move
            # z_k by (the same allowance as the compressor's, on this module's own bounds)
            amp = tolerance_amplification(net, box, k, bounds)
            negligible = negligible_contribution(net, box, k, bounds)
            doubt = FEASIBILITY_TOLERANCE * amp + negligible
            fine = PRECISE_FEASIBILITY_TOLERANCE * amp + negligible
            for j, v in todo:
                # once a claim has timed out, the second pass counts as one more claim
                left = (deadline - time.perf_counter()) / (remaining + bool(retry))
                remaining -= 1
                if left <= 0:
                    continue
                m = max(abs(bounds[k][0][j]), abs(bounds[k][1][j]), 1.0)
                base = tol.solver_abs + tol.solver_rel * m
                fine_margin = base + float(fine[j]) if precise else None
                s = 1.0 if v == Verdict.INACTIVE else -1.0
                seen = float(np.max(s * zs[:, j]))
                att = _Attempt(solver, zk, k, j, v, base + float(doubt[j]), fine_margin, seen=seen)
                attempt(att, left)
        for j in range(len(bounds[k][0])):
            v = claims.get((k, j))
            if v is not None and (k, j) in proven:
                bounds[k][1 if v == Verdict.INACTIVE else 0][j] = 0.0
    # Second pass: the claims that ran out of time share what is left (a claim proven now no
    # longer tightens the later layers' models, which were built without it: still sound).
    first = sorted(retry, key=lambda a: a.limit)
    for n, att in enumerate(first):
        left = (deadline - time.perf_counter()) / (len(first) - n)
        if left > att.limit:  # not if no longer than the first try: it would time out again
            attempt(att, left)
    return proven, refuted, milps


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
                h = (
                    np.abs(wit[idx])
                    if ls.layer == 0
                    else np.abs(_input_of(net, pre, ls.layer, idx))
                )
                scale = float(np.abs(layer.weight[j]) @ h + abs(layer.bias[j]))
                if not sign * z > tol.witness * (1.0 + scale):
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
