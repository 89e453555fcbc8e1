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
