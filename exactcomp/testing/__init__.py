"""Test support: an exact brute-force oracle and a generator of nasty random networks.

Shipped with the package so that tests, the soak benchmark and users' own tests can use
them; nothing in the engine imports this package.
"""

from __future__ import annotations

from .oracle import (
    AMBIGUOUS,
    GridCheck,
    MaxDifference,
    OracleError,
    exact_preactivation_ranges,
    exact_stability,
    grid_check,
    max_output_difference,
    probe_points,
)

__all__ = [
    "AMBIGUOUS",
    "GridCheck",
    "MaxDifference",
    "OracleError",
    "exact_preactivation_ranges",
    "exact_stability",
    "grid_check",
    "max_output_difference",
    "probe_points",
]
