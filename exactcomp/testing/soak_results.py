"""What the soundness soak finds in a case: the kinds of wrong answer, the options of the
checks (and the stability method each case gets), and one case's result (the checks
themselves: :mod:`exactcomp.testing.soak_checks`).

A finding of a kind in :data:`UNSOUND` is a wrong answer of the engine, refuted at a concrete
input; ``error`` is an engine failure; ``unstable`` a witness that does not show its sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .oracle import OracleError
from .random_networks import Case

UNSOUND = (
    "bound",
    "stable",
    "compress",
    "compress-exact",
    "equivalent",
    "counterexample",
    "equiv-bound",
    "equiv-lower",
    "structure",
    "recheck",
    "nnet-compress",
    "nnet-equivalent",
    "onnx-load",
    "read",
    "onnx-equivalent",
    "onnx-written",
    "torch-written",
    "file-written",
    "lossy-bound",
    "cli",
)


@dataclass(frozen=True)
class Finding:
    """One wrong answer (``kind`` in :data:`UNSOUND`, or ``unstable``) or engine ``error``."""

    kind: str
    detail: str
    x: list[float] | None = None


@dataclass(frozen=True)
class SoakOptions:
    """What to check per case: sizes of the generated cases, engine time limits."""

    max_neurons: int = 10
    inputs: tuple[int, int] = (1, 4)
    depth: tuple[int, int] = (1, 4)
    width: tuple[int, int] = (1, 12)
    time_limit: float = 5.0
    equivalence: bool = True
    max_regions: int = 20_000
    exact_points: int = 96  # rational check: at most this many oracle points (and witnesses)
    exact_neurons: int = 16  # ... on networks of at most this many neurons
    mutants: bool = True  # also verify_equivalence on a mutant (off: the compressed one only)


@dataclass(frozen=True)
class CaseResult:
    """The checks of one case: counts, and every finding."""

    seed: int
    neurons: int
    regions: int
    method: str
    oracle: dict[str, int]
    claims: dict[str, int]
    findings: tuple[Finding, ...]
    compressions: int = 0
    equivalences: int = 0
    missed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
    exact_points: int = 0
    family: str = "random"
    refused: int = 0  # files the public API refused with a clean one-line error
    lossy: int = 0  # proven lossy bounds checked against the oracle's exact max |f - g|

    @property
    def unsound(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind in UNSOUND)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind == "error")


def skipped_result(case: Case, method: str, exc: OracleError, family: str = "random") -> CaseResult:
    """The :class:`CaseResult` of a case the oracle cannot enumerate (too many regions):
    nothing checked, the reason kept as a note."""
    return CaseResult(
        case.seed, case.network.num_neurons, 0, method, {}, {}, (), notes=(str(exc),),
        family=family,
    )  # fmt: skip


def method_for(seed: int) -> str:
    """Mostly ``fast``; every 7th case ``leo`` and every 11th ``naive`` (the baselines)."""
    return "naive" if seed % 11 == 3 else "leo" if seed % 7 == 2 else "fast"
