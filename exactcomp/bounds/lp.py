r"""LP-relaxation bounds: the triangle relaxation of a network prefix, solved with HiGHS.

The LP is tighter than back-substitution (:mod:`exactcomp.bounds.linear`) because it lets
every unstable ReLU sit anywhere inside its triangle instead of on one fixed line, and it
couples all the neurons of every earlier layer at once. It costs one LP solve per neuron and
side, so the stability engine uses it only on neurons that cheaper bounds left undecided.

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

and ``h_j = z_j`` on a layer without ReLU. The model is built once per call; only the
objective changes between neurons (so HiGHS warm-starts each solve from the last basis).

Soundness
---------
We never take the solver's objective value on trust: the bound is read from HiGHS' row duals
by weak duality and padded for rounding (:func:`exactcomp.highs.lp.dual_bound`), and then, as
the contract of :mod:`exactcomp.tolerances` asks for solver-derived bounds, moved by the solver
margin :func:`~exactcomp.highs.margins.solver_margin` of the neuron's a-priori bound magnitude.
A solve that is not optimal leaves that neuron's input bound unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..domain import Box
from ..highs.lp import Lp
from ..highs.margins import solver_margin
from ..highs.matrix import MatrixModel
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from .interval import Bounds, interval_bounds, pad
from .lazy import LazyRows, add_lazy_rows, lazy_lp_min
from .linear import all_finite, finite_prefix_bounds, linear_bounds

__all__ = [
    "LAYER_LP_OPTIONS",
    "LPLayerResult",
    "PrefixLP",
    "UnstableRelus",
    "LazyRows",
    "add_lazy_rows",
    "build_prefix_lp",
    "lazy_lp_min",
    "lp_layer_bounds",
    "lp_layer_result",
]


LAYER_LP_OPTIONS: dict[str, object] = {"simplex_scale_strategy": 0}
"""HiGHS options of the layer LPs here and in :mod:`exactcomp.bounds.ideal_cuts` (one model,
one objective per neuron and side). Unscaled, as the node LPs of the ReLU splits
(:data:`exactcomp.bab.relu_lp.NODE_LP_OPTIONS`): on mnist-net_256x6 prop_0_0.03 the LP phase
of layer 3 (231 neurons, 311 LPs) took 7.3 s of CPU instead of 11.5, layer 2's 1.6 instead
of 2.7, with the same claims. Speed only: every bound is read from the duals by weak duality,
and a solve that fails proves nothing."""


LAZY_ROWS = True
"""Whether the layer LPs here (:func:`lp_layer_result`) and the node LPs of the ReLU splits
(:mod:`exactcomp.bab.relu_lp`) leave the rows of deeper stably inactive neurons out until an
optimum violates one (:class:`LazyRows`): the same bounds from a model about half the size.
Speed only: a left-out row is a relaxation, so every bound stays sound either way."""


UNSCALED_MAGNITUDE = 1e6
"""Largest coefficient or finite bound of a model that gets :data:`LAYER_LP_OPTIONS`; a
larger one is solved with HiGHS' default scaling (on random networks with bounds near 1e15
the unscaled LP gave bounds looser by a relative 1e-5)."""


def layer_lp(model: MatrixModel) -> Lp:
    """The HiGHS LP of a prefix model, with :data:`LAYER_LP_OPTIONS` when every coefficient
    and finite bound is within :data:`UNSCALED_MAGNITUDE`."""
    solver = Lp.from_model(model)
    parts = [model.matrix.data, model.col_lower, model.col_upper]
    parts += [model.row_lower, model.row_upper]
    biggest = max(float(np.abs(p[np.isfinite(p)]).max(initial=0.0)) for p in parts)
    if biggest <= UNSCALED_MAGNITUDE:
        for name, value in LAYER_LP_OPTIONS.items():
            solver.h.setOptionValue(name, value)
    return solver


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


@dataclass(frozen=True, eq=False)
class LPLayerResult:
    """Bounds of one layer from the LP, and the inputs at which the LP optima were attained.

    ``points`` (rows, float64, inside the box) are the ``x`` parts of the optimal LP solutions:
    often close to the true extreme of the neuron, so good witness candidates (re-check them
    with :func:`exactcomp.search.sign_witnesses`; they prove nothing by themselves).
    ``solved``/``failed`` count the LP solves that gave a proof / did not.
    """

    lower: np.ndarray
    upper: np.ndarray
    points: np.ndarray
    solved: int
    failed: int

    @property
    def bounds(self) -> Bounds:
        return self.lower, self.upper


def lp_layer_bounds(*args: Any, **kwargs: Any) -> Bounds:
    """Sound bounds of ``z_k`` from the triangle-relaxation LP: the ``bounds`` of
    :func:`lp_layer_result`, called with the same arguments."""
    return lp_layer_result(*args, **kwargs).bounds


def lp_layer_result(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds | None],
    neurons: Sequence[int] | np.ndarray | None = None,
    tol: Tolerances = DEFAULT,
    time_limit: float | None = None,
    sides: Sequence[int] | np.ndarray | None = None,
    first: Sequence[int] | np.ndarray | None = None,
) -> LPLayerResult:
    """Sound bounds of ``z_k`` from the triangle-relaxation LP of layers ``0..k-1``.

    Parameters
    ----------
    net, box:
        The network and the input box.
    k:
        The layer to bound.
    known:
        Sound bounds ``known[j]`` of the layers ``j < k`` (they shape the ReLU triangles);
        ``known[k]``, if present, is the input bound of layer ``k``, which the result never
        loosens. Missing (``None``) or infinite entries are filled in by interval arithmetic.
    neurons:
        Neurons of layer ``k`` to tighten (default: all); the others keep their input bound.
    tol:
        Tolerances: the rounding pad and the solver margin ``solver_abs + solver_rel * M``.
    time_limit:
        Seconds for the whole call; neurons not reached in time keep their input bound.
    sides:
        Optional, one entry per requested neuron: ``+1`` tightens only its upper bound (all a
        proof of inactivity needs), ``-1`` only its lower bound, ``0`` both (the default).
    first:
        Optional, one entry per requested neuron, for those whose ``sides`` entry is ``0``:
        ``+1`` solves the upper bound first and the lower bound only if ``u <= 0`` was not
        proven (an inactive neuron's ``h`` is 0 whatever ``l``); ``-1`` the lower bound first,
        then the upper one (an active neuron's ``h = z`` keeps both bounds as column bounds
        in later LPs); ``0`` both.

    Returns
    -------
    LPLayerResult
        ``(lower, upper)`` of layer ``k``, each within its input bound, and the LP optima.
    """
    box.check_size(net.input_size)
    if not 0 <= k < len(net.layers):
        raise IndexError(f"layer {k} does not exist (the network has {len(net.layers)} layers)")
    pre = finite_prefix_bounds(net, box, k, known, tol)
    lower, upper = pre[k][0].copy(), pre[k][1].copy()
    layer = net.layers[k]
    none = np.empty((0, net.input_size))
    if k == 0 or not all_finite(pre[:k]):
        # k == 0: one affine map of the box, interval arithmetic is exact; overflowed
        # earlier bounds (weights near 1e300) leave nothing an LP could use
        return LPLayerResult(lower, upper, none, 0, 0)
    idx = np.arange(layer.out_features) if neurons is None else np.asarray(neurons, dtype=int)
    idx = idx.reshape(-1)
    want = np.zeros(idx.size, dtype=int) if sides is None else np.asarray(sides, dtype=int)
    if want.shape != idx.shape:
        raise ValueError(f"sides has {want.size} entries for {idx.size} neurons")
    lead = np.zeros(idx.size, dtype=int) if first is None else np.asarray(first, dtype=int)
    if lead.shape != idx.shape:
        raise ValueError(f"first has {lead.size} entries for {idx.size} neurons")
    if idx.size == 0:
        return LPLayerResult(lower, upper, none, 0, 0)
    deadline = None if time_limit is None else time.monotonic() + float(time_limit)
    lp = build_prefix_lp(net, box, k, pre, tol, lazy=LAZY_ROWS)
    solver = layer_lp(lp)
    cost = np.zeros(lp.matrix.shape[1])
    live = lp.out_cols >= 0
    points: list[np.ndarray] = []
    failed = 0
    for i, side, go in zip(idx.tolist(), want.tolist(), lead.tolist(), strict=True):
        margin = solver_margin(tol, max(abs(lower[i]), abs(upper[i])))
        b = float(layer.bias[i])
        for sign in _signs(side, go):
            if go and side == 0 and upper[i] <= 0.0:
                break  # proven inactive: h = 0 whatever the lower bound
            cost[lp.out_cols[live]] = sign * layer.weight[i][live]
            got, lp = lazy_lp_min(solver, lp, cost, tol, deadline)
            if got is None:
                failed += 1
                continue
            bound, v = got
            points.append(box.clip(v[: net.input_size]))
            slack = float(pad(np.asarray(abs(b) + abs(bound)), tol)) + margin
            if sign > 0:  # min z_i >= bound + b
                lower[i] = max(lower[i], bound + b - slack)
            else:  # max z_i = -min(-w h) + b <= -bound + b
                upper[i] = min(upper[i], -bound + b + slack)
    pts = np.vstack(points) if points else none
    return LPLayerResult(lower, upper, pts, len(points), failed)


def _signs(side: int, first: int) -> tuple[float, ...]:
    """The objective signs to solve for one neuron, in order (``+1.0``: its lower bound,
    ``-1.0``: its upper bound), from its ``sides`` and ``first`` entries."""
    if side != 0:
        return (-1.0,) if side > 0 else (1.0,)
    return (-1.0, 1.0) if first > 0 else (1.0, -1.0)


def _demo(seed: int = 0, weights: str = "gauss") -> dict[str, float]:  # pragma: no cover
    """Mean width of layer-1 bounds on a sparse random 10-100-100 net: interval, linear, LP,
    sampled (the table of :mod:`exactcomp.bounds.linear`'s docstring, printed by :func:`_main`)."""
    rng = np.random.default_rng(seed)
    sizes = [10, 100, 100]
    ws, bs = [], []
    for i in range(2):
        if weights == "gauss":
            w = rng.normal(0.0, 1.0 / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i]))
            w[rng.random(w.shape) < 0.7] = 0.0
            bs.append(rng.normal(0.0, 0.1, sizes[i + 1]))
        else:
            w = rng.laplace(0.0, 1.0, (sizes[i + 1], sizes[i]))
            w[np.abs(w) < 0.7] = 0.0
            bs.append(rng.normal(0.0, 1.0, sizes[i + 1]))
        ws.append(w)
    net = Network.from_arrays(ws, bs, relu_last=True, dtype="float64")
    box = Box.uniform(0.0, 1.0, 10)
    ib = interval_bounds(net, box)
    lb = linear_bounds(net, box)
    lpb = lp_layer_bounds(net, box, 1, lb)
    z = net.preactivations(box.sample(200_000, rng))[1]
    return {
        "interval": float(np.mean(ib[1][1] - ib[1][0])),
        "linear": float(np.mean(lb[1][1] - lb[1][0])),
        "lp": float(np.mean(lpb[1] - lpb[0])),
        "sampled": float(np.mean(z.max(0) - z.min(0))),
    }


def _main() -> None:  # pragma: no cover
    """Print the module docstring's table."""
    for kind in ("gauss", "laplace"):
        for s in range(3):
            print(kind, s, {k: round(v, 2) for k, v in _demo(s, kind).items()})
