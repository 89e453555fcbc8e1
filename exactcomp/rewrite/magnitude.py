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
:math:`\rho < 1 - ` :data:`~exactcomp.rewrite.lossy.RATIO_SLACK`, the symbolic bisection
runs again for ``eps / rho``, its pick :math:`n_\rho` is proven by the LP, and if that
proof exceeds ``eps`` the LP bisects :math:`[n_s, n_\rho]` back within
:data:`~exactcomp.rewrite.lossy.BISECT_STEPS` proofs. A ratio only chooses what to try.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..domain import Box
from ..network import Network
from .lossy import (
    BISECT_STEPS,
    RATIO_SLACK,
    Candidate,
    LossyOutcome,
    apply,
    candidates,
    layer_facts,
    relu_ranges,
)


def magnitude_order(f: Network, cands: Sequence[Candidate]) -> list[Candidate]:
    """The weight edits of ``cands`` by increasing :math:`|w|` (stable: ties keep their
    order), the order in which global magnitude pruning zeroes them."""
    weights = [c for c in cands if c.kind == "weight"]
    mags = np.array([abs(f.layers[c.index[0]].weight[c.index[1], c.index[2]]) for c in weights])
    return [weights[i] for i in np.argsort(mags, kind="stable")]


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
    ``eps`` (module docstring). ``charger``: an :class:`~exactcomp.verify.charge.Charger` of
    ``f`` on ``boxes``; ``lp_seconds`` > 0: the budget of one joint-LP proof (0: symbolic
    proofs only); ``time_limit`` covers every proof. Zeroed weights keep their input out of
    the bias (no centring), as the baseline does."""
    t_end = time.perf_counter() + time_limit
    ranges = relu_ranges(f, charger)
    order = magnitude_order(f, candidates(f, ranges, boxes))

    def net(n: int) -> Network:
        return apply(f, order[:n], ranges)

    def symbolic_prefix(lo: int, hi: int, target: float) -> int:
        # the largest n in [lo, hi] whose symbolic bound is within target (lo is)
        while lo < hi and time.perf_counter() < t_end:
            mid = (lo + hi + 1) // 2
            if charger.proven(net(mid)) <= target:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def strong(n: int) -> float:
        left = t_end - time.perf_counter()
        if lp_seconds <= 0:
            return charger.proven(net(n))
        return charger.proven(net(n), lp_seconds=max(min(lp_seconds, left), 1e-3))

    pick = symbolic_prefix(0, len(order), eps) if charger.proven(net(0)) <= eps else 0
    proven = strong(pick)  # the final proof (LP or symbolic, the smaller) of the pick
    sym = charger.proven(net(pick))
    ratio = proven / sym if sym > 0 else 1.0
    if lp_seconds > 0 and ratio < 1.0 - RATIO_SLACK and proven <= eps:
        far = symbolic_prefix(pick, len(order), eps / ratio)
        lo, hi, steps = pick, far, 0
        while hi > lo and steps <= BISECT_STEPS and time.perf_counter() < t_end:
            n = hi if steps == 0 else (lo + hi + 1) // 2
            steps += 1
            b = strong(n)
            if b <= eps:
                lo, proven = n, b
                if n == hi:
                    break
            else:
                hi = n - 1
        pick = lo
    accepted = order[:pick]
    facts = layer_facts(f, accepted, {})
    return LossyOutcome(net(pick), proven, accepted, charger.calls, facts)
