r"""Lattice-shaped networks aimed at the weight-read facts, and their exact check (red25).

:func:`~exactcomp.stability.constants.layer_classes` reads facts off the weights that hold on
*every* input: equal classes, constant and null units, opposite units (``z_i = -z_j``), the
lattice identity's ``floor <= z_j <= ceiling`` (:mod:`exactcomp.stability.lattice`),
pass-through units (``h_j = factor_j h_u``) and positive multiples (``z_j = ratio_j z_i``).
:func:`lattice_case` builds networks where those facts are *almost* true:

* layer 0: *primary* units ``c_1 d_1 + c_2 d_2`` over two dyadic directions (so that their
  rows are linearly dependent), each with, by chance, an exact opposite, an opposite scaled
  by 2 or 1/2, an exact copy, a copy or opposite with one weight moved by one ulp, a
  positive multiple (``2, 1/2, 3``; or one ulp off), and
  constant units (zero row) with biases ``-1/2, 0, 1/2``;
* layer 1: rows reading pairs with weights ``s_u = lambda_u + r_u``, ``s_v = r_u -
  lambda_u`` where ``mu = lambda + sigma r`` (``sigma`` in ``-1, 0, 1``; ``0``: ``r |z_u|
  >= 0``) is in the null space of the primaries' rows, so that ``sum mu_u R_u = 0`` exactly;
  one row in four ``+-c |z_u| + bias`` instead (``bias`` exactly ``0`` or ``+-2^-60``;
  ``|z_u|`` read off ``u``'s exact opposite or its opposite but for one ulp; on half of them
  plus a constant written through the pairs, :func:`_abs_row`); the bias makes ``F`` exactly ``0`` or moves it by a tiny
  amount either way; then, by chance, one weight moved by one ulp (the identity no longer
  exact), a copy read with weights that sum inexactly, a single class of the wrong sign;
  some of its rows get opposites too;
* by chance, a *slab* unit: ``max z = 1e-9`` over the box, passed on to the output with
  weight ``1e6`` (what a wrongly removed neuron would lose); inputs ``7..8`` on one case in
  four (``verify``'s unpaired neurons then go to LPs, not input splits);
* layer 2 (by chance, without a slab): rows reading two more pairs of layer 1 (``r, -r,
  2r, -2r``) through the identity (:func:`_deeper`), or random dyadic rows over layer 1;
  then a linear output layer.

:func:`structure_findings` checks every fact of ``layer_classes`` exactly (rational
arithmetic) at the given points and at points drawn far outside the box: the facts claim
every input, so a violation anywhere refutes them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..domain import Box
from ..network import Layer, Network
from ..stability.constants import layer_classes
from .adversarial import dyadic_box
from .random_networks import Case, tie_bias

__all__ = ["lattice_case", "structure_findings"]

TINY = (0.0, 0.0, 2.0**-60, -(2.0**-60), 1e-300, -1e-300, 0.25, -0.25)
"""The offsets of ``F`` from 0 (0: a tie the identity proves, twice as likely)."""
SLAB_WEIGHT = 1e6
"""What the output reads a slab unit's pass-through with (:func:`_slab`)."""


def _ulp_moved(row: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = row.copy()
    nz = np.flatnonzero(out)
    i = int(rng.choice(nz)) if nz.size else 0
    out[i] = np.nextafter(out[i], np.inf if rng.random() < 0.5 else -np.inf)
    return out


def _layer0(rng: np.random.Generator, n: int, budget: int):
    """Rows, biases, the primaries' coefficient pairs and, per primary, its opposite row."""
    d = rng.integers(-4, 5, size=(2, n)) / 4
    d[np.all(d == 0, axis=1), 0] = 1.0
    rows, bias, coef, opp = [], [], [], []
    for _ in range(int(rng.integers(2, 4))):
        c = rng.integers(-2, 3, size=2).astype(float)
        if not c.any():
            c[0] = 1.0
        w, b = c @ d, float(rng.integers(-2, 3) / 4)
        rows.append(w)
        bias.append(b)
        coef.append(c)
        opp.append(len(rows))
        rows.append(-w)
        bias.append(-b)
    extra = []
    for i, (w, b) in enumerate(zip(list(rows[::2]), list(bias[::2]), strict=True)):
        u = rng.random()
        if u < 0.15:
            extra.append((-2.0 * w, -2.0 * b))  # a scaled opposite: not an opposite
        elif u < 0.3:
            extra.append((w.copy(), b))  # an exact copy: one class
        elif u < 0.45:
            extra.append((_ulp_moved(w, rng), b))  # a copy but for one ulp
        elif u < 0.6:
            extra.append((-_ulp_moved(w, rng), -b, 2 * i))  # an opposite but for one ulp
        elif u < 0.72:
            c = float(rng.choice([2.0, 0.5, 3.0]))  # a positive multiple: h = c h_primary
            extra.append((c * w, c * b) if rng.random() < 0.7 else (c * _ulp_moved(w, rng), c * b))
        del i
    if rng.random() < 0.5:
        extra.append((np.zeros(n), float(rng.choice([-0.5, 0.0, 0.5]))))
    near = []  # (primary, its opposite but for one ulp)
    for w, b, *of in extra[: max(0, budget - len(rows))]:
        near += [(of[0], len(rows))] if of else []
        rows.append(w)
        bias.append(b)
    return np.array(rows), np.array(bias), np.array(coef), opp, near


def _null_mu(coef: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer ``mu`` with ``sum mu_u c_u = 0`` (two-dimensional ``c``), not all zero when
    the primaries allow it."""
    p = coef.shape[0]
    if p < 3:
        mu = np.zeros(p)
        mu[int(rng.integers(p))] = 0.0
        return mu
    i, j, k = rng.permutation(p)[:3]
    a, b, c = coef[i], coef[j], coef[k]
    # mu_i a + mu_j b + mu_k c = 0: the cross products (Cramer) give integers
    mu = np.zeros(p)
    mu[i] = b[0] * c[1] - b[1] * c[0]
    mu[j] = c[0] * a[1] - c[1] * a[0]
    mu[k] = a[0] * b[1] - a[1] * b[0]
    return mu / 4


def _abs_row(rng, b0, coef, opp, near, n0: int) -> tuple[np.ndarray, float]:
    """``side c (h_u + h_v) + bias`` (``c |z_u|`` where ``v`` is ``u``'s exact opposite, a
    tie at ``z_u = 0``, or ``u``'s opposite but for one ulp), ``bias`` exactly ``0`` or
    ``+-2^-60``; on half the rows plus the constant ``sum mu_i z_i`` (``mu`` in the null
    space) written through the pairs, its value taken off the bias."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    i = int(rng.integers(coef.shape[0]))
    u, v = 2 * i, opp[i]
    if near and rng.random() < 0.4:
        u, v = near[int(rng.integers(len(near)))]
    row = np.zeros(n0)
    row[[u, v]] = side * float(rng.choice([0.5, 1.0, 2.0]))
    f_val = Fraction(0)
    if rng.random() < 0.5:
        mu = _null_mu(coef, rng)
        for k in range(coef.shape[0]):
            row[2 * k] += mu[k]
            row[opp[k]] -= mu[k]
            f_val += Fraction(mu[k]) * Fraction(b0[2 * k])
    return row, float(Fraction(float(rng.choice([0.0, 2.0**-60, -(2.0**-60)]))) - f_val)


def _layer1(rng, w0, b0, coef, opp, near, m: int) -> tuple[np.ndarray, np.ndarray]:
    p = coef.shape[0]
    n0 = w0.shape[0]
    rows, bias = np.zeros((m, n0)), np.zeros(m)
    for j in range(m):
        if rng.random() < 0.25:  # |z_u| (the identity's sigma = 0)
            rows[j], bias[j] = _abs_row(rng, b0, coef, opp, near, n0)
            continue
        mu = _null_mu(coef, rng)
        side = 1.0 if rng.random() < 0.5 else -1.0  # +1: a floor (r >= 0), -1: a ceiling
        f_val = Fraction(0)
        for u in range(p):
            r = side * float(rng.integers(0, 3)) / 4
            sigma = float(rng.choice([-1.0, 0.0, 1.0]))  # 0: r |z_u| >= 0
            lam = mu[u] - sigma * r
            s_u, s_v = lam + r, r - lam
            rows[j, 2 * u] += s_u
            rows[j, opp[u]] += s_v
            f_val += Fraction(mu[u]) * Fraction(b0[2 * u])
        for c in range(2 * p, n0):  # the extra units: a single of the right sign, or none
            if rng.random() < 0.3:
                rows[j, c] = side * float(rng.integers(1, 3)) / 4
        if rng.random() < 0.15:  # a single of the wrong sign: nothing may be proven
            c = int(rng.integers(n0))
            rows[j, c] -= side * 0.5
        if rng.random() < 0.2:
            rows[j] = _ulp_moved(rows[j], rng)
        const = Fraction(0)
        for c in range(2 * p, n0):
            if not w0[c].any():
                const += Fraction(rows[j, c]) * max(Fraction(b0[c]), Fraction(0))
        target = -(f_val + const) + Fraction(float(rng.choice(TINY)) * side)
        bias[j] = float(target)
    return rows, bias


def _deeper(rng, w1, b1, m2: int):
    """Layer 1 with two more pairs, ``r, -r, 2r, -2r`` (``r`` its first row, bias included:
    keys over layer 0's classes, linearly dependent), and ``m2`` layer-2 rows reading them
    with ``mu = (2t, -t)`` (``sum mu_u R_u = 0``) as :func:`_layer1` does: the identity one
    layer up, where layer 1's keys are class sums over layer 0's copies."""
    r, br = w1[0], b1[0]
    w1 = np.vstack([w1, r, -r, 2.0 * r, -2.0 * r])
    b1 = np.concatenate([b1, [br, -br, 2.0 * br, -2.0 * br]])
    base = w1.shape[0] - 4
    w2, b2 = np.zeros((m2, w1.shape[0])), np.zeros(m2)
    for j in range(m2):
        t = float(rng.choice([0.25, 0.5, 1.0, -0.5]))
        side = 1.0 if rng.random() < 0.5 else -1.0
        f_val = Fraction(0)
        for u, (mu, bu) in enumerate(((2.0 * t, br), (-t, 2.0 * br))):
            rr = side * float(rng.integers(0, 3)) / 4
            sigma = 1.0 if rng.random() < 0.5 else -1.0
            lam = mu - sigma * rr  # mu = lambda + sigma r
            w2[j, base + 2 * u], w2[j, base + 2 * u + 1] = lam + rr, rr - lam
            f_val += Fraction(mu) * Fraction(bu)
        if rng.random() < 0.2:
            w2[j] = _ulp_moved(w2[j], rng)
        b2[j] = float(-f_val + Fraction(float(rng.choice(TINY)) * side))
    if rng.random() < 0.5:  # a pass-through: c h_r - c h_{-r} = c z_r, h = |c| h_{+-r}
        c = float(rng.choice([0.5, 2.0, 3.0, -0.75]))
        w2[0], b2[0] = 0.0, 0.0
        w2[0, base + 2 * int(rng.integers(2)) + np.array([0, 1])] = c, -c
    return w1, b1, w2, b2


def _slab(rng, box: Box, w0, b0, w1, b1):
    """A layer-0 unit positive only on a slab of the box (``max z = delta``, ``delta`` of
    ``1e-9`` or ``2^-30``), passed on by a layer-1 unit that the output reads with
    :data:`SLAB_WEIGHT`: ``f`` moves by ``~1e-3`` there, what a wrongly removed neuron
    loses; and the column of that layer-1 unit."""
    for _ in range(8):
        row = rng.integers(-4, 5, size=box.lower.size) / 4
        tie = tie_bias(row, box, "max") if row.any() else None
        if tie is not None:
            break
    else:
        return w0, b0, w1, b1, None
    delta = float(rng.choice([1e-9, 2.0**-30]))
    w0, b0 = np.vstack([w0, row]), np.append(b0, tie + delta)
    w1 = np.hstack([w1, np.zeros((w1.shape[0], 1))])
    pass_row = np.zeros(w0.shape[0])
    pass_row[-1] = 1.0
    w1, b1 = np.vstack([w1, pass_row]), np.append(b1, 0.0)
    return w0, b0, w1, b1, w1.shape[0] - 1


def lattice_case(seed: int, max_neurons: int = 16) -> Case:
    """Case ``seed`` (module docstring), at most ``max_neurons`` hidden neurons."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4)) if rng.random() < 0.75 else int(rng.integers(7, 9))
    box = dyadic_box(rng, n)
    budget0 = max(4, max_neurons // 2)
    w0, b0, coef, opp, near = _layer0(rng, n, budget0)
    m1 = int(min(rng.integers(2, 6), max(1, max_neurons - w0.shape[0])))
    w1, b1 = _layer1(rng, w0, b0, coef, opp, near, m1)
    if rng.random() < 0.4 and w0.shape[0] + 2 * m1 <= max_neurons:
        w1, b1 = np.vstack([w1, -w1]), np.concatenate([b1, -b1])
    slab = None
    if w0.shape[0] + w1.shape[0] + 2 <= max_neurons and rng.random() < 0.35:
        w0, b0, w1, b1, slab = _slab(rng, box, w0, b0, w1, b1)
    layers = [Layer(w0, b0, relu=True), Layer(w1, b1, relu=True)]
    width = w1.shape[0]
    left = max_neurons - w0.shape[0] - width
    if slab is None and left >= 5 and rng.random() < 0.3:
        w1, b1, w2, b2 = _deeper(rng, w1, b1, int(rng.integers(1, min(left - 4, 3) + 1)))
        layers = [Layer(w0, b0, relu=True), Layer(w1, b1, relu=True), Layer(w2, b2, relu=True)]
        width = w2.shape[0]
    elif slab is None and left >= 2 and rng.random() < 0.5:
        m2 = int(rng.integers(2, min(left, 4) + 1))
        w2 = rng.integers(-4, 5, size=(m2, width)) / 4
        if rng.random() < 0.5:  # read opposites of layer 1 as a pass-through
            i = int(rng.integers(width // 2)) if width >= 2 else 0
            w2[0] = 0.0
            if width >= 2 and np.array_equal(w1[i], -w1[(i + width // 2) % width]):
                w2[0, i], w2[0, (i + width // 2) % width] = 0.5, -0.5
        layers.append(Layer(w2, rng.integers(-2, 3, size=m2) / 4, relu=True))
        width = m2
    out = rng.integers(-4, 5, size=(int(rng.integers(1, 3)), width)) / 4
    if slab is not None:
        out[:, slab] = SLAB_WEIGHT
    layers.append(Layer(out, np.zeros(out.shape[0]), relu=False))
    perm = rng.permutation(w0.shape[0])  # shuffle layer 0 (pairs not adjacent)
    la0, la1 = layers[0], layers[1]
    layers[0] = Layer(la0.weight[perm], la0.bias[perm], True)
    layers[1] = Layer(la1.weight[:, perm], la1.bias, True)
    return Case(Network(tuple(layers), dtype="float64"), box, seed)


def _exact_z(net: Network, x: np.ndarray) -> list[list[Fraction]]:
    h = [Fraction(float(v)) for v in x]
    zs = []
    for la in net.layers:
        w = [[Fraction(float(v)) for v in row] for row in np.asarray(la.weight)]
        z = [Fraction(float(b)) + sum((a * v for a, v in zip(r, h, strict=True) if a and v),
                                      Fraction(0)) for r, b in zip(w, la.bias, strict=True)]  # fmt: skip
        zs.append(z)
        h = [max(v, Fraction(0)) for v in z] if la.relu else z
    return zs


def structure_findings(net: Network, box: Box, points: np.ndarray, seed: int) -> list[str]:
    """Every fact of ``layer_classes(net)`` checked exactly at ``points`` and at 24 points
    drawn from a box 8 times wider than ``box`` and 24 from ``[-1000, 1000]^n``; one line
    per violated fact (at most 5)."""
    rng = np.random.default_rng(seed)
    width = np.maximum(box.upper - box.lower, 0.25)
    wide = rng.uniform(box.lower - 4 * width, box.upper + 4 * width, size=(24, box.lower.size))
    far = rng.uniform(-1000.0, 1000.0, size=(24, box.lower.size))
    pts = np.vstack([np.atleast_2d(points)[:48], wide, far])
    facts = layer_classes(net)
    out: list[str] = []
    for x in pts:
        zs = _exact_z(net, x)
        for k, cls in enumerate(facts):
            z, relu = zs[k], net.layers[k].relu
            h = [max(v, Fraction(0)) for v in z] if relu else z
            b = net.layers[k].bias
            for j in range(len(z)):
                bad = []
                if cls.constant[j] and z[j] != Fraction(float(b[j])):
                    bad.append("constant")
                if cls.null[j] and h[j] != 0:
                    bad.append("null")
                i = int(cls.opposite[j])
                if i >= 0 and z[i] != -z[j]:
                    bad.append(f"opposite {i}")
                if z[j] < Fraction(float(cls.floor[j])) if np.isfinite(cls.floor[j]) else False:
                    bad.append(f"floor {cls.floor[j]!r}")
                if z[j] > Fraction(float(cls.ceiling[j])) if np.isfinite(cls.ceiling[j]) else False:
                    bad.append(f"ceiling {cls.ceiling[j]!r}")
                same = np.flatnonzero(cls.label == cls.label[j])
                if any(z[int(i2)] != z[j] for i2 in same):
                    bad.append("class")
                if cls.multiple is not None and cls.multiple[j] >= 0:
                    i2 = int(cls.multiple[j])
                    if z[j] != cls.ratio[j] * z[i2]:
                        bad.append(f"multiple {i2} x {cls.ratio[j]!r}")
                if cls.through is not None and cls.through[j] >= 0:
                    u = int(cls.through[j])
                    hu = max(zs[k - 1][u], Fraction(0))
                    if h[j] != Fraction(float(cls.factor[j])) * hu:
                        bad.append(f"through {u} x {cls.factor[j]!r}")
                for what in bad:
                    out.append(f"({k},{j}) {what}: z = {float(z[j])!r} at {x.tolist()}")
                    if len(out) >= 5:
                        return out
    return out
