"""``exactcomp compress``, ``stability`` and ``verify``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from ..errors import InvalidOptionError
from .common import (
    COMPRESS_MORE_TIME,
    EXIT_DIFFERENT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNKNOWN,
    check_positive,
    domain_boxes,
    input_paths,
    print_notes,
    print_table,
    progress_display,
    read_data,
    show_vector,
    tol_hint,
)
from .lossy import cmd_lossy


def cmd_compress(args: argparse.Namespace, console: Console) -> int:
    from .. import api, io
    from ..io import check_output_path, check_save_path
    from ..report import document_text, write_document
    from .tables import compression_table

    if args.tol is not None or args.tol_mode != "linf":
        return cmd_lossy(args, console)
    check_positive("--time-limit", args.time_limit)
    check_positive("--jobs", args.jobs)
    check_positive("--verify-tol", args.verify_tol)
    check_positive("--check", args.check)
    check_positive("--budget", args.budget)
    inputs = input_paths(args)
    check_save_path(args.output, inputs)
    if args.report:
        check_output_path(args.report, inputs, outputs=[args.output])
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    if Path(args.output).suffix.lower() in (".pt", ".pth"):  # refused before the analysis
        from ..io.torch_io import check_torch_target

        check_torch_target(net)
    print_notes(args, console, net)
    boxes = domain_boxes(args, net.input_size, console)
    deadline = None if args.budget is None else time.perf_counter() + args.budget
    with progress_display(args, console) as progress:
        checked = api.compress_verified(
            net,
            boxes,
            dtype=args.dtype,
            verify=args.verify,
            verify_tol=args.verify_tol,
            progress=progress,
            method=args.method,
            time_limit=args.time_limit,
            jobs=args.jobs,
            cluster=args.cluster,
            data=read_data(args),
            solver=args.solver,
            check=args.check,
            partial=args.partial,
            deadline=deadline,
        )
    result, written, recheck, verdict = (
        checked.compression,
        checked.written,
        checked.recheck,
        checked.verdict,
    )
    interrupted = bool(result.report["interrupted"])
    if interrupted:
        console.print("[yellow]interrupted: using the verdicts proven so far (--partial)[/yellow]")
    print_table(args, console, compression_table(result.report))
    if not checked.ok:
        rounded = args.dtype == "input" and written.dtype != "float64"
        hint = (
            f" (the folded weights were rounded to {written.dtype} for writing; --dtype float64"
            " writes exactly the network that was analysed)"
            if rounded
            else ""
        )
        console.print(
            f"[red]verification failed: {verdict.summary()}; {recheck.summary()}; "
            f"nothing written{hint}[/red]"
        )
        if recheck.ok:
            hint = tol_hint(verdict, "--verify-tol", checked.rounding_tol, COMPRESS_MORE_TIME)
            console.print(hint, markup=False)
        return EXIT_UNKNOWN if verdict.status.name == "UNKNOWN" else EXIT_DIFFERENT
    report_text = document_text("compress", result.report)  # rendered before anything is written
    api.save(written, args.output, inputs=inputs, domain=boxes)
    # the input's function on the domain: never a larger file of the input's suffix (unless
    # --dtype float64 asked for one), the input itself instead (io.write_source_instead)
    rewrite = io.write_source_instead(args.output, args.model) if args.dtype == "input" else None
    if rewrite is not None:
        size = Path(args.output).stat().st_size
        reason = (
            f"the rewrite took {rewrite:,} bytes, more than the input's {size:,}: the input "
            "itself is written (the same function, everywhere)"
        )
        result.report["written"] = {"file": "source", "bytes": size, "bytes_rewritten": rewrite}
        result.report["written"]["reason"] = reason
        report_text = document_text("compress", result.report)
        console.print(f"note: {reason}", markup=False, soft_wrap=True)
    larger = io.larger_than_input(args.output, args.model)  # never larger: else say so
    if larger:
        result.report["size_warning"] = larger
        report_text = document_text("compress", result.report)
        console.print(f"warning: {larger}", markup=False)
    if args.report:
        write_document(args.report, "compress", report_text)
    console.print(
        f"wrote {args.output}: {result.report['neurons_before']} -> {result.report['neurons_after']} neurons, "
        f"re-checked on {result.check.points} points (max |diff| {result.check.max_abs_diff:.2g}"
        + allowance_used(result.check)
        + stored_deviation(result.check, written.dtype)
        + ")"
        + (f"\n{recheck.summary()}\n{verdict.summary()}" if verdict is not None else "")
    )
    structure = result.report.get("structure")
    if structure:  # a convolutional network: what was written, and why
        params = structure["parameters"]
        console.print(
            f"{structure['note']} ({params['original']} -> {params[structure['written']]} "
            "parameters as written)",
            markup=False,
        )
    if interrupted:
        Console(stderr=True, highlight=False).print(
            "exactcomp: interrupted; wrote the network proven before the interrupt (--partial)",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def allowance_used(check) -> str:
    """``", within the rounding allowance X"`` when the re-check accepted a difference above
    ``verify``'s least tolerance as float64 rounding (``check.rounding_allowance``: what
    ``--verify`` then proves, :func:`exactcomp.api.checking.verification_tolerance`)."""
    from ..tolerances import DEFAULT

    if not check.max_abs_diff > DEFAULT.equivalence:
        return ""
    return f", within the rounding allowance {check.allowance:.3g}"


def stored_deviation(check, dtype: str) -> str:
    """``"; X as stored in float16"`` when the written network (folded weights rounded to the
    checkpoint's ``dtype``, ``--dtype input``) moved further from the original on the re-check
    points than the network analysed: a float16 checkpoint's file differs by float16 rounding
    (up to ``2e-4`` on outputs of ``0.3`` in the readers soak) while ``max |diff|`` says 0."""
    dev = check.float32_max_deviation
    if dtype == "float64" or not dev > check.max_abs_diff:
        return ""
    return f"; {dev:.2g} as stored in {dtype}"


def cmd_stability(args: argparse.Namespace, console: Console) -> int:
    from .. import api
    from ..io.atomic import check_output_path
    from ..report import stability_doc, write_document
    from .tables import stability_table

    check_positive("--time-limit", args.time_limit)
    check_positive("--jobs", args.jobs)
    check_positive("--budget", args.budget)
    if args.report:
        check_output_path(args.report, input_paths(args))
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    print_notes(args, console, net)
    boxes = domain_boxes(args, net.input_size, console)
    t0 = time.perf_counter()
    deadline = None if args.budget is None else t0 + args.budget
    with progress_display(args, console) as progress:
        rep = api.stable_neurons(
            net,
            boxes,
            method=args.method,
            time_limit=args.time_limit,
            jobs=args.jobs,
            cluster=args.cluster,
            data=read_data(args),
            solver=args.solver,
            progress=progress,
            deadline=deadline,
        )
    doc = stability_doc(
        rep, time.perf_counter() - t0, cluster=args.cluster, notes=net.meta.get("notes", ())
    )
    print_table(args, console, stability_table(doc))
    if args.quiet:
        keys = ("stably_active", "stably_inactive", "unstable", "undecided")
        counts = [sum(r[k] for r in doc["layers"]) for k in keys]
        console.print(
            f"{doc['neurons']} neurons: {counts[0]} stably active, {counts[1]} stably inactive, "
            f"{counts[2]} unstable, {counts[3]} undecided"
        )
    if args.report:
        write_document(args.report, "stability", doc)
    return EXIT_OK


def _output_list(text: str | None) -> list[int] | None:
    """Parse ``--outputs 0,2`` (the range is checked by the API against the networks)."""
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise InvalidOptionError(
            f"--outputs expects comma-separated output indices such as 0,2, got {text!r}"
        ) from None


def _note_large_default_tol(args, console: Console, f, tol: float, boxes) -> None:
    """A note when the default tolerance ``tol`` (the one the verdict used) is large next to
    the original's outputs on the domain (:data:`~exactcomp.tolerances.LARGE_DEFAULT_TOL`),
    so that a user reads an EQUIVALENT under it for what it is and gives ``--tol``."""
    import numpy as np

    from ..tolerances import LARGE_DEFAULT_TOL

    rng = np.random.default_rng(0)
    x = np.vstack([b.lower + (b.upper - b.lower) * rng.random((256, b.dim)) for b in boxes])
    out = f.forward(x)
    span = float(out.max() - out.min()) if out.size else 0.0
    if tol > LARGE_DEFAULT_TOL * span:
        console.print(
            f"note: the default tolerance {tol:.3g} (twice the proven effect of rounding "
            f"{Path(args.other).name}'s weights) is large next to the original's outputs, "
            f"which span {span:.3g} on this domain; give --tol",
            markup=False,
        )


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from .. import api
    from ..io.atomic import check_output_path
    from ..report import counterexample_doc, read_certificates, verify_doc, write_document

    check_positive("--time-limit", args.time_limit)
    check_positive("--tol", args.tol)
    outputs = _output_list(args.outputs)
    inputs = input_paths(args)
    if args.counterexample:
        check_output_path(args.counterexample, inputs, outputs=[args.report])
    if args.report:
        check_output_path(args.report, inputs)
    # OTHER first: usually the smaller (a compressed copy), so an error in it comes early
    g = api.load(args.other, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    f = api.load(args.original, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    print_notes(args, console, f, g)
    boxes = domain_boxes(args, f.input_size, console)
    certificates = read_certificates(args.certificates, f) if args.certificates else None
    t0 = time.perf_counter()
    with progress_display(args, console) as progress:
        done = api.verify_with_certificates(
            f,
            g,
            boxes,
            certificates=certificates,
            mode=args.mode,
            tol=args.tol,
            time_limit=args.time_limit,
            progress=progress,
            outputs=outputs,
        )
    seconds = time.perf_counter() - t0
    res, recheck = done.result, done.recheck
    if recheck is not None:
        console.print(recheck.summary() + ("" if recheck.ok else ": certificates not used"))
    status = res.status.name
    colour = {"EQUIVALENT": "green", "NOT_EQUIVALENT": "red"}.get(status, "yellow")
    console.print(f"[bold {colour}]{res.summary()}[/bold {colour}]")
    if args.tol is None and args.mode == "linf":  # the default the verdict used, computed once
        _note_large_default_tol(args, console, f, res.tol, boxes)
    if status == "UNKNOWN":
        console.print(tol_hint(res, "--tol"), markup=False)
        if certificates is None and g.num_neurons < f.num_neurons:
            console.print(
                f"{Path(args.other).name} has fewer neurons: if exactcomp compress wrote it, "
                "give that run's --report as --certificates (its claims are re-proven, then "
                "the proof sees through the neurons it removed)",
                markup=False,
            )
    ce = res.counterexample
    if ce is not None:
        console.print(
            f"counterexample: x = {show_vector(ce.x)}\n"
            f"  original(x) = {show_vector(ce.f_x)}\n"
            f"  other(x)    = {show_vector(ce.g_x)}\n"
            f"  difference  = {float(ce.difference):.6g}",
            markup=False,
        )
        if args.counterexample:
            write_document(args.counterexample, "counterexample", counterexample_doc(ce))
            console.print(f"counterexample saved to {args.counterexample}")
    if args.report:
        described = {
            "original": args.original,
            "other": args.other,
            "domain": {
                "boxes": len(boxes),
                "source": next(
                    f"--{k.replace('_', '-')} {getattr(args, k)}"
                    for k in ("box", "box_file", "box_from_data", "vnnlib")
                    if getattr(args, k)
                ),
                "lower": [b.lower for b in boxes],
                "upper": [b.upper for b in boxes],
            },
            "tol_default": args.tol is None,
            "outputs": outputs,
            "counterexample": args.counterexample if ce is not None else None,
            "recheck": None if recheck is None else recheck.summary(),
        }
        write_document(args.report, "verify", verify_doc(res, seconds, described))
    if status == "NOT_EQUIVALENT":
        return EXIT_DIFFERENT
    return EXIT_OK if status == "EQUIVALENT" else EXIT_UNKNOWN
