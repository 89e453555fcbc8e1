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

Gradient search (:func:`gradient_search`)
    Projected *signed* gradient ascent on ``sign * z_k[j](x)``:

    .. math::

        x \leftarrow \Pi_{box}\big(x + \eta_t\,(hi - lo) \odot \operatorname{sign}
        \nabla_x\, \sigma z_{k,j}(x)\big), \qquad \eta_t = \eta\,(1 - t / T),

    the step of the FGSM/PGD attacks, scaled per coordinate by the box width (so a flat
    coordinate never moves) and insensitive to the magnitude of the weights (the network may
    hold 1e6 and 1e-8 side by side). Each row of the batch pursues its own neuron; the best
    point seen per row is returned.

Witnesses (:func:`sign_witnesses`, :func:`observe_signs`)
    ``z`` is provably positive at ``x`` when the float64 forward pass gives
    ``z > tol.witness * (1 + scale)``, ``scale = |W_k| |h_{k-1}(x)| + |b_k|`` (the magnitude
    of the terms summed: rounding of the pass cannot flip such a sign); likewise negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .domain import Box
from .network import Network
from .tolerances import DEFAULT, Tolerances

__all__ = [
    "SignWitnesses",
    "candidate_inputs",
    "gradient_search",
    "observe_signs",
    "sign_witnesses",
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
) -> np.ndarray:
    """Inputs worth probing: the centre, box vertices and their neighbourhoods, uniform samples,
    and the data points that lie in the box.

    Parameters
    ----------
    box:
        The input box.
    n:
        Number of uniform samples; also the number of vertices (all ``2^d`` of them when that
        is at most ``n``, else ``n`` random ones) and of near-vertex points.
    rng:
        The random generator (results are deterministic given its state).
    data:
        Optional data array ``(samples, ...)`` flattened to the box's dimension; rows outside
        the box are dropped.
    near:
        Near-vertex points move inwards from a vertex by up to ``near`` times the box width.

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
    if d <= 20 and 2**d <= n:
        bits = (np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1
        pick = bits.astype(bool)
    else:
        pick = rng.random((n, d)) < 0.5
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


# ------------------------------------------------------------------------ gradient search
def _targets(neurons: np.ndarray, sign: int | float | np.ndarray, rows: int) -> tuple:
    m = neurons.size
    if rows % m:
        raise ValueError(
            f"{rows} start rows cannot be shared among {m} neurons (need a multiple of {m})"
        )
    sgn = np.broadcast_to(np.sign(np.asarray(sign, dtype=np.float64)), (m,))
    if np.any(sgn == 0):
        raise ValueError("sign must be +1 or -1")
    reps = rows // m
    return np.tile(neurons, reps), np.tile(sgn, reps)


def gradient_search(
    net: Network,
    box: Box,
    k: int,
    neurons: Sequence[int] | np.ndarray,
    sign: int | np.ndarray,
    starts: np.ndarray,
    steps: int = 50,
    lr: float = 0.1,
) -> np.ndarray:
    """Push ``z_k[j]`` towards ``sign`` by projected signed-gradient steps, batched.

    Parameters
    ----------
    net, box:
        The network and the input box (every iterate is projected onto it).
    k:
        The layer of the target neurons.
    neurons:
        Target neurons of layer ``k`` (``m`` of them).
    sign:
        ``+1`` (ascent: look for ``z > 0``) or ``-1`` (descent), or one sign per neuron.
    starts:
        Start points ``(r * m, input_size)``: row ``i`` pursues ``neurons[i % m]`` (one start
        per neuron when ``r = 1``); a single row is used for every neuron.
    steps, lr:
        Number of steps and the initial step as a fraction of the box width (decays linearly).

    Returns
    -------
    np.ndarray
        Float64 ``(r * m, input_size)``: per row, the point in the box with the best
        ``sign * z_k[j]`` met along the path (never worse than its start).
    """
    box.check_size(net.input_size)
    neurons = np.asarray(neurons, dtype=np.int64).reshape(-1)
    x0 = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if neurons.size == 0:
        return np.empty((0, net.input_size))
    if x0.shape[0] == 1 and neurons.size > 1:
        x0 = np.repeat(x0, neurons.size, axis=0)
    target, sgn = _targets(neurons, sign, x0.shape[0])
    best, _ = ascend(net, box, k, target, sgn, x0, [lr * (1.0 - t / steps) for t in range(steps)])
    return best


def ascend(
    net: Network,
    box: Box,
    k: int,
    neurons: np.ndarray,
    signs: np.ndarray,
    starts: np.ndarray,
    step_sizes: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    r"""Projected sign-gradient ascent of ``signs[i] * z_k[neurons[i]]`` from ``starts[i]``.

    On each activation region the network is affine, so the gradient is exact there,
    :math:`\nabla_x z_{kj} = W_k[j] D_{k-1} W_{k-1} \cdots D_0 W_0` (:math:`D_l` the 0/1
    activation pattern), and one matrix product per layer gives it for the whole batch (plain
    numpy: torch's thread start-up dominated for these small batches). Step ``t`` moves by
    ``step_sizes[t]`` times the box width along the gradient's sign, projected onto the box.
    Returns per row the best point met and the last iterate: candidates only, which callers
    re-evaluate in float64 before they certify anything.
    """
    x = box.clip(np.array(starts, dtype=np.float64))
    width = box.upper - box.lower
    w_k = net.layers[k].weight[neurons] * np.asarray(signs, dtype=np.float64)[:, None]
    best_x, best_v = x.copy(), np.full(len(x), -np.inf)
    steps = len(step_sizes)
    for t in range(steps + 1):
        h, masks = x, []
        for layer in net.layers[:k]:
            z = h @ layer.weight.T + layer.bias
            masks.append(z > 0.0 if layer.relu else np.ones(z.shape, dtype=bool))
            h = np.maximum(z, 0.0) if layer.relu else z
        value = np.einsum("ij,ij->i", h, w_k)
        better = value > best_v
        best_v[better], best_x[better] = value[better], x[better]
        if t == steps:
            break
        g = w_k
        for layer, mask in zip(net.layers[:k][::-1], masks[::-1], strict=True):
            g = (g * mask) @ layer.weight
        x = box.clip(x + step_sizes[t] * np.sign(g) * width)
    return best_x, x


# ------------------------------------------------------------------------------ witnesses
def _signs_one(z: np.ndarray, scale: np.ndarray, tol: Tolerances) -> SignWitnesses:
    thr = tol.witness * (1.0 + scale)
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
        scale = np.abs(h) @ np.abs(layer.weight.T) + np.abs(layer.bias)
        out.append(_signs_one(zs[j], scale, tol))
        h = np.maximum(zs[j], 0.0) if layer.relu else zs[j]
    return out


def sign_witnesses(net: Network, k: int, x: np.ndarray, tol: Tolerances = DEFAULT) -> SignWitnesses:
    """Per neuron of layer ``k``, a row of ``x`` where ``z`` is provably > 0 and one where < 0.

    The float64 IR forward pass decides; a sign counts only beyond the margin
    ``tol.witness * (1 + scale)`` (module docstring). Of the qualifying rows the one with the
    largest margin is returned; ``-1`` where no row qualifies.
    """
    if not 0 <= k < len(net.layers):
        raise IndexError(f"layer {k} does not exist (the network has {len(net.layers)} layers)")
    return _layers_signs(net, x, k, tol)[k]


def observe_signs(net: Network, x: np.ndarray, tol: Tolerances = DEFAULT) -> list[SignWitnesses]:
    """:func:`sign_witnesses` for every ReLU layer at once (one forward pass), in the order of
    ``net.relu_layers``."""
    every = _layers_signs(net, x, len(net.layers) - 1, tol)
    return [every[k] for k in net.relu_layers]
