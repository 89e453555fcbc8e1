"""Pictures of activation regions on a plane: one polygon per region, coloured by pattern.

In the spirit of SplineCam (Humayun et al., CVPR 2023): the polygons are the exact regions
(:mod:`exactcomp.regions.planar`), not a rasterised guess, so every boundary drawn is a
true boundary. Colours come from a hash of the pattern (neighbours differ in one neuron
and still get unrelated colours). matplotlib with the Agg backend, PNG only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_write
from .planar import Cell


def pattern_colour(pattern: np.ndarray) -> tuple[float, float, float]:
    """A stable, pattern-determined RGB colour (light enough for black edges)."""
    digest = hashlib.blake2b(np.packbits(pattern).tobytes(), digest_size=3).digest()
    return tuple(0.25 + 0.75 * (b / 255.0) for b in digest)  # type: ignore[return-value]


def plot_cells(
    cells: Sequence[Cell],
    path: str | Path,
    *,
    title: str = "",
    labels: tuple[str, str] = ("x0", "x1"),
) -> Path:
    """Draw the regions to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    fig, ax = plt.subplots(figsize=(6.4, 6.0), dpi=150)
    polys = [c.vertices for c in cells]
    edge = 0.3 if len(cells) < 3000 else 0.0
    coll = PolyCollection(
        polys,
        facecolors=[pattern_colour(c.pattern) for c in cells],
        edgecolors="black",
        linewidths=edge,
    )
    ax.add_collection(coll)
    if polys:
        allv = np.vstack(polys)
        ax.set_xlim(allv[:, 0].min(), allv[:, 0].max())
        ax.set_ylim(allv[:, 1].min(), allv[:, 1].max())
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title or f"{len(cells)} activation regions")
    fig.tight_layout()
    out = Path(path)
    try:  # a temporary file, then the rename: never half a PNG
        atomic_write(out, lambda handle: fig.savefig(handle, format="png"))
    finally:
        plt.close(fig)
    return out
