"""The upper bound of Serra, Tjandraatmadja & Ramalingam (ICML 2018) on activation regions.

The formula (:mod:`exactcomp.regions.estimates`): for ``n_0`` inputs and ReLU layers of widths
``n_1..n_L`` whose weight matrices have ranks ``r_1..r_L``,

    sum over (j_1..j_L) in J of prod_l C(n_l, j_l),
    J = { j : 0 <= j_l <= min(n_0, n_1 - j_1, ..., n_{l-1} - j_{l-1}, n_l, r_1, ..., r_l) }.

``serra_upper_bound`` computes it by dynamic programming; here it is checked against hand
computations and against the sum over ``J`` written out literally.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.regions import count_regions, network_upper_bound, serra_upper_bound


def _literal(n0: int, widths: list[int], ranks: list[int]) -> int:
    """The sum over J, every tuple of J enumerated (only for tiny widths)."""
    total = 0
    for js in itertools.product(*(range(n + 1) for n in widths)):
        ok = all(
            js[k] <= min([n0, widths[k], *ranks[: k + 1]] + [widths[i] - js[i] for i in range(k)])
            for k in range(len(widths))
        )
        if ok:
            total += math.prod(math.comb(n, j) for n, j in zip(widths, js, strict=True))
    return total


def test_worked_example_two_inputs_two_layers_of_two() -> None:
    """n_0 = 2, widths (2, 2), full rank, by hand:

    j_1 = 0: C(2,0) = 1, then j_2 <= min(2, 2 - 0) = 2: C(2,0)+C(2,1)+C(2,2) = 4  ->  4
    j_1 = 1: C(2,1) = 2, then j_2 <= min(2, 2 - 1) = 1: C(2,0)+C(2,1)     = 3  ->  6
    j_1 = 2: C(2,2) = 1, then j_2 <= min(2, 2 - 2) = 0: C(2,0)            = 1  ->  1
                                                                         total 11
    (the product of the one-layer bounds would be 4 * 4 = 16).
    """
    assert serra_upper_bound(2, [2, 2]) == 11 == _literal(2, [2, 2], [2, 2])


def test_one_input_gives_the_product_of_widths_plus_one() -> None:
    """n_0 = 1: every j_l is 0 or 1 and (widths >= 2) the image stays a line, so the bound is
    prod_l (n_l + 1), which the paper shows is attained: exact for 1-D inputs."""
    for widths in ([3, 2], [5], [2, 2, 2], [4, 7, 3]):
        assert serra_upper_bound(1, widths) == math.prod(n + 1 for n in widths)
    assert serra_upper_bound(1, [3, 2]) == 12


def test_equal_widths_and_inputs_wider_than_layers() -> None:
    """Once n_0 >= n_1 the input size no longer matters (n_1 - j_1 binds first), and one
    layer of width n with n_0 >= n gives all 2^n patterns."""
    assert serra_upper_bound(4, [2, 2]) == serra_upper_bound(2, [2, 2]) == 11
    assert serra_upper_bound(8, [5]) == 2**5
    # widths 3, 3, n_0 = 3 by hand: j_1 = 0: 8; j_1 = 1: 3 * 7; j_1 = 2: 3 * 4; j_1 = 3: 1
    assert serra_upper_bound(3, [3, 3]) == 8 + 21 + 12 + 1 == 42


def test_rank_limited_layers() -> None:
    """A rank-1 first layer makes the input effectively 1-D: (4 + 1) * (4 + 1) = 25. A rank-1
    second layer caps j_2 at 1: n_0 = 3, widths (3, 3), ranks (3, 1), by hand
    j_1 = 0: 1 * (1 + 3); j_1 = 1: 3 * (1 + 3); j_1 = 2: 3 * (1 + 3); j_1 = 3: 1 * 1 -> 29."""
    assert serra_upper_bound(3, [4, 4], [1, 4]) == 25
    assert serra_upper_bound(3, [3, 3], [3, 1]) == 4 + 12 + 12 + 1 == 29
    # a rank cap on an early layer also caps every later one (the image never regains it)
    assert serra_upper_bound(3, [3, 3], [1, 3]) == serra_upper_bound(1, [3, 3]) == 16


@pytest.mark.parametrize("seed", range(40))
def test_dynamic_programme_equals_the_literal_sum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 4))
    widths = [int(w) for w in rng.integers(1, 6, depth)]
    ranks = [int(rng.integers(0, w + 1)) for w in widths]
    n0 = int(rng.integers(1, 6))
    assert serra_upper_bound(n0, widths, ranks) == _literal(n0, widths, ranks)
    assert serra_upper_bound(n0, widths) == _literal(n0, widths, widths)


def test_network_bound_uses_the_ranks_and_holds() -> None:
    """Two ReLU layers whose second weight matrix has rank 1 (all rows equal up to scale):
    the network's bound is the rank-capped one, and the exact count stays below it."""
    rng = np.random.default_rng(3)
    w1 = rng.normal(size=(3, 3))
    w2 = np.outer(rng.normal(size=3), rng.normal(size=3))
    net = Network(
        (
            Layer(w1, rng.normal(size=3) * 0.3, True),
            Layer(w2, rng.normal(size=3) * 0.3, True),
            Layer(np.ones((1, 3)), np.zeros(1), False),
        )
    )
    assert network_upper_bound(net) == serra_upper_bound(3, [3, 3], [3, 1]) == 29
    rc = count_regions(net, Box.uniform(-1.0, 1.0, 3), samples=100, lines=2)
    assert rc.exact and rc.regions <= rc.upper_bound
