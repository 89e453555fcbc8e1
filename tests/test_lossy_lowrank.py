"""The low-rank candidate of ``compress --tol`` (:mod:`exactcomp.rewrite.lowrank`).

Ground truth: the exact oracle :func:`exactcomp.testing.max_output_difference` (joint
regions, one LP each) on tiny networks, and exact rational arithmetic for the rounding pad.

The planted network ``2-8r-8r-2`` has a middle layer of rank 2 (the float32 product of
two float32 factors), so a rank-2 factorization is nearly exact and saves
``64 - 2 * 16 = 32`` weights::

    x (2) --W0--> relu (8) --[U (8x2)][V (2x8)]--> relu (8) --W2--> y (2)
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from exactcomp.approx import compress_lossy
from exactcomp.domain import Box
from exactcomp.io import load, save
from exactcomp.network import Network
from exactcomp.rewrite import lowrank
from exactcomp.rewrite.edits import relu_ranges
from exactcomp.testing import max_output_difference
from exactcomp.tolerances import product_rounding_delta
from exactcomp.verify.charge import Charger

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _planted(seed: int = 0, noise: float = 0.0) -> Network:
    """``2-8r-8r-2`` in float32 numbers, its middle layer rank 2 (plus ``noise``)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(8, 2)).astype(np.float32)
    v = rng.normal(size=(2, 8)).astype(np.float32)
    mid = (u.astype(np.float64) @ v + noise * rng.normal(size=(8, 8))).astype(np.float32)
    ws = [rng.normal(size=(8, 2)), mid, rng.normal(size=(2, 8))]
    bs = [rng.normal(size=8) * 0.3, rng.normal(size=8) * 0.3, rng.normal(size=2) * 0.3]
    ws = [w.astype(np.float32).astype(np.float64) for w in ws]
    bs = [b.astype(np.float32).astype(np.float64) for b in bs]
    return Network.from_arrays(ws, bs)


def _grid(n: int = 101) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, n)
    return np.stack(np.meshgrid(t, t), axis=-1).reshape(-1, 2)


def test_dense_product_is_within_the_rounding_delta_of_the_real_product():
    """Exact rationals: every entry of the float64 product is within the bound."""
    rng = np.random.default_rng(3)
    u = (rng.normal(size=(5, 7)) * 10.0 ** rng.integers(-3, 4, size=(5, 7))).astype(np.float32)
    v = (rng.normal(size=(7, 4)) * 10.0 ** rng.integers(-3, 4, size=(7, 4))).astype(np.float32)
    u, v = u.astype(np.float64), v.astype(np.float64)
    d = lowrank.dense_product(u, v)
    delta = product_rounding_delta(u, v)
    for i in range(5):
        for j in range(4):
            exact = sum(Fraction(u[i, k]) * Fraction(v[k, j]) for k in range(7))
            assert abs(Fraction(d[i, j]) - exact) <= Fraction(delta[i, j])


def test_zeroing_a_row_or_column_of_the_factors_leaves_the_other_entries_bit_equal():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(6, 3)), rng.normal(size=(3, 5))
    d = lowrank.dense_product(u, v)
    u2, v2 = u.copy(), v.copy()
    u2[2] = 0.0
    v2[:, 4] = 0.0
    d2 = lowrank.dense_product(u2, v2)
    assert not d2[2].any() and not d2[:, 4].any()
    keep = np.ones_like(d, dtype=bool)
    keep[2], keep[:, 4] = False, False
    assert np.array_equal(d2[keep], d[keep])


def test_the_rounding_pad_covers_a_perturbed_product():
    """The pad bounds what any product within the delta changes, by a dense grid."""
    f = _planted()
    fa = lowrank.factorize(f, 1, 2, np.zeros(8), np.full(8, 5.0), np.float32)
    g = lowrank.with_factors(f, [fa])
    pad = lowrank.rounding_pad(g, lowrank.frozen_of([fa]), [BOX])
    assert 0.0 < pad < 1e-9
    delta = product_rounding_delta(fa.u, fa.v)
    layers = list(g.layers)
    for sign in (1.0, -1.0):
        layers[1] = type(layers[1])(g.layers[1].weight + sign * delta, fa.bias, True)
        worst = np.abs(g.forward(_grid()) - g.replace_layers(layers).forward(_grid())).max()
        assert worst <= pad


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_chosen_rank_is_proven_and_the_oracle_agrees(seed, noise):
    f = _planted(seed, noise)
    charger = Charger(f, [BOX])
    ranges = relu_ranges(f, charger)
    budget = 0.5 if noise == 0 else 20.0  # the noisy layer: a loose budget
    factors = lowrank.choose(f, charger, [BOX], budget, ranges, np.float32)
    assert factors, "the planted rank-2 layer must be factored"
    for fa in factors:
        assert fa.rank <= lowrank.max_rank(fa.u.shape[0], fa.v.shape[1])
        assert fa.saved > 0 and fa.charge <= budget
        assert np.array_equal(fa.u.astype(np.float32), fa.u)  # stored in the model's dtype
    g = lowrank.with_factors(f, factors)
    exact = max_output_difference(f, g, BOX).value
    assert exact <= factors[-1].charge + 1e-9
    written = lowrank.expand(g, factors)
    assert len(written.layers) == len(f.layers) + len(factors)
    x = _grid()
    assert np.abs(written.forward(x) - g.forward(x)).max() <= 1e-9
    assert np.abs(written.forward(x) - f.forward(x)).max() <= factors[-1].charge


def test_expand_refuses_factors_that_do_not_give_the_proven_product():
    f = _planted()
    fa = lowrank.factorize(f, 1, 2, np.zeros(8), np.ones(8), np.float32)
    g = lowrank.with_factors(f, [fa])
    layers = list(g.layers)
    w = np.array(layers[1].weight)
    w[0, 0] += 1.0
    layers[1] = type(layers[1])(w, layers[1].bias, True)
    with pytest.raises(ValueError, match="do not reproduce"):
        lowrank.expand(g.replace_layers(layers), [fa])


def test_compress_tol_writes_factors_proven_and_read_back(tmp_path):
    """End to end: the low-rank strategy wins on the planted network; the written ``.pt``
    holds the factors, reads back to the same function, and the oracle bounds the claim."""
    f = _planted(0, 0.0)
    res = compress_lossy(f, BOX, 0.05, time_limit=10.0, tighten_seconds=0.0)
    rep = res.report
    assert rep["strategy"] == "lowrank", rep["strategies"]
    assert rep["lowrank"]["ranks"] == [
        {"layer": 1, "rank": 2, "of": 8, "charge": rep["lowrank"]["ranks"][0]["charge"]}
    ]
    assert rep["layers"][1]["rank"] == "2 of 8"
    assert rep["layers"][0]["rank"] == "-"
    assert res.proven <= 0.05
    assert max_output_difference(f, res.pruned, BOX).value <= res.proven
    assert rep["parameters_after"] <= f.num_parameters - 32
    out = tmp_path / "g.pt"
    dataclasses.replace(res, alternative=None).save(out)  # the factors' file itself: the
    res.save(tmp_path / "w.pt")  # command writes the float network started from where smaller
    assert (tmp_path / "w.pt").stat().st_size <= out.stat().st_size
    back = load(out)
    assert [la.relu for la in back.layers] == [la.relu for la in res.network.layers]
    assert [la.weight.shape for la in back.layers] == [la.weight.shape for la in res.network.layers]
    x = _grid()
    assert np.array_equal(back.forward(x), res.network.forward(x))
    assert np.abs(back.forward(x) - f.forward(x)).max() <= res.proven


def test_no_rank_within_budget_costs_nothing_and_keeps_the_search():
    rng = np.random.default_rng(5)
    ws = [rng.normal(size=(6, 2)), rng.normal(size=(6, 6)), rng.normal(size=(1, 6))]
    f = Network.from_arrays(ws, [np.zeros(6), np.zeros(6), np.zeros(1)])
    res = compress_lossy(f, BOX, 1e-3, time_limit=10.0, tighten_seconds=0.0)
    assert res.report["lowrank"]["ranks"] == []
    assert res.report["strategy"] in ("search", "magnitude")
    assert "rank" not in res.report["layers"][0]


def test_a_factored_network_saves_and_compresses(tmp_path):
    """A network with a linear bottleneck (a hidden layer without ReLU) is read, written
    and compressed exactly without error."""
    f = _planted()
    fa = lowrank.factorize(f, 1, 2, np.zeros(8), np.ones(8), np.float32)
    net = lowrank.expand(lowrank.with_factors(f, [fa]), [fa])
    save(net, tmp_path / "n.pt")
    back = load(tmp_path / "n.pt")
    assert not back.layers[1].relu
    from exactcomp.api import compress

    done = compress(back, BOX)
    x = _grid(21)
    assert np.abs(done.network.forward(x) - back.forward(x)).max() <= 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_soak_lowrank_family_is_within_its_proof(seed):
    from benchmarks.lossy_soak import _lowrank_case

    rng = np.random.default_rng([seed, 3])
    box = Box(-rng.random(2) - 0.1, rng.random(2) + 0.1)
    f, g, proven, family = _lowrank_case(rng, 2, box)
    assert family == "lowrank" and len(g.layers) == len(f.layers) + 1
    assert max_output_difference(f, g, box).value <= proven + 1e-9


def test_compress_tol_on_a_factored_network_does_not_crash():
    """A hidden layer without ReLU in the input of ``compress --tol``."""
    f = _planted()
    fa = lowrank.factorize(f, 1, 2, np.zeros(8), np.ones(8), np.float32)
    net = lowrank.expand(lowrank.with_factors(f, [fa]), [fa])
    res = compress_lossy(net, BOX, 0.05, time_limit=5.0, tighten_seconds=0.0)
    assert res.proven <= 0.05
    assert max_output_difference(net, res.network, BOX).value <= res.proven + 1e-9


def test_verify_cli_on_a_factored_output(tmp_path, capsys):
    """``exactcomp verify ORIGINAL OUT --tol T`` on a factored output (one layer deeper):
    NOT_EQUIVALENT below the exact difference, EQUIVALENT above its proven bound."""
    from exactcomp.cli import main

    f = _planted(0, 0.05)
    fa = lowrank.factorize(f, 1, 2, np.zeros(8), np.full(8, 5.0), np.float32)
    dense = lowrank.with_factors(f, [fa])
    exact = max_output_difference(f, dense, BOX).value
    save(f, tmp_path / "f.pt")
    save(lowrank.expand(dense, [fa]), tmp_path / "g.pt")
    base = ["verify", str(tmp_path / "f.pt"), str(tmp_path / "g.pt"), "--box", "-1,1"]
    assert main([*base, "--tol", f"{0.9 * exact:.6g}"]) == 1
    assert main([*base, "--tol", f"{1.1 * exact:.6g}"]) == 0
    assert "EQUIVALENT" in capsys.readouterr().out


def test_written_onnx_holds_the_factors(tmp_path):
    """The ONNX file stores ``V`` and ``U`` as two Gemms (the reader folds them back into one
    dense layer in float64, within the rounding delta of the real product)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    f = _planted()
    fa = lowrank.factorize(f, 1, 2, np.zeros(8), np.ones(8), np.float32)
    dense = lowrank.with_factors(f, [fa])
    save(lowrank.expand(dense, [fa]), tmp_path / "g.onnx")
    model = onnx.load(str(tmp_path / "g.onnx"))
    shapes = [numpy_helper.to_array(t).shape for t in model.graph.initializer]
    assert (2, 8) in shapes and (8, 2) in shapes and (8, 8) not in shapes
    back = load(tmp_path / "g.onnx")
    assert len(back.layers) == len(f.layers)  # folded by the reader
    delta = product_rounding_delta(fa.u, fa.v)
    assert (np.abs(back.layers[1].weight - dense.layers[1].weight) <= 2 * delta).all()


def test_max_rank_of_an_emptied_layer_is_zero():
    """A layer the exact pass emptied (0 rows or columns) has no rank to try (it divided by
    zero: soak conv-compress cases 16 and 20)."""
    from exactcomp.rewrite.lowrank import max_rank

    assert max_rank(0, 0) == 0 and max_rank(0, 5) == 0 and max_rank(5, 0) == 0
    assert max_rank(10, 10) == 4


def test_one_svd_per_layer_serves_every_rank_of_the_bisection(monkeypatch):
    """``choose`` decomposes each layer once (three layers tried here), and its factors are
    bit-equal to those of a decomposition per rank (:func:`lowrank.factorize` alone)."""
    f = _planted(0, 0.05)
    charger = Charger(f, [BOX])
    ranges = relu_ranges(f, charger)
    real, calls = lowrank.weighted_svd, []

    def counted(g, k, lo, hi):
        calls.append(k)
        return real(g, k, lo, hi)

    monkeypatch.setattr(lowrank, "weighted_svd", counted)
    factors = lowrank.choose(f, charger, [BOX], 20.0, ranges, np.float32)
    assert sorted(calls) == [0, 1, 2] and factors
    for fa in factors:
        lo, hi = lowrank.input_range([BOX], ranges, fa.layer)
        alone = lowrank.factorize(f, fa.layer, fa.rank, lo, hi, np.float32)
        assert np.array_equal(alone.u, fa.u) and np.array_equal(alone.v, fa.v)


@pytest.mark.parametrize("svd_seconds", [0.0, 4.0, 30.0])
def test_the_rank_search_starts_no_svd_or_proof_past_its_end(monkeypatch, svd_seconds):
    """Fake clock: each proof takes 1 s, each SVD ``svd_seconds`` per 512 multiply-adds
    (the 8 x 8 middle layer's 512; 32 for the 8 x 2 and 2 x 8 ones), the phase 20 s. Every
    proof and SVD starts before the end, the next SVD only when its estimate (by the last
    one's rate) and a proof fit; with 30 s the first SVD alone overruns and nothing follows."""
    from exactcomp.rewrite.acceptance import Gate
    from exactcomp.testing.clock import FakeClock

    clock = FakeClock().install(monkeypatch)
    f = _planted(0, 0.05)
    charger = Charger(f, [BOX])
    ranges = relu_ranges(f, charger)
    real_svd, real_proven, starts = lowrank.weighted_svd, charger.proven, []

    def slow_svd(g, k, lo, hi):
        la = g.layers[k]
        starts.append(("svd", clock.now))
        clock.advance(svd_seconds * la.out_features * la.in_features**2 / 512)
        return real_svd(g, k, lo, hi)

    def slow_proven(g, **kw):
        starts.append(("proof", clock.now))
        clock.advance(1.0)
        charger.seconds = 1.0
        return real_proven(g, **kw)

    monkeypatch.setattr(lowrank, "weighted_svd", slow_svd)
    monkeypatch.setattr(charger, "proven", slow_proven)
    charger.seconds = 1.0
    end = clock.now + 20.0
    lowrank.choose(f, Gate(charger, end), [BOX], 20.0, ranges, np.float32)
    assert all(t + 1.0 <= end for kind, t in starts if kind == "proof")
    svds = [t for kind, t in starts if kind == "svd"]
    assert svds and all(t < end for t in svds)
    if svd_seconds == 30.0:
        assert starts == [("svd", end - 20.0)]  # the first SVD ran past the end: no proof
    if svd_seconds == 0.0:
        assert len(svds) == 3  # every layer decomposed within the 20 s
