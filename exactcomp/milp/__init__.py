"""MILP layer: the Pyomo big-M encoding of network prefixes and how we solve it (HiGHS).

:mod:`.encoding` is the single source of the formulation; :mod:`.highs` compiles it to matrix
form for fast repeated solves and poses each question to :mod:`exactcomp.highs` (which
solves it and says what its status proves); :mod:`.layer` builds one layer's model and its
questions, for the stability engine and the certificate re-check alike.
"""

from __future__ import annotations

from .encoding import add_input, add_network, build_prefix_model, set_point

__all__ = ["add_input", "add_network", "build_prefix_model", "set_point"]
