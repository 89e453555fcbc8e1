"""The checks of the soundness soak, one case at a time (run by :mod:`benchmarks.soak`).

:class:`Checker` holds a case, its exact analysis (:mod:`exactcomp.testing.oracle`) and the
findings so far; each method checks one component.
:func:`exactcomp.testing.soak_case.check_case` runs them all. The
tests (``tests/test_soundness_fuzz.py``) call the same methods on hypothesis cases. What they
find, and the options they read, are the types of :mod:`exactcomp.testing.soak_results`.

A refutation needs a concrete input of the box at which the oracle's float64 forward pass
contradicts the claim beyond rounding (``ROUNDING`` relative to the interval magnitude of
the terms): never a tolerance judgement.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from ..bounds import interval_bounds
from ..bounds.linear import linear_bounds
from ..bounds.lp import lp_layer_bounds
from ..network import Network
from ..rewrite import compress_network
from ..rewrite.channels import choose_structured
from ..tolerances import DEFAULT
from ..verdicts import StabilityReport, Verdict
from ..verify import EquivalenceStatus, recheck_certificates, verify_equivalence
from .oracle import ExactAnalysis, LpBudget, OracleError, exact_analysis
from .oracle import max_output_difference as exact_max_difference
from .random_networks import Case
from .rational import compare_exactly, exact_difference, settled_difference
from .regions import F_LPS, JOINT_LPS
from .soak_results import CaseResult, Finding, SoakOptions

ROUNDING = 1e-12
T = TypeVar("T")


class Checker:
    """Runs the checks of one case, collecting findings instead of stopping at the first."""

    def __init__(self, case: Case, opts: SoakOptions, method: str) -> None:
        self.f, self.box, self.opts, self.method = case.network, case.box, opts, method
        self.seed = case.seed
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self.exact: ExactAnalysis = exact_analysis(
            self.f, self.box, max_regions=opts.max_regions, budget=LpBudget(F_LPS)
        )
        self.zs = self.f.preactivations(self.exact.points)
        ib = interval_bounds(self.f, self.box)
        self.slack = [ROUNDING * (1.0 + np.maximum(np.abs(lo), np.abs(hi))) for lo, hi in ib]
        self.compressions = self.equivalences = self.missed = self.exact_points = 0
        self.joint_lps = LpBudget(JOINT_LPS)  # every joint enumeration of the case
        self.statuses: Counter[str] = Counter()

    def result(self, claims: Counter[str], t0: float, family: str = "random") -> CaseResult:
        """The case's :class:`CaseResult`: the engine's ``claims`` (verdict counts), the
        oracle's verdicts and every count and finding collected so far; ``t0`` is the
        ``time.perf_counter()`` at which the case started."""
        oracle = Counter(
            Verdict(v).name if v else "AMBIGUOUS" for a in self.exact.stability for v in a
        )
        return CaseResult(
            seed=self.seed,
            neurons=self.f.num_neurons,
            regions=self.exact.regions,
            method=self.method,
            oracle=dict(oracle),
            claims=dict(claims),
            findings=tuple(self.findings),
            compressions=self.compressions,
            equivalences=self.equivalences,
            missed=self.missed,
            statuses=dict(self.statuses),
            seconds=time.perf_counter() - t0,
            notes=tuple(self.notes),
            exact_points=self.exact_points,
            family=family,
        )

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
                    "bound",
                    f"{name} lower {float(blo[j])!r} > exact {float(lo[j])!r} at ({k},{j})",
                    k,
                    j,
                    False,
                )
            for j in np.flatnonzero(hi - bhi > self.slack[k]):
                self.add(
                    "bound",
                    f"{name} upper {float(bhi[j])!r} < exact {float(hi[j])!r} at ({k},{j})",
                    k,
                    j,
                    True,
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
                self.add(
                    "stable",
                    f"{label}: ({k},{j}) INACTIVE but max z = {float(hi[j])!r}",
                    k,
                    j,
                    True,
                )
            for j in np.flatnonzero((ls.verdict == Verdict.ACTIVE) & (lo < -s)):
                self.add(
                    "stable", f"{label}: ({k},{j}) ACTIVE but min z = {float(lo[j])!r}", k, j, False
                )
            for j in np.flatnonzero(ls.verdict == Verdict.UNSTABLE):
                self.unstable(report, ls, k, j, codes[k][j], label)
            clear = 1e-6 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
            clear_cut = ((codes[k] == Verdict.INACTIVE) & (hi < -clear)) | (
                (codes[k] == Verdict.ACTIVE) & (lo > clear)
            )
            missed = np.flatnonzero(clear_cut & (ls.verdict == Verdict.UNDECIDED))
            self.missed += int(missed.size)
            for j in missed:
                self.notes.append(
                    f"{label}: ({k},{j}) left UNDECIDED, range [{float(lo[j])!r}, {float(hi[j])!r}]"
                )

    def unstable(self, report, ls, k: int, j: int, code: int, label: str) -> None:
        rows = (int(ls.witness_pos[j]), int(ls.witness_neg[j]))
        for sign, row in zip((1.0, -1.0), rows, strict=True):
            if row >= 0:
                x = report.witnesses[row]
                z = self.f.preactivations(x)[k][0, j]
                if sign * z <= 0 or not self.box.contains(x, atol=1e-12).all():
                    self.findings.append(
                        Finding(
                            "unstable", f"{label}: ({k},{j}) witness z = {float(z)!r}", x.tolist()
                        )
                    )
        if min(rows) < 0 and code in (Verdict.INACTIVE, Verdict.ACTIVE):
            self.notes.append(f"{label}: ({k},{j}) UNSTABLE without witnesses, oracle {code}")

    def compression(self, report: StabilityReport) -> Network | None:
        rw = self.guard(
            "compress_network",
            # what api.compress writes: for a network with convolutions or pools, the smallest
            # of the position-level rewrite, the channel rewrite and the original
            lambda: choose_structured(self.f, report, compress_network(self.f, report))[0],
        )
        if rw is None:
            return None
        g = rw.network
        self.compressions += 1
        lo, hi = self.exact.ranges[-1]
        allowed = DEFAULT.check_abs + DEFAULT.check_rel * max(1.0, float(np.max(np.abs([lo, hi]))))
        allowed += float(np.max(self.slack[-1]))
        # plus the float64 noise of evaluating terms this large (Tolerances.check_scale); the
        # term scale grows with |x|, so its largest value is at the point max(|lo|, |hi|)
        far = np.maximum(np.abs(self.box.lower), np.abs(self.box.upper))
        allowed += DEFAULT.check_scale * float(np.max(self.f.term_scale(far)))
        d = np.max(np.abs(self.f.forward(self.exact.points) - g.forward(self.exact.points)), axis=1)
        worst = int(np.argmax(d))
        x = self.exact.points[worst].tolist()
        if d[worst] > allowed:
            self.findings.append(
                Finding("compress", f"|f - g| = {float(d[worst])!r} > {allowed!r}", x)
            )
            self.exact_compression(g, report, d)
            return g
        md = self.maxdiff(g, allowed / 2)
        if md is not None and md.value > allowed:
            self.findings.append(
                Finding("compress", f"max |f - g| = {md.value!r} > {allowed!r}", md.x.tolist())
            )
        self.exact_compression(g, report, d)
        return g

    def exact_compression(self, g: Network, report: StabilityReport, d: np.ndarray) -> None:
        """``compress-exact``: ``f`` and ``g`` in exact rationals at the UNSTABLE witnesses and
        the oracle's region vertices (the largest float differences first), allowed only the
        rounding of the stored weights (:data:`exactcomp.testing.rational.EXACT_SCALE`)."""
        if self.f.num_neurons > self.opts.exact_neurons:
            return
        order = np.argsort(-d, kind="stable")[: self.opts.exact_points]
        pts = [self.exact.points[order]]
        if len(report.witnesses):
            pts.append(np.asarray(report.witnesses, dtype=np.float64)[: self.opts.exact_points])
        cmp = compare_exactly(self.f, g, np.vstack(pts))
        self.exact_points += cmp.points
        if cmp.excess > 0:
            self.findings.append(
                Finding(
                    "compress-exact",
                    f"exact |f - g| = {cmp.diff!r} > {cmp.allowed!r} (2^-40 of the terms)",
                    cmp.x,
                )
            )

    def maxdiff(self, g: Network, floor: float):
        try:
            cap = {"max_regions": self.opts.max_regions, "budget": self.joint_lps}
            return exact_max_difference(self.f, g, self.box, floor=floor, **cap)
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
            if self.f.num_neurons <= self.opts.exact_neurons:
                # float64 noise of large terms can hide or fake a difference: settle it exactly
                d = exact_difference(self.f, g, x)
            if d <= tol or not self.box.contains(x, atol=0.0).all():
                self.findings.append(
                    Finding(
                        "counterexample", f"{label}: |f - g| = {d!r} <= tol {tol!r}", x.tolist()
                    )
                )
        if md is None:
            return
        value = md.value
        equivalent = r.status is EquivalenceStatus.EQUIVALENT
        if (equivalent and value > tol + slack) or r.upper_bound < value - slack:
            value = settled_difference(self.f, g, md.x, value, self.opts.exact_neurons)
        if equivalent and value > tol + slack:
            self.findings.append(
                Finding(
                    "equivalent",
                    f"{label}: EQUIVALENT but max = {value!r} > {tol!r}",
                    md.x.tolist(),
                )
            )
        if np.isfinite(r.upper_bound) and r.upper_bound < value - slack:
            detail = f"{label}: upper {r.upper_bound!r} < max {value!r}"
            self.findings.append(Finding("equiv-bound", detail, md.x.tolist()))
        far = np.maximum(np.abs(self.box.lower), np.abs(self.box.upper))
        noise = DEFAULT.check_scale * float(np.max(self.f.term_scale(far) + g.term_scale(far)))
        top = max(md.value, tol / 2) + 1e-7 * max(1.0, float(np.max(np.abs([lo, hi])))) + noise
        if r.lower_bound > top:  # the oracle: exact above its floor, to LP tolerance and noise
            self.findings.append(Finding("equiv-lower", f"{label}: {r.lower_bound!r} > {top!r}"))

    def recheck(self, report: StabilityReport) -> None:
        rc = self.guard(
            "recheck_certificates",
            lambda: recheck_certificates(
                self.f, report, self.box, time_limit=self.opts.time_limit, trees=report.trees
            ),  # with the analysis's split trees, as compress --verify
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
