"""The joint LP (:func:`exactcomp.verify.difflp.lp_difference_bounds`) keeps its seconds.

On cifar_base_kw it took 27-32 s for 17.6 s asked: the prefix pairs' symbolic bounds (11 s
CPU), the rows written one Python call at a time (10 s), the model handed to HiGHS, none of
it looking at the clock; and HiGHS' limit counted every solve of the instance together, so a
solve after a long one stopped at once (benchmarks/RESULTS.md "clock22"). A fake clock
(``exactcomp.testing.clock.FakeClock``) stands for time: each slow step advances it; no test
here measures or waits for time.

Ground truth for the bounds: the oracle :func:`exactcomp.testing.max_output_difference` (the
exact ``max |f - g|`` of tiny networks).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from strategies import gaussian_mlp

from exactcomp.domain import Box
from exactcomp.highs import lp as highs_lp
from exactcomp.highs.status import Termination
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock
from exactcomp.verify import difflp
from exactcomp.verify.charge import Charger
from exactcomp.verify.pairs import Pair
from exactcomp.verify.symbolic import difference_bounds

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
WIDTHS = (2, 5, 4, 4, 2)  # three hidden layers


def _pair(seed: int = 0, bits: float = 3) -> tuple[Pair, object]:
    f = gaussian_mlp(seed, WIDTHS)
    g = quantize_network(f, [bits] * len(f.layers)).network
    return Pair.prepare(f, g, BOX, range(f.output_size)), f


def _slow_prefixes(monkeypatch, clock: FakeClock, seconds: float) -> list[int]:
    """Each prefix pair's symbolic bound takes ``seconds``; returns the prefixes started."""
    started: list[int] = []

    def slow(pair, lo, hi, known=None):
        started.append(len(pair.f.layers))
        clock.advance(seconds)
        return difference_bounds(pair, lo, hi, known)

    monkeypatch.setattr(difflp, "difference_bounds", slow)
    return started


def test_the_prefixes_stop_between_layers_at_the_end_and_nothing_is_claimed(monkeypatch):
    """Prefixes of 5 s, 7 s asked: the prefixes of layers 0 and 1 start (at 0 and 5 s), the
    third would start at 10 s, past the end: no LP, every output ``inf`` (the caller's bound
    stands), the call over by at most that one step."""
    clock = FakeClock().install(monkeypatch)
    started = _slow_prefixes(monkeypatch, clock, 5.0)
    pair, _ = _pair()
    solves = []
    monkeypatch.setattr(highs_lp.Lp, "solve", lambda self, deadline=None: solves.append(1))
    t0 = clock.now
    out = difflp.lp_difference_bounds(pair, BOX, 7.0)
    assert started == [1, 2]
    assert solves == [] and np.all(np.isinf(out))
    assert clock.now - t0 <= 7.0 + 5.0


def test_the_rows_stop_between_layers_at_the_end(monkeypatch):
    """Each layer's relu rows take 3 s: with 4 s asked (ranges known, no prefix), layers 0 and
    1 are built, then the end has passed: :class:`~exactcomp.verify.difflp.Late`, no solve."""
    clock = FakeClock().install(monkeypatch)
    pair, f = _pair()
    known = difference_bounds(pair, BOX.lower[None], BOX.upper[None]).differences(f)
    built = []
    real_affine = difflp.Rows.affine

    def affine(self, at, z, h, weight, bias):
        clock.advance(1.5)  # f's and g's rows of one layer: 3 s
        built.append(len(z))
        return real_affine(self, at, z, h, weight, bias)

    monkeypatch.setattr(difflp.Rows, "affine", affine)
    with pytest.raises(difflp.Late):
        difflp.joint_lp(pair, BOX, known, end=clock.now + 4.0)
    assert len(built) == 4  # layers 0 and 1, f and g each
    out = difflp.lp_difference_bounds(pair, BOX, 4.0, known=known)
    assert np.all(np.isinf(out))


def test_the_known_ranges_skip_prefixes_that_do_not_fit_and_stay_sound(monkeypatch):
    """With the pass's ranges and a pass of 10 s, no prefix fits in a quarter of 30 s: none
    runs, and the LP's bound is still at least the exact maximum; with a pass of 0 s every
    prefix of a layer >= 1 runs (layer 0's difference is affine: the pass has it)."""
    clock = FakeClock().install(monkeypatch)
    started = _slow_prefixes(monkeypatch, clock, 0.0)
    for seed in range(3):
        pair, f = _pair(seed)
        known = difference_bounds(pair, BOX.lower[None], BOX.upper[None]).differences(f)
        started.clear()
        out = difflp.lp_difference_bounds(pair, BOX, 30.0, known=known, pass_seconds=10.0)
        assert started == []
        exact = max_output_difference(f, pair.g, BOX).value
        assert np.all(np.isfinite(out)) and out.max() >= exact - 1e-9
        fast = difflp.lp_difference_bounds(pair, BOX, 30.0, known=known, pass_seconds=0.0)
        assert started == [2, 3]
        assert fast.max() >= exact - 1e-9


def test_a_solve_that_times_out_claims_nothing(monkeypatch):
    """Every solve ends at its limit (a time-out, or any end short of optimal): no output gets
    a bound from the LP (never a primal value), and the charger's claim is its symbolic
    bound."""
    pair, f = _pair(1)
    monkeypatch.setattr(
        highs_lp.Lp,
        "solve",
        lambda self, deadline=None: highs_lp.LpSolution(Termination.TIME_LIMIT, None, None),
    )
    out = difflp.lp_difference_bounds(pair, BOX, 60.0)
    assert np.all(np.isinf(out))
    charger = Charger(f, [BOX])
    symbolic = charger.proven(pair.g)
    assert charger.proven(pair.g, lp_seconds=60.0) == symbolic


def test_the_charger_hands_its_pass_ranges_to_the_lp(monkeypatch):
    """The joint LP after a symbolic proof starts from that proof's ranges (no prefix of layer
    0, none where the pass's seconds do not fit) and its bound is sound."""
    pair, f = _pair(2)
    seen = []
    real = difflp.layer_differences

    def spy(pair, box, known=None, **kw):
        seen.append(known)
        return real(pair, box, known, **kw)

    monkeypatch.setattr(difflp, "layer_differences", spy)
    charger = Charger(f, [BOX])
    bound = charger.proven(pair.g, lp_seconds=60.0)
    assert seen and seen[0] is not None and len(seen[0]) == len(WIDTHS) - 2
    assert bound >= max_output_difference(f, pair.g, BOX).value - 1e-9


def test_highs_gets_the_seconds_left_on_top_of_its_run_time_so_far(monkeypatch):
    """HiGHS compares its limit with the run time of all the instance's solves: the limit set
    is that run time plus the seconds left, so a solve after a long one gets its seconds."""
    pair, _ = _pair()
    lp, _ = difflp.joint_lp(pair, BOX, difflp.layer_differences(pair, BOX))
    h = highs_lp.Lp.from_model(lp)
    clock = FakeClock().install(monkeypatch)

    class Ran:  # the instance, 27 s of solves behind it
        def __init__(self, real):
            self.real = real

        def getRunTime(self):
            return 27.0

        def __getattr__(self, name):
            return getattr(self.real, name)

    h.h = Ran(h.h)
    h.solve(clock.now + 16.0)
    assert h.h.getOptionValue("time_limit")[1] == pytest.approx(43.0)


def test_the_row_blocks_build_the_model_of_one_row_at_a_time():
    """A layer's affine rows as one block are the rows one at a time: the same matrix, sides
    and columns (zeros of ``W`` written too)."""
    pair, _ = _pair(3)
    w = pair.f.layers[1].weight.copy()
    w[0, 1] = 0.0
    one, block = difflp.Rows(), difflp.Rows()
    for rows in (one, block):
        rows.col(-1.0, 1.0)
    h = [one.col(0.0, 1.0) for _ in range(w.shape[1])]
    z = [one.col(-5.0, 5.0) for _ in range(w.shape[0])]
    for _ in range(w.shape[1] + w.shape[0]):
        block.col(0.0, 0.0)
    block.col_lo, block.col_hi = list(one.col_lo), list(one.col_hi)
    b = pair.f.layers[1].bias
    for n in range(w.shape[0]):
        one.row([z[n], *h], [1.0, *(-w[n])], b[n], b[n])
    block.lo += [0.0] * w.shape[0]
    block.hi += [0.0] * w.shape[0]
    block.affine(np.arange(w.shape[0]), z, h, w, b)
    a, c = one.lp(), block.lp()
    assert (a.matrix != c.matrix).nnz == 0 and a.matrix.nnz == c.matrix.nnz
    for name in ("row_lower", "row_upper", "col_lower", "col_upper"):
        assert np.array_equal(getattr(a, name), getattr(c, name))


def test_the_lp_of_a_pair_is_unchanged_by_known_ranges_equal_to_the_prefixes():
    """Ranges given equal to the prefixes' own: the same LP bound as computing them."""
    pair, f = _pair(4)
    ranges = difflp.layer_differences(pair, BOX)
    a = difflp.lp_difference_bounds(pair, BOX, 60.0)
    b = difflp.lp_difference_bounds(dataclasses.replace(pair), BOX, 60.0, known=ranges)
    assert np.allclose(a, b, rtol=0, atol=1e-12)
