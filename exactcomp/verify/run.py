"""The state of one :func:`~exactcomp.verify.verify_equivalence` run, its bookkeeping, and the
checks of the arguments it is built from.

:class:`EquivalenceRun` holds what every phase reads and adds to: the time budget, the
objectives (``linf``: ``(i, +1)`` for ``f_i - g_i`` and ``(i, -1)`` for ``g_i - f_i``;
``top1``: ``(i, j)`` for ``g_j - g_i`` where ``i`` is a top class of ``f``), the largest
difference seen at a concrete input (:attr:`lower`), and the bounds proven without a solver
(:attr:`known`). The phases themselves are in :mod:`exactcomp.verify.equivalence` (the
search phases in :mod:`exactcomp.verify.phases`, the MILP phase in
:mod:`exactcomp.verify.solve`).

A counterexample is confirmed in exact arithmetic
(:func:`exactcomp.verify.falsify.exact_difference`) before it is returned: float64 rounding
must not fabricate a difference. Running out of time
gives UNKNOWN with the bounds proven so far, never a proof.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ..domain import Box
from ..errors import InvalidNetworkError, InvalidOptionError
from ..network import Network
from ..tolerances import forward_error
from ..verdicts import StabilityReport
from . import falsify
from .result import Counterexample, EquivalenceResult, EquivalenceStatus

MODES = ("linf", "top1")
STABILITY_SHARE = 0.5  # the stability analyses of f and g end by this share of the time left
MIN_MILP_SECONDS = 0.05  # the shortest per-MILP limit of the stability analyses
#: The sampled lower bound is settled in exact arithmetic on networks of at most this many
#: parameters together (about 0.05 s per point for the digits model's 17,610 and its copy).
EXACT_LOWER_PARAMETERS = 40_000


def check_arguments(
    f: Network, g: Network, box: Box, mode: str, tol: float, time_limit: float
) -> None:
    """Refuse, by name, an unknown mode, a ``tol`` that is not a finite number ``>= 0``, a time
    limit ``<= 0``, networks of different input or output sizes, or a box of the wrong size."""
    if mode not in MODES:
        raise InvalidOptionError(f"mode must be one of {MODES}, got {mode!r}")
    if not (isinstance(tol, numbers.Real) and np.isfinite(float(tol)) and tol >= 0):
        raise InvalidOptionError(f"tol must be a finite number >= 0, got {tol!r}")
    if not time_limit > 0:
        raise InvalidOptionError(f"the time limit must be > 0 seconds, got {time_limit}")
    if f.input_size != g.input_size or f.output_size != g.output_size:
        raise InvalidNetworkError(
            f"the networks are not comparable: {f.describe()} has {f.input_size} inputs and "
            f"{f.output_size} outputs, {g.describe()} has {g.input_size} and {g.output_size}"
        )
    box.check_size(f.input_size)


def compared_outputs(outputs: Sequence[int] | None, mode: str, m: int) -> list[int]:
    """The compared output indices: all by default; a subset only in ``linf`` mode."""
    if outputs is None:
        return list(range(m))
    if mode != "linf":
        raise InvalidOptionError("a subset of outputs can be compared only in linf mode")
    out = [int(i) for i in outputs]
    if not out:
        raise InvalidOptionError("the list of outputs to compare is empty")
    bad = [i for i in out if not 0 <= i < m]
    if bad:
        raise InvalidOptionError(f"output {bad[0]} does not exist (the networks have {m})")
    if len(set(out)) != len(out):
        raise InvalidOptionError(f"outputs {out} name an output twice")
    return out


class EquivalenceRun:
    """The state of one verification run (the time budget and what has been found so far)."""

    def __init__(self, f, g, box, mode, tol, time_limit, progress, tolerances, outputs) -> None:
        self.f, self.g, self.box, self.mode, self.tol = f, g, box, mode, float(tol)
        self.progress, self.tolerances = progress, tolerances
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + time_limit
        self.timings: dict[str, float] = {}
        self.lower = 0.0  # largest difference seen at a concrete input
        self.points = box.center[None, :]  # the sampled inputs (for neuron matching)
        self.links = 0  # neurons of g proven to match a neuron of f
        self.unpaired = 0  # neurons of f with no partner in g proven stable by LP
        self.known: dict[tuple, float] = {}  # objective -> bound proven without a solver
        self.box_bounds = (box.lower, box.upper)
        self.known_f: StabilityReport | None = None  # re-proven verdicts of f, if given
        self.margin = float("nan")  # the solver margin, once the MILP model is built
        m = f.output_size
        self.outputs = outputs  # compared outputs (linf)
        self.boxes = 0  # boxes bounded by input splitting
        if mode == "linf":
            self.objectives = [(i, s) for i in outputs for s in (1.0, -1.0)]
        else:
            self.objectives = [(i, j) for i in range(m) for j in range(m) if i != j]

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def measure(self, x: np.ndarray) -> np.ndarray:
        """The difference measured at each row of ``x`` (float64, original weights)."""
        fx, gx = self.f.forward(x), self.g.forward(x)
        if self.mode == "linf":
            return np.abs(fx - gx)[:, self.outputs].max(axis=1)
        return falsify.top1_disagreement(fx, gx)

    def counterexample(self, x: np.ndarray, source: str) -> Counterexample | None:
        """A counterexample at the best row of ``x`` if one differs by more than ``tol``."""
        x = self.box.clip(np.atleast_2d(x))
        d = self.measure(x)
        k = int(np.argmax(d))
        if not d[k] > self.tol:
            if d[k] > self.lower:
                self.lower = max(self.lower, self.settled(x[k], float(d[k])))
            return None
        # confirmed in exact arithmetic: float64 rounding must not fabricate a difference
        exact = falsify.exact_difference(self.f, self.g, x[k], self.mode, self.outputs)
        self.lower = max(self.lower, _floor(exact))
        if not exact > Fraction(self.tol):
            return None
        return Counterexample(
            x[k], self.f.forward(x[k]), self.g.forward(x[k]), float(exact), source
        )

    def settled(self, x: np.ndarray, d: float) -> float:
        """A true lower bound on the difference at ``x`` that float64 measured as ``d``: exact
        on small networks (:data:`EXACT_LOWER_PARAMETERS`); else, in ``linf`` mode, ``d`` less
        both forward passes' rounding (:func:`~exactcomp.tolerances.forward_error`), and in
        ``top1`` mode 0 (a class ranking within rounding may flip)."""
        if self.f.num_parameters + self.g.num_parameters <= EXACT_LOWER_PARAMETERS:
            exact = falsify.exact_difference(self.f, self.g, x, self.mode, self.outputs)
            return _floor(exact)
        if self.mode != "linf":
            return 0.0
        noise = forward_error(self.f, x) + forward_error(self.g, x)
        return max(d - float(np.max(noise[0, self.outputs])), 0.0) * (1 - 2.0**-52)

    def finish(self, status, upper, cex=None, milps=0, proven=0, reason="") -> EquivalenceResult:
        self.timings["total"] = time.perf_counter() - self.t0
        return EquivalenceResult(
            status=status,
            mode=self.mode,
            tol=self.tol,
            upper_bound=float(upper),
            lower_bound=self.lower,
            counterexample=cex,
            milps=milps,
            objectives_proven=proven,
            objectives_total=len(self.objectives),
            links=self.links,
            boxes=self.boxes,
            timings=self.timings,
            reason=reason,
            margin=self.margin,
        )

    def timed(self, phase: str, t: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t

    def out_of_time(self, phase: str) -> EquivalenceResult:
        """UNKNOWN: the time limit ran out before ``phase`` (nothing proven is lost: the
        differential bounds found so far, if any, are the upper bound)."""
        known = self.known
        return self.finish(
            EquivalenceStatus.UNKNOWN,
            max(*known.values(), self.lower) if known else np.inf,
            proven=sum(b <= self.tol for b in known.values()),
            reason=f"time limit reached before the {phase}",
        )

    def stability_budgets(self) -> tuple[float, float, float]:
        """Per-MILP seconds and the deadlines of the stability analyses of ``f`` and ``g``.

        Together they end by :data:`STABILITY_SHARE` of the time left (``f`` first, with half
        of it; ``g`` gets what ``f`` leaves), so that the differential bounds and the MILPs
        keep the rest. No layer or MILP question of an analysis starts past its deadline and a
        running question is capped to it, so an analysis overruns it by one cheap phase at most.
        """
        left = self.left()
        now = time.perf_counter()
        window = STABILITY_SHARE * left
        per_milp = max(MIN_MILP_SECONDS, min(2.0, 0.01 * left))
        return per_milp, now + 0.5 * window, now + window

    def proves(self, out) -> bool:
        """Whether :meth:`merged` proves every objective within ``tol``."""
        return all(b <= self.tol for b in self.merged(out).values())

    def merged(self, out) -> dict[tuple, float]:
        """:attr:`known` with the bounds :meth:`differential_objective_bounds` gives."""
        bounds = self.differential_objective_bounds(out)
        return {o: min(b, self.known.get(o, np.inf)) for o, b in bounds.items()}

    def differential_objective_bounds(self, out) -> dict[tuple, float]:
        """Sound upper bounds on each objective from the differential bounds of the outputs.

        With ``g_i - f_i`` in ``[lo_i, hi_i]``: ``linf`` objective ``(i, +1)`` (``f_i - g_i``)
        is at most ``-lo_i`` and ``(i, -1)`` at most ``hi_i``; the ``top1`` pair ``(i, j)``
        (``g_j - g_i`` where ``f_i >= f_j``) is at most
        ``(g_j - f_j) + (f_j - f_i) + (f_i - g_i) <= hi_j - lo_i``.
        """
        if self.mode == "linf":
            return {(i, s): (-out[i][0] if s > 0 else out[i][1]) for i, s in self.objectives}
        return {(i, j): out[j][1] - out[i][0] for i, j in self.objectives}


def _floor(v: Fraction) -> float:
    """The largest float64 at most ``v``."""
    f = float(v)
    return float(np.nextafter(f, -np.inf)) if Fraction(f) > v else f
