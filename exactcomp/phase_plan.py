r"""Which search phases of ``compress --tol`` run: the measured rule that spends the search's time.

:func:`plan_phases` returns a :class:`PhasePlan` from the seconds of one proof and the proofs
each phase needs (:func:`exactcomp.approx.compress_lossy` runs it after its first probe)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .rewrite.lossy import SYMBOLIC_SHARE

__all__ = ["LOWRANK_TIME_SHARE", "MAGNITUDE_SHARE", "PhasePlan", "plan_phases"]

MAGNITUDE_SHARE = 0.25  # of compress --tol's time: at most, the magnitude candidate's proofs
#: Of the search's time, the share of the low-rank strategy's greedy search, when some rank is
#: proven within its budget (:func:`exactcomp.rewrite.lowrank.search_lowrank`; else it costs
#: a few symbolic proofs and the plain search keeps all the time).
LOWRANK_TIME_SHARE = 0.5


@dataclass(frozen=True)
class PhasePlan:
    r"""Which search phases of ``compress --tol`` run, by the proofs they need against those
    that fit at the measured proof seconds :math:`p` (one proof before the phases, the greedy
    search's first, memoised for it: :func:`~exactcomp.rewrite.magnitude.probe`;
    :func:`plan_phases`).

    With :math:`T` the seconds left for the search phases, a phase whose share :math:`\sigma T`
    holds fewer proofs than it needs to finish, :math:`\sigma T / p < n`, is skipped and its
    time goes to the phases after it (the greedy search, last, keeps whatever is left):

    * magnitude pruning (:data:`MAGNITUDE_SHARE`): its bisection over the :math:`N` ranked
      weights, :math:`n = \lceil \log_2 (N + 1) \rceil` proofs;
    * low rank (:data:`LOWRANK_TIME_SHARE` of the rest): its rank bisections,
      :func:`~exactcomp.rewrite.lowrank.rank_proofs`;
    * the joint LP's slack (``lp_seconds``: magnitude's LP proof, the search's
      :func:`~exactcomp.rewrite.acceptance.spend_proof`) only where the greedy's own bisection
      over its :math:`C` candidates fits in the symbolic share of its time
      (:data:`~exactcomp.rewrite.lossy.SYMBOLIC_SHARE`): :math:`\lceil \log_2 (C + 2) \rceil`
      proofs, plus one per layer for its amplification probes (the final claim keeps its
      LP: it is one proof, within its own share).

    Measured on cifar_base_kw ``--tol 0.05`` (proofs of 6-12 s wall at load 2-3, ~45 s left
    after the exact pass: RESULTS.md "cifartol21"): magnitude's bisection given all of it
    made 6 proofs for 5,122 parameters, the greedy search's first probe alone proved
    12,623 (its next steps were cut for a joint LP of 35 s); low rank made 1-4 proofs there
    for nothing. On the digits models (proofs of milliseconds) every phase fits: as before."""

    proof_seconds: float
    magnitude: bool
    lowrank: bool
    lp: bool

    def facts(self) -> dict:
        return dataclasses.asdict(self)


def plan_phases(
    proof_seconds: float, left: float, magnitude: int, lowrank: int, search: int
) -> PhasePlan:
    """The :class:`PhasePlan` for ``left`` seconds of search phases, proofs of
    ``proof_seconds`` (0: not measured, every phase runs) and the proofs each phase needs."""

    def fits(need: int, seconds: float) -> bool:
        return proof_seconds <= 0 or need * proof_seconds <= seconds

    mag = fits(magnitude, MAGNITUDE_SHARE * left)
    left *= 1 - MAGNITUDE_SHARE if mag else 1.0
    low = fits(lowrank, LOWRANK_TIME_SHARE * left)
    left *= 1 - LOWRANK_TIME_SHARE if low else 1.0
    return PhasePlan(proof_seconds, mag, low, fits(search, SYMBOLIC_SHARE * left))
