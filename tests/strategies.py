"""Hypothesis strategies for networks and boxes, with the nasty cases of issue 8 built in.

Every weight, bias and structural choice is drawn by hypothesis (no hidden seed), so a
failing example shrinks towards a small network with plain numbers. Use them as::

    from strategies import network_and_box, networks, boxes

    @given(network_and_box(max_neurons=8))
    def test_something(case): net, box = case

Biases of ordinary rows are placed from a drawn quantile of the row's values over the
box's corners and centre, so that stable neurons (both kinds) and unstable ones are all
common; tie rows have their maximum (or minimum) at exactly 0 over the box.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.random_networks import tie_bias

_DYADIC = st.integers(-4, 4).map(lambda i: i / 4)
_PLAIN = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
_SCALES = (1.0, 1.0, 1.0, 1.0, 1e-8, 1e-4, 1e3, 1e6)
_ROW_KINDS = ("plain", "plain", "plain", "dup", "zero", "tie", "onesign", "scaled")


@st.composite
def boxes(draw: st.DrawFn, n: int, *, degenerate: bool = True, dyadic: bool | None = None) -> Box:
    """A box in ``n`` dimensions: dyadic bounds (multiples of 1/8) or arbitrary floats,
    with ``lo == hi`` in some coordinates when ``degenerate``."""
    use_dyadic = draw(st.booleans()) if dyadic is None else dyadic
    lo, hi = [], []
    for _ in range(n):
        if use_dyadic:
            a = draw(st.integers(-16, 8)) / 8
            w = draw(st.integers(0 if degenerate else 1, 16)) / 8
        else:
            a = draw(st.floats(-10.0, 10.0, allow_subnormal=False))
            w = draw(st.floats(0.0 if degenerate else 1e-3, 10.0, allow_subnormal=False))
        if degenerate and draw(st.integers(0, 5)) == 0:
            w = 0.0
        lo.append(a)
        hi.append(a + w)
    return Box(np.array(lo), np.array(hi))


def _probe(box: Box) -> np.ndarray:
    corners = np.array(list(itertools.product(*zip(box.lower, box.upper, strict=True))))
    return np.vstack([corners[:64], box.center])


@st.composite
def _layer(draw, k: int, rows: int, cols: int, h: np.ndarray, box: Box, nasty: bool):
    w = np.zeros((rows, cols))
    b = np.zeros(rows)
    z_all = np.zeros((h.shape[0], rows))
    for j in range(rows):
        kind = draw(st.sampled_from(_ROW_KINDS)) if nasty else "plain"
        values = _DYADIC if kind in ("tie", "onesign") else st.one_of(_DYADIC, _PLAIN)
        row = np.array(draw(st.lists(values, min_size=cols, max_size=cols)), dtype=float)
        if nasty and kind == "plain":
            row[np.array(draw(st.lists(st.booleans(), min_size=cols, max_size=cols)))] = 0.0
        z = h @ row
        q = draw(st.floats(-0.3, 1.3))
        qc = min(max(q, 0.0), 1.0)
        bias = -float(np.quantile(z, qc)) - (q - qc) * (1.0 + float(np.ptp(z)))
        if kind == "dup" and j > 0:
            src = draw(st.integers(0, j - 1))
            s = draw(st.sampled_from([1.0, 2.0, 0.5, 3.0, -1.0, 1e-3]))
            row, bias = s * w[src], s * b[src]
        elif kind == "zero":
            row, bias = np.zeros(cols), draw(st.sampled_from([0.0, 1.0, -1.0]))
        elif kind == "tie" and k == 0:
            tb = tie_bias(row, box, draw(st.sampled_from(["max", "min"])))
            bias = bias if tb is None else tb
        elif kind == "onesign" and k > 0:
            row, bias = draw(st.sampled_from([1.0, -1.0])) * np.abs(row), 0.0
        elif kind == "scaled":
            s = draw(st.sampled_from(_SCALES))
            row, bias = row * s, bias * s
        w[j], b[j] = row, bias
        z_all[:, j] = h @ row + bias
    return w, b, z_all


@st.composite
def networks(
    draw: st.DrawFn,
    *,
    box: Box | None = None,
    inputs: tuple[int, int] = (1, 3),
    depth: tuple[int, int] = (1, 3),
    width: tuple[int, int] = (1, 5),
    outputs: tuple[int, int] = (1, 2),
    max_neurons: int = 10,
    nasty: bool = True,
) -> Network:
    """A ReLU MLP (float64 IR) whose biases are placed relative to ``box`` (default: a
    drawn box); at most ``max_neurons`` ReLU neurons in total."""
    if box is None:
        box = draw(boxes(draw(st.integers(*inputs))))
    n = box.dim
    widths = []
    for _ in range(draw(st.integers(*depth))):
        room = max_neurons - sum(widths)
        if room < 1:
            break
        widths.append(draw(st.integers(width[0], max(width[0], min(width[1], room)))))
    h = _probe(box)
    layers = []
    fan_in = n
    for k, rows in enumerate(widths):
        w, b, z = draw(_layer(k, rows, fan_in, h, box, nasty))
        layers.append(Layer(w, b, relu=True))
        h = np.maximum(z, 0.0)
        fan_in = rows
    m = draw(st.integers(*outputs))
    w = np.array(
        draw(st.lists(st.one_of(_DYADIC, _PLAIN), min_size=m * fan_in, max_size=m * fan_in))
    )
    w = w.reshape(m, fan_in)
    if nasty and draw(st.booleans()):
        w[:, draw(st.integers(0, fan_in - 1))] = 0.0  # a dead neuron
    b = np.array(draw(st.lists(_PLAIN, min_size=m, max_size=m)))
    layers.append(Layer(w, b, relu=False))
    return Network(tuple(layers), dtype="float64")


@st.composite
def network_and_box(draw: st.DrawFn, **kwargs) -> tuple[Network, Box]:
    """A box and a network placed relative to it (ties are exact on this box);
    keyword arguments go to :func:`networks` (``inputs`` sets the box's dimension)."""
    inputs = kwargs.pop("inputs", (1, 3))
    box = draw(boxes(draw(st.integers(*inputs))))
    return draw(networks(box=box, **kwargs)), box


def gaussian_mlp(
    seed: int, widths: tuple[int, ...], *, scaled: bool = False, dtype: str = "float32"
) -> Network:
    """A seeded random MLP with ReLU after its hidden layers, the lossy tests' tiny network:
    weights ``N(0, 1)`` (divided by the square root of the fan-in where ``scaled``), biases
    ``0.3 N(0, 1)``."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    if scaled:
        ws = [w / np.sqrt(w.shape[1]) for w in ws]
    bs = [rng.normal(size=b) * 0.3 for b in widths[1:]]
    return Network.from_arrays(ws, bs, dtype=dtype)


def trained_batchnorm(m):
    """``m``, a torch BatchNorm module, given statistics and an affine part as training
    leaves them (not the identity of a fresh module), in place; returns ``m``."""
    import torch

    with torch.no_grad():
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.3, 0.3)
    return m


def slow_symbolic_proofs(monkeypatch, clock, seconds: float) -> list[float]:
    """Make every symbolic bound a :class:`~exactcomp.verify.charge.Charger` computes take
    ``seconds`` on the fake ``clock`` (:mod:`exactcomp.testing.clock`; memoised bounds none);
    returns the list of their start times."""
    from exactcomp.verify import box_bounds

    real, started = box_bounds.symbolic_bound, []

    def slow(pair, g, box, end=None):
        started.append(clock.now)
        clock.advance(seconds)
        return real(pair, g, box, end)

    monkeypatch.setattr(box_bounds, "symbolic_bound", slow)
    return started


def jacobian_moment(f: Network, x: np.ndarray, k: int) -> np.ndarray:
    """The mean over the rows ``x`` of ``J^T J``, ``J`` the output Jacobian at layer ``k``'s
    pre-activations, built point by point."""
    total = np.zeros((f.layers[k].out_features,) * 2)
    for p in x:
        a, pre = p, []
        for la in f.layers:
            z = la.weight @ a + la.bias
            pre.append(z)
            a = np.maximum(z, 0.0) if la.relu else z
        jac = np.eye(f.output_size)
        for j in range(len(f.layers) - 1, k, -1):
            jac = jac @ f.layers[j].weight
            if f.layers[j - 1].relu:
                jac = jac * (pre[j - 1] > 0)
        total += jac.T @ jac
    return total / len(x)
