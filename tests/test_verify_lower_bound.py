"""``verify``'s lower bound is a true one: a float64 difference is settled before it is reported.

The network below computes ``relu(S x + 8) - relu(S x) - 8 = 0`` on ``x >= 0`` exactly, but with
``S = 1e17`` (float64 spacing 16 there) a forward pass rounds ``S x + 8`` to a neighbour and
reports ``+-8``. Compared with the zero network, float64 sampling "sees" a difference of 8 where
there is none; the reported lower bound must not say so (soak near-dependent seed 25400 printed
``[0.622, 0.622]`` for an exact maximum of 0.095)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.tolerances import forward_error
from exactcomp.verify import run as run_module
from exactcomp.verify import verify_equivalence
from exactcomp.verify.falsify import exact_difference

S = 1e17


def _noisy_zero() -> Network:
    hidden = Layer(np.array([[S], [S]]), np.array([8.0, 0.0]), relu=True)
    out = Layer(np.array([[1.0, -1.0]]), np.array([-8.0]), relu=False)
    return Network([hidden, out])


def _zero() -> Network:
    return Network([Layer(np.zeros((2, 1)), np.zeros(2), relu=True),
                    Layer(np.zeros((1, 2)), np.zeros(1), relu=False)])  # fmt: skip


def test_float64_reports_a_difference_that_exact_arithmetic_does_not() -> None:
    f, g, x = _noisy_zero(), _zero(), np.array([0.8])  # S x in [2^56, 2^57): spacing 16
    assert abs(float(f.forward(x[None])[0, 0])) == 8.0  # float64 says 8
    assert exact_difference(f, g, x, "linf") == 0  # the network is 0 there


@pytest.mark.parametrize("exact_limit", [run_module.EXACT_LOWER_PARAMETERS, 0])
def test_the_reported_lower_bound_is_at_most_the_exact_maximum(monkeypatch, exact_limit) -> None:
    """Exact settlement (small networks) and the rounding bound (``exact_limit = 0``: as for
    a large network) both keep the lower bound at 0, the exact maximum, whatever the tolerance."""
    monkeypatch.setattr(run_module, "EXACT_LOWER_PARAMETERS", exact_limit)
    f, g, box = _noisy_zero(), _zero(), Box(np.zeros(1), np.ones(1))
    for tol in (1.0, 100.0):
        res = verify_equivalence(f, g, box, tol=tol, time_limit=10.0)
        assert res.lower_bound == 0.0
        assert res.counterexample is None
    # the test bites: the float64 difference itself, unsettled, is what was reported before
    monkeypatch.setattr(run_module.EquivalenceRun, "settled", lambda self, x, d: d)
    res = verify_equivalence(f, g, box, tol=100.0, time_limit=10.0)
    assert res.lower_bound >= 8.0


def test_forward_error_covers_the_rounding_at_random_points() -> None:
    """The bound of :func:`forward_error` against the exact value, on a random network with
    cancelling large terms (exact rational ground truth)."""
    rng = np.random.default_rng(7)
    w1 = rng.normal(size=(6, 3)) * 1e12
    hidden = Layer(w1, rng.normal(size=6) * 1e12, relu=True)
    out = Layer(rng.normal(size=(2, 6)), rng.normal(size=2), relu=False)
    net = Network([hidden, out])
    for x in rng.random((20, 3)):
        got = net.forward(x[None])[0]
        exact = [sum(Fraction(float(out.weight[i, j])) * max(
            sum(Fraction(float(w1[j, c])) * Fraction(float(x[c])) for c in range(3))
            + Fraction(float(hidden.bias[j])), Fraction(0)) for j in range(6))
            + Fraction(float(out.bias[i])) for i in range(2)]  # fmt: skip
        bound = forward_error(net, x)[0]
        for i in range(2):
            assert abs(Fraction(float(got[i])) - exact[i]) <= Fraction(float(bound[i]))
