"""The soak's ``pools`` family: max-pools bounded by their windows (:mod:`exactcomp.bounds.pool_block`).

Each case is :func:`~exactcomp.testing.random_conv.random_pool_case` (a max-pool of a wide
range of kernels, strides and paddings between dense layers, on 2-3 inputs; some blocks
signed, some with a tag the readers never write, some with a level that differs from its
tag), checked against the exact oracle of the same network:

- ``bound``: every bound of :meth:`~exactcomp.testing.soak_checks.Checker.all_bounds` held
  dense, and the interval bounds held sparse, contain the exact pre-activation ranges;
- ``stable``: the claims of :func:`exactcomp.api.stable_neurons` held dense and held sparse
  (cone by cone);
- ``lossy-bound``: for the case quantised to 8, 4, 3 or 2 bits (by seed), the differential
  interval bound (:func:`~exactcomp.verify.diffinterval.interval_difference`), dense and
  sparse, is at least the exact ``max |f - g|``.

A case notes whether its block was trusted (``blocks: 1``) or not (``blocks: 0``), so a run
shows that both kinds were checked.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

from .. import api
from ..bounds.interval import interval_bounds
from ..bounds.pool_block import max_pool_blocks
from ..rewrite.quantize import quantize_network
from ..verdicts import Verdict
from ..verify.diffinterval import interval_difference
from .oracle import OracleError
from .oracle import max_output_difference as exact_max_difference
from .random_conv import as_sparse, random_pool_case
from .soak_checks import Checker
from .soak_results import CaseResult, Finding, SoakOptions, skipped_result

BITS = (8, 4, 3, 2)


def run_pool_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Case ``seed``: its JSON and the :class:`CaseResult` of the checks above."""
    t0 = time.perf_counter()
    case = random_pool_case(seed)
    f, box = case.network, case.box
    trusted = len(max_pool_blocks(f))
    bits = BITS[seed % len(BITS)]
    doc = {"family": "pools", "blocks": trusted, "bits": bits, **case.to_json()}
    try:
        c = Checker(case, opts, method)
    except OracleError as exc:
        return doc, skipped_result(case, method, exc, family="pools")
    c.notes.append(f"blocks: {trusted}")
    sparse = as_sparse(f)
    c.all_bounds()
    c.bounds("interval, sparse", interval_bounds(sparse, box))
    claims: Counter[str] = Counter()
    for name, net in (("dense", f), ("sparse", sparse)):
        report = c.guard(
            f"stable_neurons[{method}, {name}]",
            lambda net=net: api.stable_neurons(
                net, box, method=method, jobs=1, time_limit=opts.time_limit, seed=seed
            ),
        )
        if report is not None:
            for ls in report.layers:
                claims.update(Verdict(v).name for v in ls.verdict)
            c.claims(report, f"{method} {name}")
    lossy = c.guard("lossy", lambda: _difference(c, f, box, bits, opts))
    result = c.result(claims, t0, family="pools")
    return doc, dataclasses.replace(result, lossy=int(lossy or 0))


def _difference(c: Checker, f, box, bits: int, opts: SoakOptions) -> int:
    """``lossy-bound`` findings for ``f`` quantised to ``bits``; 1 when the oracle answered."""
    g = quantize_network(f, [bits] * len(f.layers)).network
    try:
        exact = exact_max_difference(f, g, box, max_regions=opts.max_regions).value
    except OracleError as exc:
        c.notes.append(f"lossy oracle skipped: {exc}")
        return 0
    for name, a, b in (("dense", f, g), ("sparse", as_sparse(f), as_sparse(g))):
        bound = float(interval_difference(a, b, box).max())
        if exact > bound + 1e-9 * (1.0 + abs(exact)):
            c.findings.append(Finding("lossy-bound", f"{name}: exact {exact!r} > {bound!r}"))
    return 1
