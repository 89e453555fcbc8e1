r"""Max-pool blocks: their outputs bounded as maxima of windows, not through their ReLUs.

A max-pool is held as ReLU layers (:func:`~exactcomp.conv.pool_matrices`: ``max(a, b) =
b + relu(a - b)``, one level per halving of the windows, then a linear level). Interval
arithmetic through those levels loses the correlation between ``a - b`` and ``b``: each
level's bounds are ``[l_a - u_b, u_a - l_b]`` plus ``[l_b, u_b]``, so the width of a window's
maximum grows with every level (Convnet_maxpool, four levels: 6.5x the width of the bound
below, on average over its 1,152 pooled units).

Maths
-----
Let layers ``k0 .. k0 + L`` of a network be the levels of one max-pool block with windows
:math:`W_p` over its input :math:`h` (the output of layer ``k0 - 1``, or ``x``). In real
arithmetic the last level's output is exactly :math:`y_p = \max_{c \in W_p} h_c`. ``max`` is
monotone in every argument, so for :math:`h \in [l, u]`

.. math::

    \max_{c \in W_p} l_c \;\le\; y_p \;\le\; \max_{c \in W_p} u_c ,

the tightest interval of :math:`y_p` given those of :math:`h` (attained at :math:`h = l`
and :math:`h = u`); ``max`` of floats is exact, so no pad. For two networks with such blocks
over the same windows and :math:`h^g = h^f + \delta`:

.. math::

    \min_{c \in W_p} \delta_c \;\le\; \max_{c \in W_p} h^g_c - \max_{c \in W_p} h^f_c
    \;\le\; \max_{c \in W_p} \delta_c

(upper: :math:`h^g_c \le h^f_c + \max \delta \le \max h^f + \max \delta` for every ``c``;
lower: at :math:`c^* = \arg\max h^f`, :math:`\max h^g \ge h^f_{c^*} + \delta_{c^*}`).

Trust
-----
A layer's :class:`~exactcomp.conv.PoolLevel` tag is used only where it is *checked*: every
level's matrix, bias and ReLU equal, entry for entry, those that
:func:`~exactcomp.conv.pool_layers` builds from the tag (:func:`max_pool_blocks`), as a
convolution's tag is checked before it is used (:func:`~exactcomp.conv_eval.matching_spec`).
A block that does not match is bounded through its ReLUs, as any other layers. A block built
for a non-negative input (``nonneg``: its carries ``relu(b + s) - s`` equal ``b`` only for
``b >= -s``) is used only where its input is a ReLU layer's output.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ..conv import PoolLevel, pool_layers_coo, pool_windows
from ..network import Layer, Network

__all__ = ["MaxPoolBlock", "max_pool_blocks"]


@dataclass(frozen=True, eq=False)
class MaxPoolBlock:
    """Layers ``first .. last`` of a network: one checked max-pool block. ``windows`` is an
    ``(outputs, k)`` array of the block input's units in each output's window, ``-1`` where a
    window has fewer than ``k`` units."""

    first: int
    last: int
    windows: np.ndarray

    def bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the block's outputs from bounds ``lo <= h <= hi`` of its input."""
        return self._max(lo), self._max(hi)

    def difference(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``y^g - y^f`` from bounds ``lo <= h^g - h^f <= hi`` (module docstring)."""
        return -self._max(-lo), self._max(hi)

    def _max(self, v: np.ndarray) -> np.ndarray:
        w = self.windows
        with np.errstate(invalid="ignore"):
            return np.where(w >= 0, v[np.maximum(w, 0)], -np.inf).max(axis=1)


_CACHE: weakref.WeakKeyDictionary[Network, dict[int, MaxPoolBlock]] = weakref.WeakKeyDictionary()


def max_pool_blocks(net: Network) -> dict[int, MaxPoolBlock]:
    """The checked max-pool blocks of ``net`` (module docstring), keyed by their last layer."""
    found = _CACHE.get(net)
    if found is None:
        found = {}
        for k, la in enumerate(net.layers):
            s = la.structure
            if isinstance(s, PoolLevel) and s.kind == "max" and s.level == 0 and s.levels > 0:
                block = _checked(net.layers, k, s)
                if block is not None:
                    found[block.last] = block
        _CACHE[net] = found
    return found


def _checked(layers: tuple[Layer, ...], first: int, pool: PoolLevel) -> MaxPoolBlock | None:
    """The block starting at ``first`` if its levels are exactly ``pool``'s, else None."""
    levels = pool_layers_coo(pool)
    if first + len(levels) > len(layers):
        return None
    if pool.nonneg and (first == 0 or not layers[first - 1].relu):
        return None  # its carries are exact only on a non-negative input: a ReLU output
    for i, (coo, bias) in enumerate(levels):
        la = layers[first + i]
        s = la.structure
        if not (
            isinstance(s, PoolLevel)
            and s == pool.at_level(i)
            and la.relu == (i < pool.levels)
            and la.weight.shape == coo.shape
            and np.array_equal(la.bias, bias)
            and _same_entries(la.weight, coo)
        ):
            return None
    return MaxPoolBlock(first, first + pool.levels, _window_array(pool))


def _same_entries(weight, coo) -> bool:
    """Whether ``weight`` (dense or ``scipy.sparse``) has exactly ``coo``'s entries."""
    if isinstance(weight, np.ndarray):
        nz = coo.vals != 0
        count = np.count_nonzero(weight)
        return count == nz.sum() and np.array_equal(weight[coo.rows, coo.cols], coo.vals)
    import scipy.sparse as sp

    built = sp.csr_array((coo.vals, (coo.rows, coo.cols)), shape=coo.shape)
    return (abs(weight - built) != 0).nnz == 0


def _window_array(pool: PoolLevel) -> np.ndarray:
    """Every channel's windows as one ``(channels * positions, k)`` array of input units."""
    wins = pool_windows(pool)
    k = max(len(w) for w in wins)
    one = np.full((len(wins), k), -1, dtype=np.int64)
    for p, w in enumerate(wins):
        one[p, : len(w)] = w
    hw = pool.in_shape[1] * pool.in_shape[2]
    shift = (np.arange(pool.channels) * hw)[:, None, None]
    return np.where(one[None] >= 0, one[None] + shift, -1).reshape(-1, k)
