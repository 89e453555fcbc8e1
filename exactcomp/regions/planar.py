r"""Exact activation regions of a network on a plane, by splitting convex polygons.

For a 2-input network the plane is the input box itself; for more inputs it is the slice
``x = o + s u + t v`` of the box (``o`` a point, ``u, v`` two directions), a convex polygon in
the ``(s, t)`` coordinates. Either way the network restricted to the plane is a network of
two inputs, and its activation regions there are convex polygons.

How it works
------------
Layer by layer, a cell is a convex polygon ``P`` on which the layer's input is an affine map
``h = A (s, t) + c``, so each pre-activation ``z_j = w_j h + b_j`` is affine on ``P``. Its
values at ``P``'s vertices say everything: all on one side, ``z_j`` keeps that sign on ``P``
(``P`` is their convex hull); on both sides, the line ``z_j = 0`` cuts ``P`` into two convex
polygons (one pass of Sutherland-Hodgman clipping, new vertices where an edge changes sign).
After the layer, each piece has one pattern and ``h = relu(z)`` is affine again. Every leaf
is a distinct pattern (the pattern's region is convex, so one polygon), with nonempty
interior. Counting costs one small matrix product per cell and layer and one clip per cut:
no LP at all, which is why this is the fast path for two inputs.

Tolerance policy (float64)
--------------------------
A vertex whose distance to the line ``z_j = 0`` (``|z_j| / ||grad z_j||``, in plane units) is
at most ``tol`` counts as *on* the line. A cut needs vertices beyond ``tol`` on both sides,
so slivers thinner than ``tol`` are never made, and a neuron that is ``~0`` on a whole cell
is inactive there (as ``relu(0) = 0``). ``tol`` is ``region_radius * max(1, max |bound|)``
(:class:`~exactcomp.tolerances.Tolerances`); the LP counter uses the same threshold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..network import Layer, Network

Item = tuple[np.ndarray, int, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]
"""A cell waiting for a layer: ``(vertices, layer, A, c, patterns of earlier layers)``."""


@dataclass(frozen=True, eq=False)
class Cell:
    """One activation region on the plane: a convex polygon and its pattern.

    ``vertices`` are in plane coordinates ``(s, t)`` (the input itself for 2 inputs), in
    order around the polygon; ``pattern`` is True for each active ReLU neuron, all ReLU
    layers concatenated.
    """

    vertices: np.ndarray
    pattern: np.ndarray

    @property
    def area(self) -> float:
        x, y = self.vertices[:, 0], self.vertices[:, 1]
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def rectangle(lower: Sequence[float], upper: Sequence[float]) -> np.ndarray:
    """The vertices of ``[lower[0], upper[0]] x [lower[1], upper[1]]``, counter-clockwise."""
    (x0, y0), (x1, y1) = lower, upper
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def clip(vertices: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a convex polygon by the line ``dist = 0`` (``dist`` signed, per vertex, already
    snapped: 0 for a vertex on the line): the parts with ``dist >= 0`` and ``dist <= 0``."""
    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    m = len(vertices)
    for i in range(m):
        j = (i + 1) % m
        di, dj = dist[i], dist[j]
        if di >= 0:
            pos.append(vertices[i])
        if di <= 0:
            neg.append(vertices[i])
        if (di > 0 > dj) or (di < 0 < dj):
            cut = vertices[i] + (di / (di - dj)) * (vertices[j] - vertices[i])
            pos.append(cut)
            neg.append(cut)
    return np.array(pos), np.array(neg)


def start(net: Network, polygon: np.ndarray, origin: np.ndarray, basis: np.ndarray) -> Item:
    """The root cell: the network's input is ``origin + basis @ (s, t)`` on ``polygon``."""
    return (polygon, 0, np.asarray(basis, dtype=np.float64), np.asarray(origin, np.float64), ())


def expand(
    net: Network, item: Item, fixed: Sequence[np.ndarray | None], tol: float
) -> tuple[list[Item], list[Cell]]:
    """Split one cell by every neuron of its layer: the cells for the next layer, or, after
    the last ReLU layer, the finished regions."""
    vertices, k, a, c, patterns = item
    layer = net.layers[k]
    az = layer.weight @ a
    cz = layer.weight @ c + layer.bias
    if not layer.relu:
        if any(la.relu for la in net.layers[k + 1 :]):
            return [(vertices, k + 1, az, cz, patterns)], []
        return [], [Cell(vertices, np.concatenate(patterns) if patterns else np.zeros(0, bool))]
    norm = np.sqrt(np.einsum("ij,ij->i", az, az))
    rl = net.relu_layers.index(k)
    known = fixed[rl] if rl < len(fixed) else None
    mask = np.zeros(az.shape[0], bool) if known is None else known == 1
    free = np.arange(az.shape[0]) if known is None else np.flatnonzero(known < 0)
    const = free[norm[free] == 0]
    mask[const] = cz[const] > 0  # a neuron constant on the plane: its sign, no cut
    pieces = _split(vertices, mask, free[norm[free] > 0], az, cz, norm, tol)
    if not any(la.relu for la in net.layers[k + 1 :]):  # the last ReLU layer: regions
        return [], [Cell(v, np.concatenate((*patterns, m))) for v, m in pieces]
    items = [(v, k + 1, az * m[:, None], cz * m, (*patterns, m)) for v, m in pieces]
    return items, []


def _split(vertices, mask, cand, az, cz, norm, tol) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut one polygon by the lines of the neurons ``cand``, depth first. Each piece
    re-tests only the neurons still crossing its parent (one small matrix product), so
    a neuron that leaves a piece is never looked at again inside it."""
    out = []
    stack = [(vertices, mask, cand)]
    while stack:
        verts, m, cand = stack.pop()
        if cand.size == 0:
            out.append((verts, m))
            continue
        d = (verts @ az[cand].T + cz[cand]) / norm[cand]
        d[np.abs(d) <= tol] = 0.0
        pos, neg = (d > 0).any(axis=0), (d < 0).any(axis=0)
        cross = pos & neg
        m = m.copy()
        m[cand[~cross]] = pos[~cross]  # one side only (all ~0: inactive, relu(0) = 0)
        hit = np.flatnonzero(cross)
        if hit.size == 0:
            out.append((verts, m))
            continue
        j, rest = cand[hit[0]], cand[hit[1:]]
        p, q = clip(verts, d[:, hit[0]])
        on = m.copy()
        on[j] = True
        stack.append((q, m, rest))
        stack.append((p, on, rest))
    return out


def cells(
    net: Network, items: Sequence[Item], fixed: Sequence[np.ndarray | None], tol: float
) -> Iterator[Cell]:
    """Every region below the given cells, depth first (so memory stays small)."""
    stack = list(items)[::-1]
    while stack:
        nxt, done = expand(net, stack.pop(), fixed, tol)
        yield from done
        stack += nxt[::-1]


def frontier(
    net: Network, root: Item, fixed: Sequence[np.ndarray | None], tol: float, size: int
) -> tuple[list[Item], list[Cell]]:
    """Expand breadth first until at least ``size`` cells wait (or none is left): independent
    pieces of work for ``--jobs`` workers, and the regions already finished."""
    todo, done = [root], []
    while todo and len(todo) < size:
        nxt: list[Item] = []
        for item in todo:
            more, fin = expand(net, item, fixed, tol)
            nxt += more
            done += fin
        todo = nxt
    return todo, done


def count_items(
    args: tuple[tuple[Layer, ...], list[Item], list[np.ndarray | None], float, int],
) -> tuple[int, int, int]:
    """Worker: how many regions lie below ``items`` (at most ``limit``), and 0 LPs twice (the
    shape of the LP worker's answer). Gets the layers: a Network's meta does not pickle."""
    layers, items, fixed, tol, limit = args
    net = Network(layers)
    n = 0
    for _ in cells(net, items, fixed, tol):
        n += 1
        if n >= limit:
            break
    return n, 0, 0


def plane_polygon(
    lower: np.ndarray, upper: np.ndarray, origin: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    """The slice ``{(s, t) : lower <= origin + basis @ (s, t) <= upper}`` of a box, as a convex
    polygon in ``(s, t)`` (empty array when the plane misses the box's interior)."""
    span = float(np.max(upper - lower)) or 1.0
    scale = np.abs(basis).sum(axis=1).max() or 1.0
    r = 4.0 * (span + float(np.max(np.abs(origin - (lower + upper) / 2)))) / scale
    poly = rectangle((-r, -r), (r, r))
    for i in range(lower.size):
        for sign, bound in ((1.0, upper[i]), (-1.0, -lower[i])):
            g = sign * basis[i]
            if not g.any():
                continue
            d = (sign * origin[i] + poly @ g - bound) / np.linalg.norm(g)
            if (d <= 0).all():
                continue
            if (d >= 0).all():
                return np.zeros((0, 2))
            poly = clip(poly, -d)[0]
    return poly
