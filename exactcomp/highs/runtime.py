"""A quiet, single-threaded HiGHS: the one place that creates ``highspy.Highs`` instances,
and the options every MILP of the package runs with (:func:`milp_options`).

HiGHS prints its banner ("Running HiGHS ...") on the first ``Highs()`` of a process, before
any option can switch output off. That line would land in the middle of our progress display
and in users' piped output, so the first instance is created once with the C-level stdout
pointed at ``/dev/null``; later instances print nothing.

Every instance runs on one thread (:data:`HIGHS_THREADS`). Parallelism comes from solving
independent questions in worker processes (``--jobs``), and HiGHS' own worker threads only
compete with those processes for the cores. HiGHS keeps one thread scheduler per process and
refuses (status error, model status "Not Set") a run that asks for a different thread count
than the scheduler was started with, so the first use in a process restarts the scheduler
(:func:`prepare_highs`), and a run refused that way is restarted once more (:func:`run`).
"""

from __future__ import annotations

import functools
import os
import sys

import highspy

from ..tolerances import FEASIBILITY_TOLERANCE, ROW_TOLERANCE, SMALL_MATRIX_VALUE

INF = highspy.kHighsInf
"""HiGHS' infinity (a row or column side that is open)."""

PRESOLVE_RULES_OFF = (1 << 13) | (1 << 14)
"""HiGHS ``presolve_rule_off`` mask for every MILP we solve: rule 13 (parallel rows and
columns) and rule 14 (sparsify).

* Sparsify never shrinks our models (dense affine rows over the inputs) but costs most of
  presolve on them: on mnist-net_256x2's second layer (784 inputs, ~55k non-zeros) presolve
  took 1.0 s of every 1.6 s question with it and 0.13 s without. HiGHS presolves each
  question afresh, so that was most of the stability engine's MILP time.
* Parallel rows and columns compares scaled costs with an absolute tolerance and may fix an
  integer column on a near tie; networks with duplicate neurons produce exactly such
  columns. A proof must not rest on it, and switching it off costs nothing measurable here.

Switching presolve rules off only removes reductions: the model solved is the one we wrote.
"""


HIGHS_THREADS = 1
"""Threads of every HiGHS run. On mnist-net_256x2 prop_1 (``exactcomp stability``, 2 cores,
``--jobs 2``) one thread took the run from 192 s to 146 s (user CPU 361 s to 270 s): HiGHS'
idle worker threads spin, and its MILP search barely uses them."""


@functools.cache
def prepare_highs() -> None:
    """Once per process: create the first Highs instance with stdout muted (its banner), and
    restart HiGHS' thread scheduler, which the first run then starts with
    :data:`HIGHS_THREADS` threads."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable fd 1 (unusual embedding): accept the banner
        saved = None
    try:
        with open(os.devnull, "w") as devnull:
            if saved is not None:
                os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
    highspy.Highs.resetGlobalScheduler(True)


def new_highs() -> highspy.Highs:
    """A fresh single-threaded HiGHS instance with its log output off."""
    prepare_highs()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", HIGHS_THREADS)
    return h


def run(h: highspy.Highs) -> highspy.HighsStatus:
    """``h.run()``; if HiGHS refuses the run because other code in this process restarted its
    thread scheduler with another thread count, restart the scheduler and run again."""
    status = h.run()
    if (
        status == highspy.HighsStatus.kError
        and h.getModelStatus() == highspy.HighsModelStatus.kNotset
    ):
        highspy.Highs.resetGlobalScheduler(True)
        status = h.run()
    return status


SEARCH_OPTIONS: dict[str, object] = {
    # RINS and RENS (sub-MIP heuristics) took half the time of hard stability questions and,
    # after a cut-off, returned points beyond it that turn a clean "infeasible" into an
    # "optimal" needing a re-solve. Sampling and gradient search find witnesses more
    # cheaply. mnist-net_256x2 layer 2, 16 questions at 8 s: 11 proven instead of 9, in 56 s
    # instead of 65 s.
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    # Branch on pseudo-costs from the start instead of strong branching until they are
    # "reliable": strong-branching LPs were 80% of the simplex iterations of the hard
    # questions, whose answer is mostly an infeasibility proof. Simplex iterations (a
    # load-independent measure): digits l1=1e-4's hardest question 29,005 (timed out at
    # 10 s) -> 11,441 (proven); 14 hard mnist-net_256x2 prop_1 questions 180k -> 134k, one
    # more decided within 15 s.
    "mip_pscost_minreliable": 0,
    # Separate cuts at the root only. At the nodes, separation on our dense rows (every
    # first-layer pre-activation is a row over all inputs) cost more than the nodes it saved:
    # 39 mnist-net_256x2 prop_1 questions 80.8 s -> 51.4 s (with the cut-off below), two
    # more decided within 10 s; the hard digits l1=1e-4 question 3.2 s -> 2.2 s.
    "mip_allow_cut_separation_at_nodes": False,
}
"""How HiGHS searches, for every MILP of the package (the stability questions of
:mod:`exactcomp.milp.highs` and the re-check's and verification's MILPs in
:mod:`exactcomp.verify.solve`). These options change the speed only: what counts as a proof
does not depend on them."""


DEEP_OPTIONS: dict[str, object] = {
    # Reliability branching: strong-branch a binary until it has 4 pseudo-cost observations,
    # for MILPs whose binaries sit in two or more layers (deep prefixes). There the first
    # branchings choose between binaries whose effect on the target differs by orders of
    # magnitude (a phase of layer 0 moves every later layer), and pseudo-costs guessed
    # without observations branch badly. mnist-net_256x6 prop_0_0.03, layer 2's two
    # questions (49 binaries in 2 layers), CPU seconds to the proof: 10.2 and 12.0 with
    # pseudo-costs from the start (SEARCH_OPTIONS), 8.0 and 6.1 with this. Shallow prefixes
    # (binaries in one layer: mnist-net_256x2, digits) keep SEARCH_OPTIONS' choice.
    "mip_pscost_minreliable": 4,
}
"""What :func:`milp_options` changes for a MILP with binaries in two or more layers
(``deep=True``); a speed choice only, like :data:`SEARCH_OPTIONS`."""


def milp_options(
    feasibility: float = FEASIBILITY_TOLERANCE, deep: bool = False
) -> dict[str, object]:
    """The HiGHS options of every MILP of the package at the feasibility tolerance
    ``feasibility`` (the margins assume them): the MILP tolerance at ``feasibility``, the LP
    tolerances at it too where it is below their default, the matrix entries kept that
    :func:`~exactcomp.highs.margins.rounding_doubt` assumes, the presolve rules off
    (:data:`PRESOLVE_RULES_OFF`) and :data:`SEARCH_OPTIONS` (with :data:`DEEP_OPTIONS`
    where ``deep``). Every tolerance is set explicitly, so that a persistent instance never
    keeps a precise one."""
    lp_tolerance = min(feasibility, ROW_TOLERANCE)
    return {
        "mip_feasibility_tolerance": feasibility,
        "primal_feasibility_tolerance": lp_tolerance,
        "dual_feasibility_tolerance": lp_tolerance,
        "small_matrix_value": SMALL_MATRIX_VALUE,
        "presolve_rule_off": PRESOLVE_RULES_OFF,
        **SEARCH_OPTIONS,
        **(DEEP_OPTIONS if deep else {}),
    }
