"""Passes that rely on proven stability verdicts: true on the domain only.

Only INACTIVE and ACTIVE verdicts are used; an UNSTABLE or UNDECIDED neuron is never
touched here. Output units (the last layer) are never removed.
"""

from __future__ import annotations

import numpy as np

from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import Verdict
from .algebra import linear_basis
from .editor import Editor, PassResult, finite
from .record import Fold, Reason
from .state import RewriteState


def remove_inactive(net: Network, state: RewriteState, tol: Tolerances = DEFAULT) -> PassResult:
    """Remove every hidden neuron proven stably inactive.

    If ``max z_j <= 0`` on the domain then ``h_j = relu(z_j) = 0`` there, so row ``j`` of
    ``W_k``/``b_k`` and column ``j`` of ``W_{k+1}`` can go: the next layer's pre-activation
    ``W_{k+1} h_k + b_{k+1}`` does not change. An INACTIVE *output* unit (a ReLU on the last
    layer) cannot go; its row and bias are set to 0 instead (``relu(0) = 0``), so that the
    neurons only it read become dead. ``tol`` is unused (uniform pass signature).
    """
    ed = Editor("remove_inactive", net, state)
    for k in range(ed.depth - 1):
        if not ed.relu[k]:
            continue
        for j in np.flatnonzero(state.layers[k].mask(Verdict.INACTIVE)):
            ed.remove(k, int(j), Reason.INACTIVE, ed.proof_of(k, int(j)))
    last = ed.depth - 1
    if ed.relu[last]:
        for j in np.flatnonzero(state.layers[last].mask(Verdict.INACTIVE)):
            if np.any(ed.weights[last][j] != 0.0) or ed.biases[last][j] != 0.0:
                ed.zero_output(int(j))
    return ed.finish()


def fold_active(net: Network, state: RewriteState, tol: Tolerances = DEFAULT) -> PassResult:
    """Fold stably active neurons that depend linearly on other active neurons of their layer.

    On the domain an ACTIVE neuron is affine: ``h_j = z_j = w_j . h + b_j``. If, over the
    kept active neurons ``i``, ``w_j = sum_i a_i w_i`` (an exact identity over the rationals,
    proven, never a tolerance; the float64 ``a`` leave a residual within ``tol.fold_rel`` of
    the terms, rounding only: :func:`~exactcomp.rewrite.algebra.linear_basis`), then ``h_j = sum_i a_i (z_i - b_i) + b_j = sum_i a_i h_i + c_j`` with
    ``c_j = b_j - sum_i a_i b_i``. So, with ``v_j`` the column of ``W_{k+1}`` reading ``h_j``:

    ``W_{k+1}[:, i] += a_i v_j``, ``b_{k+1} += c_j v_j``, and neuron ``j`` is dropped.

    The bias is folded into the next bias, so only the rank of the *incoming weights* of
    the active neurons matters: ``m`` active neurons fed by ``n`` inputs keep at most ``n``
    when ``n`` of them are proven to span the inputs. Nearly dependent rows (a numerical rank
    below the exact one) are kept: dropping a tiny residual ``r``, amplified by a large ``v_j``,
    would change the output by ``v_j r . h``.
    """
    ed = Editor("fold_active", net, state)
    for k in range(ed.depth - 1):
        if not ed.relu[k]:
            continue
        active = np.flatnonzero(state.layers[k].mask(Verdict.ACTIVE) & ed.keep[k])
        if active.size == 0:
            continue
        rows = ed.rows(k)[active]
        split = linear_basis(rows, tol.fold_rel)
        if split.dependent.size == 0:
            continue
        kept, dep = active[split.basis], active[split.dependent]
        v = ed.weights[k + 1][:, dep]
        offsets = ed.biases[k][dep] - split.coefficients @ ed.biases[k][kept]
        with np.errstate(over="ignore", invalid="ignore"):
            cols = ed.weights[k + 1][:, kept] + v @ split.coefficients
            bias = ed.biases[k + 1] + v @ offsets
        if not finite(cols, bias):
            continue  # coefficients so large that the fold overflows: keep the neurons
        ed.weights[k + 1][:, kept] = cols
        ed.biases[k + 1] = bias
        for t, j in enumerate(dep):
            fold = Fold(
                sources=tuple((k, int(i)) for i in kept),
                coefficients=tuple(float(a) for a in split.coefficients[t]),
                offset=float(offsets[t]),
                residual=float(split.residuals[t]),
            )
            ed.remove(k, int(j), Reason.FOLDED_ACTIVE, ed.proof_of(k, int(j)), fold)
    return ed.finish()


def merge_linear(net: Network, state: RewriteState, tol: Tolerances = DEFAULT) -> PassResult:
    """Merge every hidden layer that is affine on the domain into the next layer.

    A hidden layer is affine on the domain when it has no ReLU, or every neuron is proven
    stable (this includes a layer of width 0). Then ``h_k = D (W_k h + b_k)`` with ``D`` the
    0/1 diagonal of the ACTIVE neurons (identity without ReLU), hence

    ``z_{k+1} = W_{k+1} D W_k h + (W_{k+1} D b_k + b_{k+1})``

    and layer ``k`` is replaced by nothing: the network loses a layer while ``z_{k+1}`` (and
    so every verdict about it) stays the same function of the input. Layers are merged front
    to back, so a chain of affine layers collapses into the first non-affine one after it; a
    network affine on the whole domain becomes one affine layer.

    Neurons and depth always drop; the parameter count can grow when the merged layer is a
    narrow bottleneck (``n_{k-1} n_{k+1} > n_k (n_{k-1} + n_{k+1})``, e.g. 784-2-100): the
    merged network is smaller in neurons, not necessarily in weights.

    The last layer has no next layer: if it has a ReLU and *every* unit is proven stable,
    the ReLU is dropped after zeroing the rows of the INACTIVE units (``relu(z) = 0`` there,
    ``relu(z) = z`` for ACTIVE ones). A ReLU that may see a negative input is never dropped.
    ``tol`` is unused.
    """
    ed = Editor("merge_linear", net, state)
    for k in range(ed.depth - 1):
        ls = state.layers[k]
        if ed.relu[k] and not ls.stable.all():
            continue
        on = ls.mask(Verdict.ACTIVE) if ed.relu[k] else np.ones(ls.width, dtype=bool)
        w_next = ed.weights[k + 1][:, on]
        with np.errstate(over="ignore", invalid="ignore"):
            weight = w_next @ ed.weights[k][on]
            bias = w_next @ ed.biases[k][on] + ed.biases[k + 1]
        if not finite(weight, bias):
            continue  # the product overflows float64: keep the layer
        ed.weights[k + 1], ed.biases[k + 1] = weight, bias
        reasons = {
            j: (Reason.MERGED_LAYER if on[j] else Reason.INACTIVE, ed.proof_of(k, j))
            for j in range(ls.width)
        }
        ed.delete_layer(k, reasons)
    last = ed.depth - 1
    ls = state.layers[last]
    if ed.relu[last] and ls.stable.all():
        off = ls.mask(Verdict.INACTIVE)
        ed.weights[last][off] = 0.0
        ed.biases[last][off] = 0.0
        ed.drop_relu(last, off)
    return ed.finish()
