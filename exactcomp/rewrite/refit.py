r"""Compensating lossy edits: a removed neuron's output refitted from the neurons kept beside it.

**Removal with refit.** ReLU neuron :math:`j` of layer :math:`k` (output :math:`a_j`) is
removed: its row and bias are zeroed, and its contribution :math:`W_{k+1}[:, j]\, a_j` to the
next pre-activation is replaced by the best affine fit in the outputs of the layer's *kept*
neurons, on points of the domain (least squares, one fit per removed neuron with the same
design matrix):

.. math::

    a_S \approx C\, a_K + c_0, \qquad
    W'_{k+1}[:, K] = W_{k+1}[:, K] + W_{k+1}[:, S]\, C, \quad
    b'_{k+1} = b_{k+1} + W_{k+1}[:, S]\, c_0, \quad W'_{k+1}[:, S] = 0,

where :math:`S` is the set removed in layer :math:`k` and :math:`K` the rest. Least squares on
one design matrix is linear in the target, so :math:`W_{k+1}[:, S] C` is also the least-squares
fit of the whole contribution :math:`W_{k+1}[:, S]\, a_S`. The edit is exact where the fit is
(a neuron that is an affine function of its neighbours on the domain, e.g. a duplicate or a
stable one), and a neuron replaced by a constant is the fit with :math:`C = 0`. Merging two
near-parallel neurons is the fit restricted to one neighbour; the full fit is never worse on
the fitting points, so it is the one built here.

**Nothing here is a proof.** The fit's residual is never charged: a set of edits is accepted
only by a proof of the whole network against the original (:mod:`exactcomp.rewrite.lossy`,
the charger). The search ranks a refit like the neuron -> constant edit it improves on. The fitting
points are the domain's centre, vertices, near-vertex and uniform points
(:func:`exactcomp.search.candidate_inputs`), so that the fit sees the domain's extremes, where
the largest differences lie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..domain import Box
from ..network import Network
from ..search import candidate_inputs

FIT_POINTS = 4096  # uniform points per box for the fit (as many vertices and near-vertex points)
NEAR = 0.05  # near-vertex points move inwards by up to this share of the width
RIDGE = 1e-6  # relative ridge of the fit: keeps the coefficients finite when outputs are collinear


@dataclass(frozen=True)
class FitData:
    """``f``'s layer outputs on the fitting points ``x``: ``acts[k]`` is ``(n, width_k)``
    (post-ReLU where the layer has a ReLU); ``mean[k]`` and ``cov[k]`` their column means and
    (uncentred-free) covariance, from which every fit of layer ``k`` is solved."""

    x: np.ndarray
    acts: tuple[np.ndarray, ...]
    mean: tuple[np.ndarray, ...]
    cov: tuple[np.ndarray, ...]


def fit_data(
    f: Network, boxes: Sequence[Box], *, points: int = FIT_POINTS, seed: int = 0
) -> FitData:
    """The fitting points of ``boxes`` and ``f``'s layer outputs on them."""
    rng = np.random.default_rng(seed)
    per = max(points // len(boxes), 16)
    x = np.concatenate(
        [candidate_inputs(b, per, rng, None, near=NEAR, vertices=per) for b in boxes]
    )
    acts, h = [], x
    for layer in f.layers:
        h = layer.apply(h)
        if layer.relu:
            h = np.maximum(h, 0.0)
        acts.append(h)
    means = [a.mean(axis=0) for a in acts]
    covs = [(a - m).T @ (a - m) / len(a) for a, m in zip(acts, means, strict=True)]
    return FitData(x, tuple(acts), tuple(means), tuple(covs))


def coefficients(data: FitData, k: int, removed: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(C, c0)`` of the affine least-squares fit of layer ``k``'s outputs ``removed`` in the
    others (``C`` is ``(len(removed), len(kept))``, kept = the other columns in order), from
    the normal equations on the centred outputs with a small ridge (:data:`RIDGE`)."""
    removed = list(removed)
    cov, mean = data.cov[k], data.mean[k]
    mask = np.ones(len(mean), dtype=bool)
    mask[removed] = False
    if not mask.any():
        return np.zeros((len(removed), 0)), mean[removed]
    gram = cov[np.ix_(mask, mask)].copy()
    gram[np.diag_indices_from(gram)] += RIDGE * (np.trace(gram) / len(gram)) + 1e-12
    c = np.linalg.solve(gram, cov[np.ix_(mask, removed)]).T
    return c, mean[removed] - c @ mean[mask]


def fold(
    w_next: np.ndarray, b_next: np.ndarray, data: FitData, k: int, removed: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The next layer's ``(W', b')`` with layer ``k``'s ``removed`` columns refitted (module
    docstring)."""
    removed = sorted(set(removed))
    if not removed:
        return w_next, b_next
    c, c0 = coefficients(data, k, removed)
    mask = np.ones(w_next.shape[1], dtype=bool)
    mask[removed] = False
    w, b = np.array(w_next, dtype=np.float64), np.array(b_next, dtype=np.float64)
    ws = w[:, removed]
    w[:, mask] += ws @ c
    b += ws @ c0
    w[:, removed] = 0.0
    return w, b
