r"""Concrete inputs: candidates to probe, gradient search towards a sign, and sign witnesses.

A neuron seen strictly positive at one input of the box and strictly negative at another is
*unstable*: no bound or MILP can call it stable, and none needs to be solved for it. Finding
such inputs is a search problem, so this module is heuristic in how it *finds* inputs and
strict in what it *certifies*: a sign counts only after a float64 forward pass of the IR shows
it with margin (:func:`sign_witnesses`).

Candidates (:func:`candidate_inputs`)
    A ReLU network is piecewise affine, so the extremes of a pre-activation lie at vertices of
    its activation regions; box vertices (and points just inside them, where a neuron that is
    exactly 0 at the vertex may take either sign) are cheap guesses at such points, uniform
    samples cover the rest, and data points reach the regions real inputs visit.

Gradient ascent (:func:`ascend`)
    The one projected *signed* gradient ascent, of any objective with a gradient: a neuron's
    ``sign * z_k[j](x)`` (:func:`neuron_objective`, :func:`gradient_points`: each row of the
    batch pursues its own neuron) or a difference of two networks' outputs
    (:mod:`exactcomp.verify.falsify`). The network may hold 1e6 and 1e-8 side by side: the
    step depends only on the gradient's sign and the box width.

Witnesses (:func:`witness_margin`, :func:`sign_witnesses`, :func:`observe_signs`)
    ``z`` is provably positive at ``x`` when the float64 forward pass gives
    ``z > tol.witness * (1 + scale)``, ``scale = |W_k| |h_{k-1}(x)| + |b_k|`` (the magnitude
    of the terms summed: rounding of the pass cannot flip such a sign); likewise negative.
    :func:`witness_margin` is that rule; the engine's pool and the re-check call it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .domain import Box
from .network import Network
from .tolerances import DEFAULT, Tolerances

__all__ = [
    "Ascent",
    "SignWitnesses",
    "ascend",
    "candidate_inputs",
    "gradient_points",
    "neuron_objective",
    "observe_signs",
    "sign_witnesses",
    "witness_margin",
]


class SignWitnesses(NamedTuple):
    """Per neuron, the row of ``x`` where ``z`` is provably positive / negative (``-1``: none)."""

    pos: np.ndarray
    neg: np.ndarray


# ----------------------------------------------------------------------------- candidates
def candidate_inputs(
    box: Box,
    n: int,
    rng: np.random.Generator,
    data: np.ndarray | None = None,
    near: float = 1e-3,
    vertices: int | None = None,
) -> np.ndarray:
    """Inputs worth probing: the centre, box vertices and their neighbourhoods, uniform samples,
    and the data points that lie in the box.

    Parameters
    ----------
    box:
        The input box.
    n:
        Number of uniform samples.
    rng:
        The random generator (results are deterministic given its state).
    data:
        Optional data array ``(samples, ...)`` flattened to the box's dimension; rows outside
        the box are dropped.
    near:
        Near-vertex points move inwards from a vertex by up to ``near`` times the box width.
    vertices:
        How many vertices (and as many near-vertex points): all ``2^d`` of them when that is
        at most ``vertices``, else ``vertices`` random ones. Default ``n``.

    Returns
    -------
    np.ndarray
        Float64 array ``(rows, box.dim)``, every row inside the box: the centre first, then
        vertices, near-vertex points, uniform samples and data.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    d = box.dim
    width = box.upper - box.lower
    vertices = n if vertices is None else vertices
    if d <= 20 and 2**d <= vertices:
        bits = (np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1
        pick = bits.astype(bool)
    else:
        pick = rng.random((vertices, d)) < 0.5
    verts = np.where(pick, box.upper, box.lower)
    inward = np.where(pick, -1.0, 1.0) * rng.random(verts.shape) * near * width
    parts = [box.center[None, :], verts, box.clip(verts + inward), box.sample(n, rng)]
    if data is not None:
        arr = np.asarray(data, dtype=np.float64)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, d)
        if arr.shape[1] != d:
            raise ValueError(f"data rows have {arr.shape[1]} features; the box has {d}")
        parts.append(arr[box.contains(arr)])
    return np.concatenate(parts).astype(np.float64, copy=False)


# ------------------------------------------------------------------------ gradient ascent
class Ascent(NamedTuple):
    """Per row of the starts, the best point met (largest objective) and the last iterate."""

    best: np.ndarray
    last: np.ndarray


Objective = Callable[[np.ndarray], tuple[np.ndarray, Callable[[], np.ndarray]]]
"""``objective(x) -> (value, gradient)``: per row of ``x`` the value to climb, and a function
that returns its gradient w.r.t. ``x`` (called only when a step is taken)."""


def ascend(
    box: Box, starts: np.ndarray, step_sizes: Sequence[float], objective: Objective
) -> Ascent:
    r"""Projected sign-gradient ascent of ``objective`` from every row of ``starts``: the one
    ascent of exactcomp (neuron signs here, output differences in :mod:`exactcomp.verify.falsify`).

    Step ``t`` moves each coordinate by ``step_sizes[t]`` times the box width along the sign
    of the gradient and projects onto the box:

    .. math::

        x \leftarrow \Pi_{box}\big(x + \eta_t\,(hi - lo) \odot \operatorname{sign}
        \nabla_x\, \phi(x)\big),

    the step of the FGSM/PGD attacks, scaled per coordinate by the box width (so a flat
    coordinate never moves) and insensitive to the magnitude of the weights. The objective is
    evaluated at every iterate (the start included); the best point per row is returned with
    the last iterate: candidates only, which callers re-evaluate before they certify anything.
    """
    x = box.clip(np.array(starts, dtype=np.float64))
    width = box.upper - box.lower
    best_x, best_v = x.copy(), np.full(len(x), -np.inf)
    steps = len(step_sizes)
    for t in range(steps + 1):
        value, gradient = objective(x)
        better = value > best_v
        best_v[better], best_x[better] = value[better], x[better]
        if t == steps:
            break
        x = box.clip(x + step_sizes[t] * np.sign(gradient()) * width)
    return Ascent(best_x, x)


def neuron_objective(net: Network, k: int, neurons: np.ndarray, signs: np.ndarray) -> Objective:
    r"""The objective ``signs[i] * z_k[neurons[i]](x)`` of row ``i``, for :func:`ascend`.

    On each activation region the network is affine, so the gradient is exact there,
    :math:`\nabla_x z_{kj} = W_k[j] D_{k-1} W_{k-1} \cdots D_0 W_0` (:math:`D_l` the 0/1
    activation pattern), and one matrix product per layer gives it for the whole batch (plain
    numpy: torch's thread start-up dominated for these small batches).
    """
    w_k = net.layers[k].weight[neurons] * np.asarray(signs, dtype=np.float64)[:, None]

    def objective(x: np.ndarray) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        h, masks = x, []
        for layer in net.layers[:k]:
            z = h @ layer.weight.T + layer.bias
            masks.append(z > 0.0 if layer.relu else np.ones(z.shape, dtype=bool))
            h = np.maximum(z, 0.0) if layer.relu else z

        def gradient() -> np.ndarray:
            g = w_k
            for layer, mask in zip(net.layers[:k][::-1], masks[::-1], strict=True):
                g = (g * mask) @ layer.weight
            return g

        return np.einsum("ij,ij->i", h, w_k), gradient

    return objective


def gradient_points(
    net: Network,
    box: Box,
    k: int,
    neurons: np.ndarray,
    signs: np.ndarray,
    starts: np.ndarray,
    steps: int = 40,
) -> np.ndarray:
    """Candidate witnesses: row ``i`` of ``starts`` pushes ``signs[i] * z_k[neurons[i]]`` up
    by :func:`ascend` with geometrically shrinking steps (``0.25 * 0.9^t`` of the box width).

    Returns the best point of each path (never worse than its start), then the last iterates:
    ``(2 * rows, input_size)``, every row inside the box.
    """
    neurons = np.asarray(neurons, dtype=np.int64).reshape(-1)
    signs = np.asarray(signs, dtype=np.float64).reshape(-1)
    starts = np.asarray(starts, dtype=np.float64).reshape(-1, net.input_size)
    if not neurons.size == signs.size == len(starts):
        raise ValueError(
            f"{len(starts)} start rows for {neurons.size} neurons and {signs.size} signs: "
            "one row, neuron and sign each"
        )
    if not np.all(np.abs(signs) == 1.0):
        raise ValueError("signs must be +1 or -1")
    objective = neuron_objective(net, k, neurons, signs)
    best, last = ascend(box, starts, [0.25 * 0.9**t for t in range(steps)], objective)
    return np.concatenate([best, last])


# ------------------------------------------------------------------------------ witnesses
def witness_margin(
    h: np.ndarray, weight: np.ndarray, bias: np.ndarray, tol: Tolerances
) -> np.ndarray:
    r"""The margin a float64 pre-activation must clear to witness its sign: the one witness
    rule (the search, the engine's pool and the re-check all call it).

    For inputs ``h`` (rows) of a layer :math:`z = W h + b`, computed by a float64 forward pass,

    .. math::

        \tau = \varepsilon_w\,\big(1 + |W|\,|h| + |b|\big), \qquad
        z > \tau \Rightarrow z^{\text{exact}} > 0, \qquad
        z < -\tau \Rightarrow z^{\text{exact}} < 0,

    with :math:`\varepsilon_w` = ``tol.witness``. :math:`|W||h| + |b|` is the magnitude of the
    terms summed; the rounding error of the float64 sum (and of every earlier layer's, which
    is of the same relative size) stays far below :math:`\varepsilon_w` times it, so a value
    beyond :math:`\tau` has the sign of the exact value at that input. Returns ``(rows, out)``.
    """
    return tol.witness * (1.0 + (np.abs(h) @ np.abs(weight.T) + np.abs(bias)))


def _signs_one(z: np.ndarray, thr: np.ndarray) -> SignWitnesses:
    out = []
    for side in (z - thr, -z - thr):
        best = np.argmax(side, axis=0) if len(side) else np.zeros(z.shape[1], dtype=np.int64)
        ok = side[best, np.arange(z.shape[1])] > 0.0 if len(side) else np.zeros(z.shape[1], bool)
        out.append(np.where(ok, best, -1).astype(np.int64))
    return SignWitnesses(out[0], out[1])


def _layers_signs(net: Network, x: np.ndarray, upto: int, tol: Tolerances) -> list[SignWitnesses]:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    zs = net.preactivations(x) if len(x) else [np.empty((0, la.out_features)) for la in net.layers]
    out, h = [], x
    for j, layer in enumerate(net.layers[: upto + 1]):
        out.append(_signs_one(zs[j], witness_margin(h, layer.weight, layer.bias, tol)))
        h = np.maximum(zs[j], 0.0) if layer.relu else zs[j]
    return out


def sign_witnesses(net: Network, k: int, x: np.ndarray, tol: Tolerances = DEFAULT) -> SignWitnesses:
    """Per neuron of layer ``k``, a row of ``x`` where ``z`` is provably > 0 and one where < 0.

    The float64 IR forward pass decides; a sign counts only beyond the margin
    ``tol.witness * (1 + scale)`` (module docstring). Of the qualifying rows the one with the
    largest margin is returned; ``-1`` where no row qualifies.
    """
    return layer_signs(net, k, x, tol)[0]


def layer_signs(
    net: Network, k: int, x: np.ndarray, tol: Tolerances = DEFAULT
) -> tuple[SignWitnesses, np.ndarray]:
    """:func:`sign_witnesses` and the values ``z_k`` at the rows of ``x`` it read them from
    (one float64 forward pass for both)."""
    if not 0 <= k < len(net.layers):
        raise IndexError(f"layer {k} does not exist (the network has {len(net.layers)} layers)")
    # only layer k's margin: |W_j| of a wide earlier layer (a 2,048 x 3,072 convolution held
    # densely) costs more than the whole forward pass, and the ReLU-split phase asks per node
    h = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if not len(h):
        return _layers_signs(net, h, k, tol)[k], np.empty((0, net.layers[k].out_features))
    for layer in net.layers[:k]:
        z = layer.apply(h) + layer.bias
        h = np.maximum(z, 0.0) if layer.relu else z
    layer = net.layers[k]
    z = layer.apply(h) + layer.bias
    return _signs_one(z, witness_margin(h, layer.weight, layer.bias, tol)), z


def observe_signs(net: Network, x: np.ndarray, tol: Tolerances = DEFAULT) -> list[SignWitnesses]:
    """:func:`sign_witnesses` for every ReLU layer at once (one forward pass), in the order of
    ``net.relu_layers``."""
    every = _layers_signs(net, x, len(net.layers) - 1, tol)
    return [every[k] for k in net.relu_layers]
