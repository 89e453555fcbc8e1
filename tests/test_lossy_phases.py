"""Issue 15, fifth round: phase columns in the joint LP of two networks; f's bounds with ideal cuts.

Ground truth: the oracle :func:`exactcomp.testing.max_output_difference` (the exact
``max |f - g|`` by enumerating the joint linear regions of tiny networks). The phase rows
(:mod:`exactcomp.verify.difflp`, "Phases") are constraints added to a relaxation that holds
at every true point, so the bound with them is never below the exact value and never above
the bound without them.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp

from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.testing import max_output_difference
from exactcomp.verify.charge import Charger
from exactcomp.verify.difflp import joint_lp, layer_differences, lp_difference_bounds
from exactcomp.verify.pairs import Pair
from exactcomp.verify.tighten import tightened_pair

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _net(seed: int, widths=(2, 5, 4, 2)) -> Network:
    return gaussian_mlp(seed, widths)


def _pruned(f: Network, box: Box, seed: int) -> Network:
    """``f`` with one hidden neuron of each layer replaced by a constant (its output weights
    folded into the next layer's bias at the neuron's value at the box centre)."""
    rng = np.random.default_rng(seed)
    layers = list(f.layers)
    centre = f.preactivations(box.center[None])
    for k in range(len(layers) - 1):
        j = int(rng.integers(layers[k].out_features))
        value = max(float(centre[k][0, j]), 0.0)
        nxt = layers[k + 1]
        w, b = nxt.weight.copy(), nxt.bias + nxt.weight[:, j] * value
        w[:, j] = 0.0
        layers[k + 1] = type(nxt)(w, b, relu=nxt.relu)
    return f.replace_layers(layers)


def _cases():
    for widths in ((2, 5, 4, 2), (2, 6, 6, 2), (3, 4, 4, 3)):
        for seed in range(2):
            yield widths, seed, "4-bit"
            yield widths, seed, "2-bit"
            yield widths, seed, "pruned"


@pytest.mark.parametrize(("widths", "seed", "edit"), list(_cases()))
def test_phase_rows_never_below_the_exact_max_nor_above_the_lp_without_them(widths, seed, edit):
    """Per output: exact <= joint LP with phases <= joint LP without, up to the rounding pads
    (quantised and pruned copies of random tiny networks; a 3-input box as well)."""
    f = _net(seed, widths)
    box = Box(-np.ones(widths[0]), np.ones(widths[0]))
    if edit == "pruned":
        g = _pruned(f, box, seed)
    else:
        g = quantize_network(f, [int(edit[0])] * 3).network
    m = widths[-1]
    pair = Pair.prepare(f, g, box, range(m))
    with_phases = lp_difference_bounds(pair, box, 60.0)
    without = lp_difference_bounds(pair, box, 60.0, phases=False)
    assert np.isfinite(with_phases).all()
    # the same relaxation plus rows; the weak-duality pad and solver margin grow with them
    assert (with_phases <= without * (1 + 1e-6) + 1e-9).all()
    exact = max_output_difference(f, g, box).value
    assert exact <= with_phases.max() + 1e-9


def test_phase_rows_are_strictly_tighter_on_a_named_case():
    """``2-6r-6r-2`` (seed 2) at 4 bits on [-1, 1]^2: exact 0.930; joint LP 2.376 without
    phase columns, 1.977 with them (17 % tighter), still above the exact value."""
    f = _net(2, (2, 6, 6, 2))
    g = quantize_network(f, [4] * 3).network
    pair = Pair.prepare(f, g, BOX, range(2))
    with_phases = lp_difference_bounds(pair, BOX, 60.0).max()
    without = lp_difference_bounds(pair, BOX, 60.0, phases=False).max()
    exact = max_output_difference(f, g, BOX).value
    assert exact == pytest.approx(0.930, abs=1e-3)
    assert without == pytest.approx(2.376, abs=1e-2)
    assert exact <= with_phases < 2.0 < without


def test_phase_columns_are_listed_per_layer():
    """One phase column per unstable neuron of ``f`` and one per unstable neuron of ``g``,
    each with bounds [0, 1]; none with ``phases=False``."""
    f = _net(0)
    g = quantize_network(f, [4] * 3).network
    pair = Pair.prepare(f, g, BOX, range(2))
    diffs = layer_differences(pair, BOX)
    lp, cols = joint_lp(pair, BOX, diffs)
    _, plain = joint_lp(pair, BOX, diffs, phases=False)
    assert all(c.phases == () for c in plain)
    for k, c in enumerate(cols):
        low, up = pair.root[k]
        dl, du = diffs[k]
        n_f = int(((low < 0) & (up > 0)).sum())
        assert n_f <= len(c.phases) <= n_f + len(low)
        assert (lp.col_lower[list(c.phases)] == 0.0).all()
        assert (lp.col_upper[list(c.phases)] == 1.0).all()


@pytest.mark.parametrize("seed", range(3))
def test_charger_claim_with_the_lp_is_never_below_the_exact_max(seed):
    """The charger's LP claim (phases on) against the oracle, on a 2-bit copy."""
    f = _net(seed, (2, 6, 6, 2))
    g = quantize_network(f, [2] * 3).network
    exact = max_output_difference(f, g, BOX).value
    assert exact <= Charger(f, [BOX]).proven(g, lp_seconds=30.0) + 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_ideal_cuts_tighten_f_within_the_lp_bounds_and_stay_sound(seed):
    """``3-6r-6r-2`` on [-1, 1]^3: f's bounds with ideal cuts lie inside the LP-tightened
    ones and enclose every sampled pre-activation; the charger's claim (cuts on, the
    default) of a 3-bit copy is never below the exact max (the oracle)."""
    f = _net(seed, (3, 6, 6, 2))
    box = Box(-np.ones(3), np.ones(3))
    g = quantize_network(f, [3] * 3).network
    root = Pair.prepare(f, f, box, range(2))
    lp = tightened_pair(root, box, 10.0, cuts=False)
    cut = tightened_pair(root, box, 10.0)
    x = box.sample(4000, np.random.default_rng(seed))
    for k, z in enumerate(f.preactivations(x)[:-1]):
        (lo0, hi0), (lo1, hi1) = lp.root[k], cut.root[k]
        assert np.all(lo0 <= lo1) and np.all(hi1 <= hi0)
        assert np.all(lo1 <= z.min(axis=0)) and np.all(z.max(axis=0) <= hi1)
    exact = max_output_difference(f, g, box).value
    assert exact <= Charger(f, [box], tighten_seconds=10.0).proven(g) + 1e-9


def test_ideal_cuts_are_strictly_tighter_than_the_lp_somewhere():
    """Over a few ``3-6r-6r-2`` networks the cuts narrow some hidden bound of f beyond
    the LP's (the digits model: layer 1's mean width 33.7 -> 25.2)."""
    box = Box(-np.ones(3), np.ones(3))
    gains = []
    for seed in range(4):
        root = Pair.prepare(_net(seed, (3, 6, 6, 2)), _net(seed, (3, 6, 6, 2)), box, [0])
        lp = tightened_pair(root, box, 10.0, cuts=False)
        cut = tightened_pair(root, box, 10.0)
        gains += [
            float(np.sum(a[1] - a[0]) - np.sum(b[1] - b[0]))
            for a, b in zip(lp.root[1:2], cut.root[1:2], strict=True)
        ]
    assert max(gains) > 1e-3
