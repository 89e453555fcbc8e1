"""Degenerate networks and boxes: the shapes compression produces and checkpoints contain.

The soak's ``degenerate`` family (:mod:`benchmarks.soak_degenerate`). Each seed draws a small
network (depth 1-6, widths 1-4, 1-3 inputs, 1-3 outputs) and a box, plus one or more of
the features below (:data:`FEATURES`), each aimed at an edge of the engines:

- ``empty``: one hidden layer dead on the box by construction (every bias below
  ``-(w+ . hi + w- . lo)`` of the layer's interval inputs, minus a margin), so that
  ``compress`` removes it whole and the compressed network has zero-width layers;
- ``constant``: the first hidden layer dead: the network is constant on the box;
- ``hollow``: with ``empty`` or ``constant``, that dead layer given zero width (weights of
  shape ``(0, n)``, the next layer's ``(m, 0)``): the same function on the box, the shapes
  ``compress`` leaves when it empties a layer, in the network every engine reads;
- ``linear``: every hidden layer active on the box (biases above the interval minimum):
  the network is affine there and ``compress`` folds it to one layer;
- ``zeros``: zero rows (constant neurons), zero columns (dead inputs), and with
  probability ``1/2`` an all-zero layer (weights and biases);
- ``dups``: exact duplicates, negatives and multiples (``x 2``, ``x 0.5``, ``x -3``) of
  rows of the same layer: merges and folds at their edge;
- ``scales``: rows scaled by ``10^u``, ``u`` uniform in ``[-8, 4]``, the next layer's
  column divided by the same factor on every other row (same function, other numbers);
- ``lattice`` (drawn with probability ``0.3`` from a stream of its own,
  ``default_rng([seed, 1])``, so that the cases without it are those drawn before it
  existed): below each hidden layer but the first, two units made exact copies and one
  row reading them with opposite weights (``c (h_p - h_q)``, a two-level lattice
  network's ``a - a``), bias ``0`` (a tie) or ``+-1/2``: the constants that
  :mod:`exactcomp.stability.constants` decides and the duplicates ``verify`` sees through.

Widths of 1, one input and one output are drawn often (``thin`` is not a feature: a width
is 1 with probability ``0.3``). The box (:data:`BOX_KINDS`) is ``plain``, a ``point``
(``lo == hi`` everywhere), ``some-points`` (some coordinates), ``wide`` (``+-1e3``) or
``tiny`` (``1e-9`` wide), plain with probability ``0.4`` (:data:`BOX_ODDS`).

Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..domain import Box
from ..network import Layer, Network
from .random_networks import Case

FEATURES = ("empty", "constant", "hollow", "linear", "zeros", "dups", "scales")
"""The features drawn from the case's main stream (``lattice`` has a stream of its own)."""
BOX_KINDS = ("plain", "point", "some-points", "wide", "tiny")
BOX_ODDS = (0.4, 0.15, 0.15, 0.15, 0.15)
MARGIN = 1e-3
"""Relative margin of the dead and active biases (``MARGIN * (1 + |reach|)``): far above the
float64 rounding of the interval bounds, so the verdicts are clear-cut."""


@dataclass(frozen=True)
class DegenerateCase:
    """A degenerate :class:`Case` and what was drawn for it."""

    case: Case
    features: tuple[str, ...]
    box_kind: str

    def to_json(self) -> dict[str, object]:
        doc = {"family": "degenerate", "features": list(self.features)}
        return {**doc, "box_kind": self.box_kind, **self.case.to_json()}


def degenerate_box(rng: np.random.Generator, n: int, kind: str) -> Box:
    """A box of ``kind`` (:data:`BOX_KINDS`) in ``n`` dimensions."""
    centre = rng.integers(-8, 9, size=n) / 8
    half = {"wide": 1e3, "tiny": 5e-10}.get(kind, 1.0) * (0.5 + rng.random(n))
    lo, hi = centre - half, centre + half
    if kind == "point":
        hi = lo.copy()
    elif kind == "some-points":
        flat = rng.random(n) < 0.5
        flat[int(rng.integers(n))] = True
        hi[flat] = lo[flat]
    return Box(lo, hi)


def degenerate_case(seed: int, *, max_neurons: int = 10) -> DegenerateCase:
    """The case of ``seed`` (see the module docstring); at most ``max_neurons`` ReLUs."""
    rng = np.random.default_rng(seed)
    features = tuple(f for f in FEATURES if rng.random() < 0.3) or (str(rng.choice(FEATURES)),)
    side = np.random.default_rng([seed, 1])  # the lattice feature's own draws
    if side.random() < 0.3:
        features = (*features, "lattice")
    if "linear" in features and ("empty" in features or "constant" in features):
        features = tuple(f for f in features if f != "linear")
    n = 1 if rng.random() < 0.4 else int(rng.integers(2, 4))
    m = 1 if rng.random() < 0.4 else int(rng.integers(2, 4))
    depth = int(rng.integers(1, min(6, max_neurons) + 1))
    widths = [1 if rng.random() < 0.3 else int(rng.integers(2, 5)) for _ in range(depth)]
    while sum(widths) > max_neurons:
        widths[int(np.argmax(widths))] -= 1
    kind = str(rng.choice(BOX_KINDS, p=BOX_ODDS))
    box = degenerate_box(rng, n, kind)
    dead = {0} if "constant" in features else set()
    if "empty" in features:
        dead.add(int(rng.integers(depth)))
    lo, hi = box.lower.copy(), box.upper.copy()
    ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    for k, width in enumerate(widths):
        tie = _copies(side, ws, bs, lo, hi) if "lattice" in features and k else None
        w, b = _layer(rng, width, len(lo), lo, hi, features)
        if tie is not None:
            j = int(side.integers(width))
            w[j] = 0.0
            w[j, tie] = np.array([1.0, -1.0]) * side.choice([0.5, 1.0, 3.0])
            b[j] = side.choice([0.0, 0.0, -0.5, 0.5])
        zlo, zhi = _interval(w, lo, hi)
        reach = np.maximum(np.abs(zlo), np.abs(zhi))
        if k in dead:
            b = -zhi - MARGIN * (1.0 + reach)
        elif "linear" in features:
            b = -zlo + MARGIN * (1.0 + reach)
        ws.append(w)
        bs.append(b)
        lo, hi = np.maximum(zlo + b, 0.0), np.maximum(zhi + b, 0.0)
    ws.append(_weights(rng, m, len(lo)))
    bs.append(rng.normal(size=m))
    if "scales" in features:
        keep = set(range(depth)) if "linear" in features else dead
        _scale(rng, ws, bs, keep)
    if "hollow" in features and not dead:
        features = tuple(f for f in features if f != "hollow")
    if "hollow" in features:
        k = max(dead)
        ws[k], bs[k], ws[k + 1] = ws[k][:0], bs[k][:0], ws[k + 1][:, :0]
    layers = [Layer(w, b, relu=i < depth) for i, (w, b) in enumerate(zip(ws, bs, strict=True))]
    return DegenerateCase(Case(Network(tuple(layers), dtype="float64"), box, seed), features, kind)


def _weights(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Gaussian, or small dyadic numbers (exact sums) on every other draw."""
    if rng.random() < 0.5:
        return rng.integers(-4, 5, size=(rows, cols)) / 4
    return rng.normal(size=(rows, cols))


def _layer(rng, rows, cols, lo, hi, features) -> tuple[np.ndarray, np.ndarray]:
    """A hidden layer whose biases cut its interval inputs' image near the middle (both
    signs likely), with the ``zeros`` and ``dups`` rows of ``features``."""
    w = _weights(rng, rows, cols)
    zlo, zhi = _interval(w, lo, hi)
    b = -(zlo + (zhi - zlo) * rng.uniform(-0.2, 1.2, size=rows))
    if "zeros" in features:
        if rng.random() < 0.5:
            w[:], b[:] = 0.0, rng.choice([-1.0, 0.0, 1.0]) * (rng.random() < 0.5)
        else:
            j = int(rng.integers(rows))
            w[j], b[j] = 0.0, float(rng.choice([-1.0, 0.0, 1.0]))
            w[:, int(rng.integers(cols))] = 0.0
    if "dups" in features and rows > 1:
        for j in range(1, rows):
            if rng.random() < 0.6:
                i, s = int(rng.integers(j)), float(rng.choice([1.0, -1.0, 2.0, 0.5, -3.0]))
                w[j], b[j] = s * w[i], s * b[i]
    return w, b


def _copies(side, ws, bs, lo, hi) -> list[int] | None:
    """Make two units ``p, q`` of the last layer built exact copies (row, bias and interval
    outputs; the layer's dead or active construction holds for the copy too); ``[p, q]``,
    or ``None`` for a layer of one unit."""
    if ws[-1].shape[0] < 2:
        return None
    p, q = (int(i) for i in side.choice(ws[-1].shape[0], 2, replace=False))
    ws[-1][q], bs[-1][q], lo[q], hi[q] = ws[-1][p], bs[-1][p], lo[p], hi[p]
    return [p, q]


def _interval(w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``min`` and ``max`` of ``w @ x`` over the box ``[lo, hi]`` (float64)."""
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
    return wp @ lo + wn @ hi, wp @ hi + wn @ lo


def _scale(rng, ws: list[np.ndarray], bs: list[np.ndarray], keep: set[int]) -> None:
    """Rows of the hidden layers times ``10^u``, ``u`` in ``[-8, 4]``; on every other row the
    next layer's column divided by the same factor (ReLU is positively homogeneous), and on
    every row whose next layer is in ``keep`` (dead or active by construction: its inputs
    must stay within the interval its biases were set for)."""
    for k in range(len(ws) - 1):
        for j in range(ws[k].shape[0]):
            if rng.random() < 0.5:
                s = float(10.0 ** rng.uniform(-8, 4))
                ws[k][j] *= s
                bs[k][j] *= s
                if k + 1 in keep or rng.random() < 0.5:
                    ws[k + 1][:, j] /= s
