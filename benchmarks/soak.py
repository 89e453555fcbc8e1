"""Soundness soak: every sound-claiming answer of exactcomp against the exact oracle.

``python -m benchmarks.soak --cases 2000 --seed 0`` (or ``python -m benchmarks soak ...``)
generates random nasty networks and boxes (:mod:`exactcomp.testing.random_networks`) and,
for each, checks against region enumeration (:mod:`exactcomp.testing.oracle`):

- ``bound``: interval, linear (CROWN-style), LP and the stability report's bounds enclose
  every exact pre-activation range;
- ``stable``: every INACTIVE/ACTIVE verdict of ``stable_neurons`` is true (on the box, and
  on the same box given as a union of two halves);
- ``unstable``: every UNSTABLE verdict's witness inputs show the signs they claim;
- ``compress``: the compressed network equals the original (exact max difference);
- ``equivalent``/``counterexample``/``equiv-bound``: ``verify_equivalence`` on the
  compressed network and on mutants (output shifted by twice / half the tolerance, one
  unstable neuron dropped): no EQUIVALENT above the tolerance, no counterexample that does
  not differ, no "proven" upper bound below the exact maximum;
- ``recheck``: ``recheck_certificates`` refutes no true claim and lets no false one pass;
- ``compress-exact``: the original and compressed networks in exact rational arithmetic
  (:mod:`exactcomp.testing.rational`) at the UNSTABLE witnesses and the oracle's region
  vertices agree up to ``2^-40`` of the term scale (the rounding of the stored weights).

Cases come from generator families (``--family``, default all, mixed by seed; see
:mod:`benchmarks.soak_families`), each aimed at one unsound shortcut: ``random``,
``near-duplicate`` and ``near-dependent`` rows with amplifying outgoing weights (the checks
above), ``nnet`` files with boxes inside and outside their input limits
(:mod:`benchmarks.soak_nnet`: ``nnet-compress``, ``nnet-equivalent``), and ``onnx`` graphs with
casts and non-affine ops (:mod:`benchmarks.soak_onnx`: ``onnx-load``, ``onnx-equivalent``),
and ``splits``: deep random networks with 2-8 inputs for the input splits of
:mod:`exactcomp.bab`; ``conv`` and ``conv-sparse``: small convolutional networks, most of them
ONNX graphs aimed at the conv paths (:mod:`benchmarks.soak_conv`: ``onnx-load``, and
``onnx-written`` and ``torch-written`` for the compressed files); ``degenerate``: emptied,
zero-width, duplicate and width-1 layers, point, tiny and wide boxes, the compressed network
through every later step (:mod:`benchmarks.soak_degenerate`: ``file-written``, ``lossy-bound``
and ``cli``). The summary counts cases, neurons, pairs (equivalence checks) and unsound findings per family.

Each case runs in a worker process (:mod:`benchmarks.soak_worker`) that is killed when the
case passes ``--case-seconds`` (default :data:`CASE_SECONDS`) of wall clock: the case is
counted as **timed out** (per family too), never as unsound and never dropped, and the
summary lists its family, seed and the command that replays it alone (``--cases 1 --seed S
--family F``). The summary JSON is rewritten (atomically) after every case, so a run that
is killed still reports every case it finished (``"complete": false``). A worker restarts
from the files on disk: a checkout edited under a long run can keep the next one from
starting (an import error); the run then stops with its summary (``stopped``, exit 3).

A refutation needs a concrete input of the box where the oracle's float64 forward pass
contradicts the claim beyond rounding (``1e-12`` relative to the interval magnitude of the
terms): never a tolerance judgement. Engine exceptions are reported as ``error``. Every
failing case is saved as JSON (weights, box, findings) for reproduction; the exit code is 1
when any unsound verdict was found, 3 when only errors or time-outs were, else 0: a
timed-out case, like an engine error, is a case whose claims were never checked, so a run
with one has not shown what a clean exit says (and a case past minutes means a missing
budget somewhere, a bug of its own). The checks themselves live in
:mod:`exactcomp.testing.soak_checks`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exactcomp.testing.soak_case import check_case
from exactcomp.testing.soak_checks import Checker
from exactcomp.testing.soak_results import UNSOUND, CaseResult, Finding, SoakOptions, method_for

from .soak_families import DEFAULT_FAMILIES, FAMILIES, family_for, parse_families, run_case
from .soak_worker import CaseWorker, RunCase

__all__ = [
    "CASE_SECONDS",
    "UNSOUND",
    "CaseResult",
    "Checker",
    "Finding",
    "SoakOptions",
    "Summary",
    "check_case",
    "main",
    "method_for",
]


CASE_SECONDS = 300.0
"""Default wall-clock limit of one case (``--case-seconds``). The slowest families' honest
cases take about a minute: per-case means over the summaries of earlier runs (stops 11-18,
the files left in /tmp) are ``conv`` 65 s (64 cases), ``conv-lossy`` and ``conv-compress``
33 s, ``pools`` 23 s, the rest under 3 s; the slowest single cases saved were 70 s
(``near-duplicate``) and 66 s (``conv-compress``), ``degenerate``'s CLI cases 10-50 s. 300 s
is 4x the slowest of them, room for a loaded machine. ``conv-lossy`` from seed 90000 (soak19):
6 of 40 cases past 300 s at load 6-8, 3 at load 1-3, where the slowest checked case took
296 s; one of them (90010) ends alone in 1,113 s (501 s CPU), enumerating 6,159 regions and
checking no lossy bound. Since lead20 those two families cap their oracle (``f``'s regions,
and a case's joint regions: ``benchmarks/soak_conv_lossy.py``): the same 40 cases in 460 s,
none past the limit, the slowest 130 s. The limit is a choice, not a bound on honest cases."""


# ----------------------------------------------------------------------------- driver
@dataclass
class Summary:
    """Totals over a soak run (what the table and the JSON file show)."""

    cases: int = 0
    neurons_checked: int = 0
    regions: int = 0
    engine_verdicts: Counter = field(default_factory=Counter)
    oracle_verdicts: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)
    unsound: Counter = field(default_factory=Counter)
    wrong_unstable: int = 0
    errors: int = 0
    compressions_checked: int = 0
    equivalence_checks: int = 0
    equivalence_verdicts: Counter = field(default_factory=Counter)
    missed_stable: int = 0
    oracle_skipped: int = 0
    checks_skipped: int = 0  # single checks of a checked case the oracle could not answer
    exact_points: int = 0
    refused: int = 0
    lossy: int = 0
    families: dict[str, Counter] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    timed_out: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""  # why the run ended before its last case (no worker would start)
    seconds: float = 0.0

    def add_timeout(self, family: str, seed: int, limit: float, replay: str) -> None:
        """A case stopped at ``limit`` seconds: counted apart (not in ``cases``, nor in the
        family's ``max_seconds``, the slowest checked case), replayable."""
        fam = self.families.setdefault(family, Counter())
        fam.update(timed_out=1, seconds=limit)
        self.timed_out.append({"family": family, "seed": seed, "replay": replay})

    def add(self, r: CaseResult) -> None:
        fam = self.families.setdefault(r.family, Counter())
        fam["max_seconds"] = max(fam["max_seconds"], r.seconds)  # the slowest checked case
        fam.update(
            cases=1,
            neurons=r.neurons,
            pairs=r.equivalences,
            compressions=r.compressions,
            refused=r.refused,
            lossy=r.lossy,
            unsound=len(r.unsound),
            unsound_cases=int(bool(r.unsound)),
            errors=len(r.errors),
            seconds=r.seconds,
        )
        self.exact_points += r.exact_points
        self.refused += r.refused
        self.lossy += r.lossy
        self.cases += 1
        self.neurons_checked += r.neurons
        self.regions += r.regions
        self.engine_verdicts.update(r.claims)
        self.oracle_verdicts.update(r.oracle)
        self.methods[r.method] += 1
        self.unsound.update(f.kind for f in r.unsound)
        self.wrong_unstable += sum(f.kind == "unstable" for f in r.findings)
        self.errors += len(r.errors)
        self.compressions_checked += r.compressions
        self.equivalence_checks += r.equivalences
        self.equivalence_verdicts.update(r.statuses)
        self.missed_stable += r.missed
        self.oracle_skipped += int(r.regions == 0)
        self.checks_skipped += sum("oracle skipped" in n for n in r.notes)

    def to_json(self) -> dict[str, Any]:
        out = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items()}
        out["families"] = {k: dict(v) for k, v in self.families.items()}
        out["unsound_total"] = sum(self.unsound.values())
        out["timed_out_total"] = len(self.timed_out)
        return out


def _table(s: Summary) -> Table:
    t = Table(title="soundness soak")
    t.add_column("what")
    t.add_column("value", justify="right")
    rows = [
        ("cases", s.cases),
        ("neurons checked", s.neurons_checked),
        ("activation regions enumerated", s.regions),
        ("cases too large for the oracle (skipped)", s.oracle_skipped),
        ("  single checks too large for it (skipped)", s.checks_skipped),
        ("engine verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s.engine_verdicts.items()))),
        ("oracle verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s.oracle_verdicts.items()))),
        ("methods", ", ".join(f"{k} {v}" for k, v in sorted(s.methods.items()))),
        ("compressions checked", s.compressions_checked),
        ("  points compared in exact rationals", s.exact_points),
        ("files and options refused with a clean error", s.refused),
        ("lossy bounds checked against the exact max", s.lossy),
        ("equivalence checks", s.equivalence_checks),
        ("  verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s.equivalence_verdicts.items()))),
        ("clear-cut stable neurons left UNDECIDED", s.missed_stable),
        ("UNSOUND verdicts (must be 0)", sum(s.unsound.values())),
        ("  by kind", ", ".join(f"{k} {v}" for k, v in sorted(s.unsound.items())) or "-"),
        ("wrong UNSTABLE witnesses", s.wrong_unstable),
        ("engine errors", s.errors),
        ("cases timed out (not checked; replay each alone)", len(s.timed_out)),
        ("seconds", f"{s.seconds:.1f}"),
    ]
    for name, value in rows:
        t.add_row(name, str(value))
    return t


def _family_table(s: Summary) -> Table:
    t = Table(title="per family (pairs: equivalence checks; refused: clean one-line refusals)")
    cols = ("cases", "neurons", "pairs", "refused", "unsound", "unsound_cases", "errors")
    cols += ("timed_out", "seconds", "max_seconds")
    heads = ("cases", "neurons", "pairs", "refused", "unsound", "cases bad", "errors")
    heads += ("timed out", "s", "max s")
    t.add_column("family")
    for h in heads:
        t.add_column(h, justify="right")
    for name in FAMILIES:
        if name in s.families:
            v = s.families[name]
            t.add_row(name, *(f"{v[c]:.1f}" if "seconds" in c else str(v[c]) for c in cols))
    return t


def _write(summary: Summary, path: Path, argv: list[str], opts: SoakOptions, done: bool) -> None:
    """Write the JSON summary atomically (a temporary file renamed over the old one)."""
    doc = summary.to_json()
    doc["command"] = "python -m benchmarks.soak " + " ".join(argv)
    doc["options"] = asdict(opts)
    doc["complete"] = done
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


def _save(summary: Summary, name: Path, case_json: dict[str, Any], result: CaseResult) -> None:
    """Save a case with findings in ``failures/``, one with clear-cut neurons left undecided
    in ``undecided/`` (``name``: ``OUT/case-SEED.json``): weights, box, result as JSON."""
    if not (result.findings or result.missed):
        return
    folder = name.parent / ("failures" if result.findings else "undecided")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name.name
    path.write_text(
        json.dumps({"case": case_json, "result": asdict(result)}, indent=1, default=str)
    )
    if result.findings:
        summary.failures.append(str(path))


def _pair(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(",")
    return int(lo), int(hi or lo)


def _replay(family: str, seed: int, opts: SoakOptions, limit: float) -> str:
    """The command that runs case ``seed`` of ``family`` alone, with the same options."""
    cmd = f"python -m benchmarks soak --cases 1 --seed {seed} --family {family}"
    cmd += f" --max-neurons {opts.max_neurons} --inputs {opts.inputs[0]},{opts.inputs[1]}"
    cmd += f" --time-limit {opts.time_limit:g} --case-seconds {limit:g}"
    return cmd + ("" if opts.equivalence else " --no-equivalence")


def main(argv: Sequence[str] | None = None, run: RunCase = run_case) -> int:
    """Run the soak; return 1 if any unsound verdict was found, 3 on engine errors or
    time-outs only. ``run`` is the case function (a test's stand-in; see :mod:`.soak_worker`)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--cases", type=int, default=200, help="number of generated cases")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (then +1, +2...)")
    p.add_argument("--max-neurons", type=int, default=SoakOptions.max_neurons)
    p.add_argument("--inputs", type=_pair, default=SoakOptions.inputs, help="LO,HI inputs")
    p.add_argument("--time-limit", type=float, default=SoakOptions.time_limit, help="per call")
    p.add_argument("--no-equivalence", action="store_true", help="skip verify_equivalence")
    p.add_argument(
        "--case-seconds",
        type=float,
        default=CASE_SECONDS,
        help=f"wall-clock limit of one case, then it is stopped and counted as timed out "
        f"(default {CASE_SECONDS:g}; 0: no limit)",
    )
    p.add_argument(
        "--family",
        type=parse_families,
        default=DEFAULT_FAMILIES,
        help=f"comma-separated subset of {','.join(FAMILIES)}, or all (default: all but conv, "
        "mixed by seed)",
    )
    p.add_argument("--out", type=Path, default=Path("out/soak"), help="summary and failures")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    opts = SoakOptions(
        max_neurons=args.max_neurons,
        inputs=args.inputs,
        time_limit=args.time_limit,
        equivalence=not args.no_equivalence,
    )
    console = Console(stderr=True)
    summary = Summary()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bars = Progress(
        TextColumn("[bold]soak"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )
    limit = args.case_seconds if args.case_seconds > 0 else None
    with bars, CaseWorker(run) as worker:
        task = bars.add_task("soak", total=args.cases, info="")
        for seed in range(args.seed, args.seed + args.cases):
            family = family_for(seed, args.family)
            try:
                answer = worker.run(family, seed, opts, limit)
            except RuntimeError as exc:  # no worker starts: stop, with what was checked
                summary.stopped = f"stopped before case {seed}: {exc}"
                console.print(f"[red]{summary.stopped}")
                break
            if answer is None:  # stopped at the limit: counted, replayable, never dropped
                replay = _replay(family, seed, opts, args.case_seconds)
                summary.add_timeout(family, seed, args.case_seconds, replay)
                console.print(f"[yellow]case {seed} ({family}) timed out; replay: {replay}")
            else:
                summary.add(answer[1])
                _save(summary, args.out / f"case-{seed}.json", *answer)
            bad = sum(summary.unsound.values())
            info = f"unsound {bad}, errors {summary.errors}, timed out {len(summary.timed_out)}"
            bars.update(task, advance=1, info=info)
            summary.seconds = time.perf_counter() - t0  # after every case: a killed run says
            _write(summary, args.out / "summary.json", argv, opts, done=False)
    summary.seconds = time.perf_counter() - t0
    out = Console(width=None if sys.stdout.isatty() else 132)  # a log keeps every column
    out.print(_table(summary))
    out.print(_family_table(summary))
    _write(summary, args.out / "summary.json", argv, opts, done=not summary.stopped)
    console.print(f"wrote {args.out / 'summary.json'}")
    if sum(summary.unsound.values()):
        console.print(f"[red]UNSOUND verdicts found; cases saved in {args.out / 'failures'}")
        return 1
    return 3 if summary.errors or summary.timed_out or summary.stopped else 0


if __name__ == "__main__":
    raise SystemExit(main())
