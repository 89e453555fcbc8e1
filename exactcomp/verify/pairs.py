"""Two networks of the same architecture, paired neuron by neuron (neuron ``j`` of layer ``k``
in ``f`` with neuron ``j`` of layer ``k`` in ``g``), for the differential bounds of
:mod:`exactcomp.verify.symbolic`: whether the pairing applies (:func:`comparable`) and looks
right (:func:`paired`), what every sub-box of a root box reuses (:class:`Pair`), and the
bounds a batch of boxes gets (:class:`DifferenceBounds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.batched import static_pad
from ..bounds.linear import check_end, linear_bounds
from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances, underflow_tolerances

CROWN_FROM = 2  # back-substitution bounds f's layers from this one on (1, 2: equal; 3, 4: worse)


def comparable(f: Network, g: Network) -> bool:
    """True when ``f`` and ``g`` have layer-wise the same shapes and ReLUs (the pairing used)."""
    return len(f.layers) == len(g.layers) and all(
        a.weight.shape == b.weight.shape and a.relu == b.relu
        for a, b in zip(f.layers, g.layers, strict=True)
    )


def paired(f: Network, g: Network, points: np.ndarray, rel: float = 0.25) -> bool:
    """Whether pairing neuron ``j`` of layer ``k`` in ``f`` with the same in ``g`` looks right.

    A heuristic for whether splitting is worth *trying* (soundness never depends on it): on the
    sampled ``points``, every paired pre-activation must differ by at most ``rel`` times the
    size of ``f``'s neuron there (its range plus its largest magnitude). A quantised or
    fine-tuned copy passes; a permuted or rescaled copy (differences as wide as neurons) not.
    """
    if not comparable(f, g):
        return False
    for zf, zg in zip(f.preactivations(points)[:-1], g.preactivations(points)[:-1], strict=True):
        scale = zf.max(axis=0) - zf.min(axis=0) + np.abs(zf).max(axis=0)
        if (np.abs(zg - zf).max(axis=0) > rel * scale).any():
            return False
    return True


@dataclass(frozen=True)
class DifferenceBounds:
    """Bounds of the output differences ``g_i - f_i`` on a batch of boxes: concrete ``lo, hi``
    of shape (N, m), the affine forms they come from (N, d + 1, m), and each input's share of
    the unstable neurons' ranges (N, d), for the split rule of :mod:`exactcomp.verify.splitting`."""

    lo: np.ndarray
    hi: np.ndarray
    lo_e: np.ndarray
    hi_e: np.ndarray
    unstable: np.ndarray  # (N, d): sum over f's unstable neurons of |dz/dx_j| / (u - l)
    inner: np.ndarray  # (N, 4 H): per hidden layer, bounds of z^f and of d (for children)

    def differences(self, f: Network, n: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Box ``n``'s bounds of ``d_k = z^g_k - z^f_k`` per hidden layer ``k`` (from ``inner``)."""
        ends = np.cumsum([0] + [4 * la.out_features for la in f.layers[:-1]])
        return [
            tuple(np.split(self.inner[n, a:b], 4)[2:])
            for a, b in zip(ends[:-1], ends[1:], strict=True)
        ]


@dataclass(frozen=True, eq=False)
class Pair:
    """Two comparable networks on a root box, with what every sub-box reuses.

    ``root`` are sound bounds of ``f``'s pre-activations on the root box (each sub-box's
    bounds are intersected with them, so their magnitudes bound every sub-box's); ``pads`` the
    rounding pads of the batched back-substitution, layer by layer (:func:`static_pad`);
    ``end``: a pass stops there, between two layers, claiming nothing (``Late``, :func:`check_end`).
    """

    f: Network
    g: Network
    outputs: tuple[int, ...]
    mag: np.ndarray
    root: tuple[tuple[np.ndarray, np.ndarray], ...]
    pads: dict[int, np.ndarray]
    tol: Tolerances
    end: float | None = None

    @classmethod
    def prepare(
        cls,
        f: Network,
        g: Network,
        box: Box,
        outputs: Sequence[int],
        tol: Tolerances = DEFAULT,
        end: float | None = None,
    ) -> Pair:
        tol = underflow_tolerances(tol, [f, g], [box])
        root = tuple(linear_bounds(f, box, tol=tol, end=end))
        mag = np.maximum(np.abs(box.lower), np.abs(box.upper))
        last = len(f.layers) - 1
        check_end(end)
        pads = {k: static_pad(f, k, root, mag, tol) for k in range(CROWN_FROM, last)}
        return cls(f, g, tuple(outputs), mag, root, pads, tol)
