r"""The triangle-relaxation LP of a network prefix: its rows and columns in HiGHS' matrix form.

What :mod:`exactcomp.bounds.lp` solves once per neuron and side (changing only the
objective), what the ideal cuts (:mod:`exactcomp.bounds.ideal_cuts`) and the node LPs of
the ReLU splits (:mod:`exactcomp.bab.relu_lp`) add rows to, and what the joint LP of two
networks (:mod:`exactcomp.verify.difflp`) reads. Building it solves nothing.

Formulation (layers ``j < k``, known bounds ``l_j <= z_j <= u_j``)
----------------------------------------------------------------
.. math::

    \min / \max \;& w_{k,i}^\top h_{k-1} + b_{k,i} \\
    \text{s.t. }\; & lo \le x \le hi, \quad h_{-1} = x, \\
    & z_j = W_j h_{j-1} + b_j, \qquad l_j \le z_j \le u_j, \\
    & \text{per ReLU neuron: }
      \begin{cases}
        h = 0 & u \le 0 \text{ (stably inactive)}\\
        h = z & l \ge 0 \text{ (stably active)}\\
        h \ge 0,\; h \ge z,\; h \le \frac{u}{u - l}(z - l),\; h \le u & l < 0 < u
      \end{cases}

and ``h_j = z_j`` on a layer without ReLU.

The right-hand sides that rounding could move (each triangle's chord, the lazy rows) are
padded outwards (:func:`~exactcomp.bounds.interval.pad`), so the rounded rows never cut off a
point of the true relaxation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from .interval import Bounds, pad
from .lazy import LazyRows

__all__ = ["PrefixLP", "UnstableRelus", "build_prefix_lp"]


@dataclass(frozen=True, eq=False)
class PrefixLP:
    """The triangle-relaxation LP of a network prefix, in HiGHS' matrix form.

    ``matrix`` is the constraint matrix (rows x columns, CSR), ``row_lower/row_upper`` and
    ``col_lower/col_upper`` its bounds (``±inf`` where open), and ``out_cols`` the columns of
    ``h_{k-1}``, the input of the layer being bounded (``-1`` for a neuron fixed at 0);
    ``lazy`` the rows left out until needed (:class:`~exactcomp.bounds.lazy.LazyRows`).
    """

    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    out_cols: np.ndarray
    relus: tuple[UnstableRelus, ...] = ()
    lazy: LazyRows | None = None


@dataclass(frozen=True, eq=False)
class UnstableRelus:
    """Where the unstable ReLU neurons of one layer ``j`` of a :class:`PrefixLP` live.

    ``neurons`` are their indices in the layer, ``z``/``h`` their pre- and post-activation
    columns, ``lower``/``upper`` their bounds, and ``inputs`` the column of each neuron of
    ``h_{j-1}`` (``-1`` for one fixed at 0): what a cut on these neurons needs
    (:mod:`exactcomp.bounds.ideal_cuts`).
    """

    layer: int
    neurons: np.ndarray
    z: np.ndarray
    h: np.ndarray
    inputs: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class _Triplets:
    """Rows of a sparse matrix collected as ``(row, col, value)`` triplets with their bounds."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.nrow = 0

    def add(self, entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]], lo, hi) -> None:
        """Add ``len(lo)`` rows; ``entries`` holds ``(local_row, col, value)`` arrays."""
        for r, c, v in entries:
            self.r.append(np.asarray(r) + self.nrow)
            self.c.append(np.asarray(c))
            self.v.append(np.asarray(v, dtype=np.float64))
        lo = np.asarray(lo, dtype=np.float64)
        self.lo.append(lo)
        self.hi.append(np.asarray(hi, dtype=np.float64))
        self.nrow += lo.size

    def matrix(self, ncol: int) -> sp.csr_matrix:
        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return sp.csr_matrix(
            (cat(self.v, np.float64), (cat(self.r, np.int64), cat(self.c, np.int64))),
            shape=(self.nrow, ncol),
        )


def _columns(start: int, mask: np.ndarray) -> np.ndarray:
    """Column indices ``start, start+1, ...`` for the ``True`` entries of ``mask``, -1 elsewhere."""
    out = np.full(mask.size, -1, dtype=np.int64)
    out[mask] = np.arange(start, start + int(mask.sum()))
    return out


def build_prefix_lp(
    net: Network,
    box: Box,
    k: int,
    pre: Sequence[Bounds],
    tol: Tolerances = DEFAULT,
    lazy: bool = False,
) -> PrefixLP:
    """The LP of layers ``0..k-1`` with finite bounds ``pre[j]``; see the module docstring.

    Exact reductions keep it small: a stably active neuron's ``h`` is its ``z`` column; a stably
    inactive neuron has no ``h`` column (it is 0, so its outgoing weights drop out), and in
    layer 0 no ``z`` column or row either (``l_0 <= W_0 x + b_0 <= u_0`` holds on the whole
    box, so those rows cut nothing; deeper, ``z``'s proven bounds can cut relaxed points and
    are kept).

    ``lazy``: deeper stably inactive neurons get no ``z`` column or row either; their rows
    wait in :attr:`PrefixLP.lazy` until an optimum violates one (:func:`lazy_lp_min`). On
    mnist-net_256x6 prop_0_0.03 they are 888 of the 1,644 rows of layer 5's LP (most of
    the model); of the 512 root LPs of layers 3 and 4, only 4 and 7 of these rows had a
    nonzero dual (all of neurons proven by splits or MILPs, ``u = 0``), and none on
    layer 5.
    """
    ncol = net.input_size
    col_lo = [box.lower.copy()]
    col_hi = [box.upper.copy()]
    rows = _Triplets()
    prev = np.arange(net.input_size)  # column of each neuron of h_{j-1}; -1: fixed at 0
    relus: list[UnstableRelus] = []
    waiting = _Triplets()  # the lazy rows
    for j in range(k):
        layer = net.layers[j]
        lo, hi = pre[j]
        inactive = (hi <= 0.0) if layer.relu else np.zeros(lo.size, dtype=bool)
        keep = ~inactive if (j == 0 or lazy) else np.ones(lo.size, dtype=bool)
        if j > 0 and lazy and inactive.any():
            # l - b <= W h <= u - b, each side padded outwards for the subtraction's rounding
            w = sp.coo_matrix(layer.weight[inactive])
            live = prev[w.col] >= 0
            b = layer.bias[inactive]
            slack = pad(np.abs(lo[inactive]) + np.abs(hi[inactive]) + 2.0 * np.abs(b), tol)
            waiting.add(
                [(w.row[live], prev[w.col[live]], w.data[live])],
                lo[inactive] - b - slack,
                hi[inactive] - b + slack,
            )
        zc = _columns(ncol, keep)
        ncol += int(keep.sum())
        col_lo.append(lo[keep])
        col_hi.append(hi[keep])
        # z_j - W_j h_{j-1} = b_j   (terms of neurons fixed at 0 dropped)
        w = sp.coo_matrix(layer.weight[keep])
        live = prev[w.col] >= 0
        nk = int(keep.sum())
        rows.add(
            [
                (np.arange(nk), zc[keep], np.ones(nk)),
                (w.row[live], prev[w.col[live]], -w.data[live]),
            ],
            layer.bias[keep],
            layer.bias[keep],
        )
        if not layer.relu:
            prev = zc
            continue
        active = (lo >= 0.0) & ~inactive
        unstable = ~(inactive | active)
        # active: h = z, the same column; unstable: a new column with h - z >= 0
        hc = _columns(ncol, unstable)
        hc[active] = zc[active]
        ncol += int(unstable.sum())
        col_lo.append(np.zeros(int(unstable.sum())))
        col_hi.append(hi[unstable])
        iu = np.flatnonzero(unstable)
        m = np.arange(iu.size)
        rows.add(
            [(m, hc[iu], np.ones(iu.size)), (m, zc[iu], -np.ones(iu.size))],
            np.zeros(iu.size),
            np.full(iu.size, np.inf),
        )
        # unstable: (u - l) h - u z <= -u l   (the chord through (l, 0) and (u, u))
        lu, hu = lo[iu], hi[iu]
        # (padded: the rounded coefficients must not cut off any point of the true triangle)
        rhs = -hu * lu + pad(np.abs(hu * lu) + (hu - lu) * hu, tol)
        rows.add([(m, hc[iu], hu - lu), (m, zc[iu], -hu)], np.full(iu.size, -np.inf), rhs)
        relus.append(UnstableRelus(j, iu, zc[iu], hc[iu], prev, lu, hu))
        prev = hc
    waits = None
    if lazy:
        empty = np.zeros(0)
        waits = LazyRows(
            waiting.matrix(ncol),
            np.concatenate(waiting.lo) if waiting.lo else empty,
            np.concatenate(waiting.hi) if waiting.hi else empty,
        )
    return PrefixLP(
        matrix=rows.matrix(ncol),
        row_lower=np.concatenate(rows.lo) if rows.lo else np.zeros(0),
        row_upper=np.concatenate(rows.hi) if rows.hi else np.zeros(0),
        col_lower=np.concatenate(col_lo),
        col_upper=np.concatenate(col_hi),
        out_cols=prev,
        relus=tuple(relus),
        lazy=waits,
    )
