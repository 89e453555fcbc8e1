r"""Global magnitude pruning at the largest fraction a proof keeps within ``eps``.

The simple baseline of certified lossy compression, run by ``compress --tol`` beside the
greedy search of :mod:`exactcomp.rewrite.lossy` so that the user never gets less than it:
the nonzero weights of all layers are ranked by :math:`|w|` (ties in layer, row, column
order) and the :math:`n` smallest are set to zero (biases unchanged; the rule of
``torch.nn.utils.prune.global_unstructured`` with L1). The error of the pruned network
:math:`g_n` grows with :math:`n` in practice but not provably, so :math:`n` is *searched*,
never inferred: every network returned is proven by one proof of the whole against ``f``.

**Bisection.** The cheap symbolic bound of :class:`~exactcomp.verify.charge.Charger`
brackets :math:`n`: the largest :math:`n_s` whose symbolic bound is within ``eps``, by
bisection on :math:`[0, N]`. The pick then gets the final proof of the search's result
(the joint LP, ``lp_seconds``; the smaller of it and the symbolic bound). The LP is
:math:`\rho = \mathrm{LP}/\mathrm{symbolic}` times tighter at :math:`n_s`; when
:math:`\rho < 1 - ` :data:`~exactcomp.rewrite.acceptance.RATIO_SLACK`, the symbolic bisection
runs again for ``eps / rho``, its pick :math:`n_\rho` is proven by the LP, and if that
proof exceeds ``eps`` the LP bisects :math:`[n_s, n_\rho]` back within
:data:`~exactcomp.rewrite.acceptance.BISECT_STEPS` proofs. A ratio only chooses what to try.

**Two halves.** ``compress --tol`` runs the bisection (:func:`magnitude_first`, seconds)
before the greedy search and the joint LP (:func:`magnitude_last`, ~15 s on the digits
models) after it, only where the LP could still make magnitude pruning win; the LP's time is
reserved before the search starts, and only when its optimistic reach is large.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..domain import Box
from ..network import Network
from .acceptance import BISECT_STEPS, RATIO_SLACK, affords, attempt, longest_prefix
from .edits import Candidate, apply, candidates, relu_ranges
from .lossy import LossyOutcome, amplification_probes, layer_facts
from .structural import drop_unused_grids

MAGNITUDE_RHO = 0.5  # the tightest LP / symbolic ratio assumed when judging magnitude's LP
LP_MIN_SHARE = 0.2  # magnitude's LP is reserved only if its reach removes this share


def magnitude_order(f: Network, cands: Sequence[Candidate]) -> list[Candidate]:
    """The weight edits of ``cands`` by increasing :math:`|w|` (stable: ties keep their
    order), the order in which global magnitude pruning zeroes them."""
    weights = [c for c in cands if c.kind == "weight"]
    mags = np.array([abs(f.layers[c.index[0]].weight[c.index[1], c.index[2]]) for c in weights])
    return [weights[i] for i in np.argsort(mags, kind="stable")]


def probe(f: Network, boxes: Sequence[Box], charger, *, centre: bool = False) -> tuple[int, int]:
    """Prove the first network the greedy search proves (its first layer's amplification
    probe, :func:`~exactcomp.rewrite.lossy.amplification_probes`), so that ``charger`` has
    measured one proof (``charger.seconds``) before the phases of ``compress --tol`` are
    planned, and memoised it for the search (``centre``: the search's). Returns the weights
    magnitude pruning ranks and the search's candidates (without merges)."""
    ranges = relu_ranges(f, charger)
    cands = candidates(f, ranges, boxes, centre=centre)
    probes = list(amplification_probes(f, cands).values())
    if probes:
        charger.proven(apply(f, probes[0], ranges))
    return sum(c.kind == "weight" for c in cands), len(cands)


@dataclass(frozen=True)
class MagnitudePick:
    """The cheap half of global magnitude pruning: the weights in pruning order, the ReLU
    ranges, the symbolic pick ``n`` (its symbolic bound ``bound`` <= ``eps``, or ``n`` = 0)
    and ``reach``: the symbolic pick for ``eps / rho``, what a joint LP ``1 / rho`` times
    tighter than the symbolic bound could at most extend it to (an estimate, never a proof)."""

    order: list[Candidate]
    ranges: list
    n: int
    bound: float
    reach: int

    def network(self, f: Network, n: int | None = None) -> Network:
        """``f`` with the ``n`` (default: the pick's) smallest weights set to 0."""
        return apply(f, self.order[: self.n if n is None else n], self.ranges)


def _symbolic_prefix(f, pick_order, ranges, charger, lo, hi, target, t_end) -> int:
    # the largest n in [lo, hi] whose symbolic bound is within target (lo is)
    def bound(m: int) -> float:
        return attempt(charger, lambda c: apply(f, c, ranges), pick_order[:m])

    return longest_prefix(bound, target, lo, hi + 1, t_end)[0]


def magnitude_pick(
    f: Network,
    boxes: Sequence[Box],
    eps: float,
    charger,
    *,
    time_limit: float = 20.0,
    rho: float = 1.0,
) -> MagnitudePick:
    """The symbolic bisection of global magnitude pruning (seconds: symbolic proofs only),
    and its optimistic ``reach`` for a joint LP ``rho`` (<= 1) times the symbolic bound."""
    t_end = time.perf_counter() + time_limit
    ranges = relu_ranges(f, charger)
    order = magnitude_order(f, candidates(f, ranges, boxes))
    base = charger.proven(apply(f, [], ranges))
    n = 0
    if base <= eps:
        n = _symbolic_prefix(f, order, ranges, charger, 0, len(order), eps, t_end)
    bound = charger.proven(apply(f, order[:n], ranges))
    reach = n
    if rho < 1.0 and base <= eps:
        reach = _symbolic_prefix(f, order, ranges, charger, n, len(order), eps / rho, t_end)
    return MagnitudePick(order, ranges, n, bound, reach)


def prove_magnitude(
    f: Network,
    pick: MagnitudePick,
    eps: float,
    charger,
    *,
    time_limit: float = 20.0,
    lp_seconds: float = 0.0,
) -> LossyOutcome:
    """The expensive half: the joint-LP proof of ``pick`` and the LP bisection towards the
    ratio's pick (module docstring); ``lp_seconds`` <= 0: no LP, the pick with its symbolic
    bound. ``time_limit`` covers every proof."""
    t_end = time.perf_counter() + time_limit
    order, ranges = pick.order, pick.ranges

    def strong(n: int) -> float:
        left = t_end - time.perf_counter()
        if lp_seconds <= 0:
            return charger.proven(pick.network(f, n))
        return charger.proven(pick.network(f, n), lp_seconds=max(min(lp_seconds, left), 1e-3))

    n = pick.n
    proven = strong(n) if lp_seconds > 0 else pick.bound  # the final proof of the pick
    sym = pick.bound
    ratio = proven / sym if sym > 0 else 1.0
    if lp_seconds > 0 and ratio < 1.0 - RATIO_SLACK and proven <= eps:
        far = _symbolic_prefix(f, order, ranges, charger, n, len(order), eps / ratio, t_end)
        if far > n and time.perf_counter() < t_end:
            b = strong(far)
            if b <= eps:
                n, proven = far, b
            else:  # far fails: back from it within BISECT_STEPS proofs
                n, b = longest_prefix(strong, eps, n, far, t_end, BISECT_STEPS)
                proven = proven if b is None else b
    accepted = order[:n]
    facts = layer_facts(f, accepted, {})
    return LossyOutcome(pick.network(f, n), proven, accepted, charger.calls, facts)


def search_magnitude(
    f: Network,
    boxes: Sequence[Box],
    eps: float,
    charger,
    *,
    time_limit: float = 20.0,
    lp_seconds: float = 0.0,
) -> LossyOutcome:
    """Global magnitude pruning of ``f`` at the largest count of zeroed weights proven within
    ``eps`` (module docstring): :func:`magnitude_pick`, then :func:`prove_magnitude`.
    ``charger``: an :class:`~exactcomp.verify.charge.Charger` of ``f`` on ``boxes``;
    ``lp_seconds`` > 0: the budget of one joint-LP proof (0: symbolic proofs only);
    ``time_limit`` covers every proof. Zeroed weights keep their input out of the bias (no
    centring), as the baseline does."""
    t_end = time.perf_counter() + time_limit
    pick = magnitude_pick(f, boxes, eps, charger, time_limit=time_limit)
    left = max(t_end - time.perf_counter(), 1e-3)
    return prove_magnitude(f, pick, eps, charger, time_limit=left, lp_seconds=lp_seconds)


def kept_parameters(net: Network) -> int:
    """The nonzero weights and biases of ``net`` once the neurons without effect are dropped."""
    g = drop_unused_grids(net, [None] * len(net.layers))[0]
    return int(
        sum(
            (la.weight.count_nonzero() if la.sparse else np.count_nonzero(la.weight))
            + np.count_nonzero(la.bias)
            for la in g.layers
        )
    )


@dataclass(frozen=True)
class MagnitudeCandidate:
    """The magnitude candidate between its two halves: the symbolic pick, its outcome so far
    (the pick with its symbolic bound, or with the LP's once proven) and the report's facts."""

    pick: MagnitudePick
    outcome: LossyOutcome
    facts: dict


def magnitude_first(
    f: Network,
    boxes: Sequence[Box],
    eps: float,
    charger,
    *,
    time_limit: float,
    lp_seconds: float,
) -> tuple[MagnitudeCandidate, float]:
    """The symbolic half of the magnitude candidate (:func:`magnitude_pick`; all of it within
    ``time_limit``, the candidate's share of ``compress --tol``), and the seconds to reserve
    for its joint-LP proof before the greedy search starts.

    The rule: nothing is reserved when no LP is asked for, or when even the optimistic
    ``reach`` (an LP :data:`MAGNITUDE_RHO` times the symbolic bound, which the digits models
    never showed: 0.97-1.0) removes less than :data:`LP_MIN_SHARE` of the parameters
    (magnitude pruning then trails the search: 745 weights against the search's 1,818
    parameters on the l1 = 0 digits model at tol 1.0); else ``lp_seconds``, within what is
    left of ``time_limit``."""
    t_end = time.perf_counter() + time_limit
    if not affords(charger):  # not one proof fits: no pick (its candidates alone cost seconds)
        none = LossyOutcome(f, 0.0, [], charger.calls, layer_facts(f, [], {}))
        facts = {"symbolic_pick": 0, "symbolic_bound": 0.0, "lp_proof": False}
        facts |= {"reach_parameters_after": kept_parameters(f), "lp_reserved_seconds": 0.0}
        return MagnitudeCandidate(MagnitudePick([], [], 0, 0.0, 0), none, facts), 0.0
    pick = magnitude_pick(f, boxes, eps, charger, time_limit=time_limit, rho=MAGNITUDE_RHO)
    outcome = prove_magnitude(f, pick, eps, charger, lp_seconds=0.0)
    before = kept_parameters(f)
    reach = kept_parameters(pick.network(f, pick.reach))
    reserve = 0.0
    if lp_seconds > 0 and before - reach >= LP_MIN_SHARE * before:
        reserve = max(min(lp_seconds, t_end - time.perf_counter()), 0.0)
    facts = {
        "symbolic_pick": pick.n,
        "symbolic_bound": pick.bound,
        "reach_parameters_after": reach,
        "lp_reserved_seconds": reserve,
        "lp_proof": False,
    }
    return MagnitudeCandidate(pick, outcome, facts), reserve


def magnitude_last(
    f: Network,
    mag: MagnitudeCandidate,
    search_out: LossyOutcome,
    eps: float,
    charger,
    *,
    reserve: float,
    lp_seconds: float,
) -> MagnitudeCandidate:
    """The expensive half (:func:`prove_magnitude`, within the ``reserve`` the search left),
    run only if the pick's optimistic reach keeps fewer parameters than the search's result
    ``search_out``: else magnitude cannot win, and the pick keeps its symbolic proof."""
    if reserve <= 0 or mag.facts["reach_parameters_after"] >= kept_parameters(search_out.network):
        return mag
    out = prove_magnitude(f, mag.pick, eps, charger, time_limit=reserve, lp_seconds=lp_seconds)
    if out.proven > eps and mag.outcome.proven <= eps:  # an LP cut short never undoes the pick
        out = mag.outcome
    return MagnitudeCandidate(mag.pick, out, {**mag.facts, "lp_proof": True})
