"""Test support: an exact brute-force oracle and a generator of nasty random networks.

Shipped with the package so that tests, the soak benchmark and users' own tests can use
them; nothing in the engine imports this package.
"""

from __future__ import annotations

from ..exact import exact_forward
from .adversarial import near_dependent_case, near_duplicate_case
from .nnet_cases import NnetCase, nnet_case, write_nnet
from .oracle import (
    AMBIGUOUS,
    ExactAnalysis,
    GridCheck,
    MaxDifference,
    OracleError,
    exact_analysis,
    exact_preactivation_ranges,
    exact_stability,
    grid_check,
    max_output_difference,
    probe_points,
)
from .random_networks import Case, random_box, random_case, random_network, tie_bias
from .rational import EXACT_SCALE, compare_exactly

__all__ = [
    "AMBIGUOUS",
    "ExactAnalysis",
    "GridCheck",
    "MaxDifference",
    "OracleError",
    "exact_analysis",
    "exact_preactivation_ranges",
    "exact_stability",
    "grid_check",
    "max_output_difference",
    "probe_points",
    "Case",
    "random_box",
    "random_case",
    "random_network",
    "tie_bias",
    "near_dependent_case",
    "near_duplicate_case",
    "NnetCase",
    "nnet_case",
    "write_nnet",
    "EXACT_SCALE",
    "compare_exactly",
    "exact_forward",
]
