"""``exactcomp quantize`` and ``compress --tol``: certified lossy compression."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from ..errors import InvalidOptionError
from .common import (
    EXIT_OK,
    check_positive,
    domain_boxes,
    input_paths,
    print_notes,
    print_table,
    progress_display,
    read_data,
    read_npy,
)

#: ``compress`` options of exact compression that ``--tol``'s lossy search does not take.
EXACT_ONLY = (
    "verify",
    "verify_tol",
    "dtype",
    "partial",
    "check",
    "method",
    "time_limit",
    "jobs",
    "cluster",
    "solver",
)


def refuse_exact_options(args: argparse.Namespace) -> None:
    """``compress --tol`` given an option of exact compression: an error naming it, since it
    would be ignored (the lossy claim is proven whatever they say). The defaults come from
    the parser itself."""
    from .parser import build_parser

    default = build_parser().parse_args(["compress", "M", "-o", "O"])
    given = [k for k in EXACT_ONLY if getattr(args, k) != getattr(default, k)]
    if given:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InvalidOptionError(
            f"compress --tol does not take {names} (options of exact compression; the lossy "
            "claim is proven in any case): leave them out"
        )


def cmd_lossy(args: argparse.Namespace, console: Console) -> int:
    """``quantize``, and ``compress --tol``: certified lossy compression (exactcomp.approx)."""
    begun = time.perf_counter()  # TIME_LIMIT is the command's, the model's load included
    from .. import api, io
    from ..approx import TIME_LIMIT, check_tol
    from ..io import check_output_path, check_save_path
    from ..report import write_document
    from ..rewrite.quantize import check_bits
    from .tables import lossy_table

    quantizing = args.command == "quantize"
    if not quantizing:
        refuse_exact_options(args)
    check_positive("--budget", args.budget)
    limit = TIME_LIMIT if args.budget is None else args.budget
    bits = getattr(args, "bits", None)
    if bits is not None:
        bits = check_bits(bits)
    tol = None if args.tol is None else check_tol(args.tol, positive=bits is not None)
    if quantizing and bits is None and tol is None and args.tol_mode == "linf":
        raise InvalidOptionError("quantize needs --bits, --tol or both")
    inputs = input_paths(args)
    check_save_path(args.output, inputs)
    if args.report:
        check_output_path(args.report, inputs, outputs=[args.output])
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    print_notes(args, console, net)
    boxes = domain_boxes(args, net.input_size, console)
    data = read_data(args)
    labels = read_npy(args.labels, "labels") if args.labels else None
    options = {
        "data": data,
        "labels": labels,
        "tol_mode": args.tol_mode,
        "top1_class": args.top1_class,
    }
    with progress_display(args, console) as progress:
        left = max(limit - (time.perf_counter() - begun), limit / 2)
        if quantizing:
            result = api.quantize(
                net,
                boxes,
                bits=bits,
                tol=tol,
                method=args.method,
                progress=progress,
                time_limit=left,
                **options,
            )
        else:
            result = api.compress_lossy(
                net, boxes, tol, progress=progress, time_limit=left, **options
            )
    result.report["bytes_before"] = Path(args.model).stat().st_size
    result.save(args.output, inputs=inputs)
    larger = io.larger_than_input(args.output, args.model, any_format=True)
    if larger:
        result.report["size_warning"] = larger
    if args.report:
        write_document(args.report, "quantize" if quantizing else "lossy", result.report)
    print_table(args, console, lossy_table(result.report))
    if result.report.get("tol_mode") == "top1":
        console.print(
            f"class margin proven >= {result.report['margin_proven_min']:.4g}: class "
            f"{'proven unchanged' if result.report['top1_proven'] else 'NOT proven unchanged'}"
        )
    if larger:
        console.print(f"warning: {larger}", markup=False)
    if result.report.get("proofs_late"):  # the clock cut a proof to the interval bound
        console.print(
            f"note: {result.report['proofs_late']} proof(s) did not fit before the deadline and "
            "claim the (looser) differential interval bound instead; a larger --budget "
            "proves tighter",
            markup=False,
            soft_wrap=True,
        )
    if "written" in result.report:  # the input itself: the same function in fewer bytes
        console.print(f"note: {result.report['written']['reason']}", markup=False, soft_wrap=True)
    console.print(
        f"wrote {args.output}: proven max |f - g| <= {result.report['proven_max_abs_diff']:.4g} "
        f"(sampled {result.report['sampled_max_abs_diff']:.4g}), {result.report['bytes_before']} -> "
        f"{result.report['bytes_after']} bytes"
    )
    return EXIT_OK
