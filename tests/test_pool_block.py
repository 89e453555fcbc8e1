"""Max-pool blocks bounded as maxima of windows (:mod:`exactcomp.bounds.pool_block`): sound
against sampled points and brute force, used only where the block's matrices are checked,
and tighter than the bounds through the pool's ReLUs."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bounds import pool_block
from exactcomp.bounds.interval import interval_bounds
from exactcomp.bounds.pool_block import max_pool_blocks
from exactcomp.conv import PoolLevel, pool_layers
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.testing.oracle import max_output_difference
from exactcomp.testing.random_conv import as_sparse
from exactcomp.verify.diffinterval import interval_difference


def _pooled(seed: int, inputs: int | None = None) -> Network:
    """A ReLU layer of ``c x 4 x 5`` units, a max-pool (kernel, strides and padding from the
    seed) and a linear head, on ``inputs`` inputs (default ``c * 20``)."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 3))
    shape = (c, 4, 5)
    kernel = (int(rng.integers(2, 4)), int(rng.integers(1, 4)))
    strides = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = (int(rng.integers(0, kernel[0])), 0, 0, int(rng.integers(0, kernel[1])))
    n = c * 20
    first = Layer(rng.normal(size=(n, inputs or n)), rng.normal(size=n), True)
    mats = pool_layers(PoolLevel("max", shape, kernel, strides, pads, nonneg=True))
    levels = len(mats) - 1
    pool = [
        Layer(w, b, level < levels,
              PoolLevel("max", shape, kernel, strides, pads, level, levels, True))
        for level, (w, b) in enumerate(mats)
    ]  # fmt: skip
    width = mats[-1][0].shape[0]
    head = Layer(rng.normal(size=(3, width)), rng.normal(size=3), False)
    return Network((first, *pool, head))


def _box(net: Network, seed: int) -> Box:
    rng = np.random.default_rng(seed + 1)
    lo = rng.uniform(-1, 0, net.input_size)
    return Box(lo, lo + rng.uniform(0, 1, net.input_size))


def _without_blocks(monkeypatch) -> None:
    """Every user of the blocks sees none (the bounds through the pool's ReLUs)."""
    from exactcomp.bounds import interval
    from exactcomp.verify import diffinterval

    for mod in (interval, diffinterval):
        monkeypatch.setattr(mod, "max_pool_blocks", lambda net: {})


def _samples(box: Box, n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return box.lower + rng.random((n, box.dim)) * (box.upper - box.lower)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("sparse", [False, True])
def test_bounds_contain_every_sampled_value_and_are_tighter(seed, sparse, monkeypatch):
    net = _pooled(seed)
    net = as_sparse(net) if sparse else net
    box = _box(net, seed)
    blocks = max_pool_blocks(net)
    assert list(blocks) == [len(net.layers) - 2]  # the pool's last, linear level
    bounds = interval_bounds(net, box)
    x = _samples(box, seed=seed)
    for (lo, hi), z in zip(bounds, net.preactivations(x), strict=True):
        assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9)
    k = blocks[len(net.layers) - 2].last
    _without_blocks(monkeypatch)
    plain = interval_bounds(net, box)
    width, plain_width = bounds[k][1] - bounds[k][0], plain[k][1] - plain[k][0]
    assert np.all(width <= plain_width + 1e-12) and width.sum() < 0.9 * plain_width.sum()


def test_the_window_bounds_are_the_brute_force_maxima():
    """``[max l, max u]`` of every window, padding left out, against a loop over the pool's
    own windows."""
    from exactcomp.conv import pool_windows

    tag = PoolLevel("max", (2, 4, 5), (3, 2), (2, 1), (1, 0, 0, 1), 0, 3, True)
    block = pool_block._checked(
        tuple(Layer(w, b, i < 3, tag.at_level(i)) for i, (w, b) in enumerate(pool_layers(tag))),
        0, tag,
    )  # fmt: skip
    assert block is None  # a non-negative block on the raw input is never trusted
    block = pool_block.MaxPoolBlock(0, 3, pool_block._window_array(tag))
    rng = np.random.default_rng(3)
    lo = rng.normal(size=40)
    hi = lo + rng.random(40)
    blo, bhi = block.bounds(lo, hi)
    wins = pool_windows(tag)
    for ch in range(2):
        for p, win in enumerate(wins):
            cells = [ch * 20 + c for c in win]
            assert blo[ch * len(wins) + p] == max(lo[cells])
            assert bhi[ch * len(wins) + p] == max(hi[cells])


def test_the_difference_of_two_maxima_lies_within_the_window_bounds():
    tag = PoolLevel("max", (1, 4, 4), (2, 2), (1, 1), (0, 0, 0, 0))
    block = pool_block.MaxPoolBlock(0, 2, pool_block._window_array(tag))
    rng = np.random.default_rng(0)
    dlo = rng.normal(size=16) * 0.1
    dhi = dlo + rng.random(16) * 0.2
    low, up = block.difference(dlo, dhi)
    for _ in range(2000):
        h = rng.normal(size=16)
        d = dlo + rng.random(16) * (dhi - dlo)
        diff = block._max(h + d) - block._max(h)
        assert np.all(diff >= low - 1e-12) and np.all(diff <= up + 1e-12)


@pytest.mark.parametrize("change", ["scaled", "bias", "relu", "entry"])
def test_a_block_whose_matrices_differ_from_its_tag_is_not_trusted(change):
    """The last level doubled (outputs ``2 max``), a bias or a ReLU changed, one entry moved:
    the tag no longer describes the matrices, no block is used, and the bounds still hold
    (they would not with the tag trusted: ``2 max`` exceeds the window's maxima)."""
    net = _pooled(4)
    layers = list(net.layers)
    k = len(layers) - 2
    la = layers[k]
    if change == "scaled":
        layers[k] = Layer(2 * la.weight, la.bias, la.relu, la.structure)
    elif change == "bias":
        layers[k] = Layer(la.weight, la.bias + 0.5, la.relu, la.structure)
    elif change == "relu":
        layers[k] = Layer(la.weight, la.bias, True, la.structure)
    else:
        w = np.array(layers[2].weight)
        i, j = np.argwhere(w != 0)[0]
        w[i, j] += 0.25
        layers[2] = Layer(w, layers[2].bias, layers[2].relu, layers[2].structure)
    bad = net.replace_layers(layers)
    assert max_pool_blocks(bad) == {}
    assert max_pool_blocks(as_sparse(bad)) == {}
    box = Box(np.zeros(bad.input_size), np.ones(bad.input_size))
    x = _samples(box, 2000)
    for (lo, hi), z in zip(interval_bounds(bad, box), bad.preactivations(x), strict=True):
        assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_the_differential_bound_holds_and_is_tighter_through_max_pools(seed, monkeypatch):
    """Two-input networks with a max-pool, quantised to 3 bits: the exact maximum of the
    oracle is within the bound, held dense or sparse; without the blocks the bound is never
    tighter."""
    f = _pooled(seed, inputs=2)
    box = _box(f, seed)
    g = quantize_network(f, [3] * len(f.layers)).network
    bound = interval_difference(f, g, box)
    assert np.allclose(interval_difference(as_sparse(f), as_sparse(g), box), bound)
    exact = max_output_difference(f, g, box).value
    assert exact <= bound.max() + 1e-12
    _without_blocks(monkeypatch)
    assert np.all(bound <= interval_difference(f, g, box) + 1e-12)


def test_pool_cases_draw_trusted_signed_mistagged_and_altered_blocks():
    """Over 30 seeds the soak's generator (``pools`` family) draws each kind of block."""
    from exactcomp.testing.random_conv import random_pool_case

    kinds = set()
    for seed in range(30):
        net = random_pool_case(seed).network
        tag = net.layers[1].structure
        trusted = bool(max_pool_blocks(net))
        kinds.add(("trusted" if trusted else "refused", tag.nonneg, net.layers[0].relu))
    assert {("trusted", True, True), ("trusted", False, False)} <= kinds
    assert {("refused", True, False), ("refused", True, True)} <= kinds


def test_the_pools_soak_flags_a_block_trusted_without_its_check(monkeypatch):
    """With the matrices no longer checked against the tag, the altered block of case 1 is
    bounded as a max-pool and the oracle's exact ranges fall outside the bounds."""
    from exactcomp.testing.pool_checks import run_pool_case
    from exactcomp.testing.soak_results import SoakOptions

    def trusting(layers, first, pool):
        return pool_block.MaxPoolBlock(first, first + pool.levels, pool_block._window_array(pool))

    monkeypatch.setattr(pool_block, "_checked", trusting)
    monkeypatch.setattr(pool_block, "_CACHE", type(pool_block._CACHE)())
    _, result = run_pool_case(1, SoakOptions(), "fast")
    assert any(f.kind == "bound" for f in result.findings)
    assert not result.errors
