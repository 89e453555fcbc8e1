"""The shared proof phases (stability/phases.py) and the one mask rule (verdicts.stable_masks)."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bounds.interval import interval_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import layer as engine_layer
from exactcomp.stability import phases
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Verdict, stable_masks
from exactcomp.verify import recheck

INA, A, U = Verdict.INACTIVE, Verdict.ACTIVE, Verdict.UNDECIDED


def test_stable_masks_from_bounds_and_verdicts() -> None:
    """Four neurons: [-2, -1] (inactive by bounds), [1, 2] (active by bounds), [-1, 1] claimed
    INACTIVE, [0, 0] (both by bounds: inactive when encoded, both claims when not exclusive)."""
    lo = np.array([-2.0, 1.0, -1.0, 0.0])
    hi = np.array([-1.0, 2.0, 1.0, 0.0])
    v = np.array([U, U, INA, U])
    inactive, active = stable_masks(lo, hi, v)
    assert inactive.tolist() == [True, False, True, True]
    assert active.tolist() == [False, True, False, False]
    raw = stable_masks(lo, hi, exclusive=False)
    assert raw.inactive.tolist() == [True, False, False, True]
    assert raw.active.tolist() == [False, True, False, True]
    claimed_active = stable_masks(lo, hi, np.array([U, U, A, U]))
    assert claimed_active.active.tolist() == [False, True, True, False]


def test_the_engine_and_the_recheck_call_the_same_phase_functions() -> None:
    for name in ("ideal_cut_phase", "input_split_phase"):
        assert getattr(engine_layer, name) is getattr(phases, name)
        assert getattr(recheck, name) is getattr(phases, name)


@pytest.mark.parametrize("seed", range(12))
def test_every_phase_claim_holds_on_the_exact_ranges(seed: int) -> None:
    """Each phase, asked about every neuron of every layer with interval bounds as the known
    bounds, claims only what the exact (enumerated) pre-activation ranges confirm."""
    case = random_case(seed, depth=(2, 3), width=(3, 5), inputs=(2, 3), max_neurons=12)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    known = interval_bounds(net, box, tol=DEFAULT)
    for k in net.relu_layers:
        if k == 0:
            continue
        n = net.layers[k].out_features
        every = np.arange(n)
        sides = np.zeros(n, dtype=np.int64)
        q = phases.PhaseInput(net, box, k, known[: k + 1], every, sides, DEFAULT)
        phase_fns = (
            phases.linear_phase,
            phases.lp_phase,
            phases.ideal_cut_phase,
            phases.input_split_phase,
        )
        results = [phase(q) for phase in phase_fns]
        lo, hi = exact[k]
        for res in results:
            assert np.all(hi[res.inactive] <= 0.0)
            assert np.all(lo[res.active] >= 0.0)
            if res.bounds is not None:
                assert np.all(res.bounds[0] <= lo) and np.all(res.bounds[1] >= hi)
            if res.points is not None and len(res.points):
                assert box.contains(res.points).all()


def test_input_splits_prove_what_the_interval_bound_cannot() -> None:
    r"""z = 0.75 - relu(x) - relu(-x) = 0.75 - |x| on [-0.5, 0.5] lies in [0.25, 0.75], but
    interval bounds give [-0.25, 0.75]; the input-split phase proves it active::

        x --+-- relu(x)  --+
            +-- relu(-x) --+-- z = 0.75 - h0 - h1
    """
    net = Network(
        [
            Layer(np.array([[1.0], [-1.0]]), np.zeros(2), True),
            Layer(np.array([[-1.0, -1.0]]), np.array([0.75]), True),
        ]
    )
    box = Box.uniform(-0.5, 0.5, 1)
    known = interval_bounds(net, box, tol=DEFAULT)
    assert known[1][0][0] < 0.0  # the interval bound alone cannot tell
    q = phases.PhaseInput(net, box, 1, known, np.array([0]), np.array([-1]), DEFAULT)
    res = phases.input_split_phase(q)
    assert res.active.tolist() == [True] and not res.inactive.any()
    assert res.nodes is not None and res.nodes >= 1
