"""The pictures of ``exactcomp regions``: the regions on a plane as a PNG, and their graph.

:func:`draw_regions` is what the CLI's ``--plot`` and ``--graph`` do once the regions are
counted: take the cells of the whole box (2 inputs, counted with their polygons) or cut the
network's regions on the plane (:func:`~exactcomp.regions.count.slice_cells`), then draw
them (:func:`~exactcomp.regions.plot.plot_cells`, matplotlib) and/or measure their adjacency
graph (:mod:`exactcomp.regions.graph`, networkx). Both libraries are imported only when
their output is asked for. The CLI only parses the options, calls this, and prints
:attr:`Drawing.lines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain import Box
from ..network import Network
from .count import RegionCount, slice_cells
from .plane import Plane


@dataclass(frozen=True)
class Drawing:
    """What :func:`draw_regions` made: the report's ``graph`` and ``plot`` entries (None when
    not asked for) and one line per output to show the user."""

    graph: dict[str, Any] | None
    plot: dict[str, Any] | None
    lines: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The entries to add to the ``regions`` report."""
        out: dict[str, Any] = {}
        if self.graph is not None:
            out["graph"] = self.graph
        if self.plot is not None:
            out["plot"] = self.plot
        return out


def draw_regions(
    net: Network,
    box: Box,
    counted: RegionCount,
    plane: Plane,
    whole: bool,
    plot: str | Path | None = None,
    graph: bool = False,
    limit: int | None = None,
) -> Drawing:
    """Draw and/or graph the regions of ``net`` on ``plane`` through ``box``.

    Parameters
    ----------
    counted:
        The count; with ``whole`` its cells (the box of a 2-input network, kept by
        ``count_regions(keep_cells=True)``) are used as they are.
    whole:
        The plane is the whole input box (2 inputs, no ``--plane``) and ``counted`` holds
        its cells; otherwise the regions are cut on the plane (at most ``limit``).
    plot:
        PNG path to draw to, or None.
    graph:
        Measure the adjacency graph (networkx).
    """
    whole = whole and bool(counted.cells)
    cells = counted.cells if whole else slice_cells(net, box, plane, limit=limit)
    graph_doc = plot_doc = None
    lines: list[str] = []
    if graph:
        from .graph import adjacency, graph_stats

        stats = graph_stats(adjacency(net, cells, plane, box.lower, box.upper))
        graph_doc = {"of": "the box" if whole else "the slice", **stats.to_json()}
        lines.append(f"adjacency graph of {graph_doc['of']}: {stats.to_json()}")
    if plot:
        from .plot import plot_cells

        title = f"{net.describe()}: {len(cells)} regions" + ("" if whole else " on the slice")
        plot_cells(cells, plot, title=title, labels=plane.labels)
        plot_doc = {"path": str(plot), "regions_drawn": len(cells)}
        lines.append(f"wrote {plot} ({len(cells)} regions drawn)")
    return Drawing(graph_doc, plot_doc, tuple(lines))
