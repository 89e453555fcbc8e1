"""Issue 15, third round: branch and bound on the difference, and the search spending the LP.

Ground truth: the oracle :func:`exactcomp.testing.max_output_difference` (the exact
``max |f - g|`` by enumerating joint linear regions of tiny networks).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from strategies import gaussian_mlp

from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite import acceptance, edits
from exactcomp.rewrite.edits import Candidate
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.testing import max_output_difference
from exactcomp.verify.charge import Charger
from exactcomp.verify.diffbab import bab_difference_bounds
from exactcomp.verify.difflp import lp_difference_bounds
from exactcomp.verify.pairs import Pair

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _net(seed: int, widths=(2, 5, 4, 2)) -> Network:
    return gaussian_mlp(seed, widths)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bits", [4, 2])
def test_bab_bound_is_never_below_the_exact_max_nor_above_the_joint_lp(seed, bits):
    """``2-5r-4r-2`` and its quantised copy: per output, exact <= branch and bound <= joint
    LP (its root), and the charger's claim with ``bab_seconds`` is never below the exact."""
    f = _net(seed)
    g = quantize_network(f, [bits] * 3).network
    pair = Pair.prepare(f, g, BOX, range(2))
    bab = bab_difference_bounds(pair, BOX, 60.0, max_nodes=40)
    lp = lp_difference_bounds(pair, BOX, 60.0)
    exact = max_output_difference(f, g, BOX).value
    assert np.allclose(bab.root, lp)
    assert (bab.bounds <= bab.root + 1e-12).all()
    assert exact <= bab.bounds.max() + 1e-9
    assert exact <= Charger(f, [BOX]).proven(g, bab_seconds=2.0) + 1e-9


def test_bab_is_strictly_tighter_than_the_joint_lp():
    """``2-6r-6r-2`` (seed 1) at 4 bits: exact 0.286, joint LP 0.656; 200 nodes of branch and
    bound on f's phases bring the bound below 0.55, still above the exact value."""
    f = _net(1, (2, 6, 6, 2))
    g = quantize_network(f, [4] * 3).network
    pair = Pair.prepare(f, g, BOX, range(2))
    bab = bab_difference_bounds(pair, BOX, 120.0, max_nodes=200)
    exact = max_output_difference(f, g, BOX).value
    assert bab.nodes >= 100
    assert bab.bounds.max() < 0.55 < bab.root.max()
    assert exact <= bab.bounds.max() + 1e-9


def test_bab_stops_splitting_sides_within_the_target():
    """A side already proven within ``target`` is a closed leaf: with a target above the
    root bound no node beyond the root is solved."""
    f = _net(2)
    g = quantize_network(f, [4] * 3).network
    pair = Pair.prepare(f, g, BOX, range(2))
    root = bab_difference_bounds(pair, BOX, 60.0, max_nodes=0).bounds
    bab = bab_difference_bounds(pair, BOX, 60.0, target=float(root.max()) + 1.0)
    assert bab.nodes == 4  # 2 outputs x 2 sides, at the root
    assert np.array_equal(bab.bounds, root)


class _Proofs:
    """A stand-in for :class:`~exactcomp.verify.charge.Charger`: the "symbolic" bound of ``g``
    is ``s`` = the sum of ``|W_f - W_g|``; the "LP" bound is ``s / 2`` up to ``s = 1.2`` and
    ``s`` above (so the ratio measured at the start, 1/2, is too optimistic further on)."""

    def __init__(self, f: Network) -> None:
        self.f, self.calls = f, 0

    def proven(self, g: Network, *, lp_seconds: float = 0.0, **_) -> float:
        self.calls += 1
        pairs = zip(self.f.layers, g.layers, strict=True)
        s = float(sum(np.abs(a.weight - b.weight).sum() for a, b in pairs))
        if lp_seconds > 0:
            return s / 2 if s <= 1.2 else s
        return s


@pytest.mark.parametrize("steps", [3, 100])
def test_search_spends_the_lp_slack_and_bisects_back_to_a_proven_prefix(monkeypatch, steps):
    """Weights zeroed smallest first: the symbolic greedy stops at sum ``<= 1``; the LP shows
    a ratio of 1/2, so candidates up to ``s = 2`` are tried, the LP refuses them (``s > 1.2``)
    and a prefix it proves (``s <= 1.2``; the longest one with enough bisection steps) is
    kept: the claim is that LP proof of the whole, never the ratio times the symbolic bound."""
    monkeypatch.setattr(acceptance, "BISECT_STEPS", steps)
    f = _net(0, (2, 8, 8, 2))
    w = f.layers[1].weight
    order = sorted(
        (Candidate("weight", (1, i, j), abs(w[i, j]), 1) for i, j in np.ndindex(*w.shape)),
        key=lambda c: c.local,
    )
    cum = np.cumsum([c.local for c in order])
    first = int((cum <= 1.0).sum())
    proofs = _Proofs(f)
    accepted, proven, rounds = acceptance.spend_proof(
        lambda chosen: edits.apply(f, chosen, None),
        order[:first],
        order[first:],
        proofs,
        1.0,
        1.0,
        time.perf_counter() + 600,
    )
    longest = int((cum <= 1.2).sum())
    n = len(accepted)
    assert first < n <= longest and accepted == order[:n]
    if steps == 100:
        assert n == longest
    assert proven == pytest.approx(cum[n - 1] / 2) and proven <= 1.0
    assert proofs.proven(edits.apply(f, accepted, None), lp_seconds=1.0) == proven
    assert rounds[0]["ratio"] == pytest.approx(0.5) and rounds[0]["kept"] == n - first


def test_spent_search_is_proven_against_the_oracle():
    """``compress_lossy`` with LP proofs in the search on ``2-6r-6r-2``: the claim is within
    tol and never below the exact ``max |f - g|``."""
    from exactcomp.approx import compress_lossy

    f = _net(3, (2, 6, 6, 2))
    res = compress_lossy(f, BOX, 0.3, time_limit=20.0, lp_seconds=5.0)
    assert res.proven <= 0.3
    pruned = res.pruned if res.pruned is not None else res.network
    assert max_output_difference(f, pruned, BOX).value <= res.proven + 1e-9
    assert res.report["parameters_after"] < res.report["parameters_before"]
    assert "lp_rounds" in res.report


def test_bab_time_out_returns_the_max_over_open_leaves(monkeypatch):
    """On a fake clock each node LP "takes" 1 s: a 3.5 s budget stops the search after two
    splits (the last children solved past the deadline keep their parent's bound), and the
    claim is still the max over the leaves: never below the exact value, never above the
    root's."""
    from exactcomp.testing.clock import FakeClock
    from exactcomp.verify import diffbab

    clock = FakeClock().install(monkeypatch)
    real = diffbab._solve

    def slow(*args):
        out = real(*args)
        clock.advance(1.0)
        return out

    monkeypatch.setattr(diffbab, "_solve", slow)
    f = _net(1, (2, 6, 6, 2))
    g = quantize_network(f, [4] * 3).network
    pair = Pair.prepare(f, g, BOX, range(2))
    bab = diffbab.bab_difference_bounds(pair, BOX, 3.5)
    exact = max_output_difference(f, g, BOX).value
    assert 4 < bab.nodes <= 4 + 4
    assert exact <= bab.bounds.max() + 1e-9
    assert (bab.bounds <= bab.root + 1e-12).all()


@pytest.mark.parametrize("n", [0, 1, 2, 7, 16])
def test_longest_prefix_finds_the_last_passing_length_and_never_probes_hi(n):
    """A monotone pass (lengths ``<= t`` pass) over every ``t``: the bisection returns ``t``
    and its bound, never asks about ``hi = n + 1`` (taken to fail) and, capped at one step,
    returns a passing length."""
    for t in range(n + 1):
        asked = []

        def bound(m, t=t, asked=asked):
            asked.append(m)
            return float(m) if m <= t else 10.0 * n + 10

        lo, best = acceptance.longest_prefix(bound, float(t), 0, n + 1, time.perf_counter() + 600)
        assert lo == t and (best is None if t == 0 else best == t)
        assert all(0 < m <= n for m in asked)
        lo, _ = acceptance.longest_prefix(bound, float(t), 0, n + 1, time.perf_counter() + 600, 1)
        assert lo <= t
