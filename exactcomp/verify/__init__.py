"""Verification: prove two networks equivalent on a box, and re-check compression certificates.

:func:`verify_equivalence` compares any two networks (cheap falsification first, then one
MILP over a shared input); :func:`recheck_certificates` re-proves the stability claims a
compression rests on, independently of the bounds the compressor used.
"""

from __future__ import annotations

from .equivalence import verify_equivalence
from .recheck import recheck_certificates
from .result import Counterexample, EquivalenceResult, EquivalenceStatus, RecheckResult

__all__ = [
    "Counterexample",
    "EquivalenceResult",
    "EquivalenceStatus",
    "RecheckResult",
    "recheck_certificates",
    "verify_equivalence",
]
