"""Exact rewrites of a network on a domain, as pure passes composed by a pipeline.

Each pass is ``(network, state, tol) -> PassResult(network, state, record)``; see
:mod:`exactcomp.rewrite.pipeline` for their order and :mod:`exactcomp.rewrite.record` for
what the records say.
"""

from __future__ import annotations

from .editor import PassResult
from .pipeline import DEFAULT_PASSES, Pass, compress_network
from .record import Fold, NeuronFate, PassRecord, Reason, RewriteResult, Unit
from .stable import fold_active, merge_linear, remove_inactive
from .state import LayerState, RewriteState, initial_state
from .structural import drop_dead, merge_duplicates

__all__ = [
    "DEFAULT_PASSES",
    "Fold",
    "LayerState",
    "NeuronFate",
    "Pass",
    "PassRecord",
    "PassResult",
    "Reason",
    "RewriteResult",
    "RewriteState",
    "Unit",
    "compress_network",
    "drop_dead",
    "fold_active",
    "initial_state",
    "merge_duplicates",
    "merge_linear",
    "remove_inactive",
]
