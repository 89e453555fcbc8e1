"""The soak's ``nnet`` family: ``.nnet`` files against their exact meaning, via the public API.

Each case (:func:`exactcomp.testing.nnet_cases.nnet_case`) is written to a ``.nnet`` file
with input limits and normalisation, and a box inside, across or around the limits. The
ground truth is the file's meaning (clip, normalise, network, de-normalise) in exact
rationals. Through :mod:`exactcomp.api`, loading the *file*:

- ``compress(path, box)`` either refuses (an ``ExactCompError``: fine) or returns a network
  that equals the truth at every probe point within the compression contract
  (``check_abs + check_rel * max(1, |y|) + check_scale * S(x)``): else ``nnet-compress``;
- ``verify_equivalence(path, g, box)`` with ``g`` the compressed network (or, on odd seeds,
  the truth written as a ReLU network, :meth:`NnetCase.clipped`): an EQUIVALENT while the
  truth and ``g`` differ by more than the tolerance at a probe point is ``nnet-equivalent``;
  a counterexample at which they do not differ is ``counterexample``.

Probe points: the box's corners and centre, the corners of the box cut to the limits, and
the region vertices the oracle finds for :meth:`NnetCase.clipped` on the box.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from exactcomp import api
from exactcomp.api import EquivalenceStatus
from exactcomp.domain import Box
from exactcomp.errors import ExactCompError
from exactcomp.network import Network
from exactcomp.testing.nnet_cases import NnetCase
from exactcomp.testing.oracle import OracleError, box_corners, exact_analysis
from exactcomp.testing.rational import rational
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Verdict


def probe_points(case: NnetCase, opts: SoakOptions) -> tuple[np.ndarray, int]:
    """Points where a wrong reading shows (see the module docstring) and the region count."""
    box = case.box
    pts = [box_corners(box)]
    lo = np.clip(box.lower, case.lower_limit, case.upper_limit)
    hi = np.clip(box.upper, case.lower_limit, case.upper_limit)
    pts.append(box_corners(Box(lo, np.maximum(lo, hi))))
    regions = 0
    try:
        exact = exact_analysis(case.clipped(), box, max_regions=opts.max_regions)
        pts.append(exact.points)
        regions = exact.regions
    except OracleError:
        pass
    return np.unique(np.vstack(pts), axis=0), regions


def _truth(case: NnetCase, pts: np.ndarray) -> np.ndarray:
    return np.array([[float(v) for v in case.reference(x)] for x in pts])


def _worst_excess(case: NnetCase, g: Network, pts: np.ndarray, allowed: np.ndarray):
    """Exact ``|truth - g|`` minus ``allowed`` at each point: the worst point and values."""
    best = (-np.inf, 0.0, None)
    for x, a in zip(pts, allowed, strict=True):
        t = case.reference(x)
        y = g.forward(x[None, :])[
            0
        ]  # g's float64 output: what a user of the compressed network gets
        d = max(abs(float(tv - rational([yv])[0])) for tv, yv in zip(t, y, strict=True))
        if d - a > best[0]:
            best = (d - a, d, x.tolist())
    return best


def check_nnet_case(case: NnetCase, opts: SoakOptions, method: str) -> CaseResult:
    """All the checks of one ``.nnet`` case (see the module docstring)."""
    t0 = time.perf_counter()
    findings: list[Finding] = []
    notes: list[str] = []
    statuses: dict[str, int] = {}
    claims: dict[str, int] = {}
    pts, regions = probe_points(case, opts)
    truth = _truth(case, pts)
    ref = case.clipped()
    scale = ref.term_scale(pts).max(axis=1)
    contract = (
        DEFAULT.check_abs
        + DEFAULT.check_rel * np.maximum(1.0, np.abs(truth).max(axis=1))
        + DEFAULT.check_scale * scale
    )
    tol = 1e-6 * max(1.0, float(np.abs(truth).max()))
    compressions = equivalences = 0
    with tempfile.TemporaryDirectory(prefix="soak-nnet-") as tmp:
        path = case.write(Path(tmp) / f"case-{case.seed}.nnet")
        res = _call(findings, notes, "compress", lambda: _compress(path, case, opts, method))
        g = None
        if res is not None:
            compressions = 1
            g = res.network
            for ls in res.stability.layers:
                for v in ls.verdict:
                    claims[Verdict(v).name] = claims.get(Verdict(v).name, 0) + 1
            excess, d, x = _worst_excess(case, g, pts, contract)
            if excess > 0:
                findings.append(
                    Finding("nnet-compress", f"|truth - compressed| = {d!r} ({case.placement})", x)
                )
        if opts.equivalence:
            other, label = (ref, "clipped") if g is None or case.seed % 2 else (g, "compressed")
            r = _call(
                findings,
                notes,
                f"verify_equivalence[{label}]",
                lambda: api.verify_equivalence(
                    path, other, case.box, tol=tol, time_limit=opts.time_limit, seed=case.seed
                ),
            )
            if r is not None:
                equivalences = 1
                statuses[f"nnet {label} {r.status.name}"] = 1
                findings += _judge(case, other, pts, r, tol, contract, label)
    return CaseResult(
        seed=case.seed,
        neurons=case.network.num_neurons,
        regions=regions,
        method=method,
        oracle={},
        claims=claims,
        findings=tuple(findings),
        compressions=compressions,
        equivalences=equivalences,
        statuses=statuses,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
        family="nnet",
        refused=sum(n.startswith("refused") for n in notes),
    )


def _compress(path: Path, case: NnetCase, opts: SoakOptions, method: str):
    return api.compress(
        path,
        case.box,
        method=method,
        time_limit=opts.time_limit,
        jobs=1,
        check=2_000,
        seed=case.seed,
    )


def _judge(case, other, pts, r, tol, contract, label) -> list[Finding]:
    if r.status is EquivalenceStatus.EQUIVALENT:
        excess, d, x = _worst_excess(case, other, pts, contract + tol)
        if excess > 0:
            return [Finding("nnet-equivalent", f"{label}: EQUIVALENT but |truth - g| = {d!r}", x)]
    if r.status is EquivalenceStatus.NOT_EQUIVALENT:
        x = np.asarray(r.counterexample.x, dtype=np.float64)
        excess, d, _ = _worst_excess(case, other, x[None, :], np.array([tol]))
        if excess <= 0 or not case.box.contains(x, atol=0.0).all():
            return [
                Finding("counterexample", f"{label}: |truth - g| = {d!r} <= {tol!r}", x.tolist())
            ]
    return []


def _call(findings: list[Finding], notes: list[str], what: str, fn):
    """Run ``fn``; a refusal (one-line ``ExactCompError``) is a note, anything else an error."""
    try:
        return fn()
    except ExactCompError as exc:
        text = str(exc)
        if "\n" in text.strip():
            findings.append(Finding("error", f"{what}: multi-line refusal {text!r}"))
        else:
            notes.append(f"refused {what}: {text}")
        return None
    except Exception as exc:  # noqa: BLE001 - every other failure is a finding
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        findings.append(Finding("error", f"{what}: {exc!r} [{' | '.join(tb[-3:])}]"))
        return None
