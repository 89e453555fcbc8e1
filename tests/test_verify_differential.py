"""The differential argument (:mod:`exactcomp.verify.differential`): sound and tight.

Soundness: the proven bound on ``max |f - g|`` is never below the exact maximum (joint region
enumeration, :func:`~exactcomp.testing.oracle.max_output_difference`), whether ``g`` is a
compression of ``f``, a copy, or a genuinely different network (perturbed weights, a shifted
neuron), so the argument also catches non-equivalence. Tightness: on a deep folded network,
where a padded interval argument compounds round-off through every layer, the bound stays
at round-off size.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import network_and_box

from exactcomp.bounds import interval_bounds
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.testing.oracle import max_output_difference
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import LayerStability, Proof, StabilityReport, Verdict
from exactcomp.verify import EquivalenceStatus, verify_equivalence
from exactcomp.verify.coupling import _term_scales, inconsistency, match_neurons
from exactcomp.verify.differential import Side, _outward, _Vec, bound_differences
from exactcomp.verify.formulation import best_bounds, proven_encoding, with_linear_output


# ----------------------------------------------------------------------------- helpers
def probe(box: Box, n: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    corners = np.where(rng.random((32, box.dim)) < 0.5, box.lower, box.upper)
    return np.vstack([box.sample(n, rng), corners, box.center])


def proven_report(net: Network, box: Box) -> StabilityReport:
    """Verdicts proven by the (sound, padded) linear bounds, as a stability report."""
    bounds = best_bounds(net, box)
    layers = []
    for k in net.relu_layers:
        lo, hi = bounds[k]
        v = np.where(hi <= 0, Verdict.INACTIVE, np.where(lo >= 0, Verdict.ACTIVE, 0))
        v = v.astype(np.int8)
        p = np.where(v != 0, Proof.LINEAR, Proof.NONE).astype(np.int8)
        none = np.full(v.size, -1, dtype=np.int64)
        layers.append(LayerStability(k, v, p, lo, hi, none, none))
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))


def differential_bound(f: Network, g: Network, box: Box, known=None) -> float:
    """The proven bound on ``max_x ||f(x) - g(x)||_inf`` (the equivalence run's phase 2)."""
    fl, gl = with_linear_output(f), with_linear_output(g)
    fs = Side(fl, *proven_encoding(fl, box, DEFAULT, None, known=known))
    gs = Side(gl, *proven_encoding(gl, box, DEFAULT, None))
    pts = probe(box)
    diff = bound_differences(fs, gs, match_neurons(fl, gl, pts), (box.lower, box.upper))
    assert inconsistency(fs, gs, diff.links, pts) is None
    return max(max(-lo, hi) for lo, hi in diff.outputs)


def assert_sound(f: Network, g: Network, box: Box, known=None) -> float:
    """The bound is at least the exact maximum difference (up to float64 evaluation of the
    maximiser, which the oracle reports as a forward difference)."""
    bound = differential_bound(f, g, box, known)
    worst = max_output_difference(f, g, box)
    x = np.atleast_2d(worst.x)
    noise = DEFAULT.check_scale * float((f.term_scale(x) + g.term_scale(x)).max())
    assert bound >= worst.value - noise, (bound, worst.value)
    return bound


def perturbed(net: Network, rng: np.random.Generator, rel: float) -> Network:
    """``net`` with the weights and biases of one random layer scaled by ``1 + rel * N(0, 1)``."""
    k = int(rng.integers(len(net.layers)))
    layers = list(net.layers)
    la = layers[k]
    w = la.weight * (1 + rel * rng.normal(size=la.weight.shape))
    b = la.bias * (1 + rel * rng.normal(size=la.bias.shape)) + rel * rng.normal(size=la.bias.shape)
    layers[k] = Layer(w, b, la.relu)
    return net.replace_layers(layers)


def shifted(net: Network, k: int, j: int, s: float) -> Network:
    """``net`` with the bias of neuron ``j`` of layer ``k`` moved by ``s``."""
    layers = list(net.layers)
    b = layers[k].bias.copy()
    b[j] += s
    layers[k] = Layer(layers[k].weight, b, layers[k].relu)
    return net.replace_layers(layers)


def permuted(net: Network, rng: np.random.Generator) -> Network:
    """The same function, hidden neurons of every layer permuted."""
    layers, prev = [], None
    for k, la in enumerate(net.layers):
        w, b = la.weight, la.bias
        if prev is not None:
            w = w[:, prev]
        prev = rng.permutation(la.out_features) if k < len(net.layers) - 1 else None
        if prev is not None:
            w, b = w[prev], b[prev]
        layers.append(Layer(w, b, la.relu))
    return net.replace_layers(layers)


# ----------------------------------------------------------------------------- exactness
def test_dyadic_form_is_exact() -> None:
    a = np.array([0.0, -0.0, 1.0, -3.5, 0.1, 1e-300, 5e-324, -2.2250738585072014e-308, 1e300])
    v = _Vec.of(a)
    for i, x in enumerate(a):
        assert v.value(i) == Fraction(x)
    m = _Vec.of(np.array([[0.1, 3.0], [np.float32(0.7), -1e-8]]))
    assert [m.value((i, j)) for i in range(2) for j in range(2)] == [
        Fraction(0.1),
        Fraction(3.0),
        Fraction(float(np.float32(0.7))),
        Fraction(-1e-8),
    ]
    with pytest.raises(ValueError):
        _Vec.of(np.array([np.inf]))


def test_outward_rounding_encloses() -> None:
    third = Fraction(1, 3)
    lo, hi = _outward(third, third)
    assert Fraction(lo) < third < Fraction(hi) and np.nextafter(lo, 1.0) == hi
    assert _outward(Fraction(1, 4), Fraction(3)) == (0.25, 3.0)  # exact values stay exact
    assert _outward(Fraction(-(10**400)), Fraction(10**400)) == (-np.inf, np.inf)


def test_identical_and_permuted_copies_have_bound_exactly_zero() -> None:
    """The same function computed by the same float64 weights: every difference is 0."""
    case = random_case(3, depth=(4, 4), width=(6, 6), inputs=(3, 3), nasty=False)
    f, box = case.network, case.box
    assert differential_bound(f, f, box) == 0.0
    assert differential_bound(f, permuted(f, np.random.default_rng(0)), box) == 0.0


def test_relaxation_is_tight_on_one_shifted_unstable_neuron() -> None:
    """::

        f: x --(1)--> relu --(1)--> y        g: x --(1, bias d)--> relu --(1)--> y

    on ``[-1, 1]``: ``g - f = relu(x + d) - relu(x)`` ranges over ``[0, d]`` exactly, and the
    chord relaxation (slope 1/2) proves exactly ``[0, d]``."""
    d = 1e-3
    f = Network((Layer([[1.0]], [0.0], True), Layer([[1.0]], [0.0], False)), dtype="float64")
    g = shifted(f, 0, 0, d)
    box = Box([-1.0], [1.0])
    fl, gl = with_linear_output(f), with_linear_output(g)
    fs = Side(fl, *proven_encoding(fl, box, DEFAULT, None))
    gs = Side(gl, *proven_encoding(gl, box, DEFAULT, None))
    diff = bound_differences(fs, gs, [(0, 0, 0, 0)], (box.lower, box.upper))
    assert diff.links[(0, 0)][2:4] == (d, d)
    assert diff.outputs[0] == (0.0, d)


# ----------------------------------------------------------------------------- soundness
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("nasty", [False, True])
def test_compressed_networks_bound_is_sound(seed: int, nasty: bool) -> None:
    """``g = compress(f)``: sound always; tiny (next to the terms ``f`` sums) on plain networks.
    (A neuron that ``merge_duplicates`` merged into a positive multiple of another has no
    partner in ``g``, so nasty networks with duplicates may only get its interval bound.)"""
    case = random_case(seed, depth=(2, 3), width=(2, 4), inputs=(1, 3), max_neurons=8, nasty=nasty)
    f, box = case.network, case.box
    report = proven_report(f, box)
    g = compress_network(f, report).network
    bound = assert_sound(f, g, box, known=report)
    if not nasty:
        scale = max(float(s.max()) for s in _term_scales(f, probe(box)))
        assert bound <= 1e-9 * (1.0 + scale)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("rel", [1e-12, 1e-6, 1e-2, 0.5])
def test_perturbed_networks_bound_is_sound(seed: int, rel: float) -> None:
    """A real difference (one layer's weights perturbed): the bound must cover it."""
    case = random_case(seed, depth=(1, 3), width=(2, 4), inputs=(1, 3), max_neurons=8)
    g = perturbed(case.network, np.random.default_rng(seed), rel)
    assert_sound(case.network, g, case.box)


@pytest.mark.parametrize("seed", range(8))
def test_shifted_unstable_neuron_is_caught(seed: int) -> None:
    """``g`` differs from ``f`` only where one neuron is near its kink."""
    case = random_case(seed, depth=(2, 3), width=(3, 4), inputs=(1, 2), max_neurons=8, nasty=False)
    f, box = case.network, case.box
    bounds = interval_bounds(f, box)
    k = f.relu_layers[0]
    j = int(np.argmax(np.minimum(-bounds[k][0], bounds[k][1])))  # the most unstable neuron
    for s in (1e-9, 1e-4, 0.1):
        assert_sound(f, shifted(f, k, j, s), box)


@settings(max_examples=60)
@given(
    case=network_and_box(max_neurons=6),
    rel=st.sampled_from([0.0, 1e-9, 1e-3, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_property_bound_never_below_the_exact_difference(case, rel, seed) -> None:
    net, box = case
    g = perturbed(net, np.random.default_rng(seed), rel) if rel else net
    assert_sound(net, g, box)


@pytest.mark.parametrize("seed", range(6))
def test_neurons_only_g_proves_stable_are_still_cancelled(seed: int) -> None:
    """``g`` (``f`` re-scaled by ``1 + 2^-40``) knows which neurons are stable, ``f`` knows
    nothing (its bounds widened by 1): a neuron rewritten exactly on ``g``'s side only would
    leave ``f``'s partner to an interval ``[0, u]``; merged through the link, it cancels."""
    case = random_case(seed, depth=(2, 3), width=(3, 4), inputs=(1, 3), max_neurons=8, nasty=False)
    f, box = case.network, case.box
    g = f.replace_layers([Layer(la.weight * (1 + 2.0**-40), la.bias, la.relu) for la in f.layers])
    bounds = best_bounds(f, box)
    fs = Side(f, [(lo - 1.0, hi + 1.0) for lo, hi in bounds], [None] * len(bounds))
    gs = Side(g, best_bounds(g, box), [None] * len(bounds))
    pairs = [(k, j, k, j) for k in f.relu_layers for j in range(f.layers[k].out_features)]
    diff = bound_differences(fs, gs, pairs, (box.lower, box.upper))
    bound = max(max(-lo, hi) for lo, hi in diff.outputs)
    assert bound >= max_output_difference(f, g, box).value
    scale = max(float(s.max()) for s in _term_scales(f, probe(box)))
    assert bound <= 1e-9 * (1.0 + scale)


# ----------------------------------------------------------------------------- deep networks
def deep_folded_network(
    depth: int = 6, width: int = 8, gain: float = 2.0, seed: int = 0
) -> tuple[Network, Box]:
    """A deep MLP on ``[-1, 1]^2`` whose every hidden layer has 3 stably active neurons, the
    third a (non-dyadic) combination of the other two, and ``width - 3`` unstable ones::

        x (2) -> [a1 a2 a3=0.3 a1+0.7 a2 | u1 .. u5] -> ... (6 layers) ... -> y (2)

    ``fold_active`` folds every ``a3`` into the next layer, in float64, so ``g``'s weights
    differ from any exact rewrite by round-off, and the unstable neurons carry the
    differences through every later layer."""
    rng = np.random.default_rng(seed)
    box = Box(-np.ones(2), np.ones(2))
    layers: list[Layer] = []
    fan_in = 2
    for _ in range(depth):
        w = gain * rng.normal(size=(width, fan_in)) / np.sqrt(fan_in)
        w[2] = 0.3 * w[0] + 0.7 * w[1]
        b = rng.normal(size=width) * 0.1
        net = Network((*layers, Layer(w, b, True)), dtype="float64")
        lo, hi = interval_bounds(net, box)[-1]
        b[:3] += 0.5 - lo[:3]  # proven active by interval bounds: min z >= 0.5
        layers.append(Layer(w, b, True))
        fan_in = width
    layers.append(Layer(rng.normal(size=(2, fan_in)) / np.sqrt(fan_in), np.zeros(2), False))
    return Network(tuple(layers), dtype="float64"), box


def test_deep_folded_network_bound_below_1e6() -> None:
    """The padded, interval-propagated argument this module replaced proved only 5e-6 here
    (its 1e-9 relative padding compounded through 6 layers); the exact one proves ~3e-14."""
    f, box = deep_folded_network()
    report = proven_report(f, box)
    res = compress_network(f, report)
    g = res.network
    assert len(f.relu_layers) >= 5 and g.num_neurons < f.num_neurons
    assert any(rec.folds for rec in res.records)  # weights were re-computed in float64
    bound = differential_bound(f, g, box, known=report)
    assert bound < 1e-6
    # the largest float64 differences are mostly evaluation noise: re-evaluate them exactly
    x = probe(box, 4096)
    top = x[np.argsort(-np.abs(f(x) - g(x)).max(axis=1))[:10]]
    exact = max(
        abs(a - b)
        for t in top
        for a, b in zip(exact_forward(f, t), exact_forward(g, t), strict=True)
    )
    assert exact <= Fraction(bound)
    run = verify_equivalence(f, g, box, known_f=report, time_limit=60)
    assert run.status is EquivalenceStatus.EQUIVALENT and run.milps == 0
    assert run.upper_bound < 1e-6


def test_deep_network_with_a_real_difference_is_not_proven() -> None:
    """The same deep network with one bias moved by 1e-3: the bound covers the (sampled)
    difference, so tol 1e-6 is not proven by the differential argument."""
    f, box = deep_folded_network()
    g = shifted(f, 2, 0, 1e-3)  # an active neuron: g - f is felt through 3 deeper layers
    x = probe(box, 4096)
    sampled = float(np.abs(f(x) - g(x)).max())
    assert sampled > 1e-6
    assert differential_bound(f, g, box) >= sampled


def test_exact_matrix_of_non_zero_entries_multiplies_like_the_dense_one() -> None:
    """``DyadicMatrix`` (a convolution's taps only) gives ``c @ W`` and its rows exactly."""
    from exactcomp.conv import ConvSpec
    from exactcomp.verify.dyadic import DyadicMatrix

    rng = np.random.default_rng(11)
    conv = ConvSpec((2, 5, 5), rng.normal(size=(3, 2, 3, 3)), (2, 2), (1, 1, 1, 1)).dense()
    dense = rng.normal(size=(6, 7)) * (rng.random((6, 7)) < 0.6)
    for w in (conv, dense, np.zeros((3, 4))):
        m = DyadicMatrix(w)
        assert m.vals.ints.size == np.count_nonzero(w)  # memory: the non-zero entries only
        c = rng.normal(size=w.shape[0]) * (rng.random(w.shape[0]) < 0.7)
        got = m.rmatmul(_Vec.of(c))
        want = [sum((Fraction(c[r]) * Fraction(w[r, j]) for r in range(w.shape[0])), Fraction(0))
                for j in range(w.shape[1])]  # fmt: skip
        assert [got.value(j) for j in range(w.shape[1])] == want
        for q in range(w.shape[0]):
            row = m.row(q)
            assert [row.value(j) for j in range(w.shape[1])] == [Fraction(v) for v in w[q]]


def _match_all_pairs(f: Network, g: Network, points: np.ndarray) -> list:
    """The pairing rule of match_neurons, comparing every g neuron with every f neuron."""
    from exactcomp.verify.coupling import MATCH_REL

    zf, zg = f.preactivations(points), g.preactivations(points)
    pairs = []
    for gk in g.relu_layers:
        for q in range(g.layers[gk].out_features):
            col, best = zg[gk][:, q], None
            for fk in f.relu_layers:
                dev = np.abs(zf[fk] - col[:, None]).max(axis=0)
                scale = 1.0 + np.maximum(np.abs(zf[fk]).max(axis=0), np.abs(col).max())
                p = int(np.argmin(dev / scale))
                if dev[p] <= MATCH_REL * scale[p] and (best is None or dev[p] < best[0]):
                    best = (dev[p], fk, p)
            if best is not None:
                pairs.append((gk, q, best[1], best[2]))
    return pairs


@pytest.mark.parametrize("seed", range(6))
def test_neuron_matching_by_projection_finds_the_pairs_of_the_full_comparison(seed) -> None:
    """Compressed, permuted, re-rounded (float32), slightly perturbed and duplicated-neuron
    copies: the projected search pairs exactly as comparing every pair does."""
    rng = np.random.default_rng(seed)
    case = random_case(rng)
    f, box = case.network, case.box
    g = compress_network(f, proven_report(f, box)).network
    copies = [g, permuted(f, rng), perturbed(f, rng, 1e-7), perturbed(f, rng, 1e-3)]
    dup = f.layers[0]
    twin = Layer(np.vstack([dup.weight, dup.weight[:1]]), np.r_[dup.bias, dup.bias[:1]], dup.relu)
    nxt = f.layers[1]
    w1 = np.hstack([nxt.weight, np.zeros((nxt.out_features, 1))])
    copies.append(f.replace_layers([twin, Layer(w1, nxt.bias, nxt.relu), *f.layers[2:]]))
    pts = probe(box, 64, seed)
    for h in copies:
        assert match_neurons(f, h, pts) == _match_all_pairs(f, h, pts)


def test_past_its_deadline_the_sampled_check_checks_its_first_chunk_only(monkeypatch) -> None:
    """``inconsistency(deadline=...)``: past the deadline (the fake clock) no chunk starts but
    the first, so a link contradicted only at later points goes unseen, and one contradicted
    in the first chunk is still found; before the deadline every chunk is checked."""
    from exactcomp.testing.clock import FakeClock
    from exactcomp.verify import coupling

    rng = np.random.default_rng(3)
    case = random_case(rng)
    f, box = with_linear_output(case.network), case.box
    first = f.layers[0]
    j = int(np.argmax(np.abs(first.weight).sum(axis=1)))
    w, b = first.weight.copy(), first.bias.copy()
    w[j], b[j] = 1.5 * w[j], 1.5 * b[j]  # g's neuron j differs from f's by z / 2: it varies
    g = f.replace_layers([type(first)(w, b, first.relu), *f.layers[1:]])
    fs = Side(f, *proven_encoding(f, box, DEFAULT, None))
    gs = Side(g, *proven_encoding(g, box, DEFAULT, None))
    pts = probe(box, 40)
    d = g.preactivations(pts)[0][:, j] - f.preactivations(pts)[0][:, j]
    assert np.ptp(d) > 0
    cut = float(d.min() + d.max()) / 2  # contradicted exactly at the points above the cut
    far = 10.0 * (1.0 + float(np.abs(d).max()))
    links = {(0, j): (0, j, -far, cut, -far, far)}
    good, bad = pts[d <= cut], pts[d > cut]
    monkeypatch.setattr(coupling, "CHECK_ENTRIES", 1)  # one point per chunk
    clock = FakeClock().install(monkeypatch)
    late = clock.now - 1.0
    assert inconsistency(fs, gs, links, np.vstack([good, bad]), deadline=late) is None
    assert "link" in inconsistency(fs, gs, links, np.vstack([bad, good]), deadline=late)
    assert "link" in inconsistency(fs, gs, links, np.vstack([good, bad]), deadline=clock.now)


def test_sampled_consistency_check_in_chunks_still_finds_the_one_bad_point(monkeypatch) -> None:
    """``inconsistency`` holds a chunk of points at a time (coupling.CHECK_ENTRIES); a link
    contradicted at a single point is still found, and true facts pass."""
    from exactcomp.verify import coupling

    rng = np.random.default_rng(3)
    case = random_case(rng)
    f, box = with_linear_output(case.network), case.box
    g = with_linear_output(permuted(case.network, rng))
    fs = Side(f, *proven_encoding(f, box, DEFAULT, None))
    gs = Side(g, *proven_encoding(g, box, DEFAULT, None))
    pts = probe(box, 40)
    diff = bound_differences(fs, gs, match_neurons(f, g, pts), (box.lower, box.upper))
    assert diff.links
    monkeypatch.setattr(coupling, "CHECK_ENTRIES", 1)  # one point per chunk
    assert inconsistency(fs, gs, diff.links, pts) is None
    (gk, q), (fk, p, *_) = next(iter(diff.links.items()))
    d = g.preactivations(pts)[gk][:, q] - f.preactivations(pts)[fk][:, p]
    far = 10.0 * (1.0 + float(np.abs(d).max()))
    bad = np.argmax(d)  # a link that holds everywhere but at the largest difference
    links = {(gk, q): (fk, p, -far, float(d[bad]) - 1.0, -far, far)}
    found = inconsistency(fs, gs, links, pts)
    assert found is not None and "link" in found
