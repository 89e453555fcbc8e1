"""Stability analysis: classify every ReLU neuron over a domain, each verdict with its proof.

See :mod:`exactcomp.stability.engine` for the phases and methods.
"""

from __future__ import annotations

from .engine import METHODS, SOLVERS, stable_neurons

__all__ = ["METHODS", "SOLVERS", "stable_neurons"]
