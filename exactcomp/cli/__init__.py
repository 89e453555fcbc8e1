"""The ``exactcomp`` command line: parse, call one API function per command, print.

No logic of its own: budgets, compress-then-verify and every JSON document live in
:mod:`exactcomp.api` and :mod:`exactcomp.report`.

Exit codes: 0 success (``verify``: EQUIVALENT), 1 NOT_EQUIVALENT, 3 UNKNOWN, 2 a usage or
input error (one line naming the problem, no output file), 130 interrupted (nothing written,
or with ``compress --partial`` the network proven before the Ctrl-C).

The package: :mod:`.parser` (every option), :mod:`.common` (exit codes, the domain and data
options read, progress, tables), :mod:`.tables` (the rich tables and progress bar), one module
per group of commands (:mod:`.commands`:
``compress``, ``stability``, ``verify``; :mod:`.lossy`; :mod:`.regions`), and here the
entry point.
"""

from __future__ import annotations

import re
import sys

from rich.console import Console

from ..errors import ExactCompError
from .commands import cmd_compress, cmd_stability, cmd_verify
from .common import EXIT_ERROR, EXIT_INTERRUPTED
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
        return COMMANDS[args.command](args, console)
    except ExactCompError as exc:
        err.print(f"exactcomp: error: {exc}", markup=False, soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("exactcomp: interrupted; nothing was written", markup=False)
        return EXIT_INTERRUPTED
