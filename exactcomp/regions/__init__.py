"""Linear regions: count them exactly, bound and estimate them at scale, draw them in 2-D.

* :func:`count_regions` -> :class:`RegionCount`: the activation regions with nonempty
  interior of a network over a box (polygon splitting for 2 inputs, depth-first splitting
  with LPs otherwise), with a lower bound, an estimate and Serra et al.'s upper bound.
* :func:`slice_cells` and :func:`plot_cells`: the regions on a 2-D slice, as polygons/PNG;
  :mod:`.graph`: their adjacency graph (networkx); :mod:`.drawing`: both, as the CLI runs them.
* :func:`fixed_signs` / :func:`bound_verdicts`: the neurons proven stable, which never split.

The public entry point with model loading and stability proofs is
:func:`exactcomp.api.count_regions`.
"""

from __future__ import annotations

from .count import RegionCount, count_regions, slice_cells
from .estimates import RegionEstimate, network_upper_bound, serra_upper_bound
from .fixed import bound_verdicts, fixed_signs
from .planar import Cell
from .plane import Plane, parse_plane
from .plot import plot_cells

__all__ = [
    "Cell",
    "Plane",
    "RegionCount",
    "RegionEstimate",
    "bound_verdicts",
    "count_regions",
    "fixed_signs",
    "network_upper_bound",
    "parse_plane",
    "plot_cells",
    "serra_upper_bound",
    "slice_cells",
]
