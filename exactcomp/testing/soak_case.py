"""One case of the soundness soak, every check run on it (:func:`check_case`), and the
networks near the case's that its equivalence checks compare (:func:`mutants`).

The checks themselves are :class:`exactcomp.testing.soak_checks.Checker`'s; what they find,
and the options they read, are the types of :mod:`exactcomp.testing.soak_results`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from ..domain import Box
from ..network import Layer, Network
from ..stability import stable_neurons
from ..verdicts import StabilityReport, Verdict
from .oracle import ExactAnalysis, OracleError
from .random_networks import Case
from .soak_checks import Checker
from .soak_results import CaseResult, SoakOptions, skipped_result


def mutants(f: Network, exact: ExactAnalysis, tol: float) -> list[tuple[str, Network]]:
    """Networks near ``f``: output shifted by ``2 tol`` and ``tol / 2``; one unstable neuron
    dropped (its outgoing weights zeroed), if any; the last layer's
    weights moved by about ``tol`` over the last hidden layer's exact range (a shared body,
    proven as one network by :mod:`exactcomp.verify.head`, within ``tol`` or not by a
    little)."""
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
    if len(f.layers) > 1:
        last = f.layers[-1]
        top = float(np.maximum(exact.ranges[-2][1], 0.0).sum())
        move = np.random.default_rng(len(f.layers)).normal(size=last.weight.shape)
        moved = Layer(last.weight + move * tol / max(top, 1.0), last.bias, last.relu)
        out.append(("head tol", f.replace_layers((*f.layers[:-1], moved))))
    return out


def check_case(
    case: Case,
    opts: SoakOptions = SoakOptions(),  # noqa: B008 - a frozen dataclass (soak_results)
    method: str = "fast",
    written: Callable[[Checker, Network], None] | None = None,
) -> CaseResult:
    """All the checks on one case (see the module docstring). ``written(checker, g)``, if
    given, also checks the compressed network ``g`` once written (the conv family's ONNX
    file)."""
    t0 = time.perf_counter()
    f, box = case.network, case.box
    try:
        c = Checker(case, opts, method)
    except OracleError as exc:  # too many regions for the oracle: nothing can be checked
        return skipped_result(case, method, exc)
    c.all_bounds()
    claims: Counter[str] = Counter()

    def run(dom: Box | list[Box]) -> StabilityReport:
        return stable_neurons(
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
        if g is not None and written is not None:
            c.guard("written", lambda: written(c, g))
        if g is not None and opts.equivalence:
            c.equivalence(g, "compressed")
        if g is not None and opts.equivalence and opts.mutants:
            lo, hi = c.exact.ranges[-1]
            tol = 1e-6 * max(1.0, float(np.max(np.abs([lo, hi]))))
            muts = mutants(f, c.exact, tol)
            label, mutant = muts[case.seed % len(muts)]
            c.equivalence(mutant, label)
    return c.result(claims, t0)


def _halves(box: Box) -> tuple[Box, Box]:
    """The box cut in two along its widest coordinate (their union is the box)."""
    i = int(np.argmax(box.upper - box.lower))
    mid = box.center[i]
    hi1, lo2 = box.upper.copy(), box.lower.copy()
    hi1[i], lo2[i] = mid, mid
    return Box(box.lower, hi1), Box(lo2, box.upper)
