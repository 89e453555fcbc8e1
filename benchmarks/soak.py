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
- ``recheck``: ``recheck_certificates`` refutes no true claim and lets no false one pass.

A refutation needs a concrete input of the box where the oracle's float64 forward pass
contradicts the claim beyond rounding (``1e-12`` relative to the interval magnitude of the
terms): never a tolerance judgement. Engine exceptions are reported as ``error``. Every
failing case is saved as JSON (weights, box, findings) for reproduction; the exit code is 1
when any unsound verdict was found, 3 when only errors were, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exactcomp.bounds import interval_bounds
from exactcomp.bounds.linear import linear_bounds
from exactcomp.bounds.lp import lp_layer_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import ExactAnalysis, OracleError, exact_analysis
from exactcomp.testing.oracle import max_output_difference as exact_max_difference
from exactcomp.testing.random_networks import Case, random_case
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import StabilityReport, Verdict
from exactcomp.verify import EquivalenceStatus, recheck_certificates, verify_equivalence

UNSOUND = ("bound", "stable", "compress", "equivalent", "counterexample", "equiv-bound", "recheck")
ROUNDING = 1e-12
T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """One wrong answer (``kind`` in :data:`UNSOUND`, or ``unstable``) or engine ``error``."""

    kind: str
    detail: str
    x: list[float] | None = None


@dataclass(frozen=True)
class SoakOptions:
    """What to check per case: sizes of the generated cases, engine time limits."""

    max_neurons: int = 10
    inputs: tuple[int, int] = (1, 4)
    depth: tuple[int, int] = (1, 4)
    width: tuple[int, int] = (1, 12)
    time_limit: float = 5.0
    equivalence: bool = True
    max_regions: int = 20_000


@dataclass(frozen=True)
class CaseResult:
    """The checks of one case: counts, and every finding."""

    seed: int
    neurons: int
    regions: int
    method: str
    oracle: dict[str, int]
    claims: dict[str, int]
    findings: tuple[Finding, ...]
    compressions: int = 0
    equivalences: int = 0
    missed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def unsound(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind in UNSOUND)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind == "error")


# ----------------------------------------------------------------------------- checks
class Checker:
    """Runs the checks of one case, collecting findings instead of stopping at the first."""

    def __init__(self, case: Case, opts: SoakOptions, method: str) -> None:
        self.f, self.box, self.opts, self.method = case.network, case.box, opts, method
        self.seed = case.seed
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self.exact: ExactAnalysis = exact_analysis(self.f, self.box)
        self.zs = self.f.preactivations(self.exact.points)
        ib = interval_bounds(self.f, self.box)
        self.slack = [ROUNDING * (1.0 + np.maximum(np.abs(lo), np.abs(hi))) for lo, hi in ib]
        self.compressions = self.equivalences = self.missed = 0
        self.statuses: Counter[str] = Counter()

    def guard(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every engine failure is a finding
            tb = traceback.format_exc(limit=-3).strip().splitlines()
            self.findings.append(Finding("error", f"{what}: {exc!r} [{' | '.join(tb[-3:])}]"))
            return None

    def witness(self, k: int, j: int, largest: bool) -> list[float]:
        z = self.zs[k][:, j]
        return self.exact.points[int(np.argmax(z) if largest else np.argmin(z))].tolist()

    def bounds(self, name: str, bounds: Sequence[tuple[np.ndarray, np.ndarray]], layers=None):
        for k in layers if layers is not None else range(len(bounds)):
            (blo, bhi), (lo, hi) = bounds[k], self.exact.ranges[k]
            for j in np.flatnonzero(blo - lo > self.slack[k]):
                self.add(
                    "bound", f"{name} lower {blo[j]!r} > exact {lo[j]!r} at ({k},{j})", k, j, False
                )
            for j in np.flatnonzero(hi - bhi > self.slack[k]):
                self.add(
                    "bound", f"{name} upper {bhi[j]!r} < exact {hi[j]!r} at ({k},{j})", k, j, True
                )

    def add(self, kind: str, detail: str, k: int, j: int, largest: bool) -> None:
        self.findings.append(Finding(kind, detail, self.witness(k, j, largest)))

    def all_bounds(self) -> None:
        f, box = self.f, self.box
        self.bounds("interval", interval_bounds(f, box))
        lin = self.guard("linear_bounds", lambda: linear_bounds(f, box))
        if lin is not None:
            self.bounds("linear", lin)
            for k in range(1, len(f.layers)):
                lp = self.guard("lp_layer_bounds", lambda k=k: lp_layer_bounds(f, box, k, lin[:k]))
                if lp is not None:
                    self.bounds(f"lp[{k}]", {k: lp}, layers=[k])

    def claims(self, report: StabilityReport, label: str) -> None:
        """Every INACTIVE/ACTIVE verdict true; report bounds sound; UNSTABLE witnesses real."""
        codes = dict(zip(self.f.relu_layers, self.exact.stability, strict=True))
        for ls in report.layers:
            k, (lo, hi), s = ls.layer, self.exact.ranges[ls.layer], self.slack[ls.layer]
            self.bounds(f"{label} report", {k: (ls.lower, ls.upper)}, layers=[k])
            for j in np.flatnonzero((ls.verdict == Verdict.INACTIVE) & (hi > s)):
                self.add("stable", f"{label}: ({k},{j}) INACTIVE but max z = {hi[j]!r}", k, j, True)
            for j in np.flatnonzero((ls.verdict == Verdict.ACTIVE) & (lo < -s)):
                self.add("stable", f"{label}: ({k},{j}) ACTIVE but min z = {lo[j]!r}", k, j, False)
            for j in np.flatnonzero(ls.verdict == Verdict.UNSTABLE):
                self.unstable(report, ls, k, j, codes[k][j], label)
            clear = 1e-6 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
            clear_cut = ((codes[k] == Verdict.INACTIVE) & (hi < -clear)) | (
                (codes[k] == Verdict.ACTIVE) & (lo > clear)
            )
            self.missed += int(np.count_nonzero(clear_cut & (ls.verdict == Verdict.UNDECIDED)))

    def unstable(self, report, ls, k: int, j: int, code: int, label: str) -> None:
        rows = (int(ls.witness_pos[j]), int(ls.witness_neg[j]))
        for sign, row in zip((1.0, -1.0), rows, strict=True):
            if row >= 0:
                x = report.witnesses[row]
                z = self.f.preactivations(x)[k][0, j]
                if sign * z <= 0 or not self.box.contains(x, atol=1e-12).all():
                    self.findings.append(
                        Finding("unstable", f"{label}: ({k},{j}) witness z = {z!r}", x.tolist())
                    )
        if min(rows) < 0 and code in (Verdict.INACTIVE, Verdict.ACTIVE):
            self.notes.append(f"{label}: ({k},{j}) UNSTABLE without witnesses, oracle {code}")

    def compression(self, report: StabilityReport) -> Network | None:
        rw = self.guard("compress_network", lambda: compress_network(self.f, report))
        if rw is None:
            return None
        g = rw.network
        self.compressions += 1
        lo, hi = self.exact.ranges[-1]
        allowed = DEFAULT.check_abs + DEFAULT.check_rel * max(1.0, float(np.max(np.abs([lo, hi]))))
        allowed += float(np.max(self.slack[-1]))
        d = np.max(np.abs(self.f.forward(self.exact.points) - g.forward(self.exact.points)), axis=1)
        worst = int(np.argmax(d))
        x = self.exact.points[worst].tolist()
        if d[worst] > allowed:
            self.findings.append(Finding("compress", f"|f - g| = {d[worst]!r} > {allowed!r}", x))
            return g
        md = self.maxdiff(g, allowed / 2)
        if md is not None and md.value > allowed:
            self.findings.append(
                Finding("compress", f"max |f - g| = {md.value!r} > {allowed!r}", md.x.tolist())
            )
        return g

    def maxdiff(self, g: Network, floor: float):
        try:
            return exact_max_difference(
                self.f, g, self.box, floor=floor, max_regions=self.opts.max_regions
            )
        except OracleError as exc:
            self.notes.append(f"oracle skipped: {exc}")
            return None

    def equivalence(self, g: Network, label: str) -> None:
        lo, hi = self.exact.ranges[-1]
        tol = 1e-6 * max(1.0, float(np.max(np.abs([lo, hi]))))
        md = self.maxdiff(g, tol / 2)
        r = self.guard(
            f"verify_equivalence[{label}]",
            lambda: verify_equivalence(
                self.f, g, self.box, tol=tol, time_limit=self.opts.time_limit, seed=self.seed
            ),
        )
        if r is None:
            return
        self.equivalences += 1
        self.statuses[f"{label.split(' (')[0]} {r.status.name}"] += 1
        slack = float(np.max(self.slack[-1]))
        if r.status is EquivalenceStatus.NOT_EQUIVALENT:
            x = np.asarray(r.counterexample.x, dtype=np.float64)
            d = float(np.max(np.abs(self.f.forward(x) - g.forward(x))))
            if d <= tol or not self.box.contains(x, atol=0.0).all():
                self.findings.append(
                    Finding(
                        "counterexample", f"{label}: |f - g| = {d!r} <= tol {tol!r}", x.tolist()
                    )
                )
        if md is None:
            return
        if r.status is EquivalenceStatus.EQUIVALENT and md.value > tol + slack:
            self.findings.append(
                Finding(
                    "equivalent",
                    f"{label}: EQUIVALENT but max = {md.value!r} > {tol!r}",
                    md.x.tolist(),
                )
            )
        if np.isfinite(r.upper_bound) and r.upper_bound < md.value - slack:
            self.findings.append(
                Finding(
                    "equiv-bound",
                    f"{label}: upper {r.upper_bound!r} < max {md.value!r}",
                    md.x.tolist(),
                )
            )

    def recheck(self, report: StabilityReport) -> None:
        rc = self.guard(
            "recheck_certificates",
            lambda: recheck_certificates(self.f, report, self.box, time_limit=self.opts.time_limit),
        )
        if rc is None:
            return
        wrong = [f.detail for f in self.findings if f.kind == "stable"]
        for fail in rc.refuted:
            k, j = fail.layer, fail.neuron
            lo, hi = self.exact.ranges[k]
            truly = hi[j] <= 0 if fail.claimed == "INACTIVE" else lo[j] >= 0
            if truly and self.exact.stability[self.f.relu_layers.index(k)][j] != Verdict.UNDECIDED:
                self.findings.append(Finding("recheck", f"true claim refuted: {fail}"))
        if wrong and rc.ok:
            self.findings.append(Finding("recheck", f"wrong claims passed the re-check: {wrong}"))


def mutants(f: Network, exact: ExactAnalysis, tol: float) -> list[tuple[str, Network]]:
    """Networks near ``f``: output shifted by ``2 tol`` and ``tol / 2``; one unstable neuron
    dropped (its outgoing weights zeroed)."""
    out = []
    for factor in (2.0, 0.5):
        last = f.layers[-1]
        shifted = Layer(
            last.weight, last.bias + np.eye(last.out_features)[0] * factor * tol, last.relu
        )
        out.append((f"shift {factor}tol", f.replace_layers((*f.layers[:-1], shifted))))
    for idx, k in enumerate(f.relu_layers):
        unstable = np.flatnonzero(exact.stability[idx] == Verdict.UNSTABLE)
        if unstable.size:
            nxt = f.layers[k + 1]
            w = nxt.weight.copy()
            w[:, unstable[0]] = 0.0
            layers = list(f.layers)
            layers[k + 1] = Layer(w, nxt.bias, nxt.relu)
            out.append((f"drop ({k},{unstable[0]})", f.replace_layers(layers)))
            break
    return out


def check_case(case: Case, opts: SoakOptions = SoakOptions(), method: str = "fast") -> CaseResult:
    """All the checks on one case (see the module docstring)."""
    t0 = time.perf_counter()
    c = Checker(case, opts, method)
    f, box = case.network, case.box
    c.all_bounds()
    claims: Counter[str] = Counter()
    run = lambda dom: stable_neurons(  # noqa: E731
        f, dom, method=method, jobs=1, time_limit=opts.time_limit, seed=case.seed
    )
    report = c.guard(f"stable_neurons[{method}]", lambda: run(box))
    if report is not None:
        for ls in report.layers:
            claims.update(Verdict(v).name for v in ls.verdict)
        c.claims(report, method)
        if case.seed % 4 == 0:
            c.recheck(report)
        if case.seed % 5 == 0:
            union = c.guard("stable_neurons[union]", lambda: run(list(_halves(box))))
            if union is not None:
                c.claims(union, f"{method} union")
        g = c.compression(report)
        if g is not None and opts.equivalence:
            c.equivalence(g, "compressed")
            lo, hi = c.exact.ranges[-1]
            tol = 1e-6 * max(1.0, float(np.max(np.abs([lo, hi]))))
            muts = mutants(f, c.exact, tol)
            label, mutant = muts[case.seed % len(muts)]
            c.equivalence(mutant, label)
    oracle = Counter(Verdict(v).name if v else "AMBIGUOUS" for a in c.exact.stability for v in a)
    return CaseResult(
        seed=case.seed,
        neurons=f.num_neurons,
        regions=c.exact.regions,
        method=method,
        oracle=dict(oracle),
        claims=dict(claims),
        findings=tuple(c.findings),
        compressions=c.compressions,
        equivalences=c.equivalences,
        missed=c.missed,
        statuses=dict(c.statuses),
        seconds=time.perf_counter() - t0,
        notes=tuple(c.notes),
    )


def _halves(box: Box) -> tuple[Box, Box]:
    """The box cut in two along its widest coordinate (their union is the box)."""
    i = int(np.argmax(box.upper - box.lower))
    mid = box.center[i]
    hi1, lo2 = box.upper.copy(), box.lower.copy()
    hi1[i], lo2[i] = mid, mid
    return Box(box.lower, hi1), Box(lo2, box.upper)


def method_for(seed: int) -> str:
    """Mostly ``fast``; every 7th case ``leo`` and every 11th ``naive`` (the baselines)."""
    return "naive" if seed % 11 == 3 else "leo" if seed % 7 == 2 else "fast"


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
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, r: CaseResult) -> None:
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

    def to_json(self) -> dict[str, Any]:
        out = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items()}
        out["unsound_total"] = sum(self.unsound.values())
        return out


def _table(s: Summary) -> Table:
    t = Table(title="soundness soak")
    t.add_column("what")
    t.add_column("value", justify="right")
    rows = [
        ("cases", s.cases),
        ("neurons checked", s.neurons_checked),
        ("activation regions enumerated", s.regions),
        ("engine verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s.engine_verdicts.items()))),
        ("oracle verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s.oracle_verdicts.items()))),
        ("methods", ", ".join(f"{k} {v}" for k, v in sorted(s.methods.items()))),
        ("compressions checked", s.compressions_checked),
        ("equivalence checks", s.equivalence_checks),
        ("  verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s.equivalence_verdicts.items()))),
        ("clear-cut stable neurons left UNDECIDED", s.missed_stable),
        ("UNSOUND verdicts (must be 0)", sum(s.unsound.values())),
        ("  by kind", ", ".join(f"{k} {v}" for k, v in sorted(s.unsound.items())) or "-"),
        ("wrong UNSTABLE witnesses", s.wrong_unstable),
        ("engine errors", s.errors),
        ("seconds", f"{s.seconds:.1f}"),
    ]
    for name, value in rows:
        t.add_row(name, str(value))
    return t


def _pair(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(",")
    return int(lo), int(hi or lo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; return 1 if any unsound verdict was found, 3 on engine errors only."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--cases", type=int, default=200, help="number of generated cases")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (then +1, +2...)")
    p.add_argument("--max-neurons", type=int, default=SoakOptions.max_neurons)
    p.add_argument("--inputs", type=_pair, default=SoakOptions.inputs, help="LO,HI inputs")
    p.add_argument("--time-limit", type=float, default=SoakOptions.time_limit, help="per call")
    p.add_argument("--no-equivalence", action="store_true", help="skip verify_equivalence")
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
    (args.out / "failures").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bars = Progress(
        TextColumn("[bold]soak"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )
    with bars:
        task = bars.add_task("soak", total=args.cases, info="")
        for seed in range(args.seed, args.seed + args.cases):
            case = random_case(
                seed,
                depth=opts.depth,
                width=opts.width,
                inputs=opts.inputs,
                max_neurons=opts.max_neurons,
            )
            result = check_case(case, opts, method_for(seed))
            summary.add(result)
            if result.findings:
                path = args.out / "failures" / f"case-{seed}.json"
                doc = {"case": case.to_json(), "result": asdict(result)}
                path.write_text(json.dumps(doc, indent=1, default=str))
                summary.failures.append(str(path))
            bad = sum(summary.unsound.values())
            bars.update(task, advance=1, info=f"unsound {bad}, errors {summary.errors}")
    summary.seconds = time.perf_counter() - t0
    Console().print(_table(summary))
    doc = summary.to_json()
    doc["command"] = "python -m benchmarks.soak " + " ".join(argv)
    doc["options"] = asdict(opts)
    (args.out / "summary.json").write_text(json.dumps(doc, indent=1))
    console.print(f"wrote {args.out / 'summary.json'}")
    if sum(summary.unsound.values()):
        console.print(f"[red]UNSOUND verdicts found; cases saved in {args.out / 'failures'}")
        return 1
    return 3 if summary.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
