"""The re-check on sample points (:mod:`exactcomp.api.sampling`): its point count and its
shortcuts decide exactly as the full computation would.

Networks (inputs ``x`` in the box, ``y`` the output)::

    x (3) -> 4r -> 2            f: random weights
    g = f with one bias moved   a wrong rewrite: the re-check must refuse it
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp import api
from exactcomp.api import sampling
from exactcomp.domain import Box
from exactcomp.errors import VerificationError
from exactcomp.network import Layer, Network
from exactcomp.tolerances import DEFAULT, Tolerances

RNG = np.random.default_rng(17)
BOX = Box.uniform(-1.0, 1.0, 3)


def _net(shift: float = 0.0, dtype: str = "float64") -> Network:
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    return Network(
        (Layer(w1, rng.normal(size=4), True), Layer(w2, [0.0, shift], False)), dtype=dtype
    )


def test_given_points_are_all_checked_and_a_time_limit_keeps_the_floor(monkeypatch):
    f = _net()
    full = api.sample_check(f, f, [BOX], points=500, tol=DEFAULT)
    assert full.points == 501  # the points asked for, and the box centre
    monkeypatch.setattr(sampling, "CHECK_FLOOR", 100)
    monkeypatch.setattr(sampling, "CHECK_ENTRIES", 40 * 4)  # chunks of 40 points
    floor = api.sample_check(f, f, [BOX], points=500, tol=DEFAULT, seconds=0.0)
    assert 100 <= floor.points <= 110  # the floor's chunks (a centre each), nothing after
    ample = api.sample_check(f, f, [BOX], points=500, tol=DEFAULT, seconds=1e9)
    assert ample.points >= 500


def test_compress_checks_what_check_says_and_else_at_least_the_floor():
    f = _net()
    assert api.compress(f, BOX, jobs=1, check=300).check.points == 301
    auto = api.compress(f, BOX, jobs=1).check.points
    assert sampling.CHECK_FLOOR <= auto <= sampling.CHECK_POINTS + 100


@pytest.mark.parametrize("seconds", [None, 0.0])
def test_a_wrong_network_is_refused_with_or_without_a_time_limit(seconds):
    with pytest.raises(VerificationError, match="this is a bug"):
        api.sample_check(_net(), _net(1e-3), [BOX], points=1000, tol=DEFAULT, seconds=seconds)


def test_the_term_scale_allowance_is_added_where_it_decides():
    """A difference above ``check_abs + check_rel`` but within ``check_scale * S(x)`` passes
    (the allowance computed on the failing rows only), and one beyond it fails."""
    f = _net()
    x = BOX.sample(200, RNG)
    scale = float(f.term_scale(x).min())
    # g = f moved by 1e-6: beyond check_abs + check_rel * |f| (~1e-7 * 10) everywhere
    g = _net(1e-6)
    loose = Tolerances(check_scale=1e-6 / scale * 2)  # allowance > 1e-6 at every point
    assert api.sample_check(f, g, [BOX], points=200, tol=loose).max_abs_diff > 0
    with pytest.raises(VerificationError):
        api.sample_check(f, g, [BOX], points=200, tol=DEFAULT)


def test_the_stored_copy_is_evaluated_only_when_it_differs():
    """float32 weights: the stored copy is the network itself, its deviation the difference;
    float64-only weights: the rounded copy's deviation is measured (nonzero)."""
    f64 = _net()
    rounded = sampling.stored(f64, "float32")
    assert sampling.same_values(rounded, sampling.stored(rounded))
    assert not sampling.same_values(f64, rounded)
    same = api.sample_check(rounded, rounded, [BOX], points=100, tol=DEFAULT)
    assert same.max_abs_diff == same.float32_max_deviation == 0.0
    g32 = Network(f64.layers, dtype="float32")  # the same function, stored in float32
    dev = api.sample_check(f64, g32, [BOX], points=100, tol=DEFAULT)
    assert dev.max_abs_diff == 0.0 and dev.float32_max_deviation > 0.0
