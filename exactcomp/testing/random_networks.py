"""Random ReLU networks and boxes with the numerically nasty features that break verifiers.

A random Gaussian network is the easy case: no ties, no duplicates, no extreme scales.
The cases that expose unsound shortcuts are the ones trained networks and our own rewrites
actually produce, so this generator mixes them in on purpose (issue 8):

- weights of mixed magnitudes (``1e-8`` .. ``1e6``), with compensating scales in the next
  layer so that the function itself stays of moderate size;
- exact zeros, all-zero rows (constant neurons) and all-zero columns (dead neurons);
- duplicated rows, positively scaled copies and negated copies (fodder for folding);
- *ties*: first-layer rows with small dyadic weights whose bias is exactly ``-max`` (or
  ``-min``) of ``w . x`` over a dyadic box, so ``max z = 0`` (or ``min z = 0``) exactly,
  with every number exactly representable; deeper rows with weights of one sign and zero
  bias (``z <= 0`` or ``z >= 0`` on ReLU outputs, with equality where the inputs vanish);
- boxes with ``lo == hi`` in some coordinates, dyadic or arbitrary bounds, tiny and large.

Everything is drawn from the ``numpy.random.Generator`` passed in: same seed, same case.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..domain import Box
from ..network import Layer, Network

IntRange = int | tuple[int, int]


def draw(rng: np.random.Generator, r: IntRange) -> int:
    lo, hi = (r, r) if isinstance(r, int) else r
    return int(rng.integers(lo, hi + 1))


def random_box(
    rng: np.random.Generator,
    n: int,
    degenerate_prob: float = 0.15,
    dyadic_prob: float = 0.6,
) -> Box:
    """A random box in ``n`` dimensions; each coordinate is degenerate (``lo == hi``) with
    probability ``degenerate_prob`` and has dyadic bounds (multiples of 1/8, so that tie
    biases are exact) with probability ``dyadic_prob``. Occasionally tiny or large."""
    lo, hi = np.empty(n), np.empty(n)
    scale = float(rng.choice([1.0, 1.0, 1.0, 1e-4, 1e3]))
    for i in range(n):
        if rng.random() < dyadic_prob:
            lo[i] = rng.integers(-16, 9) / 8
            hi[i] = lo[i] + rng.integers(1, 17) / 8
        else:
            lo[i] = rng.normal() * scale
            hi[i] = lo[i] + rng.exponential() * scale
        if rng.random() < degenerate_prob:
            hi[i] = lo[i]
    return Box(lo, hi)


@dataclass(frozen=True)
class Case:
    """One generated test case: a network, a box, and the seed that reproduces both."""

    network: Network
    box: Box
    seed: int

    def to_json(self) -> dict[str, object]:
        """Weights and box as plain lists (exact: floats print with full precision)."""
        return {
            "seed": self.seed,
            "box": self.box.to_json(),
            "layers": [
                {"weight": la.weight.tolist(), "bias": la.bias.tolist(), "relu": la.relu}
                for la in self.network.layers
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> Case:
        layers = tuple(Layer(d["weight"], d["bias"], d["relu"]) for d in data["layers"])
        box = Box(data["box"]["lower"], data["box"]["upper"])
        return cls(Network(layers, dtype="float64"), box, int(data.get("seed", -1)))


def random_case(
    seed: int,
    *,
    depth: IntRange = (1, 4),
    width: IntRange = (1, 12),
    inputs: IntRange = (1, 6),
    outputs: IntRange = (1, 3),
    max_neurons: int | None = None,
    nasty: bool = True,
) -> Case:
    """A network and a box drawn from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    n = draw(rng, inputs)
    box = random_box(rng, n, degenerate_prob=0.15 if nasty else 0.0)
    net = random_network(
        rng,
        depth=depth,
        width=width,
        inputs=n,
        outputs=outputs,
        max_neurons=max_neurons,
        box=box,
        nasty=nasty,
    )
    return Case(net, box, seed)


def random_network(
    rng: np.random.Generator,
    depth: IntRange = (1, 4),
    width: IntRange = (1, 12),
    inputs: IntRange = (1, 6),
    outputs: IntRange = (1, 3),
    *,
    max_neurons: int | None = None,
    box: Box | None = None,
    nasty: bool = True,
) -> Network:
    """A random MLP: ``depth`` ReLU layers of ``width`` neurons each, then an affine output.

    ``max_neurons`` caps the total number of ReLU neurons (the oracle enumerates regions,
    so keep it at about a dozen). Biases are placed relative to ``box`` (default
    ``[-1, 1]^n``) so that a good share of neurons is stable, some exactly tied at 0
    (when ``nasty``). The result has ``dtype="float64"``.
    """
    if box is None:
        box = Box.uniform(-1.0, 1.0, draw(rng, inputs))
    n = box.dim
    widths = [draw(rng, width) for _ in range(draw(rng, depth))]
    if max_neurons is not None:
        while sum(widths) > max_neurons:
            widths[int(np.argmax(widths))] -= 1
        widths = [w for w in widths if w > 0] or [1]
    samples = np.vstack([box.sample(64, rng), box.lower, box.upper, box.center])
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    h = samples
    fan_in = n
    for k, w_out in enumerate(widths):
        w, b = _hidden_layer(rng, k, fan_in, w_out, h, box, nasty)
        if nasty and weights:
            h = h * _rescale_previous(rng, weights, biases, w)  # same z, other numbers
        weights.append(w)
        biases.append(b)
        h = np.maximum(h @ w.T + b, 0.0)
        fan_in = w_out
    m = draw(rng, outputs)
    w = _base_weights(rng, m, fan_in, nasty)
    if nasty and rng.random() < 0.2:
        w[int(rng.integers(m))] *= 1e6
    weights.append(w)
    biases.append(rng.normal(size=m))
    if nasty and rng.random() < 0.3 and fan_in > 1:
        weights[-1][:, int(rng.integers(fan_in))] = 0.0  # a dead neuron: output unused
    layers = [
        Layer(wt, bs, relu=i < len(widths))
        for i, (wt, bs) in enumerate(zip(weights, biases, strict=True))
    ]
    return Network(tuple(layers), dtype="float64")


def _base_weights(rng: np.random.Generator, rows: int, cols: int, nasty: bool) -> np.ndarray:
    """Gaussian or small dyadic rows, with exact zeros sprinkled in when ``nasty``."""
    w = rng.normal(size=(rows, cols))
    if not nasty:
        return w
    dyadic = rng.random(rows) < 0.5
    w[dyadic] = rng.integers(-4, 5, size=(int(dyadic.sum()), cols)) / 4
    w[rng.random((rows, cols)) < 0.2] = 0.0
    return w


def _hidden_layer(rng, k, fan_in, rows, h, box, nasty) -> tuple[np.ndarray, np.ndarray]:
    """One ReLU layer whose biases put neurons on both sides of 0 over the sampled inputs
    ``h`` (the layer's inputs at points of the box), with the nasty rows mixed in."""
    w = _base_weights(rng, rows, fan_in, nasty)
    z = h @ w.T
    # q in [0, 1]: cut the samples at that quantile (both signs seen); q > 1 or q < 0:
    # shift past every sample by a margin (probably stable, inactive or active)
    q = rng.uniform(-0.3, 1.3, size=rows)
    qc = np.clip(q, 0.0, 1.0)
    cut = np.array([np.quantile(z[:, j], qc[j]) for j in range(rows)])
    b = -cut - (q - qc) * (1.0 + np.ptp(z, axis=0))
    if not nasty:
        return w, b
    for j in range(rows):
        kind = rng.choice(["plain", "plain", "dup", "zero", "tie", "onesign", "scale"])
        if kind == "dup" and j > 0:
            src = int(rng.integers(j))
            s = float(rng.choice([1.0, 2.0, 0.5, 3.0, -1.0, 1e-3]))
            w[j], b[j] = s * w[src], s * b[src]
        elif kind == "zero":
            w[j] = 0.0
            b[j] = float(rng.choice([0.0, 1.0, -1.0]))
        elif kind == "tie" and k == 0:
            _tie_row(rng, w, b, j, box)
        elif kind == "onesign" and k > 0:
            sign = float(rng.choice([1.0, -1.0]))
            w[j] = sign * np.abs(rng.integers(0, 3, size=fan_in)) / 2
            b[j] = 0.0
        elif kind == "scale":
            s = float(10.0 ** rng.choice([-8, -4, 3, 6]))
            w[j], b[j] = w[j] * s, b[j] * s
    return w, b


def tie_bias(row: np.ndarray, box: Box, which: str = "max") -> float | None:
    """The bias that puts ``max`` (or ``min``) of ``row . x + bias`` over the box at exactly 0,
    or None when that bias is not exactly representable in float64 (use dyadic weights and
    box bounds, e.g. multiples of 1/8, to make it so)."""
    lo = [Fraction(float(v)) for v in box.lower]
    hi = [Fraction(float(v)) for v in box.upper]
    terms = [
        (Fraction(float(a)) * li, Fraction(float(a)) * ui)
        for a, li, ui in zip(row, lo, hi, strict=True)
    ]
    pick = max if which == "max" else min
    target = sum((pick(t) for t in terms), Fraction(0))
    if Fraction(float(target)) != target:
        return None
    return -float(target)


def _tie_row(rng: np.random.Generator, w: np.ndarray, b: np.ndarray, j: int, box: Box) -> None:
    """Make row ``j`` a dyadic row whose bias puts ``max z`` (or ``min z``) at exactly 0 over
    the box. Left unchanged if the bias would not be exactly representable."""
    row = rng.integers(-4, 5, size=w.shape[1]) / 4
    bias = tie_bias(row, box, "max" if rng.random() < 0.6 else "min")
    if bias is not None:
        w[j], b[j] = row, bias


def _rescale_previous(
    rng, weights: list[np.ndarray], biases: list[np.ndarray], w_next
) -> np.ndarray:
    """Scale a few neurons of the last layer by ``s > 0`` and their outgoing column by
    ``1/s``: the function is unchanged in exact arithmetic, its numbers span 1e-6..1e6.
    Also zeroes a few outgoing columns (dead neurons). Returns the scale of each neuron."""
    w_prev, b_prev = weights[-1], biases[-1]
    scale = np.ones(w_prev.shape[0])
    for j in range(w_prev.shape[0]):
        if rng.random() < 0.2:
            scale[j] = float(2.0 ** rng.choice([-20, 20]))  # exact inverse: powers of two
            w_prev[j] *= scale[j]
            b_prev[j] *= scale[j]
            w_next[:, j] /= scale[j]
        elif rng.random() < 0.1:
            w_next[:, j] = 0.0  # a dead neuron
    return scale


def gaussian_mlp(sizes: list[int], seed: int) -> Network:
    """A float64 MLP of the given widths, weights N(0, 1/fan_in) and biases N(0, 0.09)."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [rng.normal(size=b) * 0.3 for b in sizes[1:]]
    return Network.from_arrays(ws, bs, dtype="float64")


def perturbed(net: Network, scale: float, seed: int) -> Network:
    """``net`` with every weight and bias moved by ``scale`` times a standard normal (same
    architecture): a second network for differential verification."""
    rng = np.random.default_rng(seed)
    return net.replace_layers(
        [
            Layer(
                layer.weight + scale * rng.normal(size=layer.weight.shape),
                layer.bias + scale * rng.normal(size=layer.bias.shape),
                layer.relu,
            )
            for layer in net.layers
        ]
    )


def planted_rows_net(
    rng: np.random.Generator,
    inputs: int,
    widths: list[int],
    *,
    share: float,
    sign: float = 1.0,
    zero_rows: float = 0.0,
) -> Network:
    """A random network of dyadic weights (multiples of 1/4 in ``[-1, 1]``, biases in
    ``[-1/2, 1/2]``) with rows planted in its hidden layers: each row after the first is, with
    probability ``share``, ``sign`` times an earlier row, bias included (``1``: an exact copy,
    ``-1``: an exact negation); then, with probability ``zero_rows``, one row of the layer is
    zeroed (a constant neuron). One output. Fodder for the exact class identities
    (:func:`~exactcomp.stability.constants.layer_classes`): every number is exact."""
    ws, bs, prev = [], [], inputs
    for k, m in enumerate([*widths, 1]):
        w = rng.integers(-4, 5, size=(m, prev)) / 4
        b = rng.integers(-2, 3, size=m) / 4
        if k < len(widths):
            for j in range(1, m):
                if rng.random() < share:
                    i = int(rng.integers(j))
                    w[j], b[j] = sign * w[i], sign * b[i]
            if zero_rows and rng.random() < zero_rows:
                w[int(rng.integers(m))] = 0.0
        ws.append(w)
        bs.append(b)
        prev = m
    return Network.from_arrays(ws, bs, dtype="float64")
