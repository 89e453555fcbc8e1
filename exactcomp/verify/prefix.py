r"""A shared prefix: where ``g`` equals ``f`` on its first layers, compare their tails on a box.

Maths
-----
Let ``f`` and ``g`` have the same layers :math:`0, \dots, k-1` exactly (the same weights,
entry for entry, the same biases and ReLUs), so the same layer-``(k-1)`` output
:math:`a(x) = a^f_{k-1}(x) = a^g_{k-1}(x)` (:math:`a(x) = x` for ``k = 0``), and let
:math:`T_f, T_g` be their layers :math:`k, k+1, \dots` (the *tails*). Then for every ``x``

.. math::

    f(x) - g(x) = T_f(a(x)) - T_g(a(x)),

and for any box :math:`A \supseteq a(B)` (a sound enclosure of ``f``'s layer-``(k-1)``
outputs on the input box ``B``)

.. math::

    \max_{x \in B} \|f(x) - g(x)\|_\infty = \max_{a \in a(B)} \|T_f(a) - T_g(a)\|_\infty
    \le \max_{a \in A} \|T_f(a) - T_g(a)\|_\infty .

The right-hand side is a differential question of two networks on a box: where the tails are
dense, every bound of :class:`~exactcomp.verify.charge.Charger` on dense networks (symbolic,
joint LP, head proofs) answers it, while the prefix may hold layers too large to hold densely
(:attr:`~exactcomp.network.Layer.sparse`). The bound is looser than one on ``B`` itself only by
the gap between the image :math:`a(B)` and the box ``A`` (which forgets the correlations
between the units of layer ``k-1``); it is sound for every ``A`` that encloses :math:`a(B)`.
With a union of boxes :math:`D = \cup_i B_i`, one :math:`A_i` per box and the largest bound.

``A`` here: ``f``'s interval bounds of layer ``k-1`` on ``B``
(:func:`~exactcomp.bounds.interval.interval_bounds`, padded outwards for rounding, so they
enclose the real pre-activations), through the layer's ReLU (:math:`[l, u] \mapsto
[\mathrm{relu}(l), \mathrm{relu}(u)]`, monotone). Nothing else of ``f`` is used: the tails are
compared in real arithmetic on ``A`` by the charger's own (padded) bounds.

The equality of the prefixes is checked entry for entry on the stored numbers
(:func:`shared_prefix`): two layers with equal weights, biases and ReLU compute the same real
function, whatever their structure tag (a convolution or pool only describes the matrix).
"""

from __future__ import annotations

import numpy as np

from ..bounds.interval import activation_bounds, interval_bounds
from ..domain import Box
from ..network import Layer, Network, is_sparse
from ..tolerances import DEFAULT, Tolerances

__all__ = ["cut", "same_layer", "shared_prefix", "tail", "tail_box"]


def same_layer(a: Layer, b: Layer) -> bool:
    """True when two layers hold the same numbers (weights dense or ``scipy.sparse``, biases)
    and ReLU: the same function."""
    if a.relu != b.relu or a.weight.shape != b.weight.shape:
        return False
    if not np.array_equal(a.bias, b.bias):
        return False
    if is_sparse(a.weight) or is_sparse(b.weight):
        return not abs(a.weight - b.weight).sum()  # sparse - dense or sparse: one shape
    return bool(np.array_equal(a.weight, b.weight))


def shared_prefix(f: Network, g: Network) -> int:
    """How many leading layers ``f`` and ``g`` share exactly (:func:`same_layer`)."""
    n = 0
    for a, b in zip(f.layers, g.layers, strict=False):
        if not same_layer(a, b):
            break
        n += 1
    return n


def cut(f: Network) -> int:
    """The first layer of ``f``'s dense tail: one past its last layer held sparse (0 when
    none is)."""
    return max((k + 1 for k, la in enumerate(f.layers) if la.sparse), default=0)


def tail(net: Network, k: int) -> Network:
    """``net``'s layers ``k, k+1, ...`` as a network (its input: layer ``k-1``'s output)."""
    return net.replace_layers(net.layers[k:])


def tail_box(f: Network, k: int, box: Box, tol: Tolerances = DEFAULT) -> Box:
    """A box ``A`` enclosing ``f``'s layer-``(k-1)`` outputs on ``box`` (module docstring):
    its interval bounds through the layer's ReLU; ``box`` itself for ``k = 0``."""
    if k == 0:
        return box
    pre = interval_bounds(f, box, tol=tol)
    lo, hi = activation_bounds(f.layers[k - 1], pre[k - 1])
    return Box(lo, hi)
