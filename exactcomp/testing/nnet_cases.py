"""Random ``.nnet`` files with input limits, and their exact meaning, for the soak.

A ``.nnet`` consumer evaluates ``x' = (clip(x, min, max) - mean) / range``, the ReLU network
(no ReLU on the last layer), then ``y = y' * range_out + mean_out`` (see
:mod:`exactcomp.io.nnet`). The clipping is the identity only inside the limits, so a box that
leaves them is where a reader that drops the clipping goes wrong (issue 18). :func:`nnet_case`
draws a network, limits, normalisation and a box that lies inside the limits, leaves them on
some sides, or surrounds them; :meth:`NnetCase.reference` is the file's meaning in exact
rational arithmetic, and :meth:`NnetCase.clipped` the same function as a ReLU network
(``clip(x) = lo + relu(x - lo) - relu(x - hi)``), on which the oracle can enumerate regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..domain import Box
from ..io.nnet_writer import nnet_text
from ..network import Layer, Network
from .random_networks import IntRange, draw, random_network
from .rational import rational, rational_forward

__all__ = ["NnetCase", "nnet_case", "write_nnet"]


@dataclass(frozen=True, eq=False)
class NnetCase:
    """A ``.nnet`` file's content (``network`` maps normalised inputs to normalised outputs)
    and the box to analyse it on; ``mean``/``range`` have ``n + 1`` entries (the last for the
    output)."""

    network: Network
    lower_limit: np.ndarray
    upper_limit: np.ndarray
    mean: np.ndarray
    range: np.ndarray
    box: Box
    seed: int
    placement: str

    @property
    def n(self) -> int:
        return self.network.input_size

    def write(self, path: str | Path) -> Path:
        """Write the case as a ``.nnet`` file (every number in full precision)."""
        return write_nnet(
            path, self.network, self.lower_limit, self.upper_limit, self.mean, self.range
        )

    def reference(self, x: np.ndarray) -> list[Fraction]:
        """The file's output at one input ``x``, exactly (clip, normalise, network, scale)."""
        n = self.n
        lo, hi = rational(self.lower_limit), rational(self.upper_limit)
        mean, rng = rational(self.mean), rational(self.range)
        xs = [min(max(v, a), b) for v, a, b in zip(rational(x), lo, hi, strict=True)]
        xn = [(v - mean[i]) / rng[i] for i, v in enumerate(xs)]
        return [v * rng[n] + mean[n] for v in rational_forward(self.network, xn)]

    def clipped(self) -> Network:
        """The same function as a ReLU network (up to float64 rounding of the folding)."""
        n, lo, hi = self.n, self.lower_limit, self.upper_limit
        first, *rest = self.network.layers
        clip = Layer(np.vstack([np.eye(n), np.eye(n)]), np.concatenate([-lo, -hi]), relu=True)
        w = first.weight / self.range[:n]
        b = first.bias + w @ (lo - self.mean[:n])
        layers = [clip, Layer(np.hstack([w, -w]), b, first.relu), *rest]
        last = layers[-1]
        out = self.range[n]
        layers[-1] = Layer(last.weight * out, last.bias * out + self.mean[n], last.relu)
        return Network(tuple(layers), dtype="float64")

    def to_json(self) -> dict:
        return {
            "family": "nnet",
            "placement": self.placement,
            "layers": [
                {"weight": la.weight.tolist(), "bias": la.bias.tolist(), "relu": la.relu}
                for la in self.network.layers
            ],
            "input_min": self.lower_limit.tolist(),
            "input_max": self.upper_limit.tolist(),
            "mean": self.mean.tolist(),
            "range": self.range.tolist(),
            "box": {"lower": self.box.lower.tolist(), "upper": self.box.upper.tolist()},
            "seed": self.seed,
        }


def write_nnet(
    path: str | Path,
    net: Network,
    lower: np.ndarray,
    upper: np.ndarray,
    mean: np.ndarray,
    rng: np.ndarray,
) -> Path:
    """Write ``net`` (ReLU on every layer but the last) in the ``.nnet`` text format under the
    given header (any normalisation, unlike :func:`exactcomp.io.nnet_writer.save_nnet`)."""
    path = Path(path)
    layers = [(la.weight, la.bias) for la in net.layers]
    path.write_text(nnet_text(layers, lower, upper, mean, rng, "written by exactcomp.testing"))
    return path


def nnet_case(
    seed: int,
    inputs: IntRange = (1, 3),
    depth: IntRange = (1, 3),
    width: IntRange = (1, 8),
    max_neurons: int = 8,
) -> NnetCase:
    """A random ``.nnet`` case: limits, normalisation, and a box placed ``inside`` the limits,
    ``across`` them (leaving on some sides) or ``around`` them."""
    rng = np.random.default_rng(seed)
    n = draw(rng, inputs)
    net = random_network(
        rng, depth=depth, width=width, inputs=n, max_neurons=max_neurons, box=Box.uniform(-1, 1, n)
    )
    lo = np.round(rng.uniform(-3.0, 1.0, size=n), 3)
    hi = lo + np.round(rng.uniform(0.5, 4.0, size=n), 3)
    mean = rng.normal(size=n + 1)
    scale = rng.uniform(0.5, 3.0, size=n + 1)
    width_ = hi - lo
    placement = str(rng.choice(["inside", "across", "across", "around"]))
    if placement == "inside":
        a, b = np.sort(rng.uniform(0.0, 1.0, size=(2, n)), axis=0)
        box_lo, box_hi = lo + a * width_, lo + b * width_
    elif placement == "around":
        box_lo = lo - rng.uniform(0.05, 1.0, size=n) * width_
        box_hi = hi + rng.uniform(0.05, 1.0, size=n) * width_
    else:
        a = rng.uniform(-0.8, 0.9, size=n)
        box_lo = lo + a * width_
        box_hi = box_lo + rng.uniform(0.2, 1.5, size=n) * width_
    return NnetCase(net, lo, hi, mean, scale, Box(box_lo, box_hi), seed, placement)
