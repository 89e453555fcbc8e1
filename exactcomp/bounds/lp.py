r"""LP-relaxation bounds: the triangle relaxation of a network prefix, solved with HiGHS.

The LP is tighter than back-substitution (:mod:`exactcomp.bounds.linear`) because it lets
every unstable ReLU sit anywhere inside its triangle instead of on one fixed line, and it
couples all the neurons of every earlier layer at once. It costs one LP solve per neuron and
side, so the stability engine uses it only on neurons that cheaper bounds left undecided.

The LP itself (its formulation in maths, and the exact reductions that keep it small) is
built by :func:`exactcomp.bounds.prefix_lp.build_prefix_lp`; this module solves it, one
neuron and side at a time. The model is built once per call; only the objective changes
between neurons (so HiGHS warm-starts each solve from the last basis).

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

from ..domain import Box
from ..highs.lp import Lp
from ..highs.margins import solver_margin
from ..highs.matrix import MatrixModel
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from .interval import Bounds, interval_bounds, pad
from .lazy import LazyRows, add_lazy_rows, lazy_lp_min
from .linear import all_finite, finite_prefix_bounds, linear_bounds
from .prefix_lp import PrefixLP, UnstableRelus, build_prefix_lp

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
