"""Soundness fuzzing (issue 8): every sound-claiming answer agrees with the exact oracle.

A CI-sized run of the soak (:mod:`benchmarks.soak`, whose ``Checker`` holds the checks)
on two sources of nasty cases: the seeded generator (:func:`random_case`, mixed scales,
ties at 0, duplicates, degenerate boxes) and hypothesis strategies (:mod:`strategies`,
shrinkable). The oracle refutes a claim only with a concrete input of the box at which a
float64 forward pass contradicts it, so a failure here is a wrong answer, never a
tolerance judgement. What is checked:

- interval, linear and LP bounds, and the bounds in a stability report, enclose the
  exact pre-activation ranges;
- every INACTIVE/ACTIVE verdict of ``stable_neurons`` (fast, leo, naive; a box and a union
  of boxes) is true, and every UNSTABLE witness shows its sign;
- ``compress_network`` and ``exactcomp.api.compress`` results equal the original (exact
  max difference by joint region enumeration);
- every EQUIVALENT from ``verify_equivalence`` has an exact max difference within its
  tolerance, every counterexample differs, no proven upper bound is below the maximum.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import network_and_box

from benchmarks.soak import Checker, SoakOptions, check_case, method_for, mutants
from exactcomp.api import compress
from exactcomp.network import Network
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import max_output_difference
from exactcomp.testing.random_networks import Case, random_case

OPTS = SoakOptions(max_neurons=8, inputs=(1, 3), depth=(1, 3), time_limit=5.0)
SEEDS_PER_CHUNK = 12


def _describe(findings) -> str:
    return "\n".join(f"{f.kind}: {f.detail} at x={f.x}" for f in findings)


@pytest.mark.parametrize("chunk", range(4))
def test_generated_cases_have_no_wrong_answers(chunk: int) -> None:
    """48 seeded generator cases through every check of the soak (methods rotate)."""
    failures = []
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        case = random_case(
            seed,
            depth=OPTS.depth,
            width=OPTS.width,
            inputs=OPTS.inputs,
            max_neurons=OPTS.max_neurons,
        )
        result = check_case(case, OPTS, method_for(seed))
        failures += [(seed, f) for f in result.findings]
    assert not failures, "\n".join(f"seed {s}: {f.kind}: {f.detail}" for s, f in failures)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(network_and_box(inputs=(1, 4), max_neurons=10))
def test_bounds_enclose_exact_ranges(case: tuple[Network, object]) -> None:
    checker = Checker(Case(case[0], case[1], 0), OPTS, "fast")
    checker.all_bounds()
    assert not checker.findings, _describe(checker.findings)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(network_and_box(max_neurons=8))
def test_stable_verdicts_are_true(case: tuple[Network, object]) -> None:
    net, box = case
    checker = Checker(Case(net, box, 0), OPTS, "fast")
    report = stable_neurons(net, box, jobs=1, time_limit=OPTS.time_limit)
    checker.claims(report, "fast")
    assert not checker.findings, _describe(checker.findings)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(network_and_box(max_neurons=8))
def test_compression_preserves_the_function(case: tuple[Network, object]) -> None:
    """``compress_network`` on the engine's report, and the public ``compress`` (which also
    re-checks itself on samples), both equal the original everywhere in the box."""
    net, box = case
    checker = Checker(Case(net, box, 0), OPTS, "fast")
    report = stable_neurons(net, box, jobs=1, time_limit=OPTS.time_limit)
    checker.compression(report)
    assert not checker.findings, _describe(checker.findings)
    result = compress(net, box, jobs=1, time_limit=OPTS.time_limit, check=500)
    md = max_output_difference(net, result.network, box, floor=1e-9)
    lo, hi = checker.exact.ranges[-1]
    assert md.value <= 1e-7 * max(1.0, float(np.max(np.abs([lo, hi])))), md


@settings(max_examples=30, derandomize=True, deadline=None)
@given(network_and_box(max_neurons=6), st.integers(0, 3))
def test_equivalence_verdicts_agree_with_exact_difference(case, which: int) -> None:
    """The compressed network, outputs shifted by twice and by half the tolerance, and one
    unstable neuron dropped: every verdict agrees with the exact max difference."""
    net, box = case
    checker = Checker(Case(net, box, 0), OPTS, "fast")
    lo, hi = checker.exact.ranges[-1]
    tol = 1e-6 * max(1.0, float(np.max(np.abs([lo, hi]))))
    if which == 0:
        report = stable_neurons(net, box, jobs=1, time_limit=OPTS.time_limit)
        pairs = [("compressed", checker.compression(report))]
    else:
        pairs = mutants(net, checker.exact, tol)[which - 1 : which]
    for label, g in pairs:
        if g is not None:
            checker.equivalence(g, label)
    assert not checker.findings, _describe(checker.findings)
