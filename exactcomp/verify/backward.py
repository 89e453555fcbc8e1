r"""Back-substitution of the output difference through both networks (CROWN-style, batched).

:func:`exactcomp.verify.symbolic.difference_bounds` carries the difference *forward* as two
affine forms of :math:`x` per neuron; each layer's affine map sends lower forms through
:math:`W^+` and upper forms through :math:`W^-`, and that loses the correlations between
neurons. Here the compared outputs' differences are instead substituted *backward*, layer by
layer, down to the input, with the same per-box intermediate bounds, as CROWN does for one
network. The state at layer ``k`` is the pair of variables :math:`(z^f_k, d_k)`, and

.. math::

    z^f_{k+1} = W^f_{k+1} a^f_k + b^f_{k+1}, \qquad
    d_{k+1} = W^g_{k+1} \Delta_k + (W^g_{k+1} - W^f_{k+1})\, a^f_k + (b^g_{k+1} - b^f_{k+1}).

Every relaxation is affine in :math:`(z^f_k, d_k)` (:class:`Relaxation`): :math:`\alpha z \le
a^f \le s z + t`, and :math:`l_z z + l_d d + l_0 \le \Delta \le u_z z + u_d d + u_0`. To bound
:math:`\lambda^\top d_L` from above, a coefficient :math:`\mu` on :math:`\Delta_k` takes the
upper relaxation where :math:`\mu > 0` and the lower one where :math:`\mu < 0`, and likewise
:math:`\nu` on :math:`a^f_k`; what remains is linear in :math:`(z^f_k, d_k)` and goes through
layer ``k``'s affine maps. At the input, :math:`\max_{x \in B} c^\top x + c_0 = c^\top m +
|c|^\top r` (centre ``m``, radius ``r``). A lower bound is the upper bound of
:math:`-\lambda^\top d_L`; both are computed in one batch of rows. Output widths are tiny
(one compared output in NeuroDiff's benchmark), so this costs about one forward layer.

The relaxations must hold for the *variables* (not for their forward forms), so they use the
box's concrete bounds :math:`[l, u]` of :math:`z^f`, :math:`[\underline d, \overline d]` of
:math:`d` and :math:`[l^g, u^g]` of :math:`z^g`; see :mod:`exactcomp.verify.symbolic` for
each case.

The same substitution bounds a *hidden* layer's differences :math:`d_k` (rows ``\pm e_n``
of layer ``k`` instead of the outputs), per (box, neuron) pair with that box's relaxations
(:func:`ragged_difference_bounds`).

Floating point
--------------
As in :mod:`exactcomp.bounds.linear`: a ``scale`` per row accumulates ``|coefficients|`` times
the magnitudes of the variables and constants at each step (``|a^f| <= max(|l|, |u|)``,
:math:`|\Delta| \le |d| \le \max(|\underline d|, |\overline d|)`, the relaxation slopes are at
most 2 in absolute value and their offsets are added), and each bound is padded by
``bound_abs + bound_rel * scale``; float64 rounding is ``n 2^-53`` relative to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import minus
from ..network import Network, is_sparse
from ..tolerances import Tolerances


@dataclass(frozen=True)
class Relaxation:
    """One hidden layer's relaxations on a batch of boxes, each array of shape (N, n).

    ``alpha z <= a^f <= s z + t``; ``lz z + ld d + l0 <= Delta <= uz z + ud d + u0``, for
    ``z = z^f`` and ``d = z^g - z^f`` of this layer. ``mag_a`` bounds ``|a^f|`` and ``mag_d``
    bounds ``|d|`` (hence ``|Delta|``) on each box.
    """

    alpha: np.ndarray
    s: np.ndarray
    t: np.ndarray
    lz: np.ndarray
    ld: np.ndarray
    l0: np.ndarray
    uz: np.ndarray
    ud: np.ndarray
    u0: np.ndarray
    mag_a: np.ndarray
    mag_d: np.ndarray

    @classmethod
    def linear(cls, lf: np.ndarray, uf: np.ndarray, dl: np.ndarray, du: np.ndarray) -> Relaxation:
        """A layer without ReLU: ``a^f = z^f`` and ``Delta = d`` exactly."""
        one, zero = np.ones_like(lf), np.zeros_like(lf)
        mag_a = np.maximum(np.abs(lf), np.abs(uf))
        mag_d = np.maximum(np.abs(dl), np.abs(du))
        return cls(one, one, zero, zero, one, zero, zero, one, zero, mag_a, mag_d)


def _mm(coef: np.ndarray, w) -> np.ndarray:
    """``coef @ w`` for coefficients (N, R, n) or (R, n) and a matrix (n, n'), dense or
    ``scipy.sparse`` (a layer too large to hold densely; the product is dense)."""
    if not is_sparse(w):
        return coef @ w
    flat = coef.reshape(int(np.prod(coef.shape[:-1])), coef.shape[-1])  # also for n = 0
    return np.asarray((w.T @ flat.T).T).reshape(*coef.shape[:-1], w.shape[1])


def _dot(coef: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per box and row, ``coef . v``: coef (N, R, n), v (N, n) or (n,) -> (N, R)."""
    if v.ndim == 1:
        return coef @ v
    return np.einsum("nrk,nk->nr", coef, v)


def output_bounds(
    f: Network,
    g: Network,
    outputs: Sequence[int],
    relax: Sequence[Relaxation],
    lo: np.ndarray,
    hi: np.ndarray,
    mag_x: np.ndarray,
    tol: Tolerances,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds of ``g_i - f_i`` (``i`` in ``outputs``) on each box ``[lo[n], hi[n]]``.

    ``relax[k]`` are the relaxations of hidden layer ``k`` on the boxes (one per layer but
    the last). ``mag_x`` bounds ``|x|`` on every box. Returns ``(lower, upper)``, (N, m).
    """
    n_box, m = lo.shape[0], len(outputs)
    last = len(f.layers) - 1
    lf_, lg_ = f.layers[last], g.layers[last]
    wf, bf = lf_.weight[list(outputs)], lf_.bias[list(outputs)]
    wg, bg = lg_.weight[list(outputs)], lg_.bias[list(outputs)]
    sign = np.concatenate([np.eye(m), -np.eye(m)])  # rows: upper of d_i, upper of -d_i
    # coefficients on Delta_{L-1} (mu) and a^f_{L-1} (nu); the same for every box
    lam_z = np.zeros((n_box, 2 * m, wf.shape[0]))
    lam_d = np.broadcast_to(sign, (n_box, 2 * m, m))
    mu, nu = _mm(lam_d, wg), _mm(lam_d, minus(wg, wf))
    const = np.broadcast_to(sign @ (bg - bf), (n_box, 2 * m)).copy()
    r = relax[last - 1]
    scale = (
        _dot(np.abs(lam_d), np.abs(bg - bf))
        + _dot(_mm(np.abs(lam_d), abs(wg)), r.mag_d)
        + _dot(_mm(np.abs(lam_d), abs(minus(wg, wf))), r.mag_a)
    )
    for k in range(last - 1, -1, -1):
        r = relax[k]
        mup, mun = np.maximum(mu, 0.0), np.minimum(mu, 0.0)
        nup, nun = np.maximum(nu, 0.0), np.minimum(nu, 0.0)
        ex = lambda a: a[:, None, :]  # noqa: E731  (N, n) -> (N, 1, n)
        lam_z = mup * ex(r.uz) + mun * ex(r.lz) + nup * ex(r.s) + nun * ex(r.alpha)
        lam_d = mup * ex(r.ud) + mun * ex(r.ld)
        const += _dot(mup, r.u0) + _dot(mun, r.l0) + _dot(nup, r.t)
        off = np.maximum(np.abs(r.u0), np.abs(r.l0))
        scale += _dot(np.abs(mu), 2 * (r.mag_a + r.mag_d) + off)
        scale += _dot(np.abs(nu), r.mag_a + np.abs(r.t))
        fk, gk = f.layers[k], g.layers[k]
        dw, db = minus(gk.weight, fk.weight), gk.bias - fk.bias
        const += lam_z @ fk.bias + lam_d @ db
        if k == 0:
            below_a = below_d = mag_x
        else:
            below_a, below_d = relax[k - 1].mag_a, relax[k - 1].mag_d
        az, ad = np.abs(lam_z), np.abs(lam_d)
        scale += az @ np.abs(fk.bias) + ad @ np.abs(db)
        scale += _dot(_mm(az, abs(fk.weight)) + _mm(ad, abs(dw)), below_a)
        if k == 0:
            coef = _mm(lam_z, fk.weight) + _mm(lam_d, dw)  # on x
            break
        scale += _dot(_mm(ad, abs(gk.weight)), below_d)
        mu, nu = _mm(lam_d, gk.weight), _mm(lam_z, fk.weight) + _mm(lam_d, dw)
    c, rad = (lo + hi) / 2, (hi - lo) / 2
    value = _dot(coef, c) + _dot(np.abs(coef), rad) + const
    scale += _dot(np.abs(coef), mag_x) + np.abs(const)
    bound = value + tol.bound_abs + tol.bound_rel * scale
    return -bound[:, m:], bound[:, :m]


def _ratio(num: np.ndarray, den: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, num / np.where(mask, den, 1.0), 0.0)


def relu_relaxation(
    lf: np.ndarray,
    uf: np.ndarray,
    dl: np.ndarray,
    du: np.ndarray,
    lg: np.ndarray,
    ug: np.ndarray,
    alt_lo: np.ndarray,
    alt_hi: np.ndarray,
) -> Relaxation:
    r"""The relaxations of a ReLU layer from the box's bounds ``[lf, uf]`` of ``z^f``, ``[dl,
    du]`` of ``d`` and ``[lg, ug]`` of ``z^g``; ``alt_lo``/``alt_hi`` pick, per neuron, the
    second route (``g``'s relaxation minus ``f``'s) over the first (the cases on ``d``).

    The cases are those of :mod:`exactcomp.verify.symbolic`, written in the variables: both
    active :math:`\Delta = d`, ``f`` active :math:`\Delta \ge d`, ``f`` inactive
    :math:`\Delta \ge 0`, ``g`` active :math:`\Delta \le d`, ``g`` inactive :math:`\Delta \le
    0`, ``f`` active and ``g`` inactive :math:`\Delta = -z`, the reverse :math:`\Delta = z +
    d`; else :math:`\min(0, d) \le \Delta \le \max(0, d)` with chords over :math:`[\underline
    d, \overline d]`. Second route: :math:`\alpha^g (z + d) - s (z - l) \le \Delta \le s^g (z +
    d - l^g) - \alpha z`.
    """
    act_f, ina_f, act_g, ina_g = lf >= 0, uf <= 0, lg >= 0, ug <= 0
    unst, mid_g = ~(act_f | ina_f), ~(act_g | ina_g)
    s = np.where(unst, _ratio(uf, uf - lf, unst), act_f.astype(float))
    t = np.where(unst, -s * lf, 0.0)
    alpha = np.where(unst, (uf > -lf).astype(float), s)
    sg = np.where(mid_g, _ratio(ug, ug - lg, mid_g), act_g.astype(float))
    tg = np.where(mid_g, -sg * lg, 0.0)
    alpha_g = np.where(mid_g, (ug > -lg).astype(float), sg)
    both = (dl < 0) & (du > 0)
    sl, su = _ratio(-dl, du - dl, both), _ratio(du, du - dl, both)
    zero = np.zeros_like(lf)
    exact_fg, exact_gf = act_f & ina_g, ina_f & act_g  # Delta = -z, Delta = z + d
    # lower: the cases on d
    gen_ld = np.where(dl >= 0, 0.0, np.where(du <= 0, 1.0, sl))
    gen_l0 = np.where(both, -sl * du, 0.0)
    ld = np.where(act_f, 1.0, np.where(ina_f, 0.0, gen_ld))
    l0 = np.where(unst, gen_l0, 0.0)
    lz = zero
    lz = np.where(exact_fg, -1.0, np.where(exact_gf, 1.0, lz))
    ld = np.where(exact_fg, 0.0, np.where(exact_gf, 1.0, ld))
    l0 = np.where(exact_fg | exact_gf, 0.0, l0)
    # upper
    gen_ud = np.where(du <= 0, 0.0, np.where(dl >= 0, 1.0, su))
    gen_u0 = np.where(both, -su * dl, 0.0)
    ud = np.where(act_g, 1.0, np.where(ina_g, 0.0, gen_ud))
    u0 = np.where(mid_g, gen_u0, 0.0)
    uz = np.where(exact_fg, -1.0, np.where(exact_gf, 1.0, zero))
    ud = np.where(exact_fg, 0.0, np.where(exact_gf, 1.0, ud))
    u0 = np.where(exact_fg | exact_gf, 0.0, u0)
    # the second route
    lz = np.where(alt_lo, alpha_g - s, lz)
    ld = np.where(alt_lo, alpha_g, ld)
    l0 = np.where(alt_lo, -t, l0)
    uz = np.where(alt_hi, sg - alpha, uz)
    ud = np.where(alt_hi, sg, ud)
    u0 = np.where(alt_hi, tg, u0)
    mag_a = np.maximum(uf, 0.0)  # a^f in [max(l, 0), max(u, 0)]
    mag_d = np.maximum(np.abs(dl), np.abs(du))
    return Relaxation(alpha, s, t, lz, ld, l0, uz, ud, u0, mag_a, mag_d)


def ragged_difference_bounds(
    f: Network,
    g: Network,
    k: int,
    relax: Sequence[Relaxation],
    lo: np.ndarray,
    hi: np.ndarray,
    mag_x: np.ndarray,
    tol: Tolerances,
    box: np.ndarray,
    neuron: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds of ``d_k[neuron[p]] = z^g_k - z^f_k`` on box ``[lo[box[p]], hi[box[p]]]``
    for each ``p``: :func:`output_bounds` for hidden layer ``k`` (``relax[j]``, ``j < k``),
    each (box, neuron) pair its own two rows, as :mod:`exactcomp.verify.ragged` does for ``f``.

    The forward forms of the difference lose the most where both networks are stable and the
    form's lower and upper functions part (the gap grows by ``|W|`` per layer: on ACAS Xu
    2_1's float16 copy, a box stuck above tol 0.01 had hidden ``d`` bounds 16-30 times the
    sampled widths at layers 3-5); the chords over ``[dl, du]`` then loosen the outputs.
    Returns ``(lower, upper)``, each of shape ``(P,)``.
    """
    lower, upper = np.empty(len(box)), np.empty(len(box))
    for start in range(0, len(box), _CHUNK):
        part = slice(start, start + _CHUNK)
        lower[part], upper[part] = _ragged_difference(
            f, g, k, relax, lo, hi, mag_x, tol, box[part], neuron[part]
        )
    return lower, upper


_CHUNK = 1024  # (box, neuron) pairs substituted together


def _ragged_difference(f, g, k, relax, lo, hi, mag_x, tol, box, neuron):
    p = len(box)
    rows = np.concatenate([box, box])  # rows: upper of d, then upper of -d
    sign = np.concatenate([np.ones(p), -np.ones(p)])[:, None]
    fk, gk = f.layers[k], g.layers[k]
    wg, dw0 = gk.weight[neuron], gk.weight[neuron] - fk.weight[neuron]
    db0 = gk.bias[neuron] - fk.bias[neuron]
    mu = sign * np.concatenate([wg, wg])  # on Delta_{k-1}
    nu = sign * np.concatenate([dw0, dw0])  # on a^f_{k-1}
    const = sign[:, 0] * np.concatenate([db0, db0])
    r = relax[k - 1]
    scale = np.abs(const) + np.einsum("rn,rn->r", np.abs(mu), r.mag_d[rows])
    scale += np.einsum("rn,rn->r", np.abs(nu), r.mag_a[rows])
    for j in range(k - 1, -1, -1):
        r = relax[j]
        mup, mun = np.maximum(mu, 0.0), np.minimum(mu, 0.0)
        nup, nun = np.maximum(nu, 0.0), np.minimum(nu, 0.0)
        lam_z = mup * r.uz[rows] + mun * r.lz[rows] + nup * r.s[rows] + nun * r.alpha[rows]
        lam_d = mup * r.ud[rows] + mun * r.ld[rows]
        const = const + np.einsum("rn,rn->r", mup, r.u0[rows])
        const += np.einsum("rn,rn->r", mun, r.l0[rows]) + np.einsum("rn,rn->r", nup, r.t[rows])
        off = np.maximum(np.abs(r.u0), np.abs(r.l0))[rows]
        scale += np.einsum("rn,rn->r", np.abs(mu), 2 * (r.mag_a + r.mag_d)[rows] + off)
        scale += np.einsum("rn,rn->r", np.abs(nu), (r.mag_a + np.abs(r.t))[rows])
        fj, gj = f.layers[j], g.layers[j]
        dw, db = gj.weight - fj.weight, gj.bias - fj.bias
        const += lam_z @ fj.bias + lam_d @ db
        az, ad = np.abs(lam_z), np.abs(lam_d)
        scale += az @ np.abs(fj.bias) + ad @ np.abs(db)
        # |lam| |W| m, with the matrix times the magnitudes first: per box, not per row
        if j == 0:
            scale += az @ (np.abs(fj.weight) @ mag_x) + ad @ (np.abs(dw) @ mag_x)
            coef = lam_z @ fj.weight + lam_d @ dw  # on x
            break
        below = relax[j - 1]
        used, at = np.unique(rows, return_inverse=True)
        reach_a = (np.abs(fj.weight) @ below.mag_a[used].T).T[at]
        reach_d = (np.abs(dw) @ below.mag_a[used].T).T[at]
        reach_g = (np.abs(gj.weight) @ below.mag_d[used].T).T[at]
        scale += np.einsum("rn,rn->r", az, reach_a) + np.einsum("rn,rn->r", ad, reach_d)
        scale += np.einsum("rn,rn->r", ad, reach_g)
        mu, nu = lam_d @ gj.weight, lam_z @ fj.weight + lam_d @ dw
    c, rad = (lo + hi) / 2, (hi - lo) / 2
    value = np.einsum("rd,rd->r", coef, c[rows]) + np.einsum("rd,rd->r", np.abs(coef), rad[rows])
    value += const
    scale += np.abs(coef) @ mag_x + np.abs(const)
    bound = value + tol.bound_abs + tol.bound_rel * scale
    return -bound[p:], bound[:p]
