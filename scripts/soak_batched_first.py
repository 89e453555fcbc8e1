"""Run ``python -m benchmarks soak ...`` with the batched engine on every ReLU-split call.

:data:`exactcomp.bab.relu.BATCHED_FIRST` is on by default, but only for calls of at least
:data:`exactcomp.bab.relu.BATCHED_MIN_QUESTIONS` neurons, which the soak's small networks
rarely ask; this script asks it for every call::

    PYTHONPATH=. python scripts/soak_batched_first.py --family relusplits --cases 30 --time-limit 2
    FSB=4 PYTHONPATH=. python scripts/soak_batched_first.py --family relusplits --cases 40

``FSB=K`` (environment) sets :data:`exactcomp.bab.branching.FSB` (filtered smart branching).
``OUTLOOK=eager`` makes the early stop of hopeless questions (:mod:`exactcomp.bab.outlook`) as
eager as it gets: a mark every doubling from 2 nodes, any predicted need stops the tree, the
LP trees and the MILPs skip the stopped questions (counted as ``hopeless`` at the end).
``SPREAD=P`` grows the batched trees in ``P`` processes (:mod:`exactcomp.bab.beta_parts`; the
soak's ``jobs=1`` replaced by ``P``) once they have grown ``SPREAD_AFTER`` nodes (default 2:
every tree of more than one round), counted as ``spread``.

The soak runs its cases in this process (``jobs=1``), so the switch reaches every case (and
with ``SPREAD`` the worker processes, which import this file); the
calls of the batched engine, its nodes and its claims are counted and printed at the end.
"""

from __future__ import annotations

import os
import runpy
import sys

from exactcomp.bab import beta_first, beta_parts, branching, outlook, relu
from exactcomp.bab import beta_tree as beta
from exactcomp.stability import milp_phase

relu.BATCHED_FIRST = True
relu.BATCHED_MIN_QUESTIONS = 1
branching.FSB = int(os.environ.get("FSB", branching.FSB))
if os.environ.get("OUTLOOK") == "eager":
    outlook.FIRST_MARK, outlook.SLACK, outlook.STOP_HOPELESS = 2, 1e-9, True
    beta_first.LP_AFTER_HOPELESS = False
seen = {"calls": 0, "questions": 0, "nodes": 0, "claims": 0, "points": 0, "hopeless": 0}
real = beta.prove_signs_beta


def counted(*args, **kwargs):
    res = real(*args, **kwargs)
    seen["calls"] += 1
    seen["questions"] += int(res.neurons.size)
    seen["nodes"] += res.nodes
    seen["claims"] += int(res.inactive.sum() + res.active.sum())
    seen["points"] += int(res.points.shape[0])
    seen["hopeless"] += int((res.hopeless != 0).sum()) if res.hopeless is not None else 0
    return res


beta.prove_signs_beta = counted
if os.environ.get("SPREAD"):
    real_init = milp_phase.Workers.__init__

    def init(self, jobs, *args, **kwargs):
        real_init(self, int(os.environ["SPREAD"]), *args, **kwargs)

    milp_phase.Workers.__init__ = init
    beta_parts.SPREAD_AFTER = int(os.environ.get("SPREAD_AFTER", "2"))
    real_resume = beta_parts.Spread.resume

    def resumed(self, *args):
        seen["spread"] = seen.get("spread", 0) + 1
        return real_resume(self, *args)

    beta_parts.Spread.resume = resumed

if __name__ == "__main__":  # the worker processes (spawn) import this file too
    sys.argv = ["benchmarks", "soak", *sys.argv[1:]]
    try:
        runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
    finally:
        print("batched engine:", seen, flush=True)
