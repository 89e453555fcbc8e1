"""The soak's ``conv-lossy`` family: ``quantize`` on small convolutional networks (issue 15).

Each case is :func:`~exactcomp.testing.random_conv.random_conv_case` (one or two
convolutions, strides, dilations, padding, max or average pools, a dense head; inactive, dead,
constant and tied channels), held sparse on odd seeds
(:func:`~exactcomp.testing.random_conv.as_sparse`: the differential interval bound of
:mod:`exactcomp.verify.diffinterval` proves it, as on Convnet_avgpool), in float32 so that the
writer emits ``Conv``. It is quantised through the public API at a bit width that rotates
through 8, 4, 3, 2, ternary and float16 (every fourth seed ``--tol 0.05`` as well, at most
that width), then:

- ``lossy-bound``: the exact ``max |f - g|`` over the box (joint regions, one LP each:
  :func:`~exactcomp.testing.oracle.max_output_difference`) must not exceed the proven bound;
- ``file-written`` (:func:`~exactcomp.testing.written_checks.check_quantized_file`): the
  result written to ``.onnx`` (integer kernels, ``DequantizeLinear``
  into ``Conv``; checked in onnxruntime by the writer) and read back by exactcomp's reader
  must be the proven network entry for entry, each convolution still a convolution; and
  every convolution of ``f`` is a convolution of the quantised network (never a dense
  matrix).

A clean :class:`~exactcomp.errors.ExactCompError` is a refusal (counted); any other
exception is an ``error``.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections import Counter

import numpy as np

from exactcomp import api
from exactcomp.errors import ExactCompError
from exactcomp.network import Network
from exactcomp.testing.oracle import OracleError
from exactcomp.testing.oracle import max_output_difference as exact_max_difference
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.testing.soak_checks import Checker
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions, skipped_result
from exactcomp.testing.written_checks import check_quantized_file

BITS = (8.0, 4.0, 3.0, 2.0, 1.5, 16.0)


def run_conv_lossy_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Case ``seed``: its JSON and the :class:`CaseResult` of the checks above."""
    t0 = time.perf_counter()
    case = random_conv_case(seed)
    case = type(case)(Network(case.network.layers, dtype="float32"), case.box, seed)
    sparse = bool(seed % 2)
    bits = BITS[(seed // 2) % len(BITS)]
    doc = {"family": "conv-lossy", "sparse": sparse, "bits": bits, **case.to_json()}
    try:
        c = Checker(case, opts, method)
    except OracleError as exc:
        return doc, skipped_result(case, method, exc, family="conv-lossy")
    net = as_sparse(case.network) if sparse else case.network
    runs = [(f"quantize --bits {bits:g}", {"bits": bits})]
    if seed % 4 == 0:
        runs.append((f"quantize --tol 0.05 --bits {bits:g}", {"bits": bits, "tol": 0.05}))
    refused = checked = 0
    for what, kw in runs:
        try:
            res = api.quantize(net, case.box, split_seconds=1.0, lp_seconds=2.0, **kw)
            found = check_quantized_file(res, case.network, what)
        except ExactCompError:
            refused += 1
            continue
        except Exception:  # noqa: BLE001 - the soak reports it, never stops at it
            c.findings.append(Finding("error", f"{what}: {traceback.format_exc(limit=-4)}"))
            continue
        c.findings.extend(found)
        try:
            exact = exact_max_difference(case.network, res.network, case.box).value
        except OracleError as exc:
            c.notes.append(f"{what}: oracle skipped: {exc}")
            continue
        checked += 1
        scale = 1.0 + float(np.max(np.abs(c.exact.ranges[-1])))
        if exact > res.proven + 1e-9 * scale:
            c.findings.append(
                Finding("lossy-bound", f"{what}: exact {exact!r} > proven {res.proven!r}")
            )
    result = c.result(Counter(), t0, family="conv-lossy")
    return doc, _counted(result, refused, checked)


def _counted(result: CaseResult, refused: int, lossy: int) -> CaseResult:
    return dataclasses.replace(result, refused=refused, lossy=lossy)
