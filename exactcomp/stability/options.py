"""The options of one stability analysis, shared by the engine and the layer runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tolerances import Tolerances

__all__ = ["Options"]


@dataclass(frozen=True)
class Options:
    """The options of one analysis (passed explicitly; no global state)."""

    method: str
    time_limit: float
    solver: str
    tol: Tolerances
    seed: int
    data: np.ndarray | None
    partial: bool = False
    deadline: float | None = None
