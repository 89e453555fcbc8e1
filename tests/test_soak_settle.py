"""The soak settles a float64 difference exactly before it refutes a proven bound (nd24).

Near-duplicate case 24705 (seed 24705 of ``--family near-duplicate``): a 4-5-5-2 network
whose output sums terms of about ``1e8`` (weights ``-4.4e6`` and ``2.2e6`` on two
duplicate neurons, ``-1.6e7`` on a third) that cancel to ``O(1)``. ``verify`` proves
``max |f - g| <= 1.12e-10`` for its compression ``g``; the oracle's float64 forward pass
finds ``1.56e-10`` at ``x = (0.9999999998283833, -0.5, -1.25, 1.75)``, but the exact
difference there is ``1.7e-17``: float64 noise, not a difference. The soak reported it as
an unsound ``equiv-bound``; it must settle the value exactly first.
"""

from __future__ import annotations

import numpy as np

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.stability import stable_neurons
from exactcomp.testing.random_networks import Case
from exactcomp.testing.rational import exact_difference, settled_difference
from exactcomp.testing.soak_case import check_case
from exactcomp.testing.soak_results import SoakOptions, method_for

_ND24705 = {
    "lower": [0.5, -1.75, -1.75, -0.25],
    "upper": [1.0, -0.5, -1.25, 1.75],
    "layers": [
        (
            [
                [1.0, 0.25, 1.0, 0.25],
                [325015.04542373144, 0.0, 556726.2188383096, 28660.43122330453],
                [0.0, 0.0, 0.0, 0.0],
                [1.0272559639575476, 0.0, 1.5643735405415118, -2.6232453929580464],
                [2.0, 0.5, 2.0, 0.5],
            ],
            [-0.0625, 668008.6733234685, -1048576.0, 8.256779933620168, -0.12499999965676657],
            True,
        ),
        (
            [
                [
                    0.0740511361472313,
                    8.33385061026896e-07,
                    0.0,
                    -0.4584728615841374,
                    -16265565.061187914,
                ],
                [1.6277251066221738, 0.0, -1.0896907023447937e-06, 0.0, 0.0],
                [1.6277251066221738, 0.0, -1.0896907023447937e-06, 0.0, 0.0],
                [3.2554502132443477, 0.0, -2.1793814046895875e-06, 0.0, 0.0],
                [0.12198207840497592, 8.33385061026896e-07, 0.0, -0.4584728615841374, 0.0],
            ],
            [
                1.534518780095743,
                0.2103523859541619,
                0.2103523859541619,
                0.4207047719090509,
                1.534518780095743,
            ],
            True,
        ),
        (
            [
                [-0.5, -4383158.699528756, 0.75, 2191579.349764378, 0.0],
                [0.0, -0.0, 0.45657043153457966, 0.0, 0.0],
            ],
            [0.12895817550112945, -0.8020457692913737],
            False,
        ),
    ],
}

X = np.array([0.9999999998283833, -0.5, -1.25, 1.75])


def _case() -> Case:
    """The case as the soak draws it, its last weight matrix in Fortran order: the float64
    noise of the forward pass depends on the memory layout (another BLAS kernel)."""
    layers = [Layer(np.array(w), np.array(b), relu=r) for w, b, r in _ND24705["layers"]]
    last = layers[-1]
    layers[-1] = Layer(np.asfortranarray(last.weight), last.bias, relu=False)
    box = Box(np.array(_ND24705["lower"]), np.array(_ND24705["upper"]))
    return Case(Network(tuple(layers), dtype="float64"), box, 24705)


def _compressed(case: Case) -> Network:
    report = stable_neurons(case.network, case.box, method="leo", jobs=1, seed=case.seed)
    return compress_network(case.network, report).network


def test_float64_noise_is_not_a_difference() -> None:
    case = _case()
    f, g = case.network, _compressed(case)
    noisy = float(np.max(np.abs(f.forward(X) - g.forward(X))))
    assert noisy > 1e-11  # float64 sees a difference ...
    exact = exact_difference(f, g, X)
    assert exact < 1e-15  # ... that is not there
    assert settled_difference(f, g, X, noisy, exact_neurons=16) == exact
    # too large to settle exactly: the noise of terms of 1e8 is taken off instead
    assert settled_difference(f, g, X, noisy, exact_neurons=0) < 0.0


def test_a_true_difference_stays_a_difference() -> None:
    case = _case()
    f = case.network
    last = f.layers[-1]
    g = f.replace_layers((*f.layers[:-1], Layer(last.weight, last.bias + 1e-3, relu=False)))
    d = exact_difference(f, g, X)
    assert abs(d - 1e-3) < 1e-12
    assert settled_difference(f, g, X, d, exact_neurons=16) == d


def test_the_soak_finds_no_unsound_bound_on_case_24705() -> None:
    """What ``python -m benchmarks soak --cases 1 --seed 24705 --family near-duplicate`` runs."""
    result = check_case(_case(), SoakOptions(mutants=False), method_for(24705))
    assert result.equivalences == 1
    assert [f for f in result.findings if f.kind in ("equiv-bound", "equivalent")] == []
