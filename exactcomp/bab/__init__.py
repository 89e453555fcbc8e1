"""Branch and bound on top of :mod:`exactcomp.bounds`: input splits for networks with few
inputs (:mod:`exactcomp.bab.split`), over batched sub-box bounds (:mod:`exactcomp.bab.batch`),
and ReLU splits for networks with many (:mod:`exactcomp.bab.relu`, LP bounds per node)."""

from __future__ import annotations

from .batch import BatchBounds, batch_bounds
from .relu import prove_signs_relu
from .split import SplitResult, prove_signs

__all__ = ["BatchBounds", "SplitResult", "batch_bounds", "prove_signs", "prove_signs_relu"]
