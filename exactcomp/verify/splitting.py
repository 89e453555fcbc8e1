r"""Input splitting over differential bounds: prove ``max |g - f| <= tol`` for two *different*
networks of the same architecture (quantised, perturbed or fine-tuned copies).

Bounding ``f`` and ``g`` separately and subtracting loses everything: on a deep network each
side's range is wide, and their difference is tiny. Instead, the difference of each pair of
neurons (neuron ``j`` of layer ``k`` in ``f`` with neuron ``j`` of layer ``k`` in ``g``) is
bounded *directly*, by linear functions of the input (the approach of ReluDiff and NeuroDiff,
Paulsen et al. 2020), and the input box is split until every piece is proven or a concrete input
exceeds the tolerance.

Maths
-----
For a box :math:`B` (a batch of them, vectorised), write :math:`z^f_k, z^g_k` for the
pre-activations of layer ``k``, :math:`a_k = \mathrm{relu}(z_k)` (or :math:`z_k` without ReLU),
:math:`d_k = z^g_k - z^f_k` and :math:`\Delta_k = a^g_k - a^f_k`. Every quantity ``q`` is held as
two affine functions of :math:`x`, :math:`\underline{Q}(x) \le q(x) \le \overline{Q}(x)` on
:math:`B` (*symbolic intervals*), and its concrete bounds are their extremes over :math:`B`.

* **f** (forward, Neurify-style): :math:`z^f_0 = W^f_0 x + b^f_0` exactly; an affine layer maps
  bounds by :math:`W^+ \underline{A} + W^- \overline{A} + b \le W A + b \le W^+ \overline{A} +
  W^- \underline{A} + b`; a ReLU on :math:`[l, u]` is exact when stable and otherwise relaxed by
  :math:`s\,\underline{Z} \le \mathrm{relu}(z) \le s(\overline{Z} - l)`, :math:`s = u / (u - l)`.
  Concrete bounds are intersected with interval arithmetic, with the root box's bounds, and
  from layer :data:`CROWN_FROM` on with back-substitution (CROWN-style, one batched product per
  layer: :mod:`exactcomp.bounds.batched`) for the neurons still unstable on some box: forward
  forms lose the most on deep layers (ACAS Xu 2_2 on a box 1/16 of property 1's, unstable
  neurons per layer: forward 1/4/8/15/40/50, back-substitution 1/4/8/11/22/28, sampled
  1/4/8/8/8/11), and a neuron of ``f`` wrongly unstable loosens the difference as well.
* **g** is not bounded on its own: :math:`z^g \in [l^f + \underline{d}, u^f + \overline{d}]`.
* **The difference**: :math:`d_0 = (W^g_0 - W^f_0) x + (b^g_0 - b^f_0)` exactly, and

  .. math::

      d_{k+1} = W^g_{k+1} \Delta_k + (W^g_{k+1} - W^f_{k+1})\, a^f_k + (b^g_{k+1} - b^f_{k+1}),

  two affine maps of symbolic intervals as above. :math:`\Delta = \mathrm{relu}(z^f + d) -
  \mathrm{relu}(z^f)` lies between :math:`\min(0, d)` and :math:`\max(0, d)` (ReLU is monotone
  and 1-Lipschitz). Exactly: both active :math:`\Delta = d`; both inactive 0; ``f`` inactive and
  ``g`` active :math:`\Delta = z^g = z^f + d`; ``f`` active, ``g`` inactive :math:`\Delta = -z^f`.
  Otherwise, with :math:`d \in [\underline{d}, \overline{d}]`:

  - lower: :math:`\Delta = \max(d, -z^f) \ge d` when ``f`` is active; :math:`\Delta =
    \mathrm{relu}(z^g) \ge 0` when ``f`` is inactive; else :math:`\min(0, d) \ge` 0 if
    :math:`\underline{d} \ge 0`, :math:`d` if :math:`\overline{d} \le 0`, and otherwise the chord
    :math:`\tfrac{-\underline{d}}{\overline{d} - \underline{d}}(d - \overline{d})`;
  - upper: :math:`\Delta = \min(d, z^g) \le d` when ``g`` is active; :math:`\Delta =
    -\mathrm{relu}(z^f) \le 0` when ``g`` is inactive; else :math:`\max(0, d) \le` 0 if
    :math:`\overline{d} \le 0`, :math:`d` if :math:`\underline{d} \ge 0`, and otherwise the chord
    :math:`\tfrac{\overline{d}}{\overline{d} - \underline{d}}(d - \underline{d})`.

  The chords have slopes in :math:`[0, 1]`, so substituting :math:`\underline{D}` (lower) or
  :math:`\overline{D}` (upper) for :math:`d` keeps them sound. A second route bounds
  :math:`\Delta = a^g - a^f` by ``g``'s own relaxation of :math:`z^g = z^f + d` (as for ``f``,
  with :math:`[l^g, u^g]`) minus ``f``'s: :math:`s^g \underline{Z^g} - \overline{A^f} \le
  \Delta \le s^g(\overline{Z^g} - l^g) - \underline{A^f}`; per neuron, the route whose
  concrete bound is tighter is kept. The first shrinks with :math:`d`, the second with the
  neurons' ranges: without it a box around a kink of ``g`` where ``f`` is inactive keeps
  :math:`\Delta \le d` however small it gets, and the bound never reaches the true maximum.
  The difference stays *linear in x* through every layer; what NeuroDiff showed is that this,
  plus splitting, wins.

**Splitting.** A box is *proven* when :math:`-\underline{d}_i \le \tau` and
:math:`\overline{d}_i \le \tau` for every compared output ``i``. Open boxes are split in half,
worst bound first, along the dimension ``j`` maximising :math:`w_j \sum_n |c_{nj}| / (u_n -
l_n)` over the neurons ``n`` unstable in ``f`` (or else in ``g``), ``c_n`` the gradient of its
forms and ``w`` the box widths: the share of the neurons' ranges that each input accounts for
(ties, e.g. no unstable neuron, go by the smear :math:`|c_j| w_j` of the worst output bound).
Splitting by the smear of the output bound alone, or along the widest side, did not prove ACAS
Xu 2_2's float16 copy at tol 0.05 within 15,000 to 48,000 boxes (this rule: 4,073): the
difference is loose because neurons are unstable, not because the output depends on an input.
The centre and the worst corner of each box are evaluated in float64; the caller re-checks the best
one as a counterexample. Proven upper bound: the largest bound over all leaves, open or proven.

Floating point
--------------
Each step that computes a new affine function from old ones (an affine map, a relaxation, a
sum) pads its constant outwards by ``bound_abs + bound_rel * S``, where ``S`` bounds the sum of
the absolute values of the terms at any point of the *root* box (for an affine map,
:math:`|W|(T(\underline{A}) + T(\overline{A})) + |b|` with :math:`T(A) = |A_x| |x|_{\max} +
|A_0|`); every concretisation is padded the same way. Float64 rounding of one step is at most
``(n + 4) 2^-53`` relative to ``S``, far below ``bound_rel`` (``1e-9``); see
:mod:`exactcomp.bounds.linear`, which pads the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.batched import batched_layer_bounds, static_pad
from ..bounds.linear import linear_bounds
from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances

CROWN_FROM = 2  # back-substitution bounds f's layers from this one on (1, 2: equal; 3, 4: worse)
BATCH = 2048  # boxes split per step (each gives two children, evaluated together)


@dataclass(frozen=True)
class SplitOutcome:
    """What input splitting established on a box.

    ``bounds[(i, s)]`` is a proven upper bound on ``s (f_i - g_i)`` over the whole box (the
    objectives of :mod:`exactcomp.verify.equivalence`); ``proven`` says every one is ``<= tol``.
    ``x`` holds the inputs with the largest float64 difference seen (best first), for the
    caller to re-check as counterexamples; ``lower`` is that difference. ``nodes`` counts the
    boxes bounded, ``splits`` the boxes split, ``open`` the leaves left unproven.
    """

    bounds: dict[tuple[int, float], float]
    proven: bool
    x: np.ndarray
    lower: float
    nodes: int
    splits: int
    open: int
    reason: str


def comparable(f: Network, g: Network) -> bool:
    """True when ``f`` and ``g`` have layer-wise the same shapes and ReLUs (the pairing used)."""
    return len(f.layers) == len(g.layers) and all(
        a.weight.shape == b.weight.shape and a.relu == b.relu
        for a, b in zip(f.layers, g.layers, strict=True)
    )


def paired(f: Network, g: Network, points: np.ndarray, rel: float = 0.25) -> bool:
    """Whether pairing neuron ``j`` of layer ``k`` in ``f`` with the same in ``g`` looks right.

    A heuristic for whether splitting is worth *trying* (soundness never depends on it): on the
    sampled ``points``, every paired pre-activation must differ by at most ``rel`` times the
    size of ``f``'s neuron there (its range plus its largest magnitude). A quantised or fine-tuned copy passes; a permuted or
    rescaled copy (whose differences are as wide as the neurons) does not.
    """
    if not comparable(f, g):
        return False
    for zf, zg in zip(f.preactivations(points)[:-1], g.preactivations(points)[:-1], strict=True):
        scale = zf.max(axis=0) - zf.min(axis=0) + np.abs(zf).max(axis=0)
        if (np.abs(zg - zf).max(axis=0) > rel * scale).any():
            return False
    return True


# ---------------------------------------------------------------------------- affine forms
# A batch of affine functions of x is an array E of shape (N, d + 1, n): E[:, :d, j] are the
# coefficients of function j on box N, E[:, d, j] its constant.


class _Forms:
    """Concretisation and padding helpers for one batch of boxes."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, mag: np.ndarray, tol: Tolerances):
        self.c, self.r = (lo + hi) / 2, (hi - lo) / 2
        self.mag = mag  # max |x| over the root box, per input (d,)
        self.d, self.tol = lo.shape[1], tol

    def size(self, e: np.ndarray) -> np.ndarray:
        """``T(E)``: the largest sum of absolute terms of each function over the root box."""
        return np.einsum("d,ndk->nk", self.mag, np.abs(e[:, : self.d])) + np.abs(e[:, self.d])

    def pad(self, scale: np.ndarray) -> np.ndarray:
        return self.tol.bound_abs + self.tol.bound_rel * scale

    def low(self, e: np.ndarray) -> np.ndarray:
        """Sound minimum of each function over its box."""
        d = self.d
        mid = np.einsum("nd,ndk->nk", self.c, e[:, :d]) + e[:, d]
        rad = np.einsum("nd,ndk->nk", self.r, np.abs(e[:, :d]))
        return mid - rad - self.pad(self.size(e))

    def high(self, e: np.ndarray) -> np.ndarray:
        return -self.low(-e)

    def affine(self, w, b, lo_e, up_e) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``W a + b`` from ``lo_e <= a <= up_e``, padded."""
        m, r = (lo_e + up_e) / 2, (up_e - lo_e) / 2
        mid, rad = m @ w.T, r @ np.abs(w).T
        scale = (self.size(lo_e) + self.size(up_e)) @ np.abs(w).T + np.abs(b)
        mid[:, self.d] += b
        lo_n, up_n = mid - rad, mid + rad
        p = self.pad(scale)
        lo_n[:, self.d] -= p
        up_n[:, self.d] += p
        return lo_n, up_n


def _interval(w, b, lo, hi, tol: Tolerances) -> tuple[np.ndarray, np.ndarray]:
    """Interval arithmetic for a batch: ``lo, hi`` of shape (N, n)."""
    m, r = (lo + hi) / 2, (hi - lo) / 2
    mid, rad = m @ w.T + b, r @ np.abs(w).T
    p = tol.bound_abs + tol.bound_rel * (np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(w).T + abs(b))
    return mid - rad - p, mid + rad + p


def _where(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per function (last axis) choice between two batches of affine forms."""
    return np.where(mask[:, None, :], a, b)


def _scaled(e: np.ndarray, s: np.ndarray, shift: np.ndarray, forms: _Forms) -> np.ndarray:
    """``s (E - shift)`` per function, unpadded (the caller pads)."""
    out = e * s[:, None, :]
    out[:, forms.d] -= s * shift
    return out


@dataclass(frozen=True)
class _Bounds:
    """Output difference bounds of a batch: concrete ``lo, hi`` (N, m) and their forms."""

    lo: np.ndarray
    hi: np.ndarray
    lo_e: np.ndarray
    hi_e: np.ndarray
    unstable: np.ndarray  # (N, d): sum over f's unstable neurons of |dz/dx_j| / (u - l)


@dataclass(frozen=True, eq=False)
class Pair:
    """Two comparable networks on a root box, with what every sub-box reuses.

    ``root`` are sound bounds of ``f``'s pre-activations on the root box (each sub-box's
    bounds are intersected with them, so their magnitudes bound every sub-box's); ``pads`` the
    rounding pads of the batched back-substitution, layer by layer (:func:`static_pad`).
    """

    f: Network
    g: Network
    outputs: tuple[int, ...]
    mag: np.ndarray
    root: tuple[tuple[np.ndarray, np.ndarray], ...]
    pads: dict[int, np.ndarray]
    tol: Tolerances

    @classmethod
    def prepare(
        cls, f: Network, g: Network, box: Box, outputs: Sequence[int], tol: Tolerances = DEFAULT
    ) -> Pair:
        root = tuple(linear_bounds(f, box, tol=tol))
        mag = np.maximum(np.abs(box.lower), np.abs(box.upper))
        last = len(f.layers) - 1
        pads = {k: static_pad(f, k, root, mag, tol) for k in range(CROWN_FROM, last)}
        return cls(f, g, tuple(outputs), mag, root, pads, tol)


def difference_bounds(pair: Pair, lo: np.ndarray, hi: np.ndarray) -> _Bounds:
    """Sound bounds of ``g_i - f_i`` (``i`` in ``pair.outputs``) on each box ``[lo[n], hi[n]]``
    (boxes inside the root box). See the module docstring."""
    f, g, outputs, mag, tol = pair.f, pair.g, pair.outputs, pair.mag, pair.tol
    forms = _Forms(lo, hi, mag, tol)
    n_box, d = lo.shape
    eye = np.zeros((n_box, d + 1, d))
    eye[:, np.arange(d), np.arange(d)] = 1.0
    x_lo = x_hi = eye  # the input itself: x <= x <= x
    smear = np.zeros((n_box, d))
    pre_f: list[tuple[np.ndarray, np.ndarray]] = []  # concrete bounds of f's layers
    dl_e = dh_e = eye  # bounds of the post-activation difference (set after layer 0)
    cur_lo, cur_hi = lo, hi  # concrete bounds of a^f
    last = len(f.layers) - 1
    zero = None
    for k, (lf_, lg_) in enumerate(zip(f.layers, g.layers, strict=True)):
        rows = list(outputs) if k == last else slice(None)
        wf, bf = lf_.weight[rows], lf_.bias[rows]
        wg, bg = lg_.weight[rows], lg_.bias[rows]
        dw, db = wg - wf, bg - bf
        # f's pre-activation
        zf_lo, zf_hi = forms.affine(wf, bf, x_lo, x_hi)
        il, ih = _interval(wf, bf, cur_lo, cur_hi, tol)
        lf, uf = np.maximum(forms.low(zf_lo), il), np.minimum(forms.high(zf_hi), ih)
        if k in pair.pads:  # back-substitution where a neuron is still unstable
            need = (lf < 0) & (uf > 0)
            boxes = np.flatnonzero(need.any(axis=1))
            cols = np.flatnonzero(need[boxes].any(axis=0))
            if len(boxes):
                sub = [(pl[boxes], ph[boxes]) for pl, ph in pre_f]
                cl, cu = batched_layer_bounds(f, k, lo[boxes], hi[boxes], sub, pair.pads[k], cols)
                at = np.ix_(boxes, cols)
                lf[at], uf[at] = np.maximum(lf[at], cl), np.minimum(uf[at], cu)
        if k < last:
            lf, uf = np.maximum(lf, pair.root[k][0]), np.minimum(uf, pair.root[k][1])
        pre_f.append((lf, uf))
        # the difference
        if k == 0:
            d_lo, d_hi = forms.affine(dw, db, eye, eye)
        else:
            a_lo, a_hi = forms.affine(wg, np.zeros_like(bg), dl_e, dh_e)
            b_lo, b_hi = forms.affine(dw, db, x_lo, x_hi)
            d_lo, d_hi = a_lo + b_lo, a_hi + b_hi
            p = forms.pad(forms.size(d_lo) + forms.size(d_hi))
            d_lo[:, d] -= p
            d_hi[:, d] += p
        if k == last:
            return _Bounds(forms.low(d_lo), forms.high(d_hi), d_lo, d_hi, smear)
        dl, du = forms.low(d_lo), forms.high(d_hi)
        if not lf_.relu:
            x_lo, x_hi, cur_lo, cur_hi = zf_lo, zf_hi, lf, uf
            dl_e, dh_e = d_lo, d_hi
            continue
        slack = forms.pad(np.abs(lf) + np.abs(uf) + np.abs(dl) + np.abs(du))
        lg, ug = lf + dl - slack, uf + du + slack
        if zero is None or zero.shape != zf_lo.shape:
            zero = np.zeros_like(zf_lo)
        # f after its ReLU
        act_f, ina_f = lf >= 0, uf <= 0
        act_g, ina_g = lg >= 0, ug <= 0
        unst = ~(act_f | ina_f)
        # splitting heuristic: each neuron unstable in f (or else in g) contributes the share
        # of its range due to each input (z^g is close to z^f: f's gradient serves for both)
        unst_g = ~(act_g | ina_g) & ~unst
        inv = np.where(unst, 1.0 / np.where(unst, uf - lf, 1.0), 0.0)
        inv += np.where(unst_g, 1.0 / np.where(unst_g, ug - lg, 1.0), 0.0)
        grad = np.abs(zf_lo[:, :d] + zf_hi[:, :d]) / 2  # (N, d, n)
        smear += np.einsum("ndk,nk->nd", grad, inv)
        s = np.where(unst, uf / np.where(unst, uf - lf, 1.0), act_f.astype(float))
        h_hi = _scaled(zf_hi, s, np.where(unst, lf, 0.0), forms)
        h_lo = zf_lo * s[:, None, :]
        p = forms.pad(s * (forms.size(zf_hi) + forms.size(zf_lo) + np.abs(lf)))
        h_lo[:, d] -= p
        h_hi[:, d] += p
        # the post-activation difference
        both = (dl < 0) & (du > 0)
        sl = np.where(both, -dl / np.where(both, du - dl, 1.0), 0.0)
        su = np.where(both, du / np.where(both, du - dl, 1.0), 0.0)
        chord_lo = _scaled(d_lo, sl, du, forms)
        chord_hi = _scaled(d_hi, su, dl, forms)
        gen_lo = _where(dl >= 0, zero, _where(du <= 0, d_lo, chord_lo))
        gen_hi = _where(du <= 0, zero, _where(dl >= 0, d_hi, chord_hi))
        lo_e = _where(act_f, d_lo, _where(ina_f, zero, gen_lo))
        hi_e = _where(act_g, d_hi, _where(ina_g, zero, gen_hi))
        # exact cases
        lo_e = _where(act_f & ina_g, -zf_hi, _where(ina_f & act_g, zf_lo + d_lo, lo_e))
        hi_e = _where(act_f & ina_g, -zf_lo, _where(ina_f & act_g, zf_hi + d_hi, hi_e))
        # the other route: bounds of a^g (g's own relaxation, z^g = z^f + d) minus those of
        # a^f; it shrinks with g's range where the one above shrinks only with d's
        mid_g = ~(act_g | ina_g)
        sg = np.where(mid_g, ug / np.where(mid_g, ug - lg, 1.0), act_g.astype(float))
        alt_hi = _scaled(zf_hi + d_hi, sg, np.where(mid_g, lg, 0.0), forms) - h_lo
        alt_lo = (zf_lo + d_lo) * sg[:, None, :] - h_hi
        p = forms.pad(
            forms.size(zf_lo)
            + forms.size(zf_hi)
            + forms.size(d_lo)
            + forms.size(d_hi)
            + forms.size(h_lo)
            + forms.size(h_hi)
            + np.abs(dl)
            + np.abs(du)
            + np.abs(lg)
        )
        lo_e[:, d] -= p
        hi_e[:, d] += p
        alt_lo[:, d] -= p
        alt_hi[:, d] += p
        lo_e = _where(forms.low(alt_lo) > forms.low(lo_e), alt_lo, lo_e)
        hi_e = _where(forms.high(alt_hi) < forms.high(hi_e), alt_hi, hi_e)
        dl_e, dh_e = lo_e, hi_e
        x_lo, x_hi = h_lo, h_hi
        cur_lo, cur_hi = np.maximum(lf, 0.0), np.maximum(uf, 0.0)
    raise AssertionError("unreachable: the last layer returns")  # pragma: no cover


def split_verify(
    f: Network,
    g: Network,
    box: Box,
    outputs: Sequence[int],
    tol: float,
    deadline: float,
    max_nodes: int = 2_000_000,
    tolerances: Tolerances = DEFAULT,
) -> SplitOutcome:
    """Bound ``max_x s (f_i(x) - g_i(x))`` for every ``i`` in ``outputs`` by input splitting.

    Stops when every leaf is proven ``<= tol``, when a float64 difference above ``tol`` is seen
    (the points are returned for re-checking), or at ``deadline`` (``time.perf_counter``) or
    ``max_nodes`` boxes bounded. Requires :func:`comparable` networks.
    """
    outputs = list(outputs)
    m = len(outputs)
    pair = Pair.prepare(f, g, box, outputs, tolerances)
    closed = np.full((m, 2), -np.inf)  # max over proven leaves
    pool = _Pool(box.dim, m)  # the open leaves
    best_d, best_x = 0.0, box.center[None, :]
    nodes = splits = 0

    def bound(lo, hi, parent):
        b = difference_bounds(pair, lo, hi)
        w = np.minimum(np.stack([-b.lo, b.hi], axis=2), parent)  # (N, m, 2)
        flat = w.reshape(len(lo), -1)
        arg = flat.argmax(axis=1)
        rows = np.arange(len(lo))
        i_out, side = np.divmod(arg, 2)
        coef = np.where((side == 1)[:, None], b.hi_e[rows, :-1, i_out], -b.lo_e[rows, :-1, i_out])
        score = b.unstable + 1e-9 * np.abs(coef)  # per input, times the width: the split rule
        return w, flat[rows, arg], coef, score

    lo, hi = box.lower[None, :].copy(), box.upper[None, :].copy()
    w, key, coef, score = bound(lo, hi, np.full((1, m, 2), np.inf))
    nodes += 1
    while True:
        # concrete points: each centre and the corner maximising the worst bound
        pts = np.concatenate([(lo + hi) / 2, np.where(coef > 0, hi, lo)])
        diff = np.abs(f.forward(pts)[:, outputs] - g.forward(pts)[:, outputs]).max(axis=1)
        if diff.max() > best_d:
            best_d, best_x = float(diff.max()), pts[np.argsort(-diff)[:8]]
        if best_d > tol:
            inf = np.full((m, 2), np.inf)
            return _outcome(
                outputs,
                inf,
                False,
                best_x,
                best_d,
                nodes,
                splits,
                pool.size + len(lo),
                "a sampled input exceeds tol",
            )
        done = key <= tol
        if done.any():
            closed = np.maximum(closed, w[done].max(axis=0))
        pool.add(lo[~done], hi[~done], w[~done], score[~done], key[~done])
        if pool.size == 0:
            return _outcome(
                outputs, closed, True, best_x, best_d, nodes, splits, 0, "every box proven"
            )
        if time.perf_counter() > deadline or nodes >= max_nodes:
            upper = np.maximum(closed, pool.w.max(axis=0))
            why = "time limit" if nodes < max_nodes else "node limit"
            return _outcome(outputs, upper, False, best_x, best_d, nodes, splits, pool.size, why)
        plo, phi, pw, pscore = pool.take(BATCH)
        splits += len(plo)
        width = phi - plo
        dim = (pscore * width + 1e-12 * width).argmax(axis=1)
        lo, hi, parent = _halves(plo, phi, pw, dim)
        w, key, coef, score = bound(lo, hi, parent)
        nodes += len(lo)


def _halves(lo, hi, w, dim):
    """The two halves of each box along its ``dim`` (rows ``2 b`` and ``2 b + 1``), each
    inheriting its parent's bounds ``w``."""
    r = np.arange(len(lo))
    mid = (lo[r, dim] + hi[r, dim]) / 2
    left_hi, right_lo = hi.copy(), lo.copy()
    left_hi[r, dim] = mid
    right_lo[r, dim] = mid
    out_lo = np.stack([lo, right_lo], axis=1).reshape(2 * len(lo), -1)
    out_hi = np.stack([left_hi, hi], axis=1).reshape(2 * len(lo), -1)
    return out_lo, out_hi, np.repeat(w, 2, axis=0)


class _Pool:
    """The open leaves: boxes, their bounds (N, m, 2), worst-bound scoreficients and keys."""

    def __init__(self, d: int, m: int) -> None:
        self.lo, self.hi = np.zeros((0, d)), np.zeros((0, d))
        self.w, self.score, self.key = np.zeros((0, m, 2)), np.zeros((0, d)), np.zeros(0)

    @property
    def size(self) -> int:
        return len(self.key)

    def add(self, lo, hi, w, score, key) -> None:
        self.lo, self.hi = np.concatenate([self.lo, lo]), np.concatenate([self.hi, hi])
        self.w, self.score = np.concatenate([self.w, w]), np.concatenate([self.score, score])
        self.key = np.concatenate([self.key, key])

    def take(self, n: int):
        """Remove and return the ``n`` boxes with the largest keys (all when fewer)."""
        if self.size <= n:
            idx = np.arange(self.size)
        else:
            idx = np.argpartition(-self.key, n)[:n]
        keep = np.ones(self.size, dtype=bool)
        keep[idx] = False
        out = self.lo[idx], self.hi[idx], self.w[idx], self.score[idx]
        self.lo, self.hi, self.w = self.lo[keep], self.hi[keep], self.w[keep]
        self.score, self.key = self.score[keep], self.key[keep]
        return out


def _outcome(outputs, upper, proven, x, lower, nodes, splits, open_, reason) -> SplitOutcome:
    bounds = {
        (i, s): float(upper[n, 0 if s > 0 else 1])
        for n, i in enumerate(outputs)
        for s in (1.0, -1.0)
    }
    return SplitOutcome(bounds, proven, x, lower, nodes, splits, open_, reason)
