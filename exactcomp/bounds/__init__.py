"""Sound bounds on every pre-activation of a network over a box.

``Bounds`` is a pair ``(lower, upper)`` of float64 arrays, padded so that rounding in our
own arithmetic can only make them looser (see :mod:`exactcomp.tolerances`).
"""

from __future__ import annotations

from .interval import Bounds, intersect, interval_bounds, interval_layer
from .linear import linear_bounds, linear_layer_bounds
from .lp import lp_layer_bounds, lp_layer_result

__all__ = ["Bounds", "interval_bounds", "interval_layer", "intersect"]
__all__ += ["linear_bounds", "linear_layer_bounds", "lp_layer_bounds", "lp_layer_result"]
