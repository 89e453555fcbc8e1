"""Passes that need no stability proof: their identities hold on every input.

They still matter after the stability passes: removing neurons leaves zero columns and
rows behind, and merging a layer can create constant or duplicated neurons in the next.
:func:`drop_unused` does the same after the lossy passes, on a network without a rewrite
state (and on its quantised grids: :func:`drop_unused_grids`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..network import Layer, Network
from ..tolerances import DEFAULT, Tolerances
from .algebra import positive_duplicates
from .editor import Editor, PassResult, finite
from .record import Fold, Reason
from .state import RewriteState


def drop_dead(net: Network, state: RewriteState, tol: Tolerances = DEFAULT) -> PassResult:
    """Remove hidden units that are constant or that nothing reads.

    *Constant*: an all-zero incoming row gives ``h_j = relu(b_j)`` (``b_j`` without ReLU)
    on every input, so ``b_{k+1} += v_j h_j`` (``v_j`` the column of ``W_{k+1}`` reading
    ``h_j``) and the unit goes. Layers are scanned front to back, so the columns a removal
    drops from ``W_{k+1}`` are already gone when layer ``k+1``'s rows are tested.

    *Dead*: an all-zero column ``v_j`` means ``z_{k+1}`` ignores ``h_j``. Scanned back to
    front, so a unit whose only readers were dead is found dead in the same pass.

    Both tests are for exact zeros: the rewrite is then exact in any arithmetic. ``tol`` is
    unused.
    """
    ed = Editor("drop_dead", net, state)
    for k in range(ed.depth - 1):
        zero_rows = ~np.any(ed.rows(k) != 0.0, axis=1) & ed.keep[k]
        for j in np.flatnonzero(zero_rows):
            b = ed.biases[k][j]
            value = max(b, 0.0) if ed.relu[k] else b
            with np.errstate(over="ignore", invalid="ignore"):
                bias = ed.biases[k + 1] + ed.weights[k + 1][:, j] * value
            if not finite(bias):
                continue
            ed.biases[k + 1] = bias
            ed.remove(k, int(j), Reason.CONSTANT, fold=Fold((), (), float(value)))
    for k in range(ed.depth - 2, -1, -1):
        readers = ed.weights[k + 1][ed.keep[k + 1]]
        unread = ~np.any(readers != 0.0, axis=0) & ed.keep[k]
        for j in np.flatnonzero(unread):
            ed.remove(k, int(j), Reason.DEAD)
    return ed.finish()


def merge_duplicates(net: Network, state: RewriteState, tol: Tolerances = DEFAULT) -> PassResult:
    """Fold each ReLU neuron whose augmented row is an exact positive multiple of another's.

    If ``[w_j | b_j] = c [w_i | b_i]`` with ``c > 0`` *exactly* (a rational, checked entry by
    entry in exact arithmetic, :func:`~exactcomp.rewrite.algebra.positive_duplicates`) then
    ``z_j = c z_i`` and ``h_j = relu(c z_i) = c h_i`` on every input, so
    ``W_{k+1}[:, i] += c W_{k+1}[:, j]`` and neuron ``j`` goes. Rows that merely agree to a
    relative tolerance are never merged: a bias differing by 1e-9 moves the kink, and the
    neurons then differ on a slab of the input that an outgoing weight can amplify at will.

    The identity is exact; the only rounding is float64's in ``c`` (when the ratio is not a
    float) and in the sum ``v_i + c v_j``: at most ``2^-53`` of the terms ``|v_i h_i|`` and
    ``|v_j h_j|`` that the original network sums itself, the same rounding any fold incurs.
    In a group of duplicates the neuron kept is a proven-stable one when there is one: its
    verdict then holds for the whole group (they share the sign of ``z``), so the stability
    passes can remove the group. Layers without ReLU are left to :func:`merge_linear`.
    ``tol`` is unused.
    """
    ed = Editor("merge_duplicates", net, state)
    for k in range(ed.depth - 1):
        if not ed.relu[k]:
            continue
        aug = np.hstack([ed.rows(k), ed.biases[k][:, None]])
        for d in positive_duplicates(aug, prefer=state.layers[k].stable):
            nxt = ed.weights[k + 1]
            with np.errstate(over="ignore", invalid="ignore"):
                col = nxt[:, d.keep] + d.factor * nxt[:, d.dup]
            if not finite(col):
                continue
            nxt[:, d.keep] = col
            ed.remove(k, d.dup, Reason.DUPLICATE, fold=Fold(((k, d.keep),), (d.factor,), 0.0))
    return ed.finish()


def drop_unused(net: Network) -> Network:
    """Remove ReLU neurons that cannot affect the output (zero outgoing column, or zero row
    and bias so that they output 0): exact, no arithmetic."""
    return drop_unused_grids(net, [None] * len(net.layers))[0]


def drop_unused_grids(net: Network, grids: Sequence) -> tuple[Network, list]:
    """:func:`drop_unused`, slicing the quantised grids (``q`` rows and columns, ``scale``
    rows; :class:`~exactcomp.rewrite.quantize.QuantizedWeight`) of the layers it touches.
    A pair of layers with a structure (a convolution or pool: removing one unit would unmake
    it) or held sparse is left alone."""
    layers, grids = list(net.layers), list(grids)
    for k in range(len(layers) - 1):
        pair = layers[k : k + 2]
        if not layers[k].relu or any(la.sparse or la.structure is not None for la in pair):
            continue
        w, b, nxt = layers[k].weight, layers[k].bias, layers[k + 1].weight
        dead = ~nxt.any(axis=0) | (~w.any(axis=1) & (b <= 0))
        if not dead.any() or dead.all():
            continue
        keep = ~dead
        layers[k] = Layer(w[keep], b[keep], True)
        layers[k + 1] = Layer(nxt[:, keep], layers[k + 1].bias, layers[k + 1].relu)
        if grids[k] is not None:
            grids[k] = replace(grids[k], q=grids[k].q[keep], scale=grids[k].scale[keep])
        if grids[k + 1] is not None:
            grids[k + 1] = replace(grids[k + 1], q=grids[k + 1].q[:, keep])
    return net.replace_layers(layers), grids
