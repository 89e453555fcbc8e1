"""The adjacency graph of the regions on a plane (networkx): who borders whom, and its shape.

Two regions are adjacent when they share a boundary segment of positive length. Each polygon
edge inside the box is crossed at its midpoint, a hair along the outward normal, and the
pattern found there names the neighbour (patterns are unique per region). An edge whose far
side holds several regions (a T-junction) finds one of them; each of the others has an edge
inside this one and finds this region from its side, so every adjacent pair is found.
The graph of a box's partition is connected: one component is also a check of the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..network import Network
from .planar import Cell
from .plane import Plane


@dataclass(frozen=True)
class GraphStats:
    """Regions (nodes), adjacent pairs (edges), degrees and connected components."""

    nodes: int
    edges: int
    mean_degree: float
    max_degree: int
    components: int

    def to_json(self) -> dict:
        return {
            "nodes": self.nodes,
            "edges": self.edges,
            "mean_degree": round(self.mean_degree, 3),
            "max_degree": self.max_degree,
            "components": self.components,
        }


def adjacency(net: Network, cells: Sequence[Cell], plane: Plane, lower, upper):
    """The region adjacency graph (a ``networkx.Graph`` on cell indices)."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(range(len(cells)))
    if not cells:
        return graph
    index = {np.packbits(c.pattern).tobytes(): i for i, c in enumerate(cells)}
    owner, probes = [], []
    for i, c in enumerate(cells):
        v = c.vertices
        e = np.roll(v, -1, axis=0) - v
        length = np.hypot(e[:, 0], e[:, 1])
        ok = length > 0
        normal = np.stack([e[:, 1], -e[:, 0]], axis=1)[ok] / length[ok, None]
        step = 1e-7 * np.maximum(length[ok], 1e-3)[:, None]
        probes.append((v[ok] + e[ok] / 2) + step * normal)
        owner += [i] * int(ok.sum())
    pts = np.vstack(probes)
    x = plane.origin + pts @ plane.basis.T
    inside = np.all((x >= lower) & (x <= upper), axis=1)
    zs = net.preactivations(x[inside])
    bits = [z > 0 for z, la in zip(zs, net.layers, strict=True) if la.relu]
    packed = np.packbits(np.concatenate(bits, axis=1), axis=1)
    for i, key in zip(np.asarray(owner)[inside], packed, strict=True):
        j = index.get(key.tobytes())
        if j is not None and j != i:
            graph.add_edge(int(i), j)
    return graph


def graph_stats(graph) -> GraphStats:
    """Counts, degrees and components of an adjacency graph."""
    import networkx as nx

    degrees = [d for _, d in graph.degree()]
    return GraphStats(
        nodes=graph.number_of_nodes(),
        edges=graph.number_of_edges(),
        mean_degree=float(np.mean(degrees)) if degrees else 0.0,
        max_degree=int(max(degrees, default=0)),
        components=nx.number_connected_components(graph) if degrees else 0,
    )
