"""The ``exactcomp`` argument parser: one sub-parser per command, the option groups they share."""

from __future__ import annotations

import argparse

from ..verdicts import METHODS, SOLVERS
from .common import EXIT_ERROR


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
    _add_time_limit(
        p,
        10.0,
        "CPU seconds per MILP, and per layer's bound tightening (3x for input splits; default: 10)",
    )
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
        output="output path; its suffix (.pt, .onnx, .nnet) picks the format",
    )
    _add_engine(c)
    c.add_argument(
        "--check",
        type=int,
        default=None,
        metavar="N",
        help="re-check on N points before writing, >= 1 (default: up to 100000 within 10 s, "
        "at least 2000)",
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
    _add_budget(c, "analysis", lossy=True)
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
    _add_tol_mode(c)
    c.add_argument("--labels", metavar="F.npy", help="labels of --data (lossy: accuracy)")


def _add_tol_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tol-mode",
        default="linf",
        choices=("linf", "top1"),
        help="lossy: linf (default) keeps max |f - g| <= EPS; top1 proves the predicted class "
        "unchanged on every box (EPS optional: at most half the proven class margin)",
    )
    p.add_argument(
        "--top1-class",
        default="argmax",
        choices=("argmax", "argmin"),
        help="top1: the class is the largest output (default) or the smallest (ACAS Xu)",
    )


def _add_quantize_parser(sub) -> None:
    q = sub.add_parser(
        "quantize", help="quantise the weights, with a proven bound on max |f - g| on the domain"
    )
    _add_model(q, output="output .onnx (integer weights) or .pt")
    q.add_argument("--bits", default=None, help="8, 4, 3, 2, 1.5 (ternary) or 16 (float16)")
    q.add_argument(
        "--tol", default=None, metavar="EPS", help="per layer the fewest bits proven within EPS"
    )
    q.add_argument(
        "--method",
        default="corrected",
        choices=("corrected", "rtn"),
        help="corrected (default): bias correction and scale search on the domain; "
        "rtn: plain round-to-nearest",
    )
    _add_tol_mode(q)
    _add_lossy_budget(q)
    _add_data(q, "data: agreement with the original", "labels of --data: accuracy")
    _add_report(q)
    _add_quiet(q, "no table")


def _add_stability_parser(sub) -> None:
    s = sub.add_parser(
        "stability", help="classify every neuron as stably active/inactive, unstable or undecided"
    )
    _add_model(s)
    _add_engine(s)
    _add_budget(s, "analysis")


def _add_budget(p: argparse.ArgumentParser, what: str, lossy: bool = False) -> None:
    p.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help=f"stop the {what} after S seconds: what is not proven by then stays undecided "
        "(and is kept)" + (f"; with --tol: {LOSSY_BUDGET}" if lossy else ""),
    )


#: What ``--budget`` means for the lossy commands.
LOSSY_BUDGET = (
    "the whole command's seconds (default: 90); an edit not proven by then is not made, and "
    "a proof cut short claims a looser bound"
)


def _add_lossy_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=float, metavar="S", help=LOSSY_BUDGET)


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
        "--report",
        metavar="R.json",
        help="write the verdict, tolerance, proven and found bounds, inputs and domain as JSON",
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
    _add_time_limit(r, 10.0, "CPU seconds per stability MILP")
    _add_quiet(r, "no progress display; the result on one line instead of the table")
