r"""Back-substitution bounds of one layer for chosen (box, neuron) pairs: each box its own rows.

:func:`exactcomp.bounds.batched.batched_layer_bounds` bounds the *same* neurons on every box
of a batch, so input splitting, which needs only the neurons still unstable on each box,
paid for the union of the boxes' unstable sets on every box (ACAS Xu 4_9's float16 copy: 58%
of the time per box). Here the rows are the pairs themselves: pair ``p`` asks for neuron
``neuron[p]`` of layer ``k`` on box ``box[p]``, and its two rows (the lower and the upper
bound) are substituted through the earlier layers with *that box's* relaxations. The rows
of all boxes share the layers' weights, so each step is one plain matrix product ``(R, n_j) @
(n_j, n_{j-1})`` over the ``R = 2P`` rows, followed by a gather of the box's slopes.

Maths
-----
Row ``r`` of pair ``p`` on box ``B = box[p]`` starts as :math:`\pm W_k[n]` with constant
:math:`\pm b_k[n]`; through layer ``j`` (relaxation :math:`\alpha z \le \mathrm{relu}(z) \le s
z + t` on ``B``'s bounds of :math:`z_j`) a coefficient :math:`a \ge 0` takes the lower line and
:math:`a < 0` the upper one (adding :math:`a t` to the constant); then :math:`a \leftarrow a
W_j`, constant :math:`+ a b_j`. At the input, :math:`\min_{x \in B} a x = a^+ \underline x +
a^- \overline x`. This is row for row the computation of :func:`batched_layer_bounds`
(documented in :mod:`exactcomp.bounds.linear`), so its rounding pad
(:func:`exactcomp.bounds.batched.static_pad`, valid for every box inside the root box whose
bounds are intersected with the root's) applies unchanged, indexed by the row's neuron.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..network import Network

Relax = tuple[np.ndarray, np.ndarray, np.ndarray]  # (alpha, s, t), each (N, n_j)


CHUNK = 1024  # pairs substituted together: their rows stay in the CPU cache through all layers


def ragged_layer_bounds(
    net: Network,
    k: int,
    lo: np.ndarray,
    hi: np.ndarray,
    relax: Sequence[Relax],
    box: np.ndarray,
    neuron: np.ndarray,
    padding: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds of ``z_k[neuron[p]]`` on box ``[lo[box[p]], hi[box[p]]]`` for each ``p``.

    ``relax[j]`` (``j < k``) is the ReLU relaxation ``(alpha, s, t)`` of layer ``j`` on every
    box (:func:`exactcomp.bounds.linear.relu_relaxation` of sound bounds intersected with the
    root box's); ``padding`` is :func:`exactcomp.bounds.batched.static_pad` for layer ``k``.
    Returns ``(lower, upper)``, each of shape ``(P,)``, not intersected with anything.
    """
    box, neuron = np.asarray(box), np.asarray(neuron)
    used = np.unique(box)
    steps = []  # per layer j < k: the columns kept, the weights, and which are unstable
    for j in range(k - 1, -1, -1):
        lj = net.layers[j]
        alpha, s, t = relax[j]
        keep = np.flatnonzero((s[used] != 0.0).any(axis=0))  # slope 0 on every box: drop
        alpha, s, t = alpha[:, keep], s[:, keep], t[:, keep]
        mid = np.flatnonzero(((s[used] != alpha[used]) | (t[used] != 0.0)).any(axis=0))
        steps.append((keep, lj.weight[keep], lj.bias[keep], alpha, mid, s[:, mid], t[:, mid]))
    lower, upper = np.empty(len(box)), np.empty(len(box))
    for start in range(0, len(box), CHUNK):
        part = slice(start, start + CHUNK)
        lower[part], upper[part] = _substitute(net, k, lo, hi, steps, box[part], neuron[part])
    n_out = net.layers[k].out_features
    return lower - padding[neuron], upper + padding[neuron + n_out]


def _substitute(net, k, lo, hi, steps, box, neuron):
    """Lower and upper bounds (unpadded) of the pairs ``(box, neuron)``, one row each side."""
    layer = net.layers[k]
    p = len(box)
    w, b = layer.weight[neuron], layer.bias[neuron]
    a = np.concatenate([w, -w])  # (2P, n_{k-1}): lower rows, then upper rows (negated)
    c = np.concatenate([b, -b])
    rows = np.concatenate([box, box])
    for keep, wj, bj, alpha, mid, s_mid, t_mid in steps:
        if len(keep) < a.shape[1]:
            a = a[:, keep]
        az = a * alpha[rows]
        if len(mid):  # unstable on some box: negative coefficients take the upper line
            neg = np.minimum(a[:, mid], 0.0)
            c = c + np.einsum("rj,rj->r", neg, t_mid[rows])
            az[:, mid] += neg * (s_mid[rows] - alpha[:, mid][rows])
        c = c + az @ bj
        a = az @ wj
    value = np.einsum("rd,rd->r", np.maximum(a, 0.0), lo[rows])
    value += np.einsum("rd,rd->r", np.minimum(a, 0.0), hi[rows]) + c
    return value[:p], -value[p:]
