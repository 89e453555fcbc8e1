"""The ``exactcomp`` command line: parse, call one API function per command, print.

No logic of its own: budgets, compress-then-verify and every JSON document live in
:mod:`exactcomp.api` and :mod:`exactcomp.report`.

Exit codes: 0 success (``verify``: EQUIVALENT), 1 NOT_EQUIVALENT, 3 UNKNOWN, 2 a usage or
input error or memory exhausted (one line naming the problem, no output file), 130 interrupted (nothing written,
or with ``compress --partial`` the network proven before the Ctrl-C), 143 terminated by
SIGTERM (e.g. ``timeout``: worker processes stopped, nothing written, ``--partial`` or not).

The package: :mod:`.parser` (every option), :mod:`.common` (exit codes, the domain and data
options read, progress, tables), :mod:`.tables` (the rich tables and progress bar), one module
per group of commands (:mod:`.commands`:
``compress``, ``stability``, ``verify``; :mod:`.lossy`; :mod:`.regions`), and here the
entry point.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections.abc import Iterator

from rich.console import Console

from ..errors import ExactCompError, Terminated
from .commands import cmd_compress, cmd_stability, cmd_verify
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED
from .lossy import cmd_lossy
from .parser import build_parser
from .regions import cmd_regions

COMMANDS = {
    "compress": cmd_compress,
    "stability": cmd_stability,
    "verify": cmd_verify,
    "regions": cmd_regions,
    "quantize": cmd_lossy,
}


_VALUE_OPTIONS = ("--box",)  # options whose value may start with "-" (a negative bound)
_NEGATIVE = re.compile(r"-\s*(\d|\.\d|inf)", re.IGNORECASE)


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--box -1,1`` -> ``--box=-1,1``: argparse reads "-1,1" as an option otherwise."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _VALUE_OPTIONS and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`~exactcomp.errors.Terminated` while the command runs (in the main
    thread; elsewhere nothing changes), so that the stack unwinds like a Ctrl-C's: the worker
    pools stop and no temporary file is left. Python's default ends the process at once,
    leaving the pools' semaphores to the resource tracker ("leaked semaphore objects")."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``exactcomp`` console script."""
    argv = _attach_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return int(exc.code or 0)
    # Wide enough for the tables when output is piped (rich defaults to 80 columns then).
    console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 120)
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)
    try:
        with _sigterm_unwinds():
            return COMMANDS[args.command](args, console)
    except ExactCompError as exc:
        err.print(f"exactcomp: error: {exc}", markup=False, soft_wrap=True)
        return EXIT_ERROR
    except MemoryError as exc:  # the environment's limit, not a bug to show as a traceback
        detail = f" ({exc})" if str(exc) else ""
        err.print(
            f"exactcomp: error: out of memory{detail}; nothing was written (a smaller network, "
            "fewer --jobs or more memory)",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("exactcomp: interrupted; nothing was written", markup=False)
        return EXIT_INTERRUPTED
    except Terminated:
        err.print("exactcomp: terminated (SIGTERM); nothing was written", markup=False)
        return EXIT_TERMINATED
