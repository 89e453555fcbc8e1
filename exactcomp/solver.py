"""A quiet HiGHS: the one place that creates ``highspy.Highs`` instances.

HiGHS prints its banner ("Running HiGHS ...") on the first ``Highs()`` of a process, before
any option can switch output off. That line would land in the middle of our progress display
and in users' piped output, so the first instance is created once with the C-level stdout
pointed at ``/dev/null``; later instances print nothing.
"""

from __future__ import annotations

import functools
import os
import sys

import highspy

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


@functools.cache
def silence_highs_banner() -> None:
    """Create (and drop) one Highs instance with stdout muted, once per process."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable fd 1 (unusual embedding): accept the banner
        highspy.Highs()
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def new_highs() -> highspy.Highs:
    """A fresh HiGHS instance with its log output off."""
    silence_highs_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h
