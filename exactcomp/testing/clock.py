"""A fake clock for tests of time limits: time passes only when a test says so.

exactcomp reads time in its modules as ``time.perf_counter()`` and ``time.monotonic()`` (one
``import time`` per module, never ``from time import ...``: ``tests/test_structure.py``
checks it). :meth:`FakeClock.install` puts a :class:`FakeClock` in place of the ``time``
name of every such module, so a test can make a phase "slow" by advancing the clock
(:meth:`FakeClock.sleep`) instead of sleeping: real computation then takes no time at all,
and an assertion on elapsed time or on which phases ran before a deadline is exact on any
machine load. Solver time limits are durations handed to the solver; they are unaffected.
"""

from __future__ import annotations

import importlib
import sys
import time as _time
from typing import Any

#: Every exactcomp module that reads the clock (``tests/test_structure.py`` keeps this list
#: complete): they are imported by :meth:`FakeClock.install` so that none escapes the fake.
CLOCKED = (
    "exactcomp.api.checking",
    "exactcomp.api.compressing",
    "exactcomp.api.regions",
    "exactcomp.api.sampling",
    "exactcomp.approx",
    "exactcomp.exact_reference",
    "exactcomp.second_pass",
    "exactcomp.cli.lossy",
    "exactcomp.quantization",
    "exactcomp.source_quantization",
    "exactcomp.io.onnx_means",
    "exactcomp.bab.beta_first",
    "exactcomp.bab.beta_tree",
    "exactcomp.bab.beta_parts",
    "exactcomp.bab.replay",
    "exactcomp.bab.relu",
    "exactcomp.bab.split",
    "exactcomp.bounds.ideal_cuts",
    "exactcomp.bounds.linear",
    "exactcomp.bounds.lp",
    "exactcomp.highs.lp",
    "exactcomp.highs.milp",
    "exactcomp.milp.highs",
    "exactcomp.milp.solvers",
    "exactcomp.regions.count",
    "exactcomp.rewrite.acceptance",
    "exactcomp.rewrite.bitwidths",
    "exactcomp.rewrite.compensation",
    "exactcomp.rewrite.lossy",
    "exactcomp.rewrite.lowrank",
    "exactcomp.rewrite.magnitude",
    "exactcomp.rewrite.merging",
    "exactcomp.rewrite.pipeline",
    "exactcomp.stability.claims",
    "exactcomp.stability.cones",
    "exactcomp.stability.engine",
    "exactcomp.stability.layer",
    "exactcomp.stability.milp_phase",
    "exactcomp.stability.milp_questions",
    "exactcomp.stability.phases",
    "exactcomp.stability.region_search",
    "exactcomp.stability.witnesses",
    "exactcomp.verify.box_bounds",
    "exactcomp.verify.charge",
    "exactcomp.verify.cone_recheck",
    "exactcomp.verify.coupling",
    "exactcomp.verify.margin",
    "exactcomp.verify.diffbab",
    "exactcomp.verify.differential",
    "exactcomp.verify.diffmilp",
    "exactcomp.verify.difflp",
    "exactcomp.verify.equivalence",
    "exactcomp.verify.falsify",
    "exactcomp.verify.formulation",
    "exactcomp.verify.phases",
    "exactcomp.verify.recheck",
    "exactcomp.verify.run",
    "exactcomp.verify.seethrough",
    "exactcomp.verify.solve",
    "exactcomp.verify.sparse",
    "exactcomp.verify.symbolic",
    "exactcomp.verify.splitting",
    "exactcomp.verify.tighten",
)


class FakeClock:
    """Stands in for the ``time`` module: ``perf_counter``, ``monotonic`` and ``time`` read
    one counter that only :meth:`sleep` / :meth:`advance` move; anything else is the real
    ``time`` module's."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = float(start)

    def perf_counter(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (at once)."""
        if seconds < 0:
            raise ValueError(f"time does not run backwards: {seconds}")
        self.now += float(seconds)

    sleep = advance

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    def install(self, monkeypatch: Any) -> FakeClock:
        """Make this clock the ``time`` of every exactcomp module (undone by ``monkeypatch``
        at the end of the test). Returns the clock."""
        for name in CLOCKED:
            importlib.import_module(name)
        for name, module in list(sys.modules.items()):
            if name.startswith("exactcomp") and getattr(module, "time", None) is _time:
                monkeypatch.setattr(module, "time", self)
        return self
