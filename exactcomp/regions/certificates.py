r"""Dual certificates of the region search: a split side proven empty without an LP.

An LP of :mod:`exactcomp.regions.splitting` that finds a part empty (``t* <= tol``) leaves its
row duals. For any weights :math:`\lambda \ge 0` on the node's rows and the new one (margins
:math:`m_r(x) = G_r x + g_r`), :math:`\min_r m_r(x) \le \sum_r \lambda_r m_r(x) / \sum_r
\lambda_r`, so

.. math::

    t^* \le \max_{x \in box} \frac{\sum_r \lambda_r m_r(x)}{\sum_r \lambda_r},

a linear function's maximum over the box, in closed form (``a @ mid + |a| @ rad``). With the
LP's own duals this is its optimum (weak duality is tight); elsewhere in the search the same
rows (by neuron and sign; in another region of the earlier layers their coefficients differ)
usually still prove ``t* <= tol``. Rows that are not on the stack there get weight 0. Any
weights give a valid bound, so a wrong guess only costs the LP: the certificates change how
many LPs the search solves, never the regions it finds.
"""

from __future__ import annotations

import numpy as np

CERTS = 8
"""Dual certificates kept per neuron side, the most recent first (they only save LPs)."""

Key = tuple
"""A row of the search's stack by what it splits: (ReLU layer, neuron, sign)."""


class Certificates:
    """The dual multipliers kept per (ReLU layer, neuron, sign), at most :data:`CERTS` each."""

    def __init__(self) -> None:
        self.kept: dict[Key, list[tuple[list[Key], list[float], float]]] = {}

    def keep(self, side: Key, keys: list[Key], duals: list[float], dual_new: float) -> None:
        """Keep the duals of an LP that found ``side`` empty: ``duals`` of the stack rows
        ``keys`` (those with a non-zero dual) and ``dual_new`` of the new row."""
        certs = self.kept.setdefault(side, [])
        certs.insert(0, (keys, duals, dual_new))
        del certs[CERTS:]

    def refute(
        self,
        side: Key,
        new_a: np.ndarray,
        new_b: float,
        where: dict[Key, int],
        G: np.ndarray,
        g: np.ndarray,
        mid: np.ndarray,
        rad: np.ndarray,
        tol: float,
    ) -> bool:
        """Whether a kept certificate of ``side`` proves the part with the new row
        ``new_a x + new_b >= t`` empty here (module docstring): ``where`` maps a key to its
        row of the stack ``G x + g``; the box is ``mid +- rad``."""
        for keys, weights, w_new in self.kept.get(side, ()):
            rows, ws = [], []
            for k, w in zip(keys, weights, strict=True):
                p = where.get(k)
                if p is not None:
                    rows.append(p)
                    ws.append(w)
            a, b, total = w_new * new_a, w_new * new_b, w_new + sum(ws)
            if rows:
                wv = np.array(ws)
                a = a + wv @ G[rows]
                b = b + float(wv @ g[rows])
            if total > 0 and b + float(a @ mid + np.abs(a) @ rad) <= tol * total:
                return True
        return False
