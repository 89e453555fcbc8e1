"""``python -m benchmarks {table,stability,real,scaling,soak,diffverify}``: parse, run, write, print.

Every sub-command writes ``<stem>.csv``, ``<stem>.json`` (rows plus the command line, the
UTC time, the git commit and the options) and ``<stem>.md`` to ``--out``, plus its PNG
plots, and prints a rich table. ``--quick`` runs use the stem ``<name>_quick`` and, unless
``--out`` is given, write to ``out/benchmarks/`` (ignored by git), so that a smoke run never
overwrites the committed figures under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .console import RichProgress, print_rows
from .engines import PREVIOUS_COMMIT
from .rows import write_rows

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
QUICK_OUT = REPO_ROOT / "out" / "benchmarks"  # git ignores /out/


def output_dir(args: argparse.Namespace) -> Path:
    """Where a run writes: ``--out`` if given, else ``QUICK_OUT`` for ``--quick`` runs (kept
    out of git) and ``DEFAULT_OUT`` (the committed results) for full ones."""
    if args.out is not None:
        return args.out
    return QUICK_OUT if getattr(args, "quick", False) else DEFAULT_OUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="exactcomp benchmarks: results table, stability methods, real networks, "
        "scaling, soundness soak.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quick", action="store_true", help="a small run (minutes on 2 cores)")
        p.add_argument(
            "--out",
            type=Path,
            default=None,
            help="output folder (default: benchmarks/results, or out/benchmarks with --quick)",
        )
        p.add_argument("--jobs", type=int, default=None, help="engine worker processes")
        p.add_argument(
            "--time-limit", type=float, default=10.0, help="CPU seconds per MILP (default 10)"
        )
        p.add_argument(
            "--only",
            default="",
            help="run only the cases whose name contains this text (real: A,B for either)",
        )

    p = sub.add_parser("table", help="compress and verify the digits grid")
    common(p)
    p.add_argument("--method", default="fast", choices=("fast", "leo", "naive"))
    p.add_argument("--verify-time-limit", type=float, default=60.0)
    p.add_argument("--verify-tol", type=float, default=None, help="default: the library's")
    p.add_argument("--check-points", type=int, default=100_000)

    p = sub.add_parser("stability", help="naive / leo / fast side by side")
    common(p)
    p.add_argument("--suite", choices=("all", "digits", "real"), default="all")
    p.add_argument("--methods", default="naive,leo,fast", help="comma-separated methods")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per leo/fast run")
    p.add_argument("--naive-budget", type=float, default=300.0, help="seconds per naive run")
    p.add_argument(
        "--with-data", action="store_true", help="give every method the digits training inputs"
    )

    p = sub.add_parser("real", help="compress and verify the shipped real networks")
    common(p)
    p.add_argument("--method", default="fast", choices=("fast", "leo", "naive"))
    p.add_argument(
        "--budget", type=float, default=600.0, help="seconds of analysis per case (then UNDECIDED)"
    )
    p.add_argument("--verify-time-limit", type=float, default=120.0)
    p.add_argument("--verify-tol", type=float, default=None, help="default: the library's")
    p.add_argument(
        "--previous",
        default=PREVIOUS_COMMIT,
        metavar="COMMIT",
        help="also run the engine of this commit on every case ('none': only this checkout; "
        f"default {PREVIOUS_COMMIT}, the last commit before branch and bound)",
    )
    p.add_argument(
        "--previous-budget",
        type=float,
        default=None,
        help="seconds of analysis per case for the previous engine (default: --budget)",
    )

    p = sub.add_parser("scaling", help="cost vs width and depth, per method")
    common(p)
    p.add_argument("--methods", default="naive,leo,fast", help="comma-separated methods")
    p.add_argument("--budget", type=float, default=600.0, help="seconds per leo/fast run")
    p.add_argument("--naive-budget", type=float, default=300.0, help="seconds per naive run")
    p.add_argument(
        "--naive-max-neurons", type=int, default=100, help="skip naive above this many neurons"
    )

    p = sub.add_parser("regions", help="linear regions: exact counts, bounds, compressibility")
    common(p)
    p.add_argument("--limit", type=int, default=200_000, help="stop each count at N regions")
    p.add_argument("--points", type=int, default=None, help="digits test points (default 3/10)")
    p.add_argument("--suite", choices=("all", "2d", "digits"), default="all")
    p.add_argument(
        "--stability",
        choices=("bounds", "full"),
        default="full",
        help="which proofs fix neurons (full: what compress removes; bounds: fast)",
    )

    sub.add_parser("soak", help="soundness soak (benchmarks/soak.py); arguments pass through")
    sub.add_parser(
        "lossy",
        help="certified lossy compression and quantisation against magnitude pruning and "
        "round-to-nearest (benchmarks/lossy.py)",
    )
    sub.add_parser(
        "diffverify",
        help="exactcomp vs NeuroDiff on its ACAS Xu float16 benchmark (benchmarks/diffverify.py)",
    )

    sub.add_parser(
        "acas", help="compress --verify on the 45 ACAS Xu networks x props 1-4 (benchmarks/acas.py)"
    )

    p = sub.add_parser("markdown", help="regenerate RESULTS.md's measured part from --out")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder to read")
    p.add_argument("--md", type=Path, default=REPO_ROOT / "benchmarks" / "RESULTS.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "soak":
        from .soak import main as soak_main

        return int(soak_main(argv[1:]) or 0)
    if argv and argv[0] == "lossy":
        from .lossy import main as lossy_main

        return int(lossy_main(argv[1:]) or 0)
    if argv and argv[0] == "acas":
        from .acas import main as acas_main

        return int(acas_main(argv[1:]) or 0)
    if argv and argv[0] == "diffverify":
        from .diffverify import main as diffverify_main

        return int(diffverify_main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file: do not squeeze the table into 80 columns
        console = Console(width=220)
    if args.command == "markdown":
        from .results_md import regenerate

        regenerate(args.md, args.out)
        console.print(f"wrote {args.md}")
        return 0
    args.out = output_dir(args)
    stem = args.command + ("_quick" if args.quick else "")
    if getattr(args, "suite", "all") != "all" and args.command == "regions":
        stem += f"_{args.suite}"
    runner = {
        "table": _table,
        "stability": _stability,
        "real": _real,
        "scaling": _scaling,
        "regions": _regions,
    }
    rows, columns, plots = runner[args.command](args, stem)
    meta = _meta(argv, args)
    paths = write_rows(rows, args.out, stem, meta)
    if args.command == "real":  # 80 columns on the console; the files keep every column
        from .rows import RealConsoleRow

        shown = [RealConsoleRow.of(r) for r in rows]
        print_rows(console, f"real ({len(rows)} rows)", shown, None, compact=True)
    else:
        print_rows(console, f"{args.command} ({len(rows)} rows)", rows, columns)
    for path in [*paths, *plots]:
        console.print(f"wrote {path}")
    return 0


def _meta(argv: list[str], args: argparse.Namespace) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "command": "python -m benchmarks " + " ".join(argv),
        "utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "git_commit": commit,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "options": {k: str(v) for k, v in vars(args).items()},
    }


def _table(args: argparse.Namespace, stem: str) -> tuple[list, Sequence[str], list[Path]]:
    from .digits import table_grid
    from .plots import plot_l1, plot_proofs
    from .table import TABLE_COLUMNS, TableOptions, run_table

    configs = tuple(c for c in table_grid(args.quick) if args.only in c.label)
    opts = TableOptions(
        method=args.method,
        time_limit=args.time_limit,
        jobs=args.jobs,
        verify_time_limit=args.verify_time_limit,
        verify_tol=args.verify_tol,
        check_points=args.check_points,
    )
    partial_meta = {**_meta(sys.argv[1:], args), "partial": True}

    def save_partial(rows: list) -> None:
        write_rows(rows, args.out, stem, partial_meta)

    with RichProgress("table", len(configs)) as bars:
        rows = run_table(configs, opts, bars, on_row=save_partial)
    plots = [
        plot_l1(rows, args.out / f"{stem}_l1.png"),
        plot_proofs(rows, args.out / f"{stem}_proofs.png", ("arch", "l1", "seed")),
    ]
    return rows, TABLE_COLUMNS, plots


def _stability(args: argparse.Namespace, stem: str) -> tuple[list, Sequence[str], list[Path]]:
    from .methods import STABILITY_COLUMNS, MethodOptions, run_cases
    from .plots import plot_proofs
    from .suites import stability_cases

    methods = _methods(args.methods)
    cases = stability_cases(args.suite, args.quick, with_data=args.with_data)
    cases = [c for c in cases if args.only in c.network]
    opts = MethodOptions(
        methods=methods,
        time_limit=args.time_limit,
        jobs=args.jobs,
        budget=args.budget,
        naive_budget=args.naive_budget,
    )
    with RichProgress("stability", len(cases) * len(methods)) as bars:
        rows = run_cases(cases, opts, bars)
    plot = plot_proofs(rows, args.out / f"{stem}_proofs.png", ("network", "domain", "method"))
    return rows, STABILITY_COLUMNS, [plot]


def _real(args: argparse.Namespace, stem: str) -> tuple[list, Sequence[str], list[Path]]:
    from .engines import current_engine, previous_engine
    from .networks import real_networks
    from .plots import plot_proofs
    from .real import RealOptions, engines_markdown, real_cases, run_real

    nets = real_networks()
    if args.quick:
        nets = tuple(n for n in nets if not n.large)
    cases = [
        (n, p) for n, p in real_cases(nets) if _selected(args.only, f"{n.name} {Path(p).stem}")
    ]
    opts = RealOptions(
        method=args.method,
        time_limit=args.time_limit,
        jobs=args.jobs,
        verify_time_limit=args.verify_time_limit,
        verify_tol=args.verify_tol,
        budget=args.budget,
        previous_budget=args.previous_budget,
    )
    with contextlib.ExitStack() as stack:
        engines = [current_engine()]
        if args.previous.lower() != "none":
            engines.insert(0, stack.enter_context(previous_engine(args.previous)))
        # recorded in the JSON's options: which commit each engine row ran
        args.engines = ",".join(f"{e.name}={e.commit}" for e in engines)
        partial_meta = {**_meta(sys.argv[1:], args), "partial": True}

        def save_partial(rows: list) -> None:
            write_rows(rows, args.out, stem, partial_meta)

        with RichProgress("real", len(cases) * len(engines)) as bars:
            rows = run_real(cases, opts, bars, engines, on_row=save_partial)
    plot = plot_proofs(rows, args.out / f"{stem}_proofs.png", ("network", "prop"))
    side_by_side = args.out / f"{stem}_engines.md"  # previous / current, one line per case
    side_by_side.write_text(engines_markdown([dataclasses.asdict(r) for r in rows]) + "\n")
    return rows, None, [plot, side_by_side]


def _scaling(args: argparse.Namespace, stem: str) -> tuple[list, Sequence[str], list[Path]]:
    from .methods import SCALING_COLUMNS, MethodOptions, run_cases
    from .plots import plot_scaling
    from .suites import scaling_cases

    methods = _methods(args.methods)
    cases = scaling_cases(args.quick, naive_max_neurons=args.naive_max_neurons, only=args.only)
    opts = MethodOptions(
        methods=methods,
        time_limit=args.time_limit,
        jobs=args.jobs,
        budget=args.budget,
        naive_budget=args.naive_budget,
    )
    with RichProgress("scaling", len(cases) * len(methods)) as bars:
        rows = run_cases(cases, opts, bars)
    return rows, SCALING_COLUMNS, [plot_scaling(rows, args.out / f"{stem}.png")]


def _regions(args: argparse.Namespace, stem: str) -> tuple[list, Sequence[str], list[Path]]:
    from .regions import REGION_COLUMNS, RegionOptions, plot_regions, row_count, run_regions

    opts = RegionOptions(
        quick=args.quick,
        jobs=args.jobs or (os.cpu_count() or 1),
        time_limit=args.time_limit,
        limit=args.limit,
        points=args.points if args.points is not None else (3 if args.quick else 10),
        only=args.only,
        suite=args.suite,
        stability=args.stability,
    )
    partial_meta = {**_meta(sys.argv[1:], args), "partial": True}

    def save_partial(rows: list) -> None:
        write_rows(rows, args.out, stem, partial_meta)

    with RichProgress("regions", row_count(opts)) as bars:
        rows = run_regions(opts, bars, on_row=save_partial)
    return rows, REGION_COLUMNS, [plot_regions(rows, args.out / f"{stem}.png")]


def _selected(only: str, name: str) -> bool:
    """``--only A,B``: the name contains one of the comma-separated texts (empty: all)."""
    return any(part in name for part in only.split(","))


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in ("naive", "leo", "fast")]
    if bad or not methods:
        raise SystemExit(f"--methods: unknown method(s) {bad}; use naive, leo, fast")
    return methods
