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

The ``conv-compress`` family (:func:`run_conv_compress_case`) aims at ``compress --tol`` on
networks held sparse and its proof of the dense tail on a box of the prefix's outputs
(:mod:`exactcomp.verify.prefix`): the same cases, always sparse, two seeds in three with a
dense ReLU layer between the last convolution or pool and the output
(``random_conv_case(hidden=...)``: the first dense layer right after the flatten, a
near-parallel pair in it), in float32:

- ``lossy-bound``: ``compress --tol`` at a tolerance rotating through 1, 5, 10 and 30 % of
  the exact output span; the exact ``max |f - g|`` of the written network against the
  original must not exceed the claim, nor the claim ``tol``;
- ``file-written``: the result written to ``.onnx`` (a pruned ``Gemm`` weight as a sparse
  ``Constant`` where that saves bytes, :mod:`exactcomp.io.onnx_sparse`; checked in
  onnxruntime by the writer) and read back must be the proven network entry for entry;
- ``sparse-kept``: every layer held sparse in the exact pass's network is held sparse, with
  the same matrix and structure, in the result (nothing densified);
- ``prefix-bound``: ``f`` with its dense tail perturbed (the first dense layer after the
  flatten alone, the output layer alone, or every dense layer; relative sizes ``1e-3`` to
  ``0.3``), proven by the charger with the joint LP and the head proof on: the exact max must
  not exceed it (a box ``A`` too small, an edit before the cut mistaken for a shared prefix,
  a tail bound that forgets the rounding, would show here).

A clean :class:`~exactcomp.errors.ExactCompError` is a refusal (counted); any other
exception is an ``error``. A case whose ``f`` has more than :data:`F_REGIONS` regions is skipped
as too large for the oracle; a bound past the case's :data:`JOINT_REGIONS` or
:data:`~exactcomp.testing.regions.JOINT_LPS` is a note.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from exactcomp import api
from exactcomp.errors import ExactCompError
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import OracleError
from exactcomp.testing.oracle import max_output_difference as exact_max_difference
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.testing.soak_checks import Checker
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions, skipped_result
from exactcomp.testing.written_checks import check_quantized_file

BITS = (8.0, 4.0, 3.0, 2.0, 1.5, 16.0)
TOL_SHARES = (0.01, 0.05, 0.1, 0.3)  # conv-compress: tol as a share of the output span
EDIT_SIZES = (1e-3, 0.01, 0.1, 0.3)  # conv-compress: relative size of the tail's edits
#: The exact ``max |f - g|`` enumerates the joint regions of ``f`` and its copy: 1-26x the
#: regions of ``f`` alone (conv-lossy seeds 90000-90019: 20 -> 191, 417 -> 11,039), about
#: 18 ms each here; ``f``'s own (with every neuron's range) about 38 ms each. So that a case
#: stays within the soak's ``--case-seconds`` (seed 90010 spent 196 s on ``f``'s 6,159
#: regions and 408 s on a joint enumeration stopped at 20,000; seed 90020, 560 s on ``f``'s
#: 14,688), a case whose ``f`` has more than ``F_REGIONS`` regions is skipped as too large,
#: and a case's joint enumerations stop, all together, at ``JOINT_REGIONS`` (the bounds left
#: are notes, like any oracle skip; 10,000 in lead20, 20,000 since the LPs below bound the
#: time).
F_REGIONS = 2_500
JOINT_REGIONS = 20_000


def run_conv_lossy_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Case ``seed``: its JSON and the :class:`CaseResult` of the checks above."""
    t0 = time.perf_counter()
    case = random_conv_case(seed)
    case = type(case)(Network(case.network.layers, dtype="float32"), case.box, seed)
    sparse = bool(seed % 2)
    bits = BITS[(seed // 2) % len(BITS)]
    doc = {"family": "conv-lossy", "sparse": sparse, "bits": bits, **case.to_json()}
    try:
        c = Checker(case, _capped(opts), method)
    except OracleError as exc:
        return doc, skipped_result(case, method, exc, family="conv-lossy")
    net = as_sparse(case.network) if sparse else case.network
    runs = [(f"quantize --bits {bits:g}", {"bits": bits})]
    if seed % 4 == 0:
        runs.append((f"quantize --tol 0.05 --bits {bits:g}", {"bits": bits, "tol": 0.05}))
    refused = checked = 0
    joint = _Joint()
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
        scale = 1.0 + float(np.max(np.abs(c.exact.ranges[-1])))
        checked += _check_bound(c, joint, case.network, res.network, res.proven, what, scale)
    result = c.result(Counter(), t0, family="conv-lossy")
    return doc, _counted(result, refused, checked)


def _counted(result: CaseResult, refused: int, lossy: int) -> CaseResult:
    return dataclasses.replace(result, refused=refused, lossy=lossy)


def run_conv_compress_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Case ``seed`` of ``conv-compress``: its JSON and the :class:`CaseResult` of the checks
    in the module docstring."""
    t0 = time.perf_counter()
    hidden = 0 if seed % 3 == 0 else 2 + seed % 5
    case = random_conv_case(seed, hidden=hidden)
    case = type(case)(Network(case.network.layers, dtype="float32"), case.box, seed)
    share = TOL_SHARES[seed % len(TOL_SHARES)]
    doc = {"family": "conv-compress", "hidden": hidden, "tol_share": share, **case.to_json()}
    try:
        c = Checker(case, _capped(opts), method)
    except OracleError as exc:
        return doc, skipped_result(case, method, exc, family="conv-compress")
    f, box, net = case.network, case.box, as_sparse(case.network)
    span = float(np.max(c.exact.ranges[-1][1]) - np.min(c.exact.ranges[-1][0]))
    tol = share * max(span, 1e-3)
    scale = 1.0 + float(np.max(np.abs(c.exact.ranges[-1])))
    refused = checked = 0
    joint = _Joint()
    what = f"compress --tol {tol:.4g}"
    try:
        res = api.compress_lossy(net, box, tol, time_limit=8.0, lp_seconds=1.0, split_seconds=1.0)
        c.findings.extend(_kept_sparse(res, what))
        c.findings.extend(_read_back(res, what, c.exact.points, scale))
        if res.proven > tol:
            c.findings.append(Finding("lossy-bound", f"{what}: claim {res.proven!r} > tol"))
        checked += _check_bound(c, joint, f, res.network, res.proven, what, scale)
    except ExactCompError:
        refused += 1
    except Exception:  # noqa: BLE001 - the soak reports it, never stops at it
        c.findings.append(Finding("error", f"{what}: {traceback.format_exc(limit=-4)}"))
    charger = api.Charger(net, [box])
    k = charger.cut  # the first layer of the dense tail
    for first, last in ((k, k + 1), (len(f.layers) - 1, len(f.layers)), (k, len(f.layers))):
        size = EDIT_SIZES[(seed + first + last) % len(EDIT_SIZES)]
        g = _edited(net, first, last, size, seed)
        what = f"prefix bound, layers {first}..{last - 1} edited by {size:g}"
        try:
            proven = charger.proven(g, lp_seconds=0.5, head_seconds=0.5, target=tol)
            checked += _check_bound(c, joint, f, g, proven, what, scale)
        except Exception:  # noqa: BLE001
            c.findings.append(Finding("error", f"{what}: {traceback.format_exc(limit=-4)}"))
    result = c.result(Counter(), t0, family="conv-compress")
    return doc, _counted(result, refused, checked)


def _capped(opts: SoakOptions) -> SoakOptions:
    """``opts`` with the exact analysis of ``f`` stopped at :data:`F_REGIONS` regions."""
    return dataclasses.replace(opts, max_regions=min(opts.max_regions, F_REGIONS))


@dataclasses.dataclass
class _Joint:
    """The joint regions a case may still enumerate (:data:`JOINT_REGIONS` in all; their LPs
    are the checker's ``joint_lps``)."""

    left: int = JOINT_REGIONS


def _check_bound(
    c: Checker, joint: _Joint, f: Network, g: Network, proven: float, what: str, scale: float
) -> int:
    """1 when the exact max |f - g| was compared with ``proven`` (a finding if above it); 0
    with a note when the case's joint regions or LPs are spent."""
    try:
        found = exact_max_difference(
            f, g, c.box, max_regions=max(joint.left, 0), budget=c.joint_lps
        )
    except OracleError as exc:
        joint.left = 0
        c.notes.append(f"{what}: oracle skipped: {exc}")
        return 0
    joint.left -= found.regions
    exact = found.value
    if exact > proven + 1e-9 * scale:
        c.findings.append(Finding("lossy-bound", f"{what}: exact {exact!r} > proven {proven!r}"))
    return 1


def _read_back(res, what: str, points: np.ndarray, scale: float) -> list[Finding]:
    """``file-written`` findings: ``res`` written to ``.onnx`` (a pruned ``Gemm`` weight as a
    sparse ``Constant`` where that saves bytes) and read back must be ``res.network`` entry for
    entry (a float64 result's convolutions are written as ``Gemm``: no structure compared);
    where the writer merged layers (a layer the exact pass emptied leaves an affine network),
    the same function on the oracle's ``points`` up to ``1e-9 * scale``."""
    with tempfile.TemporaryDirectory(prefix="soak-cc-") as tmp:
        path = Path(tmp) / "g.onnx"
        res.save(path)
        back = api.load(path)
    net = res.network  # or the float network it started from, written where smaller
    if (res.report.get("written_choice") or {}).get("written") == "started from":
        source = (res.report.get("written") or {}).get("file") == "source"
        net = res.original if source else res.alternative.network
    if len(back.layers) != len(net.layers):
        d = float(np.max(np.abs(back.forward(points) - net.forward(points))))
        if d > 1e-9 * scale:
            return [Finding("file-written", f"{what}: read back differs by {d!r}")]
        return []
    out = []
    for k, (a, b) in enumerate(zip(back.layers, net.layers, strict=True)):
        wa = a.weight.toarray() if a.sparse else a.weight
        wb = b.weight.toarray() if b.sparse else b.weight
        if not (np.array_equal(wa, wb) and np.array_equal(a.bias, b.bias)):
            out.append(Finding("file-written", f"{what}: layer {k} read back differs"))
    return out


def _kept_sparse(res, what: str) -> list[Finding]:
    """``sparse-kept`` findings: a layer held sparse in the reference and not in the result
    (or another matrix or structure)."""
    out = []
    for k, (a, b) in enumerate(zip(res.reference.layers, res.network.layers, strict=False)):
        if not a.sparse:
            break
        same = b.sparse and b.structure is a.structure and not abs(a.weight - b.weight).sum()
        if not same:
            out.append(Finding("sparse-kept", f"{what}: layer {k} held sparse was changed"))
    return out


def _edited(net: Network, first: int, last: int, size: float, seed: int) -> Network:
    """``net`` with its dense layers ``first..last-1`` perturbed by ``size`` times each
    weight's and bias's magnitude (seeded)."""
    rng = np.random.default_rng(seed)
    layers = list(net.layers)
    for k in range(first, last):
        la = layers[k]
        w = np.array(la.weight)
        w = w + size * np.abs(w) * rng.normal(size=w.shape)
        b = la.bias + size * (np.abs(la.bias) + 0.1) * rng.normal(size=la.out_features)
        layers[k] = Layer(w, b, la.relu)
    return net.replace_layers(layers)
