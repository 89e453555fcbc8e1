"""``exactcomp quantize`` and ``compress --tol``: certified lossy compression."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ..errors import InvalidOptionError
from .common import (
    EXIT_OK,
    domain_boxes,
    input_paths,
    print_table,
    read_data,
    read_npy,
)


def cmd_lossy(args: argparse.Namespace, console: Console) -> int:
    """``quantize``, and ``compress --tol``: certified lossy compression (exactcomp.approx)."""
    from .. import api
    from ..approx import check_tol
    from ..io import check_output_path, check_save_path
    from ..report import lossy_table, write_document
    from ..rewrite.quantize import check_bits

    quantizing = args.command == "quantize"
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
    boxes = domain_boxes(args, net.input_size, console)
    data = read_data(args)
    labels = read_npy(args.labels, "labels") if args.labels else None
    if quantizing:
        result = api.quantize(
            net,
            boxes,
            bits=bits,
            tol=tol,
            data=data,
            labels=labels,
            method=args.method,
            tol_mode=args.tol_mode,
            top1_class=args.top1_class,
        )
    else:
        result = api.compress_lossy(
            net,
            boxes,
            tol,
            data=data,
            labels=labels,
            tol_mode=args.tol_mode,
            top1_class=args.top1_class,
        )
    result.report["bytes_before"] = Path(args.model).stat().st_size
    result.save(args.output, inputs=inputs)
    if args.report:
        write_document(args.report, "quantize" if quantizing else "lossy", result.report)
    print_table(args, console, lossy_table(result.report))
    if result.report.get("tol_mode") == "top1":
        console.print(
            f"class margin proven >= {result.report['margin_proven_min']:.4g}: class "
            f"{'proven unchanged' if result.report['top1_proven'] else 'NOT proven unchanged'}"
        )
    console.print(
        f"wrote {args.output}: proven max |f - g| <= {result.proven:.4g} "
        f"(sampled {result.sampled:.4g}), {result.report['bytes_before']} -> "
        f"{result.report['bytes_after']} bytes"
    )
    return EXIT_OK
