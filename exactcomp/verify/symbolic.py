r"""Differential bounds of two paired networks on many boxes at once, linear in the input.

Two networks ``f`` and ``g`` of the same architecture (a quantised, perturbed or fine-tuned copy),
neuron ``j`` of layer ``k`` in ``f`` paired with neuron ``j`` of layer ``k`` in ``g``: the
difference of each pair is bounded *directly*, by affine functions of the input (the approach of
ReluDiff and NeuroDiff, Paulsen et al. 2020), on a batch of boxes (numpy, vectorised). Input
splitting (:mod:`exactcomp.verify.splitting`) calls it on thousands of sub-boxes.

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
  :math:`\alpha\,\underline{Z} \le \mathrm{relu}(z) \le s(\overline{Z} - l)`, :math:`s = u / (u - l)`,
  :math:`\alpha = 1` if :math:`u > -l` else 0 (CROWN's choice; 10% fewer boxes on ACAS Xu than
  Neurify's :math:`\alpha = s`).
  Concrete bounds are intersected with interval arithmetic, with the root box's bounds, and
  from layer :data:`~exactcomp.verify.pairs.CROWN_FROM` on with back-substitution
  (CROWN-style, one matrix product per layer over all rows: :mod:`exactcomp.verify.ragged`),
  on each box for the neurons that may
  be unstable in ``f`` (:math:`l < 0 < u`) or in ``g`` (:math:`l + \underline d < 0 < u +
  \overline d`) *on that box*: forward
  forms lose the most on deep layers (ACAS Xu 2_2 on a box 1/16 of property 1's, unstable
  neurons per layer: forward 1/4/8/15/40/50, back-substitution 1/4/8/11/22/28, sampled
  1/4/8/8/8/11), and a neuron of ``f`` wrongly unstable loosens the difference as well.
  Bounding the union of the boxes' unstable neurons on every box cost 58% of the time (ACAS
  Xu 4_9); bounding ``f``'s unstable neurons alone doubled the boxes needed (3_3: 4,279 ->
  9,365), since a tighter bound of a neuron stable in ``f`` can make ``g``'s stable too.
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
  The difference stays *linear in x* through every layer: with splitting, NeuroDiff's win.

Tighter chords
--------------
A chord is only needed where the *form* it is applied to crosses 0. For the upper form
:math:`\overline{Z}` of :math:`z \in [l, u]`: with :math:`t' = \min(\overline{Z}(x), u)`,
:math:`\mathrm{relu}(z) \le \mathrm{relu}(t')` and :math:`t' \in [l^*, u]`, :math:`l^* =
\max(l, \min_B \overline{Z})`, so the chord over :math:`[l^*, u]` (increasing) evaluated at
:math:`\overline{Z}(x) \ge t'` is a bound, tighter than the chord over :math:`[l, u]`
(NeuroDiff's "upper's lower"). The same holds for :math:`\max(0, d)` with
:math:`\overline{D}`, for ``g``'s chord with :math:`\overline{Z^f} + \overline{D}`, and
mirrored for :math:`\min(0, d) \ge` the chord over :math:`[\underline{d}, \min(\overline{d},
\max_B \underline{D})]` at :math:`\underline{D}`. These chords hold for the forms only: the
back-substitution (:mod:`exactcomp.verify.backward`), whose variables are the neurons
themselves, uses the chords over the concrete bounds. ``g``'s bounds are also taken from
:math:`\underline{Z^f} + \underline{D}` concretised as one form where that is tighter than
:math:`l + \underline{d}`.

Output bounds and sub-boxes
---------------------------
The compared outputs are bounded by the forward forms and by back-substitution through both
networks with the per-box relaxations (:mod:`exactcomp.verify.backward`), the tighter kept:
on ACAS Xu 3_3's float16 copy (property 1, output 0) the root bound drops from 327 to 188 and
the boxes needed at tol 0.05 from more than 49,000 (not proven in 60 s) to 4,429. A sub-box also inherits its parent's bounds of every hidden ``z^f`` and
``d`` (``known``; monotone refinement: both hold on the sub-box), before the neurons needing
back-substitution are chosen.

Hidden differences, too, are back-substituted through both networks from layer
:data:`DIFF_FROM` on, per box for the neurons that may be unstable in ``f`` or ``g`` on it
(:func:`exactcomp.verify.backward.ragged_difference_bounds`), before the layer's relaxations
are built: the forward forms of ``d`` part by ``|W|`` times their gap at every layer even where
both networks are stable, and the chords over a loose ``[dl, du]`` then loosen the outputs
however small the box (ACAS Xu 2_1's float16 copy at tol 0.01, a stuck box: ``d`` bounds 16-30
times the sampled widths at layers 3-5, output bound 0.0145 against a true 0.0017). With it,
NeuroDiff's question at eps 0.01 needs 465 boxes on 2_1 (not proven in 150,000 before), 1,133 on
4_2 and 14,239 on 3_3 (neither proven in 100,000 before).

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
from dataclasses import fields

import numpy as np

from ..bounds.interval import interval_rows
from ..bounds.linear import check_end
from ..bounds.linear import relu_relaxation as crown_relaxation
from .backward import Relaxation, output_bounds, ragged_difference_bounds, relu_relaxation
from .forms import Forms, choose, scaled
from .pairs import DifferenceBounds, Pair
from .ragged import ragged_layer_bounds

BACKWARD = True  # also bound the outputs by back-substitution (exactcomp.verify.backward)
CHUNK = 256  # boxes bounded together: their forms stay in the CPU's cache
DIFF_FROM = 2  # the hidden differences are back-substituted from this layer on (1: the same)


def difference_bounds(
    pair: Pair, lo: np.ndarray, hi: np.ndarray, known: np.ndarray | None = None
) -> DifferenceBounds:
    """Sound bounds of ``g_i - f_i`` on each box; see :func:`_difference_bounds`, run on
    :data:`CHUNK` boxes at a time (the same bounds: each box is bounded on its own)."""
    if len(lo) <= CHUNK:
        return _difference_bounds(pair, lo, hi, known)
    parts = [
        _difference_bounds(
            pair,
            lo[i : i + CHUNK],
            hi[i : i + CHUNK],
            None if known is None else known[i : i + CHUNK],
        )
        for i in range(0, len(lo), CHUNK)
    ]
    return DifferenceBounds(
        *(np.concatenate([getattr(b, f.name) for b in parts]) for f in fields(DifferenceBounds))
    )


def _difference_bounds(
    pair: Pair, lo: np.ndarray, hi: np.ndarray, known: np.ndarray | None = None
) -> DifferenceBounds:
    """Sound bounds of ``g_i - f_i`` (``i`` in ``pair.outputs``) on each box ``[lo[n], hi[n]]``
    (boxes inside the root box). See the module docstring.

    ``known``: the ``inner`` bounds of boxes that contain these (a parent's, repeated per
    child); they are intersected in (monotone refinement), before deciding which neurons
    need back-substitution."""
    f, g, outputs, mag, tol = pair.f, pair.g, pair.outputs, pair.mag, pair.tol
    forms = Forms(lo, hi, mag, tol)
    n_box, d = lo.shape
    # forms of a^f and of the post-activation difference, set by each hidden layer (layer 0
    # maps the input itself, x <= x <= x: Forms.of_input)
    x_lo = x_hi = dl_e = dh_e = np.zeros((n_box, d + 1, 0))
    smear = np.zeros((n_box, d))
    crown: list[tuple[np.ndarray, ...]] = []  # f's relaxations, for back-substitution
    cur_lo, cur_hi = lo, hi  # concrete bounds of a^f
    last = len(f.layers) - 1
    zero = None
    inner: list[np.ndarray] = []  # what children inherit (DifferenceBounds.inner)
    pos = 0  # where this layer's bounds start in ``known``
    relax: list[Relaxation] = []  # per hidden layer, for the back-substitution
    # the work before layer k: its products' sizes (layer 0's forms are its weights, no product)
    work = np.cumsum([0, 0] + [la.weight.size for la in f.layers[1:]])
    begun = time.perf_counter()
    for k, (lf_, lg_) in enumerate(zip(f.layers, g.layers, strict=True)):
        check_end(pair.end if k else None, begun, work[k] / max(work[-1], 1))  # between layers
        rows = list(outputs) if k == last else slice(None)
        wf, bf = lf_.weight[rows], lf_.bias[rows]
        wg, bg = lg_.weight[rows], lg_.bias[rows]
        dw, db = wg - wf, bg - bf
        # f's pre-activation
        zf_lo, zf_hi = forms.of_input(wf, bf) if k == 0 else forms.affine(wf, bf, x_lo, x_hi)
        il, ih = interval_rows(wf, bf, cur_lo, cur_hi, tol)
        lf, uf = np.maximum(forms.low(zf_lo), il), np.minimum(forms.high(zf_hi), ih)
        width = lf.shape[1]
        if known is not None and k < last:
            lf = np.maximum(lf, known[:, pos : pos + width])
            uf = np.minimum(uf, known[:, pos + width : pos + 2 * width])
        # the difference
        if k == 0:
            d_lo, d_hi = forms.of_input(dw, db)
        else:
            a_lo, a_hi = forms.affine(wg, np.zeros_like(bg), dl_e, dh_e)
            b_lo, b_hi = forms.affine(dw, db, x_lo, x_hi)
            d_lo, d_hi = a_lo + b_lo, a_hi + b_hi
            p = forms.pad(forms.size(d_lo) + forms.size(d_hi))
            d_lo[:, d] -= p
            d_hi[:, d] += p
        if k == last:
            out_lo, out_hi = forms.low(d_lo), forms.high(d_hi)
            if relax and BACKWARD:
                b_lo, b_hi = output_bounds(f, g, outputs, relax, lo, hi, mag, tol)
                out_lo, out_hi = np.maximum(out_lo, b_lo), np.minimum(out_hi, b_hi)
            kept = np.concatenate(inner, axis=1) if inner else np.zeros((n_box, 0))
            return DifferenceBounds(out_lo, out_hi, d_lo, d_hi, smear, kept)
        dl, du = forms.low(d_lo), forms.high(d_hi)
        if known is not None:
            dl = np.maximum(dl, known[:, pos + 2 * width : pos + 3 * width])
            du = np.minimum(du, known[:, pos + 3 * width : pos + 4 * width])
        if k in pair.pads:  # back-substitution, per box, where f or g may be unstable
            at = np.nonzero(((lf < 0) & (uf > 0)) | ((lf + dl < 0) & (uf + du > 0)))
            if len(at[0]):
                cl, cu = ragged_layer_bounds(f, k, lo, hi, crown, at[0], at[1], pair.pads[k])
                lf[at], uf[at] = np.maximum(lf[at], cl), np.minimum(uf[at], cu)
        if DIFF_FROM <= k < last:  # the difference itself, where a chord over [dl, du] is used
            at = np.nonzero(((lf < 0) & (uf > 0)) | ((lf + dl < 0) & (uf + du > 0)))
            if len(at[0]):
                bl, bu = ragged_difference_bounds(f, g, k, relax, lo, hi, mag, tol, *at)
                dl[at], du[at] = np.maximum(dl[at], bl), np.minimum(du[at], bu)
        if k < last:
            lf, uf = np.maximum(lf, pair.root[k][0]), np.minimum(uf, pair.root[k][1])
            crown.append(crown_relaxation(lf, uf, relu=lf_.relu))
        inner += [lf, uf, dl, du]
        pos += 4 * width
        if not lf_.relu:
            relax.append(Relaxation.linear(lf, uf, dl, du))
            x_lo, x_hi, cur_lo, cur_hi = zf_lo, zf_hi, lf, uf
            dl_e, dh_e = d_lo, d_hi
            continue
        slack = forms.pad(np.abs(lf) + np.abs(uf) + np.abs(dl) + np.abs(du))
        lg, ug = lf + dl - slack, uf + du + slack
        # g's own forms z^f + d, concretised together, are tighter where d is loose
        lg = np.maximum(lg, forms.low(zf_lo + d_lo) - slack)
        ug = np.minimum(ug, forms.high(zf_hi + d_hi) + slack)
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
        # the chord of the upper form over [max(l, min Z_hi), u] (see "Tighter chords")
        lf_c = np.minimum(np.maximum(lf, forms.low(zf_hi)), 0.0)
        s = np.where(unst, uf / np.where(unst, uf - lf_c, 1.0), act_f.astype(float))
        h_hi = scaled(zf_hi, s, np.where(unst, lf_c, 0.0), forms)
        alpha = np.where(unst, (uf > -lf).astype(float), s)  # lower slope: CROWN's choice
        h_lo = zf_lo * alpha[:, None, :]
        p = forms.pad(np.maximum(s, alpha) * (forms.size(zf_hi) + forms.size(zf_lo) + np.abs(lf)))
        h_lo[:, d] -= p
        h_hi[:, d] += p
        # the post-activation difference
        # min(0, d) >= chord of the lower form over [dl, min(du, max D_lo)]; max(0, d) <=
        # chord of the upper form over [max(dl, min D_hi), du] (see "Tighter chords")
        du_l = np.maximum(np.minimum(du, forms.high(d_lo)), dl)
        dl_u = np.minimum(np.maximum(dl, forms.low(d_hi)), du)
        both_l, both_u = (dl < 0) & (du_l > 0), (dl_u < 0) & (du > 0)
        sl = np.where(both_l, -dl / np.where(both_l, du_l - dl, 1.0), 0.0)
        su = np.where(both_u, du / np.where(both_u, du - dl_u, 1.0), 0.0)
        chord_lo = scaled(d_lo, sl, du_l, forms)
        chord_hi = scaled(d_hi, su, dl_u, forms)
        gen_lo = choose(dl >= 0, zero, choose(du_l <= 0, d_lo, chord_lo))
        gen_hi = choose(du <= 0, zero, choose(dl_u >= 0, d_hi, chord_hi))
        lo_e = choose(act_f, d_lo, choose(ina_f, zero, gen_lo))
        hi_e = choose(act_g, d_hi, choose(ina_g, zero, gen_hi))
        # exact cases
        lo_e = choose(act_f & ina_g, -zf_hi, choose(ina_f & act_g, zf_lo + d_lo, lo_e))
        hi_e = choose(act_f & ina_g, -zf_lo, choose(ina_f & act_g, zf_hi + d_hi, hi_e))
        # the other route: bounds of a^g (g's own relaxation, z^g = z^f + d) minus those of
        # a^f; it shrinks with g's range where the one above shrinks only with d's
        mid_g = ~(act_g | ina_g)
        zg_hi = zf_hi + d_hi
        lg_c = np.minimum(np.maximum(lg, forms.low(zg_hi)), 0.0)
        sg = np.where(mid_g, ug / np.where(mid_g, ug - lg_c, 1.0), act_g.astype(float))
        alt_hi = scaled(zg_hi, sg, np.where(mid_g, lg_c, 0.0), forms) - h_lo
        alpha_g = np.where(mid_g, (ug > -lg).astype(float), sg)
        alt_lo = (zf_lo + d_lo) * alpha_g[:, None, :] - h_hi
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
        use_lo = forms.low(alt_lo) > forms.low(lo_e)
        use_hi = forms.high(alt_hi) < forms.high(hi_e)
        relax.append(relu_relaxation(lf, uf, dl, du, lg, ug, use_lo, use_hi))
        lo_e = choose(use_lo, alt_lo, lo_e)
        hi_e = choose(use_hi, alt_hi, hi_e)
        dl_e, dh_e = lo_e, hi_e
        x_lo, x_hi = h_lo, h_hi
        cur_lo, cur_hi = np.maximum(lf, 0.0), np.maximum(uf, 0.0)
    raise AssertionError("unreachable: the last layer returns")  # pragma: no cover
