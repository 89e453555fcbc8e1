r"""Signs the weights prove through the lattice identity ``relu(t) - relu(-t) = t``.

A two-level lattice network (VNN-COMP 2022 ``tll``) computes ``max`` and ``min`` of affine
functions with pairs of *opposite* units (``z_v = -z_u``, read off the weights by
:mod:`exactcomp.stability.constants`) read with weights ``\pm 1/2``:
``max(a, b) = (a + b)/2 + |a - b|/2``. Some of its neurons are ``z >= 0`` on every input
(``|t|/2 + t/2 = relu(t)``) while ``z = 0`` on a whole region: a tie that no bound with a
margin decides (tll8: the 10 neurons its analysis left undecided). The weights prove them.

Maths
-----
Let layer ``k - 1`` be a ReLU layer and neuron ``j`` of layer ``k`` read it through the class
sums ``s_c`` (:mod:`~exactcomp.stability.constants`). A pair of opposite classes ``u, v``
(``z_v = -z_u``, so ``h_u = (|z_u| + z_u)/2`` and ``h_v = (|z_u| - z_u)/2``) contributes

.. math::

    s_u h_u + s_v h_v = \lambda_u z_u + r_u |z_u|, \qquad
    \lambda_u = \tfrac12 (s_u - s_v), \quad r_u = \tfrac12 (s_u + s_v)

(a class whose opposite the row does not read is a pair with ``s_v = 0``). A constant unit
contributes ``s_c \, relu(b_c)``; any other class is *single*. For the lower bound, let every
``r_u \ge 0`` and every single ``s_c \ge 0``; then for any signs ``\sigma_u \in \{-1, 0, 1\}``
(``|z| \ge \sigma z``; ``\sigma = 0`` is ``|z| \ge 0``: ``relu(t) + relu(-t) = |t|``, a tie
at ``t = 0``) and dropping the singles (``h \ge 0``),

.. math::

    z_j \ge \sum_u (\lambda_u + \sigma_u r_u) z_u + C, \qquad
    C = b_j + \sum_{c \text{ constant}} s_c \, relu(b_c).

Each ``z_u = R_u \cdot h_{k-2} + b_u`` with ``R_u`` its exact class sums over layer ``k - 2``
(the keys of layer ``k - 1``). If ``\sum_u \mu_u R_u = 0`` *exactly* (rational arithmetic,
``\mu_u = \lambda_u + \sigma_u r_u``), the sum is the constant ``\sum_u \mu_u b_u`` on every
input, so ``z_j \ge C + \sum_u \mu_u b_u =: F`` everywhere: ACTIVE if ``F \ge 0`` (a tie at 0
included: ``relu(z) = z``). The upper bound is the mirror image (every ``r_u \le 0``, every
single ``s_c \le 0``, ``r|z| \le r \sigma z``): ``z_j \le F``, INACTIVE if ``F \le 0``.
Every choice of signs whose sum vanishes gives a true bound, so the largest ``F`` is the
floor and the smallest the ceiling. The ``3^k`` choices of ``k`` free signs (at most
:data:`MAX_SIGNS`) are screened at once in float64: with ``\mu`` rounded from
``\lambda + \sigma r`` (off by at most ``3 \cdot 2^{-53} (|\lambda| + |r|)``) and ``n``
products summed (``\gamma_n`` more), a choice whose float sum exceeds :data:`SCREEN` times
``\sum_u (|\lambda_u| + |r_u|) |R_u|`` (plus ``2^{-1022}``: ``n`` underflows of at most
``2^{-1075}``) cannot vanish exactly, and only the others are summed exactly (a non-finite
sum among them).
Only rows that read a pair are looked at, so a network without opposite units costs nothing.
Every number is a float64 or a sum of halves of them, held as :class:`fractions.Fraction`;
``F`` is rounded outwards.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: At most this many pairs with ``r_u != 0`` in one row (``3**MAX_SIGNS`` sign choices).
MAX_SIGNS = 6
#: A choice of signs whose float64 sum exceeds this share of its terms' magnitudes cannot
#: vanish exactly (module docstring: about ``(n + 4) 2^-53`` at most, so rows of up to
#: ``1e6`` units); it is not summed exactly.
SCREEN = 1e-9


@dataclass(frozen=True, eq=False)
class Below:
    """What the sign rule needs of layer ``k - 1``: per unit its exact class sums over layer
    ``k - 2`` (``keys``, the bias last), whether they are exact (``ok``), its ``opposite``
    unit (or ``-1``), whether it is ``constant``, and its bias."""

    keys: np.ndarray
    ok: np.ndarray
    opposite: np.ndarray
    constant: np.ndarray
    bias: np.ndarray


def signs(
    sums: np.ndarray, ok: np.ndarray, bias: np.ndarray, units: np.ndarray, below: Below
) -> tuple[np.ndarray, np.ndarray]:
    """``(floor, ceiling)``: exact bounds ``floor <= z_j <= ceiling`` on every input that the
    lattice identity proves (module docstring), ``-inf``/``+inf`` where it proves none.

    ``sums`` are layer ``k``'s class sums over the live classes of layer ``k - 1`` (exact
    where ``ok``), ``units[c]`` the first unit of layer ``k - 1`` in column ``c``'s class.
    """
    m = sums.shape[0]
    floor, ceiling = np.full(m, -np.inf), np.full(m, np.inf)
    partner = _partners(units, below)
    if not np.any(partner >= 0):
        return floor, ceiling
    reads_pair = ok & np.any((sums != 0.0) & (partner >= 0)[None, :], axis=1)
    for j in np.flatnonzero(reads_pair):
        lo, hi = _row_bounds(sums[j], Fraction(float(bias[j])), units, partner, below)
        if lo is not None:
            floor[j] = _outward(lo, up=False)
        if hi is not None:
            ceiling[j] = _outward(hi, up=True)
    return floor, ceiling


def passes(
    sums: np.ndarray, ok: np.ndarray, bias: np.ndarray, units: np.ndarray, below: Below
) -> tuple[np.ndarray, np.ndarray]:
    """``(through, factor)``: per neuron ``j``, the unit ``u`` of layer ``k - 1`` (the first of
    its class) with ``z_j = factor_j z_u`` on every input, or ``-1``.

    A row whose only non-zero class sums are ``c`` on ``u`` and ``-c`` on its opposite
    ``v``, ``c > 0``, with bias 0, computes ``c h_u - c h_v = c z_u``; after its ReLU,
    ``h_j = c h_u``: the same function as a unit one layer down (a lattice network passes its
    affine functions up this way), which the differential argument moves down exactly.
    """
    m = sums.shape[0]
    through, factor = np.full(m, -1), np.zeros(m)
    partner = _partners(units, below)
    two = ok & (bias == 0.0) & (np.count_nonzero(sums, axis=1) == 2)
    for j in np.flatnonzero(two):
        cu, cv = np.flatnonzero(sums[j])
        if partner[cu] == cv and sums[j, cu] == -sums[j, cv]:
            first = cu if sums[j, cu] > 0 else cv
            through[j], factor[j] = units[first], abs(sums[j, cu])
    return through, factor


def _partners(units: np.ndarray, below: Below) -> np.ndarray:
    """Per class column, the column of its opposite class, or ``-1``."""
    col = {int(u): c for c, u in enumerate(units)}  # opposite[] names a class's first unit
    partner = np.full(units.size, -1)
    for c, u in enumerate(units):
        o = int(below.opposite[u])
        if o >= 0 and below.ok[u] and below.ok[o]:
            partner[c] = col.get(o, -1)
    return partner


def _row_bounds(row, b: Fraction, units, partner, below: Below):
    """``(F_lower, F_upper)`` of one row (``None`` where not proven)."""
    lam: dict[int, Fraction] = {}
    r: dict[int, Fraction] = {}
    singles: list[Fraction] = []
    const = b
    for c in np.flatnonzero(row != 0.0).tolist():
        u = int(units[c])
        p = int(partner[c])
        if p >= 0:
            first, second = (c, p) if c < p else (p, c)
            key = int(units[first])
            if key in lam:
                continue
            s_u, s_v = Fraction(float(row[first])), Fraction(float(row[second]))
            lam[key], r[key] = (s_u - s_v) / 2, (s_u + s_v) / 2
        elif below.constant[u]:
            const += Fraction(float(row[c])) * max(Fraction(float(below.bias[u])), Fraction(0))
        elif row[c] != 0.0:
            singles.append(Fraction(float(row[c])))
    eligible = [
        not any(side * s < 0 for s in singles) and not any(side * v < 0 for v in r.values())
        for side in (1, -1)
    ]
    found = _vanishing(lam, r, below, const) if any(eligible) else []
    lower = max(found) if eligible[0] and found else None
    upper = min(found) if eligible[1] and found else None
    return lower, upper


def _vanishing(lam: dict, r: dict, below: Below, const: Fraction) -> list[Fraction]:
    """``C + sum mu_u b_u`` for every choice of signs in ``{-1, 0, 1}`` whose ``sum mu_u
    R_u`` is exactly 0 (module docstring; none where more than :data:`MAX_SIGNS` are free)."""
    free = [u for u, v in r.items() if v != 0]
    if len(free) > MAX_SIGNS:
        return []
    units = list(lam)
    keys = below.keys[units]
    cols = np.flatnonzero(np.any(keys[:, :-1] != 0.0, axis=0))
    choices = np.array(list(itertools.product((-1, 0, 1), repeat=len(free))), dtype=np.int64)
    at = [units.index(u) for u in free]
    mu = np.tile([float(lam[u]) for u in units], (len(choices), 1))
    mu[:, at] += choices * np.array([float(r[u]) for u in free])
    mag = np.array([abs(float(lam[u])) + abs(float(r.get(u, 0))) for u in units])
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        part = keys[:, cols]
        total, size = mu @ part, mag @ np.abs(part)  # |mu| <= |lam| + |r|, before cancelling
        far = np.abs(total) > SCREEN * size + 2.0**-1022  # a nan compares False: summed exactly
    exact = [[Fraction(float(v)) for v in keys[i, cols]] for i in range(len(units))]
    biases = [Fraction(float(keys[i, -1])) for i in range(len(units))]
    out = []
    for k in np.flatnonzero(~far.any(axis=1)).tolist():
        m = dict(lam)
        for u, s in zip(free, choices[k].tolist(), strict=True):
            m[u] += s * r[u]
        total = [sum(m[u] * exact[i][c] for i, u in enumerate(units)) for c in range(cols.size)]
        if all(t == 0 for t in total):
            out.append(const + sum(m[u] * biases[i] for i, u in enumerate(units)))
    return out


def _outward(v: Fraction, up: bool) -> float:
    """``v`` rounded to a float64 towards ``+inf`` (``up``) or ``-inf``."""
    f = float(v)
    if up and Fraction(f) < v:
        return float(np.nextafter(f, np.inf))
    if not up and Fraction(f) > v:
        return float(np.nextafter(f, -np.inf))
    return f
