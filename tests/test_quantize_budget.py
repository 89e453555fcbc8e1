"""``quantize --tol`` within one deadline (issue 15), and the waste it no longer pays.

The networks are tiny deep ``f`` on two inputs, quantised per layer::

    x (2 inputs) -> [4 ReLU] -> [8 ReLU] -> [3 ReLU] -> 2 outputs    f
    x            -> [the same, each layer at its chosen bits]         g

Time is the fake clock's (:mod:`exactcomp.testing.clock`): each proof is made to take a fixed
number of seconds, so which trials run before the deadline is exact on any machine. Ground
truth of every claim: the exact ``max |f - g|`` of the region-enumeration oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp, jacobian_moment

from exactcomp import approx, quantization
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite.bitwidths import choose_bits, narrower
from exactcomp.rewrite.compensation import domain_compensation
from exactcomp.rewrite.kernels import stored_weights
from exactcomp.rewrite.quantize import quantize_network, storage_bits
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock
from exactcomp.verify.charge import Charger

BOX = Box.uniform(-1.0, 1.0, 2)
LADDER = [1.5, 2, 3, 4, 8, 16]
FAST = {"tighten_seconds": 0.0, "lp_seconds": 0.0, "split_seconds": 0.0}


def _net(seed: int, widths=(2, 4, 8, 3, 2)) -> Network:
    return gaussian_mlp(seed, widths, scaled=True)


def _old_greedy(f, charger, tol, ladder, comp) -> list:
    """The greedy before the deadline (layers tried in order, the first best kept): the
    oracle that the reordered, cached, memoised one chooses the same bits."""
    n, top = len(f.layers), len(ladder) - 1
    level = [top] * n

    def bits_of(lv):
        return [None if i is None else ladder[i] for i in lv]

    current = charger.proven(quantize_network(f, bits_of(level), comp).network)
    if current > tol:
        level = [None] * n
        current = charger.proven(quantize_network(f, bits_of(level), comp).network)
    while True:
        best = None
        for k in range(n):
            i = level[k]
            nxt = narrower(ladder, i)
            if nxt is None:
                continue
            trial = list(level)
            trial[k] = nxt
            bound = charger.proven(quantize_network(f, bits_of(trial), comp).network)
            if bound > tol:
                continue
            old = 32 if i is None else storage_bits(ladder[i])
            gain = stored_weights(f.layers[k]) * (old - storage_bits(ladder[nxt]))
            value = gain / max(bound - current, 1e-12)
            if best is None or value > best[0]:
                best = (value, trial, bound)
        if best is None:
            return bits_of(level)
        _, level, current = best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tol", [0.05, 0.3])
def test_without_a_deadline_the_greedy_chooses_what_it_chose_before(seed, tol):
    f = _net(seed)
    comp = domain_compensation(f, [BOX])
    old = _old_greedy(f, Charger(f, [BOX]), tol, LADDER, comp)
    assert choose_bits(f, Charger(f, [BOX]), tol, LADDER, comp) == old


class _Timed:
    """A charger whose every proof takes ``seconds`` on the fake clock; records when each
    proof started, and of which bits."""

    def __init__(self, charger: Charger, clock: FakeClock, seconds: float) -> None:
        self.charger, self.clock, self.seconds = charger, clock, seconds
        self.started: list[tuple[float, Network]] = []

    def proven(self, g: Network, **kw) -> float:
        self.started.append((self.clock.now, g))
        self.clock.advance(self.seconds)
        return self.charger.proven(g, **kw)


@pytest.mark.parametrize("budget", [0.0, 15.0, 25.0, 45.0])
def test_the_greedy_starts_no_proof_that_would_end_past_its_deadline(monkeypatch, budget):
    """Proofs of 10 s: none starts later than ``end`` less 10 s (the first, the widest grid,
    always runs); a round cut short keeps the best narrowing proven so far, largest layer
    first (layer 1: 32 weights, then 24, 8, 6), a round that no later trial can win ends
    early (:func:`~exactcomp.rewrite.bitwidths.slack_floor`), and every width it returns is
    proven."""
    clock = FakeClock().install(monkeypatch)
    f, tol = _net(0), 0.3
    comp = domain_compensation(f, [BOX])
    timed = _Timed(Charger(f, [BOX]), clock, 10.0)
    start = clock.now
    bits = choose_bits(f, timed, tol, LADDER, comp, end=start + budget)
    assert all(t + 10.0 <= start + budget + 1e-9 for t, _ in timed.started[1:])
    assert len(timed.started) == 1 + max(int(budget // 10) - 1, 0)
    g = quantize_network(f, bits, comp).network
    assert any(np.array_equal(g.layers[1].weight, h.layers[1].weight) for _, h in timed.started)
    proven = Charger(f, [BOX]).proven(g)
    assert proven <= tol
    assert max_output_difference(f, g, BOX).value <= proven + 1e-9
    if budget >= 20.0:  # the first trial of each round: the largest layer, narrowed; when
        # rounds are short no other trial can beat it (slack_floor): 8, then 4 bits, then
        # layer 2 (its 3 bits store as 4: no gain)
        assert bits == ([16, 8, 16, 16] if budget < 40.0 else [16, 4, 8, 16])


@pytest.mark.parametrize("limit", [30.0, 60.0, 3000.0])
def test_quantize_keeps_one_deadline(monkeypatch, limit):
    """Every proof of the bit search ends by ``(1 - FINAL_SHARE) * time_limit`` after the
    call's start (proofs of 5 s); the final proof comes after them, then the float
    candidate's proof of its rounding where the last proof's seconds say it ends by
    ``CANDIDATE_END``, and the claim holds."""
    clock = FakeClock().install(monkeypatch)
    real = Charger.proven
    started: list[float] = []

    def slow(self, g, **kw):
        started.append(clock.now)
        clock.advance(5.0)
        bound = real(self, g, **kw)
        self.seconds = max(self.seconds, 5.0)  # as the charger measures its proofs
        return bound

    monkeypatch.setattr(Charger, "proven", slow)
    f, tol, start = _net(1), 0.3, clock.now
    res = quantization.quantize(f, BOX, tol=tol, time_limit=limit, **FAST)
    stop = start + (1 - approx.FINAL_SHARE) * limit
    candidate = res.started_from is not None and np.isfinite(res.started_from[1])
    finals = 2 if candidate else 1  # the final proof, then the candidate's
    assert all(t + 5.0 <= stop + 1e-9 for t in started[1:-finals])  # the first always runs
    if candidate:
        assert started[-1] + 5.0 <= start + quantization.CANDIDATE_END * limit + 1e-9
    assert res.proven <= tol
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9
    if limit == 3000.0:  # time enough: the same bits as with no deadline at all
        unlimited = quantization.quantize(f, BOX, tol=tol, time_limit=np.inf, **FAST)
        assert res.report["layers"] == unlimited.report["layers"]


def test_the_same_network_is_proven_once_and_another_is_not_served_from_it():
    """The charger keeps each network's symbolic bounds: the same weights give the same
    bound without a second proof, a weight moved by one ulp gets its own proof."""
    f = _net(2)
    g = quantize_network(f, [8, 8, 8, 8]).network
    charger = Charger(f, [BOX])
    first = charger.proven(g)
    assert charger.proven(g) == first and len(charger._symbolic) == 1
    w = g.layers[2].weight.copy()
    w[0, 0] = np.nextafter(w[0, 0], np.inf)
    layers = list(g.layers)
    layers[2] = type(g.layers[2])(w, g.layers[2].bias, g.layers[2].relu)
    h = Network(tuple(layers), dtype=g.dtype, meta=dict(g.meta))
    assert charger.proven(h) == Charger(f, [BOX]).proven(h)
    assert len(charger._symbolic) == 2
    assert max_output_difference(f, g, BOX).value <= first + 1e-9


def test_the_layer_cache_gives_the_same_network():
    f = _net(3)
    comp = domain_compensation(f, [BOX])
    cache: dict = {}
    for bits in ([8, 4, 8, 16], [8, 3, 8, 16], [8, 4, 8, 16], [None, 4, 2, 16]):
        a = quantize_network(f, bits, comp, cache)
        b = quantize_network(f, bits, comp)
        for la, lb in zip(a.network.layers, b.network.layers, strict=True):
            assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.bias, lb.bias)
        assert a.bits_per_weight() == b.bits_per_weight()
    assert len(cache) == 4 * 1 + 1 + 1 + 1  # layer 1 at 4 and 3, layer 0 and 2 at two widths


@pytest.mark.parametrize("load_seconds", [6.0, 70.0])
def test_the_cli_counts_the_load_in_quantizes_time_limit(tmp_path, monkeypatch, load_seconds):
    """``quantize`` in the CLI: the call gets ``TIME_LIMIT`` less what loading the model
    took (the fake clock), never less than half of it, as ``compress --tol``."""
    from exactcomp import api, io
    from exactcomp.cli import main

    clock = FakeClock().install(monkeypatch)
    model = tmp_path / "f.onnx"
    io.save(_net(0, widths=(2, 4, 2)), model)
    real_load, real_quantize = api.load, api.quantize
    given = []

    def slow_load(*args, **kw):
        clock.advance(load_seconds)
        return real_load(*args, **kw)

    def quantize(*args, time_limit, **kw):
        given.append(time_limit)
        return real_quantize(*args, time_limit=time_limit, **kw)

    monkeypatch.setattr(api, "load", slow_load)
    monkeypatch.setattr(api, "quantize", quantize)
    out = tmp_path / "g.onnx"
    assert main(["quantize", str(model), "--box=-1,1", "--tol", "0.5", "-o", str(out)]) == 0
    assert given == [max(approx.TIME_LIMIT - load_seconds, approx.TIME_LIMIT / 2)]


# ------------------------------------------------------- the bounds phase and the sampling


def test_the_jacobian_moments_stop_at_the_lowest_dense_layer():
    """A convolution at the bottom, dense layers above (``random_conv_case`` with a hidden
    layer)::

        x -> Conv (+ pool) -> ... -> [4 ReLU] -> 2 outputs

    The moments of the dense layers are the brute-force mean of ``J^T J`` over the points
    (``J`` each point's output Jacobian at that layer, built row by row); the convolutions'
    are None, as before the cut."""
    from exactcomp.rewrite.compensation import JACOBIAN_POINTS, Compensation
    from exactcomp.testing.random_conv import random_conv_case

    case = random_conv_case(3, hidden=4)
    f, box = case.network, case.box
    assert f.layers[0].structure is not None and f.layers[-2].structure is None
    x = box.sample(300, np.random.default_rng(0))
    comp = Compensation.of_points(f, x)
    for k, layer in enumerate(f.layers):
        if layer.structure is not None:
            assert comp.moment[k] is None
            continue
        want = jacobian_moment(f, x[:JACOBIAN_POINTS], k)
        np.testing.assert_allclose(comp.moment[k], want, atol=1e-9)


def test_a_tightening_that_moves_nothing_leaves_one_pair(monkeypatch):
    """``tighten_end`` already past, or ``f``'s bounds slower than ``tighten_under``: no
    tightening, one pair per box, the plain bound; a tightening that runs keeps both pairs
    only where it moved a bound, and its bound is at most the plain one and holds (the
    oracle)."""
    clock = FakeClock().install(monkeypatch)
    f = _net(4)
    g = quantize_network(f, [8, 4, 8, 8]).network
    plain = Charger(f, [BOX])
    late = Charger(f, [BOX], tighten_seconds=20.0, tighten_end=clock.now - 1.0)
    assert late._plain is None and late.proven(g) == plain.proven(g)
    import exactcomp.verify.charge as charge

    real = charge.tightened_pair
    monkeypatch.setattr(charge, "tightened_pair", lambda p, b, s: real(p, b, 0.0))
    still = Charger(f, [BOX], tighten_seconds=20.0)  # runs, but no LP in its 0 s
    assert still._plain is None and still.proven(g) == plain.proven(g)
    monkeypatch.setattr(charge, "tightened_pair", real)
    tight = Charger(f, [BOX], tighten_seconds=20.0, tighten_end=clock.now + 20.0)
    assert tight._plain is not None  # layer 1's LP moved a bound: both pairs
    assert tight.proven(g) <= plain.proven(g)
    real_prepare = charge.Pair.prepare

    def slow_prepare(*args):  # f's symbolic bounds take 2 s: too costly to tighten
        clock.advance(2.0)
        return real_prepare(*args)

    monkeypatch.setattr(charge.Pair, "prepare", slow_prepare)
    costly = Charger(f, [BOX], tighten_seconds=20.0, tighten_under=1.0)
    assert costly._plain is None and costly.proven(g) == plain.proven(g)
    assert Charger(f, [BOX], tighten_seconds=20.0, tighten_under=3.0)._plain is not None
    assert max_output_difference(f, g, BOX).value <= tight.proven(g) + 1e-9


@pytest.mark.parametrize("moments_seconds", [0.0, 20.0, 40.0])
def test_the_bounds_phase_keeps_to_its_share(monkeypatch, moments_seconds):
    """The domain's moments take ``moments_seconds`` (fake clock), then the tightening gets
    what is left of :data:`~exactcomp.quantization.BOUNDS_SHARE` of the 90 s, at most its
    own 20 s: 20, 10 and none (past the share: no tightening, a proven claim still)."""
    clock = FakeClock().install(monkeypatch)
    real_comp, given = quantization.domain_compensation, []

    def slow_comp(*args, **kw):
        clock.advance(moments_seconds)
        return real_comp(*args, **kw)

    import exactcomp.verify.charge as charge

    real_tight = charge.tightened_pair

    def tightened(pair, box, seconds, **kw):
        given.append(seconds)
        return real_tight(pair, box, seconds, **kw)

    monkeypatch.setattr(quantization, "domain_compensation", slow_comp)
    monkeypatch.setattr(charge, "tightened_pair", tightened)
    f, tol = _net(1), 0.3
    res = quantization.quantize(f, BOX, tol=tol, time_limit=90.0, lp_seconds=0.0, split_seconds=0.0)
    share = quantization.BOUNDS_SHARE * 90.0
    assert given == ([min(20.0, share - moments_seconds)] if moments_seconds < share else [])
    assert res.proven <= tol
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


def test_the_sampling_keeps_to_the_time_left(monkeypatch):
    """Each row of a forward pass takes 1 ms (fake clock). The candidates come in chunks,
    each started only while the slowest so far fits in half the time left, the ascents and
    the local search in the rest: the search ends by the deadline whenever the floor (the
    first chunk, the first ascent) fits in it; the rows grow with the time; with time enough
    the value is the one without a deadline; every value is at most the exact
    ``max |f - g|`` (a lower bound)."""
    from exactcomp.verify import falsify

    clock = FakeClock().install(monkeypatch)
    real_forward = Network.forward
    rows = [0]

    def slow(self, x):
        n = len(np.atleast_2d(x))
        rows[0] += n
        clock.advance(1e-3 * n)
        return real_forward(self, x)

    f = _net(5)
    g = quantize_network(f, [4, 4, 4, 4]).network
    exact = max_output_difference(f, g, BOX).value
    free = falsify.sampled_max_difference(f, g, [BOX], points=4096)
    monkeypatch.setattr(Network, "forward", slow)
    taken, counts = {}, {}
    for s in (0.0, 2.0, 5.0, 10.0, 1000.0):
        rows[0], begun = 0, clock.now
        value = falsify.sampled_max_difference(f, g, [BOX], points=4096, deadline=begun + s)
        taken[s], counts[s] = clock.now - begun, rows[0]
        assert value <= exact + 1e-9
        if s == 1000.0:  # time enough: every point, the value without a deadline
            assert value == free
    # the floor: one chunk of 256 uniform points, the 4 corners and 4 near them, the centre
    # (265 rows of both networks), and one ascent
    assert 2 * 265e-3 <= taken[0.0] < 1.0
    assert all(taken[s] <= s + 1e-9 for s in (2.0, 5.0, 10.0, 1000.0))
    assert [counts[s] for s in sorted(counts)] == sorted(counts.values())
    assert counts[0.0] < counts[10.0] < counts[1000.0]
    assert free <= exact + 1e-9


@pytest.mark.parametrize("budget", [9.0, 25.0, 45.0])
def test_the_lp_narrowing_starts_no_proof_that_would_end_past_its_deadline(monkeypatch, budget):
    """Each symbolic proof takes 10 s (fake clock): ``narrow_with_lp`` starts one only if the
    charger's last (:attr:`Charger.seconds`) still fits before ``end``, so every proof ends
    by then; what it narrows is proven within ``tol`` (the oracle)."""
    import exactcomp.verify.box_bounds as box_bounds
    from exactcomp.rewrite.bitwidths import narrow_with_lp

    clock = FakeClock().install(monkeypatch)
    real, ends = box_bounds.symbolic_bound, []

    def slow(*args):
        clock.advance(10.0)
        ends.append(clock.now)
        return real(*args)

    monkeypatch.setattr(box_bounds, "symbolic_bound", slow)
    f, tol = _net(0), 0.3
    comp = domain_compensation(f, [BOX])
    charger, bits = Charger(f, [BOX]), [16, 16, 16, 16]
    charger.proven(quantize_network(f, bits, comp).network)  # the search's last proof
    assert charger.seconds == 10.0
    end, before = clock.now + budget, len(ends)
    out, proof = narrow_with_lp(f, charger, tol, LADDER, bits, end, comp)
    assert all(t <= end + 1e-9 for t in ends)
    assert len(ends) - before == int(budget // 10)
    if out != bits:
        g = quantize_network(f, out, comp).network
        assert proof <= tol and max_output_difference(f, g, BOX).value <= proof + 1e-9


# ------------------------------------------------- the greedy's rounds when time is short


def test_the_slack_floor_is_the_slack_over_the_rounds_that_fit():
    """``s / R`` with ``R = T / (L p)``: 0.04 of slack, 40 s left, rounds of 4 proofs of
    5 s: two rounds fit, a trial is charged at least 0.02; no deadline or no measured proof
    time: 0 (the greedy as before)."""
    from exactcomp.rewrite.bitwidths import slack_floor

    assert slack_floor(0.04, 40.0, 4, 5.0) == pytest.approx(0.02)
    assert slack_floor(0.04, 10.0, 4, 5.0) == pytest.approx(0.08)  # half a round: > slack
    assert slack_floor(0.04, np.inf, 4, 5.0) == 0.0
    assert slack_floor(0.04, 40.0, 4, 0.0) == 0.0
    assert slack_floor(-1.0, 40.0, 4, 5.0) == 0.0


class _Additive:
    """A charger of bits, not networks: ``quantize_network`` is replaced by the bits
    themselves, and the bound of a choice is the sum of its layers' errors (``ERRORS``), each
    proof ``seconds`` on the fake clock. Layer 0 holds 1,000 of the 1,104 weights::

        x (20) -> [50 ReLU] -> [2 ReLU] -> 2 outputs       (1,000 + 100 + 4 weights)
    """

    ERRORS = {  # layer -> bits -> error added; None: float32 (0)
        0: {16: 5e-4, 8: 1e-3, 4: 0.015, 3: 0.06, 2: 0.2, 1.5: 0.5},
        1: {16: 0.0, 8: 1e-5, 4: 2e-5, 3: 0.08, 2: 0.2, 1.5: 0.5},
        2: {16: 0.0, 8: 1e-5, 4: 2e-5, 3: 0.08, 2: 0.2, 1.5: 0.5},
    }

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds, self.started = clock, seconds, []

    def proven(self, bits) -> float:
        self.started.append(tuple(bits))
        self.clock.advance(self.seconds)
        return sum(0.0 if b is None else self.ERRORS[k][b] for k, b in enumerate(bits))


class _Bits:
    def __init__(self, bits) -> None:
        self.network = tuple(bits)


@pytest.mark.parametrize("budget", [50.0, 60.0, 80.0])
def test_when_rounds_are_short_the_largest_layer_is_narrowed_first(monkeypatch, budget):
    """Proofs of 10 s, 5-8 of them: the old value ``gain / delta`` spends the rounds on the
    1,004 small weights (their error ~1e-5) and leaves layer 0 at 16 or 8 bits; charged at
    least ``slack / R``, layer 0 goes to 4 bits in two rounds of one proof each (no later
    trial could beat it: the round ends), the small layers after. Every choice within tol;
    with no deadline the greedy is the old one (the small layers first, then layer 0)."""
    from exactcomp.rewrite import bitwidths

    clock = FakeClock().install(monkeypatch)
    monkeypatch.setattr(bitwidths, "quantize_network", lambda f, bits, comp, cache: _Bits(bits))
    f, tol = _net(0, widths=(20, 50, 2, 2)), 0.05
    assert [stored_weights(la) for la in f.layers] == [1000, 100, 4]
    charger = _Additive(clock, 10.0)
    start = clock.now
    bits = choose_bits(f, charger, tol, LADDER, None, end=start + budget)
    assert bits[0] == 4
    assert charger.started[1:3] == [(8, 16, 16), (4, 16, 16)]  # one proof a round
    assert charger.proven(bits) <= tol
    assert len(charger.started) - 1 <= budget // 10
    unlimited = _Additive(clock, 10.0)
    old = choose_bits(f, unlimited, tol, LADDER, None)
    assert old == [4, 4, 4]
    assert unlimited.started[1:4] == [(8, 16, 16), (16, 8, 16), (16, 16, 8)]  # whole rounds


def test_narrower_skips_the_widths_that_store_as_many_bits():
    """3 bits are stored as INT4 like 4, ternary as INT2 like 2: a step never lands on them."""
    steps, i = [], None
    while (i := narrower(LADDER, i)) is not None:
        steps.append(LADDER[i])
    assert steps == [16, 8, 4, 2]
    assert narrower([3, 4], 1) is None and narrower([], None) is None


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tol", [0.05, 0.3, 2.0])
def test_the_greedy_returns_no_width_that_saves_nothing_over_a_wider_one(seed, tol):
    """Every chosen width stores fewer bits than the next wider one of the ladder (so never
    3 bits or ternary), and the claim of the chosen bits is above the exact maximum."""
    f = _net(seed)
    comp = domain_compensation(f, [BOX])
    bits = choose_bits(f, Charger(f, [BOX]), tol, LADDER, comp)
    assert not {3, 1.5} & {b for b in bits if b is not None}
    g = quantize_network(f, bits, comp).network
    proven = Charger(f, [BOX]).proven(g)
    assert max_output_difference(f, g, BOX).value <= proven + 1e-9
    assert proven <= tol


def test_symbolic_pass_late_at_its_pace(monkeypatch) -> None:
    """A pass whose first products, at their pace, would end the rest past ``end`` stops
    there (``Late``) instead of running past it; with time to spare it ends and claims."""
    import dataclasses

    from exactcomp.bounds.linear import Late
    from exactcomp.verify import forms, pairs, symbolic

    clock = FakeClock().install(monkeypatch)
    f = _net(3)
    g = quantize_network(f, [4] * len(f.layers)).network
    pair = pairs.Pair.prepare(f, f, BOX, range(f.output_size))
    real = forms.Forms.affine

    def slow(self, w, *rest):  # one second per 8 weights multiplied
        clock.sleep(w.size / 8)
        return real(self, w, *rest)

    monkeypatch.setattr(forms.Forms, "affine", slow)
    lo, hi = BOX.lower[None], BOX.upper[None]
    start = clock.now
    whole = symbolic.difference_bounds(dataclasses.replace(pair, g=g), lo, hi)
    took = clock.now - start  # layers 1-3: (32 + 24 + 6) / 8 s, three products each
    assert took == pytest.approx(3 * 62 / 8)
    at_pace = dataclasses.replace(pair, g=g, end=clock.now + took - 1.0)
    start = clock.now
    with pytest.raises(Late):
        symbolic.difference_bounds(at_pace, lo, hi)
    assert clock.now - start == pytest.approx(3 * 32 / 8)  # after layer 1: 32 of 62 done
    in_time = dataclasses.replace(pair, g=g, end=clock.now + took + 1.0)
    np.testing.assert_array_equal(symbolic.difference_bounds(in_time, lo, hi).hi, whole.hi)


@pytest.mark.parametrize("spent", [0.0, 10.0, 44.9, 60.0, 89.0, 95.0])
def test_a_dag_splits_what_its_own_graph_left(spent: float) -> None:
    """``quantize`` of a DAG quantises its own graph first (``spent`` seconds of 90): the
    exact pass and the chain then share what is left, in the network's proportions, and
    nothing is given past the limit (the floor that took pensieve to 1.1x is gone)."""
    from exactcomp.quantize_plan import chain_budget

    limit = 90.0
    share, floor, least = chain_budget(limit, spent, dag=True)
    left = max(limit - spent, 0.0)
    assert floor == 0.0 and share >= 0.0
    assert spent + share + (left - share) <= max(limit, spent)  # the chain: the rest, no more
    assert share / left == pytest.approx(0.25 / 0.6) if left else share == 0.0
    chain = left - share  # what the chain gets when the exact pass keeps its share
    assert least == pytest.approx(chain / 2)
    assert (chain <= least) == (left == 0.0)  # skipped only where nothing is left


def test_a_network_keeps_its_shares() -> None:
    """Not a DAG: the exact pass's quarter and the chain's floor, as before."""
    from exactcomp.quantize_plan import chain_budget

    assert chain_budget(90.0, 3.0, dag=False) == (
        pytest.approx(22.5),
        pytest.approx(31.5),
        0.0,
    )
