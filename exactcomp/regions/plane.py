"""A 2-D slice of the input space: where pictures of regions are drawn for > 2 inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..domain import Box
from ..errors import InputFileError, InvalidOptionError


@dataclass(frozen=True)
class Plane:
    """The 2-D slice ``x = origin + basis @ (s, t)`` of the input space (``basis``: n x 2)."""

    origin: np.ndarray
    basis: np.ndarray
    labels: tuple[str, str] = ("s", "t")

    @classmethod
    def axes(cls, box: Box, i: int, j: int, point: np.ndarray | None = None) -> Plane:
        """The plane of input coordinates ``i`` and ``j`` through ``point`` (default: the
        box's centre), in the input's own units."""
        n = box.dim
        if n < 2:
            raise InvalidOptionError(f"a plane needs at least 2 inputs; the network has {n}")
        for v in (i, j):
            if not 0 <= v < n:
                raise InvalidOptionError(f"--plane: coordinate {v} is not in 0..{n - 1}")
        if i == j:
            raise InvalidOptionError("--plane: the two coordinates must differ")
        basis = np.zeros((n, 2))
        basis[i, 0] = basis[j, 1] = 1.0
        origin = box.center.copy() if point is None else np.asarray(point, np.float64)
        origin[[i, j]] = 0.0
        return cls(origin, basis, (f"x{i}", f"x{j}"))


def parse_plane(text: str, box: Box) -> Plane:
    """The CLI's ``--plane``: ``I,J`` (input coordinates I and J through the box's centre) or
    a JSON file ``{"point": [n numbers], "directions": [[n numbers], [n numbers]]}``."""
    if box.dim < 2:
        raise InvalidOptionError(f"--plane needs a network with 2 or more inputs; it has {box.dim}")
    parts = text.split(",")
    if len(parts) == 2 and all(p.strip().lstrip("-").isdigit() for p in parts):
        return Plane.axes(box, int(parts[0]), int(parts[1]))
    path = Path(text)
    if not path.is_file():
        raise InvalidOptionError(
            f"--plane expects I,J (two input indices) or a JSON file, got {text!r}"
        )
    try:
        doc = json.loads(path.read_text())
        point = np.asarray(doc["point"], dtype=np.float64).reshape(-1)
        dirs = np.asarray(doc["directions"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(
            f'{path}: not a plane {{"point": [...], "directions": [[...], [...]]}}: {exc}'
        ) from None
    if point.shape != (box.dim,) or dirs.shape != (2, box.dim):
        raise InvalidOptionError(
            f"{path}: the point needs {box.dim} numbers and the directions shape (2, {box.dim})"
        )
    if not (np.isfinite(point).all() and np.isfinite(dirs).all()):
        raise InvalidOptionError(f"{path}: the plane has a non-finite number")
    if np.linalg.matrix_rank(dirs) < 2:
        raise InvalidOptionError(f"{path}: the two directions are parallel (or zero)")
    return Plane(point, dirs.T.copy(), ("s (first direction)", "t (second direction)"))
