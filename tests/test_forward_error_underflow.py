""":func:`~exactcomp.tolerances.forward_error` covers underflow amplified by later layers.

``x -> 1e-310 x -> 1e150 (.) -> 1e150 (.)`` on ``x in [0.1, 1]``: the first product is
subnormal, where float64 rounds to a fixed grid of ``2^-1074`` (a relative error up to
``1e-13``, far beyond ``2^-53``), and the next two layers multiply that error by ``1e300``:
the output ``~1e-10 x`` is off by up to ``2.5e-24``, while the relative model alone gives
``~3e-26`` (red25: 344 times too small; ``verify``'s settled lower bound subtracts this bound
on networks over :data:`~exactcomp.verify.run.EXACT_LOWER_PARAMETERS` parameters)::

    x --1e-310--> relu --1e150--> relu --1e150--> y
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.tolerances import DEFAULT, forward_error


def _amplifier() -> Network:
    return Network(
        (
            Layer(np.array([[1e-310]]), np.zeros(1), relu=True),
            Layer(np.array([[1e150]]), np.zeros(1), relu=True),
            Layer(np.array([[1e150]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def test_forward_error_covers_amplified_underflow() -> None:
    net, worst = _amplifier(), Fraction(0)
    for x in np.random.default_rng(0).uniform(0.1, 1.0, size=(200, 1)):
        err = abs(Fraction(float(net.forward(x[None])[0, 0])) - exact_forward(net, x)[0])
        bound = Fraction(float(forward_error(net, x[None])[0, 0]))
        assert err <= bound, (x, float(err), float(bound))
        worst = max(worst, err)
    assert worst > 1e-25  # the case bites: underflow, amplified, is really there


def test_forward_error_unchanged_without_amplification() -> None:
    """A network whose weights amplify nothing keeps the default absolute pad."""
    net = Network((Layer(np.array([[0.5]]), np.zeros(1), relu=False),), dtype="float64")
    x = np.array([[1.0]])
    u = 2.0**-53
    assert forward_error(net, x)[0, 0] == 1.01 * (2 * u / (1 - 2 * u)) * 0.5 + DEFAULT.bound_abs


def test_verify_lower_bound_below_the_exact_maximum(monkeypatch) -> None:
    """``g`` computes ``f`` through ``2 * 1e-310`` and ``1e150 / 2`` (the same reals) with an
    output weight one ulp above: the exact maximum is ``1.8e-26`` while float64 differs by
    ``2.4e-24``. On the rounding path of a large network (``EXACT_LOWER_PARAMETERS = 0``) the
    lower bound was reported as ``2.38e-24`` before (red25); it must stay at most the exact
    maximum."""
    from exactcomp.domain import Box
    from exactcomp.testing.rational import exact_difference
    from exactcomp.verify import run as run_module
    from exactcomp.verify import verify_equivalence

    monkeypatch.setattr(run_module, "EXACT_LOWER_PARAMETERS", 0)
    f = _amplifier()
    layers = list(f.layers)
    layers[0] = Layer(layers[0].weight * 2, layers[0].bias, relu=True)
    layers[1] = Layer(layers[1].weight / 2, layers[1].bias, relu=True)
    layers[2] = Layer(np.nextafter(layers[2].weight, np.inf), layers[2].bias, relu=False)
    g = f.replace_layers(tuple(layers))
    box = Box(np.array([0.1]), np.array([1.0]))
    exact = Fraction(exact_difference(f, g, np.array([1.0])))  # the maximum (increasing in x)
    assert 0 < exact < 1e-25
    res = verify_equivalence(f, g, box, tol=1.0, time_limit=10.0)
    assert Fraction(res.lower_bound) <= exact
