"""The ``exactcomp`` command line: parse, call one API function per command, print.

No logic of its own: budgets, compress-then-verify and every JSON document live in
:mod:`exactcomp.api` and :mod:`exactcomp.report`.

Exit codes: 0 success (``verify``: EQUIVALENT), 1 NOT_EQUIVALENT, 3 UNKNOWN, 2 a usage or
input error (one line naming the problem, no output file), 130 interrupted (nothing written,
or with ``compress --partial`` the network proven before the Ctrl-C).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from .errors import ExactCompError, InputFileError, InvalidOptionError
from .verdicts import METHODS, SOLVERS

if TYPE_CHECKING:  # the domain readers load on use: --help stays quick
    from .domain import Box

EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR, EXIT_UNKNOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"exactcomp: error: {message} (see 'exactcomp --help')\n")


# ---------------------------------------------------------------------- option groups
def _add_model(
    p: argparse.ArgumentParser, help: str | None = None, output: str | None = None
) -> None:
    """The model argument, ``-o`` (when ``output`` is its help), the input domain and the
    options of the model readers."""
    p.add_argument("model", help=help)
    if output is not None:
        p.add_argument("-o", "--output", required=True, help=output)
    _add_domain(p)
    _add_model_opts(p)


def _add_domain(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "input domain (exactly one)",
        "for a .nnet model: in raw units (those of the file's min/max), within its limits",
    )
    g.add_argument(
        "--box",
        metavar="LO,HI",
        help="the box [LO,HI]^n (same bounds for every input); negative bounds work: --box -1,1",
    )
    g.add_argument("--box-file", metavar="F", help=".npy of shape (2, n) or JSON {lower, upper}")
    g.add_argument("--box-from-data", metavar="F.npy", help="per-feature min/max of a data array")
    g.add_argument("--vnnlib", metavar="F", help="the input constraints of a VNN-LIB property")


def _add_model_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow loading a whole pickled nn.Module (can run code)",
    )
    p.add_argument(
        "--nnet-units",
        choices=("raw", "normalised"),
        default="raw",
        help="a .nnet model's units: raw (default; normalisation folded in) or normalised "
        "(the stored network: box and outputs in normalised units)",
    )


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", metavar="R.json", help="write the JSON report here")


def _add_quiet(p: argparse.ArgumentParser, help: str = "no progress display") -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def _add_time_limit(p: argparse.ArgumentParser, default: float, help: str) -> None:
    p.add_argument("--time-limit", type=float, default=default, metavar="S", help=help)


def _add_jobs(p: argparse.ArgumentParser, default: int | None, help: str) -> None:
    p.add_argument("--jobs", type=int, default=default, metavar="N", help=help)


def _add_data(p: argparse.ArgumentParser, data: str, labels: str | None = None) -> None:
    p.add_argument("--data", metavar="F.npy", help=data)
    if labels:
        p.add_argument("--labels", metavar="F.npy", help=labels)


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        default="fast",
        choices=METHODS,
        help="stability engine (default: fast)",
    )
    _add_time_limit(p, 10.0, "seconds per MILP (default: 10)")
    _add_jobs(p, None, "worker processes (default: all cores)")
    p.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="solve the MILPs on a Dask cluster, e.g. tcp://scheduler:8786 "
        "(needs the 'cluster' extra: pip install 'exactcomp[cluster]')",
    )
    p.add_argument(
        "--solver",
        default="highs",
        help=f"MILP solver: {SOLVERS[0]} (default), {', '.join(SOLVERS[1:])}",
    )
    _add_data(p, "data points used as instability witnesses")
    _add_report(p)
    _add_quiet(p, "no progress display and no table")


# ---------------------------------------------------------------------- the commands' options
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="exactcomp", description="Exact compression of ReLU networks, with proofs."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_compress_parser(sub)
    _add_quantize_parser(sub)
    _add_stability_parser(sub)
    _add_verify_parser(sub)
    _add_regions_parser(sub)
    return parser


def _add_compress_parser(sub) -> None:
    c = sub.add_parser(
        "compress", help="write a smaller network that computes the same function on the domain"
    )
    _add_model(
        c,
        help="model: .pt/.pth (state_dict, TorchScript), .pt2 (torch.export), .onnx or .nnet",
        output="output path; its suffix (.pt, .onnx) picks the format",
    )
    _add_engine(c)
    c.add_argument(
        "--check",
        type=int,
        default=100_000,
        metavar="N",
        help="re-check points before writing, >= 1 (default: 100000)",
    )
    c.add_argument(
        "--verify",
        action="store_true",
        help="re-prove every stability claim and prove the result equivalent before writing",
    )
    c.add_argument(
        "--verify-tol",
        type=float,
        default=None,
        metavar="T",
        help="allowed max |f - g| for --verify (default: 1e-6, or for a float32 file twice the "
        "proven bound on what rounding the folded weights to float32 changes)",
    )
    c.add_argument(
        "--dtype",
        choices=("input", "float64"),
        default="input",
        help="precision of the written weights: input (the checkpoint's; folded weights are "
        "rounded to it and --verify proves the rounded network) or float64 (exactly the "
        "network that was analysed; an ONNX file then has double inputs and outputs)",
    )
    c.add_argument(
        "--partial",
        action="store_true",
        help="on Ctrl-C, still write a (smaller, exact) network using the verdicts proven so far",
    )
    c.add_argument(
        "--tol",
        default=None,
        metavar="EPS",
        help="certified lossy compression: prune further while max |f - g| over the domain is "
        "proven <= EPS (logit units)",
    )
    c.add_argument("--labels", metavar="F.npy", help="labels of --data (lossy: accuracy)")


def _add_quantize_parser(sub) -> None:
    q = sub.add_parser(
        "quantize", help="quantise the weights, with a proven bound on max |f - g| on the domain"
    )
    _add_model(q, output="output .onnx (integer weights) or .pt")
    q.add_argument("--bits", default=None, help="8, 4, 3, 2, 1.5 (ternary) or 16 (float16)")
    q.add_argument(
        "--tol", default=None, metavar="EPS", help="per layer the fewest bits proven within EPS"
    )
    _add_data(q, "data: agreement with the original", "labels of --data: accuracy")
    _add_report(q)
    _add_quiet(q, "no table")


def _add_stability_parser(sub) -> None:
    s = sub.add_parser(
        "stability", help="classify every neuron as stably active/inactive, unstable or undecided"
    )
    _add_model(s)
    _add_engine(s)


def _add_verify_parser(sub) -> None:
    v = sub.add_parser(
        "verify", help="prove two networks equal on the domain, or find where they differ"
    )
    v.add_argument("original", help="the reference network (.pt/.pth, .onnx or .nnet)")
    v.add_argument("other", help="the network to compare with it, e.g. its compressed copy")
    _add_domain(v)
    _add_model_opts(v)
    v.add_argument(
        "--mode",
        default="linf",
        choices=("linf", "top1"),
        help="linf: max |f - g| <= tol on every output (default); top1: OTHER ranks every top "
        "class of ORIGINAL within tol of its own best (the same prediction)",
    )
    v.add_argument(
        "--tol",
        type=float,
        default=None,
        help="allowed difference (default: 1e-6, or for a float32 OTHER twice the proven bound "
        "on what rounding its weights to float32 can change)",
    )
    _add_time_limit(v, 60.0, "overall seconds (default: 60)")
    v.add_argument(
        "--outputs",
        metavar="I,J,...",
        help="compare only these outputs (0-based, linf mode; default: all)",
    )
    v.add_argument(
        "--counterexample",
        metavar="OUT.json",
        help="also save the counterexample (printed when found) here as JSON",
    )
    v.add_argument(
        "--certificates",
        metavar="R.json",
        help="the --report of 'exactcomp compress' (or 'stability') on ORIGINAL over this "
        "domain: its stable-neuron claims are re-proven independently, then used",
    )
    _add_quiet(v)


def _add_regions_parser(sub) -> None:
    r = sub.add_parser(
        "regions", help="count the linear (activation) regions over the domain, with bounds"
    )
    _add_model(r, help="checkpoint: .pt/.pth (state_dict), .onnx or .nnet")
    _add_report(r)
    r.add_argument("--limit", type=int, default=None, metavar="N", help="stop at N regions")
    _add_jobs(r, 1, "worker processes (default 1)")
    r.add_argument("--plot", metavar="F.png", help="draw the regions on a 2-D slice")
    r.add_argument(
        "--plane",
        metavar="I,J|F.json",
        help="the slice for --plot: inputs I and J through the box centre, or JSON "
        '{"point": [...], "directions": [[...], [...]]} (default 0,1; 2 inputs: the input)',
    )
    r.add_argument(
        "--graph",
        action="store_true",
        help="adjacency graph statistics (networkx) of the regions drawn or, for 2 inputs, counted",
    )
    r.add_argument("--bounds-only", action="store_true", help="no exact count: bounds, estimate")
    r.add_argument(
        "--stability",
        choices=("none", "bounds", "full"),
        default="bounds",
        help="proofs that fix stable neurons first: bounds (interval/linear, default), full "
        "(the whole stability engine, as compress), none",
    )
    r.add_argument("--samples", type=int, default=20_000, help="points for the lower bound")
    r.add_argument("--lines", type=int, default=20, help="random lines for the lower bound")
    r.add_argument("--seed", type=int, default=0)
    _add_time_limit(r, 10.0, "seconds per stability MILP")
    _add_quiet(r)


# ---------------------------------------------------------------------- the commands


def cmd_regions(args: argparse.Namespace, console: Console) -> int:
    from . import api
    from .io.atomic import check_output_path
    from .regions import Plane, parse_plane
    from .report import regions_table, write_document

    _check_positive("--limit", args.limit)
    _check_positive("--jobs", args.jobs)
    _check_positive("--time-limit", args.time_limit)
    for name in ("samples", "lines"):
        if getattr(args, name) < 0:
            raise InvalidOptionError(f"--{name} must be >= 0, got {getattr(args, name)}")
    inputs = [args.model] + [p for p in (args.box_file, args.box_from_data, args.vnnlib) if p]
    for out in (args.report, args.plot):
        if out:
            check_output_path(out, inputs)
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InvalidOptionError(f"--plot writes PNG; give a .png path, got {args.plot!r}")
    net = api.load(args.model, trust_pickle=args.trust_pickle)
    boxes = _domain(args, net.input_size, console)
    plane = None
    if args.plane is not None:
        if not args.plot:
            raise InvalidOptionError("--plane chooses the slice for --plot; give --plot too")
        plane = parse_plane(args.plane, boxes[0])
    elif args.plot:
        if net.input_size < 2:
            raise InvalidOptionError(
                f"--plot draws a 2-D slice; the network has {net.input_size} input"
            )
        plane = Plane.axes(boxes[0], 0, 1)
    with _progress(args, console) as progress:
        res = api.count_regions(
            net,
            boxes,
            limit=args.limit,
            jobs=args.jobs,
            exact=not args.bounds_only,
            stability=args.stability,
            time_limit=args.time_limit,
            samples=args.samples,
            lines=args.lines,
            keep_cells=bool(args.plot or args.graph) and net.input_size == 2 and not args.plane,
            seed=args.seed,
            progress=progress,
        )
    doc = res.to_json()
    console.print(regions_table(doc))
    if args.graph and plane is None:
        if net.input_size != 2:
            raise InvalidOptionError("--graph needs 2 inputs, or --plot (the graph of the slice)")
        plane = Plane.axes(boxes[0], 0, 1)
    if plane is not None:
        from .regions.drawing import draw_regions

        whole = net.input_size == 2 and args.plane is None
        drawing = draw_regions(net, boxes[0], res, plane, whole, args.plot, args.graph, args.limit)
        doc.update(drawing.to_json())
        for line in drawing.lines:
            console.print(line)
    if args.report:
        write_document(args.report, "regions", doc)
    return EXIT_OK


def cmd_lossy(args: argparse.Namespace, console: Console) -> int:
    """``quantize``, and ``compress --tol``: certified lossy compression (exactcomp.approx)."""
    from . import api
    from .approx import check_tol
    from .io import check_output_path, check_save_path
    from .report import lossy_table, write_document
    from .rewrite.quantize import check_bits

    quantizing = args.command == "quantize"
    bits = getattr(args, "bits", None)
    if bits is not None:
        bits = check_bits(bits)
    tol = None if args.tol is None else check_tol(args.tol, positive=bits is not None)
    if quantizing and bits is None and tol is None:
        raise InvalidOptionError("quantize needs --bits, --tol or both")
    inputs = [args.model] + [
        p for p in (args.data, args.labels, args.box_file, args.box_from_data, args.vnnlib) if p
    ]
    check_save_path(args.output, inputs)
    if args.report:
        check_output_path(args.report, inputs + [args.output])
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    boxes = _domain(args, net.input_size, console)
    data = _data(args)
    labels = _npy(args.labels, "labels") if args.labels else None
    if quantizing:
        result = api.quantize(net, boxes, bits=bits, tol=tol, data=data, labels=labels)
    else:
        result = api.compress_lossy(net, boxes, tol, data=data, labels=labels)
    result.report["bytes_before"] = Path(args.model).stat().st_size
    result.save(args.output, inputs=inputs)
    if args.report:
        write_document(args.report, "quantize" if quantizing else "lossy", result.report)
    _print_table(args, console, lossy_table(result.report))
    console.print(
        f"wrote {args.output}: proven max |f - g| <= {result.proven:.4g} "
        f"(sampled {result.sampled:.4g}), {result.report['bytes_before']} -> "
        f"{result.report['bytes_after']} bytes"
    )
    return EXIT_OK


def _npy(path: str, what: str) -> np.ndarray:
    if not Path(path).is_file():
        raise InputFileError(f"{what} file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputFileError(f"cannot read {what} file {path} as .npy: {exc}") from None


def _domain(args: argparse.Namespace, n_inputs: int, console: Console) -> list[Box]:
    from .domain import box_from_data, parse_box_string, read_box_file

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
        from .io.vnnlib import read_vnnlib

        spec = read_vnnlib(args.vnnlib, n_inputs)
        boxes = list(spec.boxes)
        if spec.output_constraints:
            console.print(
                f"[dim]{args.vnnlib}: {len(boxes)} input box(es); {spec.output_constraints} output "
                "constraint(s) ignored (compression keeps the whole function)[/dim]"
            )
    for b in boxes:
        b.check_size(n_inputs)
    return boxes


def _data(args: argparse.Namespace) -> np.ndarray | None:
    if not getattr(args, "data", None):
        return None
    path = Path(args.data)
    if not path.is_file():
        raise InputFileError(f"data file not found: {path}")
    try:
        return np.load(path, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError) as exc:
        raise InputFileError(f"cannot read data file {path} as .npy: {exc}") from None


def _progress(args: argparse.Namespace, console: Console):
    from .progress import SILENT
    from .report import RichProgress

    if args.quiet:
        import contextlib

        return contextlib.nullcontext(SILENT)
    return RichProgress(console)


def _print_notes(args: argparse.Namespace, console: Console, *nets: object) -> None:
    """One line per note the model readers left (``Network.meta["notes"]``), unless --quiet."""
    if args.quiet:
        return
    seen: list[str] = []
    for net in nets:
        for note in getattr(net, "meta", {}).get("notes", ()):
            if note not in seen:
                seen.append(note)
                console.print(f"note: {note}", markup=False, soft_wrap=True)


def _print_table(args: argparse.Namespace, console: Console, table) -> None:
    """Print a summary table unless --quiet."""
    if not args.quiet:
        console.print(table)


def _show_vector(v: np.ndarray, limit: int = 8) -> str:
    """A short readable form of a vector: up to ``limit`` entries, then how many more."""
    v = np.asarray(v, dtype=np.float64).reshape(-1) + 0.0  # + 0.0: never "-0"
    head = ", ".join(f"{x:.6g}" for x in v[:limit])
    return f"[{head}{f', ... ({v.size - limit} more)' if v.size > limit else ''}]"


def _tol_hint(verdict, option: str, rounding_tol: float | None = None) -> str:
    """Advice after a failed verification: a tolerance that works, when one is known.

    ``rounding_tol``: the default derived from the proven effect of rounding the written
    weights (:func:`exactcomp.api.default_tolerance`), when that is what separates them."""
    from . import api

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
    if value is None and cause == "claims":
        return "stability claims were not re-proven in time; give more --time-limit"
    if value is None:
        return "no bound was proven in time; give more --time-limit"
    return f"{option} {value:.2g} would be proven"


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise InvalidOptionError(f"{name} must be > 0, got {value}")


def cmd_compress(args: argparse.Namespace, console: Console) -> int:
    from . import api, io
    from .io import check_output_path, check_save_path
    from .report import compression_table, document_text, write_document

    if args.tol is not None:
        return cmd_lossy(args, console)
    _check_positive("--time-limit", args.time_limit)
    _check_positive("--jobs", args.jobs)
    _check_positive("--verify-tol", args.verify_tol)
    _check_positive("--check", args.check)
    inputs = [args.model] + [
        p for p in (args.data, args.box_file, args.box_from_data, args.vnnlib) if p
    ]
    check_save_path(args.output, inputs)
    if args.report:
        check_output_path(args.report, inputs + [args.output])
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    if Path(args.output).suffix.lower() in (".pt", ".pth"):  # refused before the analysis
        from .io.torch_io import check_torch_target

        check_torch_target(net)
    _print_notes(args, console, net)
    boxes = _domain(args, net.input_size, console)
    with _progress(args, console) as progress:
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
            data=_data(args),
            solver=args.solver,
            check=args.check,
            partial=args.partial,
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
    _print_table(args, console, compression_table(result.report))
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
            console.print(_tol_hint(verdict, "--verify-tol", checked.rounding_tol), markup=False)
        return EXIT_UNKNOWN if verdict.status.name == "UNKNOWN" else EXIT_DIFFERENT
    report_text = document_text("compress", result.report)  # rendered before anything is written
    api.save(written, args.output, inputs=inputs, domain=boxes)
    larger = io.larger_than_input(args.output, args.model)  # never larger: else say so
    if larger:
        result.report["size_warning"] = larger
        report_text = document_text("compress", result.report)
        console.print(f"warning: {larger}", markup=False)
    if args.report:
        write_document(args.report, "compress", report_text)
    console.print(
        f"wrote {args.output}: {result.report['neurons_before']} -> {result.report['neurons_after']} neurons, "
        f"re-checked on {result.check.points} points (max |diff| {result.check.max_abs_diff:.2g})"
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


def cmd_stability(args: argparse.Namespace, console: Console) -> int:
    from . import api
    from .io.atomic import check_output_path
    from .report import stability_doc, stability_table, write_document

    _check_positive("--time-limit", args.time_limit)
    _check_positive("--jobs", args.jobs)
    if args.report:
        check_output_path(args.report, [args.model])
    net = api.load(args.model, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    _print_notes(args, console, net)
    boxes = _domain(args, net.input_size, console)
    t0 = time.perf_counter()
    with _progress(args, console) as progress:
        rep = api.stable_neurons(
            net,
            boxes,
            method=args.method,
            time_limit=args.time_limit,
            jobs=args.jobs,
            cluster=args.cluster,
            data=_data(args),
            solver=args.solver,
            progress=progress,
        )
    doc = stability_doc(
        rep, time.perf_counter() - t0, cluster=args.cluster, notes=net.meta.get("notes", ())
    )
    _print_table(args, console, stability_table(doc))
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


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from . import api
    from .io.atomic import check_output_path
    from .report import counterexample_doc, read_certificates, write_document

    _check_positive("--time-limit", args.time_limit)
    _check_positive("--tol", args.tol)
    outputs = _output_list(args.outputs)
    if args.counterexample:
        check_output_path(args.counterexample, [args.original, args.other])
    f = api.load(args.original, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    g = api.load(args.other, trust_pickle=args.trust_pickle, nnet_units=args.nnet_units)
    _print_notes(args, console, f, g)
    boxes = _domain(args, f.input_size, console)
    certificates = read_certificates(args.certificates, f) if args.certificates else None
    with _progress(args, console) as progress:
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
    res, recheck = done.result, done.recheck
    if recheck is not None:
        console.print(recheck.summary() + ("" if recheck.ok else ": certificates not used"))
    status = res.status.name
    colour = {"EQUIVALENT": "green", "NOT_EQUIVALENT": "red"}.get(status, "yellow")
    console.print(f"[bold {colour}]{res.summary()}[/bold {colour}]")
    if status == "UNKNOWN":
        console.print(_tol_hint(res, "--tol"), markup=False)
    if status == "NOT_EQUIVALENT":
        ce = res.counterexample
        console.print(
            f"counterexample: x = {_show_vector(ce.x)}\n"
            f"  original(x) = {_show_vector(ce.f_x)}\n"
            f"  other(x)    = {_show_vector(ce.g_x)}\n"
            f"  difference  = {float(ce.difference):.6g}",
            markup=False,
        )
        if args.counterexample:
            write_document(args.counterexample, "counterexample", counterexample_doc(ce))
            console.print(f"counterexample saved to {args.counterexample}")
        return EXIT_DIFFERENT
    return EXIT_OK if status == "EQUIVALENT" else EXIT_UNKNOWN


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


if __name__ == "__main__":
    sys.exit(main())
