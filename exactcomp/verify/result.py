"""Result types of equivalence verification and certificate re-checking.

Kept apart from the code that computes them so that the CLI and reports can read a verdict
without pulling in Pyomo. Every field a user needs to act on a verdict is here: the status,
the proven upper bound and the best lower bound on the difference, a counterexample that was
re-evaluated in float64, and how the time was spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

import numpy as np


class EquivalenceStatus(Enum):
    """The verdict of :func:`exactcomp.verify.verify_equivalence`."""

    EQUIVALENT = "equivalent"  # proven: a MILP bound (with margin) or an exact argument
    NOT_EQUIVALENT = "not_equivalent"  # a counterexample, confirmed in exact arithmetic
    UNKNOWN = "unknown"  # neither (time limit, solver doubt, bound inside the margin)


#: The values of :attr:`EquivalenceResult.cause`: the budget (``""``), claims not re-proven,
#: or a structure the method cannot prove.
UNKNOWN_CAUSES = ("", "claims", "structure")


@dataclass(frozen=True, eq=False)
class Counterexample:
    """An input of the box where the two networks differ by more than the tolerance.

    ``f_x`` and ``g_x`` are the float64 outputs of the *original* networks (the IR's forward,
    never a solver's values). ``difference`` is ``max_i |f_i(x) - g_i(x)|`` in ``linf`` mode,
    and in ``top1`` mode how far ``g`` prefers another class over every top class of ``f``
    (``max_j g_j(x) - max_{i in argmax f(x)} g_i(x)``), computed in exact arithmetic and then
    rounded. ``source`` says how it was found (``"sampling"``, ``"gradient"``, ``"milp"``).
    """

    x: np.ndarray
    f_x: np.ndarray
    g_x: np.ndarray
    difference: float
    source: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "x": np.asarray(self.x).tolist(),
            "f_x": np.asarray(self.f_x).tolist(),
            "g_x": np.asarray(self.g_x).tolist(),
            "difference": float(self.difference),
            "source": self.source,
        }


@dataclass(frozen=True, eq=False)
class EquivalenceResult:
    """The outcome of comparing two networks on a box.

    Attributes
    ----------
    status:
        EQUIVALENT, NOT_EQUIVALENT or UNKNOWN.
    mode, tol:
        What was asked: ``linf`` (``max_x ||f(x) - g(x)||_inf <= tol``) or ``top1``.
    upper_bound:
        A proven upper bound on the measured difference over the box (``inf`` if none). For an
        EQUIVALENT verdict it is ``<= tol``; objectives proven by a solver cut-off contribute
        ``tol`` (the solver proved "no point above ``tol - margin``", not the exact maximum).
    lower_bound:
        The largest difference seen at a concrete input (float64 forward passes).
    counterexample:
        Set exactly when ``status`` is NOT_EQUIVALENT.
    milps, objectives_proven, objectives_total:
        How many MILP solves ran, and how many objectives (one per output and sign in ``linf``;
        one per ordered class pair in ``top1``) were proven below ``tol``.
    links:
        How many neurons of ``g`` were proven to compute (up to a tiny proven bound) the same
        function as a neuron of ``f`` (:mod:`exactcomp.verify.differential`).
    boxes:
        How many sub-boxes input splitting bounded (:mod:`exactcomp.verify.splitting`).
    timings:
        Seconds per phase (``sampling``, ``splitting``, ``gradient``, ``bounds``, ``differential``,
        ``build``, ``milp``, ``total``).
    reason:
        One line saying why the status is what it is (shown by :meth:`summary`).
    margin:
        The solver margin of this comparison (a MILP proves only a ``tol`` above it); NaN
        when no MILP model was built.
    cause:
        Why an UNKNOWN is unknown, for advice: ``"structure"`` (the method cannot prove this
        pair at any budget: :mod:`exactcomp.verify.sparse` proves only that ``g`` is ``f``
        with proven-constant units removed), ``"claims"`` (stability claims it relies on were
        not re-proven in the budget) or ``""`` (the time limit or a solver's doubt: more time
        may decide it). :data:`UNKNOWN_CAUSES` lists them.
    """

    status: EquivalenceStatus
    mode: str
    tol: float
    upper_bound: float
    lower_bound: float
    counterexample: Counterexample | None = None
    milps: int = 0
    objectives_proven: int = 0
    objectives_total: int = 0
    links: int = 0
    boxes: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    margin: float = float("nan")
    cause: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings", MappingProxyType(dict(self.timings)))
        if self.cause not in UNKNOWN_CAUSES:
            raise ValueError(f"unknown cause {self.cause!r}; one of {UNKNOWN_CAUSES}")
        for name in ("upper_bound", "lower_bound"):  # -0.0 + 0.0 is 0.0: never print "-0"
            object.__setattr__(self, name, float(getattr(self, name)) + 0.0)
        if (self.status is EquivalenceStatus.NOT_EQUIVALENT) != (self.counterexample is not None):
            raise ValueError("a counterexample is given exactly for NOT_EQUIVALENT")

    @property
    def seconds(self) -> float:
        return float(self.timings.get("total", 0.0))

    def summary(self) -> str:
        """One line for the final verdict: status, the bounds, where the time went."""
        what = "max |f - g|" if self.mode == "linf" else "top-1 disagreement"
        ub = "inf" if not np.isfinite(self.upper_bound) else f"{self.upper_bound:.3g}"
        text = (
            f"{self.status.name}: {what} in [{self.lower_bound:.3g}, {ub}] (tol {self.tol:g}); "
            f"{self.objectives_proven}/{self.objectives_total} objectives proven, "
            f"{self.milps} MILPs, {self.seconds:.2f} s"
        )
        return f"{text}; {self.reason}" if self.reason else text

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status.name,
            "mode": self.mode,
            "tol": self.tol,
            "upper_bound": None if not np.isfinite(self.upper_bound) else self.upper_bound,
            "lower_bound": self.lower_bound,
            "counterexample": None
            if self.counterexample is None
            else self.counterexample.to_json(),
            "milps": self.milps,
            "objectives_proven": self.objectives_proven,
            "objectives_total": self.objectives_total,
            "links": self.links,
            "boxes": self.boxes,
            "seconds": dict(self.timings),
            "reason": self.reason,
            "margin": float(self.margin) if np.isfinite(self.margin) else None,
            "cause": self.cause,
        }


@dataclass(frozen=True)
class ClaimFailure:
    """One stability claim of a report that could not be re-proven (or was refuted).

    ``refuted`` is True when a concrete input contradicts the claim (the claim is wrong), False
    when it could merely not be re-proven within the budget (the claim may still be right).
    """

    layer: int
    neuron: int
    claimed: str
    refuted: bool
    detail: str


@dataclass(frozen=True, eq=False)
class RecheckResult:
    """The outcome of :func:`exactcomp.verify.recheck_certificates`.

    ``checked`` counts claims examined per proof route (``interval``, ``linear``, ``milp``,
    ``witness``); ``failures`` lists every claim that failed. ``ok`` is True when there is none.
    """

    checked: Mapping[str, int]
    failures: tuple[ClaimFailure, ...]
    seconds: float
    milps: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "checked", MappingProxyType(dict(self.checked)))
        object.__setattr__(self, "failures", tuple(self.failures))

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def refuted(self) -> tuple[ClaimFailure, ...]:
        return tuple(f for f in self.failures if f.refuted)

    def summary(self) -> str:
        total = sum(self.checked.values())
        if self.ok:
            return f"all {total} stability claims re-checked ({self.seconds:.2f} s)"
        return (
            f"{len(self.failures)} of {total} claims failed ({len(self.refuted)} refuted by an "
            f"input, the rest not re-provable in the budget; {self.seconds:.2f} s)"
        )
