"""Compensating lossy edits (issue 15, fourth round): removal with refit and centred weights.

The oracle :func:`exactcomp.testing.max_output_difference` computes the exact ``max |f - g|``;
the proven bound is never below it, whatever the fit did.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp

from exactcomp.approx import compress_lossy
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite import edits, refit
from exactcomp.testing import max_output_difference
from exactcomp.verify.charge import Charger

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _net(seed: int, widths=(2, 6, 6, 2)) -> Network:
    return gaussian_mlp(seed, widths)


def _doubled() -> Network:
    r"""``2-3r-2`` whose neuron 2 is twice neuron 0 (``relu(2 z) = 2 relu(z)``)::

    x0 ─┬─ n0 = relu(x0 - x1)      ─┐
        ├─ n1 = relu(x0 + x1 - 0.2) ─┼─ y0, y1
    x1 ─┴─ n2 = relu(2 x0 - 2 x1)  ─┘
    """
    w0 = np.array([[1.0, -1.0], [1.0, 1.0], [2.0, -2.0]])
    b0 = np.array([0.0, -0.2, 0.0])
    w1 = np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]])
    return Network.from_arrays([w0, w1], [b0, np.array([0.1, -0.4])])


def test_refit_of_a_multiple_of_another_neuron_is_exact_up_to_the_ridge():
    f = _doubled()
    charger = Charger(f, [BOX])
    ranges = edits.relu_ranges(f, charger)
    fit = refit.fit_data(f, [BOX], points=512)
    edit = edits.Candidate("refit", (0, 2), 0.0, 5)
    g = edits.apply(f, [edit], ranges, fit)
    assert not g.layers[1].weight[:, 2].any() and not g.layers[0].weight[2].any()
    exact = max_output_difference(f, g, BOX).value
    assert exact <= 1e-5  # the column moved onto neuron 0 with coefficient 2
    assert exact <= charger.proven(g) + 1e-9
    # the constant replacement of the same neuron changes the function
    const = edits.apply(f, [edits.Candidate("neuron", (0, 2), 0.0, 5)], ranges)
    assert max_output_difference(f, const, BOX).value > 0.1


def test_centred_weight_moves_its_input_midpoint_into_the_bias():
    """``2-1`` affine: ``y = 3 x0 - x1 + 0.5`` on ``x0 in [1, 3]``; zeroing ``w_00`` with the
    midpoint 2 leaves ``y = -x1 + 6.5``, exact at ``x0 = 2`` and off by ``3 |x0 - 2| <= 3``."""
    f = Network.from_arrays([np.array([[3.0, -1.0]])], [np.array([0.5])])
    box = Box(np.array([1.0, -1.0]), np.array([3.0, 1.0]))
    charger = Charger(f, [box])
    ranges = edits.relu_ranges(f, charger)
    plain, centred = (
        next(c for c in edits.candidates(f, ranges, [box], centre=m) if c.index == (0, 0, 0))
        for m in (False, True)
    )
    assert (plain.local, centred.local) == (9.0, 3.0)
    g = edits.apply(f, [centred], ranges)
    assert g.layers[0].bias[0] == 6.5 and g.layers[0].weight[0, 0] == 0.0
    assert max_output_difference(f, g, box).value == pytest.approx(3.0)
    assert charger.proven(g) >= 3.0 - 1e-9


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tol", [0.05, 0.3])
def test_compress_with_refit_is_proven_within_tol_and_never_below_the_exact_max(seed, tol):
    f = _net(seed)
    res = compress_lossy(f, BOX, tol, time_limit=10.0, centre=True, refit=True)
    assert res.proven <= tol + 1e-12
    exact = max_output_difference(f, res.network, BOX).value
    assert exact <= res.proven + 1e-9
    assert res.sampled <= exact + 1e-9
    assert res.report["parameters_after"] <= res.report["parameters_before"]


@pytest.mark.parametrize("seed", range(6))
def test_every_refit_prefix_is_proven_above_the_exact_max(seed):
    """The search's order with refits, each prefix proven against the exact oracle (the fit's
    residual is never what is charged)."""
    f = _net(seed, (2, 5, 4, 2))
    charger = Charger(f, [BOX])
    ranges = edits.relu_ranges(f, charger)
    fit = refit.fit_data(f, [BOX], points=256)
    cands = [edits.as_refit(c) for c in edits.candidates(f, ranges, [BOX], centre=True)]
    neurons = [c for c in cands if c.kind == "refit"]
    rng = np.random.default_rng(seed)
    for n in (1, 2, 4, len(neurons)):
        chosen = list(rng.permutation(len(neurons))[:n])
        g = edits.apply(f, [neurons[i] for i in chosen] + cands[:3], ranges, fit)
        exact = max_output_difference(f, g, BOX).value
        assert exact <= charger.proven(g) + 1e-9
