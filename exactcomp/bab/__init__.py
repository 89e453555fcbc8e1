"""Branch and bound on top of :mod:`exactcomp.bounds`: input splits for networks with few
inputs (:mod:`exactcomp.bab.split`), over batched sub-box bounds (:mod:`exactcomp.bab.batch`)."""

from __future__ import annotations

from .batch import BatchBounds, batch_bounds
from .split import SplitResult, prove_signs

__all__ = ["BatchBounds", "SplitResult", "batch_bounds", "prove_signs"]
