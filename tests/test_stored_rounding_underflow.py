"""``stored_rounding_bound`` stays an upper bound when its terms go subnormal and later layers
amplify them (red25's item 3): exact rational ground truth of the same recursion."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from exactcomp.tolerances import stored_rounding_bound


def _exact(layers, deltas, mags) -> list[Fraction]:
    e = [Fraction(0)] * len(mags[0])
    for (w, _b), (dw, db), mag in zip(layers, deltas, mags, strict=True):
        a = [[abs(Fraction(float(x))) + Fraction(float(d)) for x, d in zip(rw, rd, strict=True)]
             for rw, rd in zip(w, dw, strict=True)]  # fmt: skip
        e = [
            sum((ai * ei for ai, ei in zip(row, e, strict=True)), Fraction(0))
            + sum((Fraction(float(d)) * Fraction(float(m)) for d, m in zip(rd, mag, strict=True)), Fraction(0))
            + Fraction(float(b))
            for row, rd, b in zip(a, dw, db, strict=True)
        ]  # fmt: skip
    return e


def test_subnormal_terms_amplified_by_1e300_stay_bounded() -> None:
    """Layer 0's rounding term ``1e-170 * 1e-160`` is below the smallest subnormal (float64
    says 0); layers 1 and 2 multiply by 1e150 each: the exact ``e_L`` is ``1e-30``."""
    layers = [(np.zeros((1, 1)), np.zeros(1)), (np.full((1, 1), 1e150), np.zeros(1)),
              (np.full((1, 1), 1e150), np.zeros(1))]  # fmt: skip
    deltas = [(np.full((1, 1), 1e-170), np.zeros(1)), (np.zeros((1, 1)), np.zeros(1)),
              (np.zeros((1, 1)), np.zeros(1))]  # fmt: skip
    mags = [np.array([1e-160]), np.array([1.0]), np.array([1.0])]
    got = stored_rounding_bound(layers, deltas, mags)
    exact = _exact(layers, deltas, mags)
    assert float(exact[0]) > 0 and 1e-170 * 1e-160 == 0.0  # float64 loses it all
    assert Fraction(float(got[0])) >= exact[0]


def test_ordinary_networks_get_the_same_bound_to_the_last_digits() -> None:
    rng = np.random.default_rng(0)
    layers = [
        (rng.normal(size=(4, 3)), rng.normal(size=4)),
        (rng.normal(size=(2, 4)), rng.normal(size=2)),
    ]
    deltas = [(np.abs(w) * 2.0**-24, np.abs(b) * 2.0**-24) for w, b in layers]
    mags = [np.ones(3), np.full(4, 5.0)]
    got = stored_rounding_bound(layers, deltas, mags)
    exact = _exact(layers, deltas, mags)
    for g, x in zip(got, exact, strict=True):
        assert Fraction(float(g)) >= x and float(g) <= float(x) * (1 + 2e-6)
