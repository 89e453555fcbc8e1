"""What the commands share: exit codes, the domain and data options read, progress, tables."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from ..errors import InvalidOptionError

if TYPE_CHECKING:  # the domain readers load on use: --help stays quick
    from ..domain import Box

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_UNKNOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


#: The options that name a file the command reads (``args`` attributes): no output may be one.
INPUT_OPTIONS = (
    "model",
    "original",
    "other",
    "data",
    "labels",
    "box_file",
    "box_from_data",
    "vnnlib",
    "certificates",
    "plane",
)


def input_paths(args: argparse.Namespace) -> list[str]:
    """Every file the command reads, for :func:`exactcomp.io.check_output_path`."""
    return [getattr(args, k) for k in INPUT_OPTIONS if getattr(args, k, None)]


def read_npy(path: str, what: str) -> np.ndarray:
    from ..domain import read_npy_numbers

    return read_npy_numbers(path, what)


def domain_boxes(args: argparse.Namespace, n_inputs: int, console: Console) -> list[Box]:
    from ..domain import box_from_data, parse_box_string, read_box_file

    given = [k for k in ("box", "box_file", "box_from_data", "vnnlib") if getattr(args, k)]
    if len(given) != 1:
        raise InvalidOptionError(
            "give exactly one input domain: --box LO,HI, --box-file F, --box-from-data F.npy or --vnnlib F"
            + (f" (got {len(given)})" if given else "; there is no default domain")
        )
    if args.box:
        boxes = [parse_box_string(args.box, n_inputs)]
    elif args.box_file:
        boxes = [read_box_file(args.box_file)]
    elif args.box_from_data:
        boxes = [box_from_data(args.box_from_data)]
    else:
        from ..io.vnnlib import read_vnnlib

        spec = read_vnnlib(args.vnnlib, n_inputs)
        boxes = list(spec.boxes)
        if spec.output_constraints and not getattr(args, "quiet", False):
            console.print(
                f"[dim]{args.vnnlib}: {len(boxes)} input box(es); {spec.output_constraints} output "
                "constraint(s) ignored (compression keeps the whole function)[/dim]"
            )
    for b in boxes:
        b.check_size(n_inputs)
    return boxes


def read_data(args: argparse.Namespace) -> np.ndarray | None:
    return read_npy(args.data, "data") if getattr(args, "data", None) else None


def progress_display(args: argparse.Namespace, console: Console):
    from ..progress import SILENT
    from .tables import RichProgress

    if args.quiet:
        import contextlib

        return contextlib.nullcontext(SILENT)
    return RichProgress(console)


def print_notes(args: argparse.Namespace, console: Console, *nets: object) -> None:
    """One line per note the model readers left (``Network.meta["notes"]``), unless --quiet."""
    if args.quiet:
        return
    seen: list[str] = []
    for net in nets:
        for note in getattr(net, "meta", {}).get("notes", ()):
            if note not in seen:
                seen.append(note)
                console.print(f"note: {note}", markup=False, soft_wrap=True)


#: Tables fit this many columns (cells wrap), also where plain lines may run wider.
TABLE_COLUMNS = 80


def print_table(args: argparse.Namespace, console: Console, table) -> None:
    """Print a summary table unless --quiet, at most :data:`TABLE_COLUMNS` wide."""
    if not args.quiet:
        console.print(table, width=min(console.width, TABLE_COLUMNS))


def show_vector(v: np.ndarray, limit: int = 8) -> str:
    """A short readable form of a vector: up to ``limit`` entries, then how many more."""
    v = np.asarray(v, dtype=np.float64).reshape(-1) + 0.0  # + 0.0: never "-0"
    head = ", ".join(f"{x:.6g}" for x in v[:limit])
    return f"[{head}{f', ... ({v.size - limit} more)' if v.size > limit else ''}]"


#: What ``compress --verify`` advises when no bound was proven in time: its proof's seconds
#: follow from the analysis (``api.checking.verification_budget``), and its ``--time-limit``
#: is per MILP, so "give more --time-limit" would not help (cifar_deep_kw, audit22).
COMPRESS_MORE_TIME = (
    "write it without --verify, with --report R.json, then prove the file with more time: "
    "exactcomp verify MODEL OUT --certificates R.json --time-limit S"
)


def tol_hint(
    verdict, option: str, rounding_tol: float | None = None, more_time: str | None = None
) -> str:
    """Advice after a failed verification: a tolerance that works, when one is known.

    ``rounding_tol``: the default derived from the proven effect of rounding the written
    weights (:func:`exactcomp.api.default_tolerance`), when that is what separates them.
    ``more_time``: what to do when time, not the tolerance, was short (default: give more
    ``--time-limit``, the option of ``verify``)."""
    from .. import api

    if verdict.status.name == "NOT_EQUIVALENT":
        if rounding_tol is not None and verdict.lower_bound < rounding_tol:
            return (
                f"the difference found, {verdict.lower_bound:.3g}, is within what rounding the "
                f"weights for writing can cause; {option} {rounding_tol:.2g} (the default) "
                "allows it"
            )
        return f"a real difference of {verdict.lower_bound:.3g} was found"
    cause = getattr(verdict, "cause", "")
    if cause == "structure":  # the method cannot prove this pair: more time will not help
        return (
            "the second network is not the first with proven-constant units removed, the only "
            "change the sparse (convolutional) verifier can prove; more --time-limit will not "
            "help: compare with the network exactcomp compress wrote"
        )
    value = api.suggest_tolerance(verdict)
    more = more_time or "give more --time-limit"
    if value is None and cause == "claims":
        return f"stability claims were not re-proven in time; {more}"
    if value is None:
        return f"no bound was proven in time; {more}"
    return f"{option} {value:.2g} would be proven"


def check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise InvalidOptionError(f"{name} must be > 0, got {value}")
