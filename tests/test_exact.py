"""``exactcomp.exact``: the integer-based exact forward pass equals the plain rational one."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.exact import exact_forward, exact_term_scale, scaled_ints
from exactcomp.network import Layer, Network


def rational_reference(net: Network, x: np.ndarray, absolute: bool = False) -> list[Fraction]:
    """The textbook definition, one Fraction at a time."""
    h = [abs(Fraction(float(v))) if absolute else Fraction(float(v)) for v in x]
    for la in net.layers:
        w = np.abs(la.weight) if absolute else la.weight
        b = np.abs(la.bias) if absolute else la.bias
        z = [
            sum((Fraction(float(a)) * v for a, v in zip(row, h, strict=True)), Fraction(float(c)))
            for row, c in zip(w, b, strict=True)
        ]
        h = [max(v, Fraction(0)) for v in z] if la.relu and not absolute else z
    return h


def _network(rng: np.random.Generator, widths: list[int]) -> Network:
    layers = []
    for k in range(len(widths) - 1):
        # magnitudes from 1e-300 to 1e300, exact zeros and subnormals included
        w = rng.normal(size=(widths[k + 1], widths[k])) * 10.0 ** rng.integers(-300, 300)
        w[rng.random(w.shape) < 0.2] = 0.0
        b = rng.normal(size=widths[k + 1]) * 10.0 ** rng.integers(-20, 20)
        b[0] = 5e-324
        layers.append(Layer(w, b, relu=k < len(widths) - 2))
    return Network(tuple(layers))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 5), min_size=2, max_size=5))
def test_exact_forward_equals_the_rational_definition(seed: int, widths: list[int]) -> None:
    rng = np.random.default_rng(seed)
    net = _network(rng, widths)
    x = rng.normal(size=widths[0]) * 10.0 ** rng.integers(-5, 5)
    assert exact_forward(net, x) == rational_reference(net, x)
    assert exact_term_scale(net, x) == rational_reference(net, x, absolute=True)


def test_scaled_ints_are_exact() -> None:
    a = np.array([0.0, 1.5, -(2.0**-1074), 2.0**1000, -0.1])
    m, e = scaled_ints(a)
    assert [Fraction(int(v)) * Fraction(2) ** e for v in m] == [Fraction(float(v)) for v in a]
