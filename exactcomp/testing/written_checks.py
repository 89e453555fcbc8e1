"""The soak's checks of files: a network read from, and written to, ONNX and ``.pt`` files.

Used by the ``conv`` family (:mod:`benchmarks.soak_conv`). Each compares a file, run by
onnxruntime or read back, with the network it should compute, on the probe points
(:func:`~exactcomp.io.onnx_check.probe_points`: corners, faces, centre, samples) of the
case's box, allowed ``64 u depth S(x)`` (:mod:`exactcomp.io.onnx_check`; ``u`` float32's).
A disagreement is a :class:`~exactcomp.testing.soak_results.Finding`: ``onnx-load`` (the
network read differs from its file), ``onnx-written`` and ``torch-written`` (the compressed
network's file differs from the source network); and for the ``degenerate`` family
(:mod:`benchmarks.soak_degenerate`) ``file-written``: a network written to ``.onnx``, ``.pt``
and ``.nnet`` reads back different (:func:`check_files`); for ``conv-lossy`` a quantised
file that is not the proven network, or a convolution written as a matrix
(:func:`check_quantized_file`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..domain import Box
from ..errors import ExactCompError
from ..network import Network
from .soak_checks import Checker
from .soak_results import Finding


def check_read(oc: Any) -> list[Finding]:
    """``onnx-load``: ``oc.case.network`` (read from the ONNX bytes ``oc.model``) against
    onnxruntime on the probe points of ``oc.case.box``."""
    from ..io.onnx_check import check_boxes

    read = check_boxes(oc.model, oc.case.network, [oc.case.box], seed=oc.case.seed)
    if read.excess > 0:
        detail = f"read vs onnxruntime: {read.max_abs_diff!r} > {read.allowed_at_worst!r}"
        return [Finding("onnx-load", detail)]
    return []


def check_written(c: Checker, g: Network, f: Network) -> None:
    """``g`` stored in its dtype and written, against ``f`` on the probe points of the box:
    ``onnx-written`` (the ONNX file, named like ``f``'s, run by onnxruntime) and
    ``torch-written`` (the ``.pt`` file read back by ``exactcomp.load``; ``api.save`` itself
    runs it in torch first and refuses to write a file that differs)."""
    from .. import api
    from ..io.onnx_check import Comparison, check_boxes, partial_sum_size, probe_points
    from ..io.onnx_io import save_onnx

    written = api.stored(g)
    with tempfile.TemporaryDirectory(prefix="soak-conv-") as tmp:
        path = Path(tmp) / "small.onnx"
        save_onnx(written, path, like=f)
        worst = check_boxes(path, f, [c.box], seed=c.seed)
        api.save(written, Path(tmp) / "small.pt", domain=c.box)
        back = api.load(Path(tmp) / "small.pt")
    if worst.excess > 0:
        detail = f"written file vs f: {worst.max_abs_diff!r} > {worst.allowed_at_worst!r}"
        c.findings.append(Finding("onnx-written", detail))
    x = probe_points(c.box, 64, np.random.default_rng(c.seed))
    u = np.finfo(np.float32).eps / 2  # the files are float32
    allowed = 64 * u * len(f.layers) * partial_sum_size(f, x)[:, None] + 1e-12
    pt = Comparison.of(np.abs(back.forward(x) - f.forward(x)), allowed)
    if pt.excess > 0:
        detail = f".pt file read back vs f: {pt.max_abs_diff!r} > {pt.allowed_at_worst!r}"
        c.findings.append(Finding("torch-written", detail))


def check_files(box: Box, g: Network, seed: int) -> tuple[list[Finding], int]:
    """``g`` written to ``.onnx``, ``.pt`` and ``.nnet`` (:func:`exactcomp.api.save`; the
    ``.nnet``'s limits are then ``box``), each read back by :func:`exactcomp.api.load` and
    compared with ``g`` on the probe points of ``box``, allowed ``64 u depth S(x)`` (``u``
    float32's): ``file-written`` findings, and the number of files refused with a clean
    :class:`~exactcomp.errors.ExactCompError`."""
    from .. import api
    from ..io.onnx_check import partial_sum_size, probe_points

    x = probe_points(box, 32, np.random.default_rng(seed))
    want = g.forward(x)
    u = np.finfo(np.float32).eps / 2
    allowed = 64 * u * len(g.layers) * partial_sum_size(g, x)[:, None] + 1e-12
    found, refused = [], 0
    with tempfile.TemporaryDirectory(prefix="soak-files-") as tmp:
        for suffix in (".onnx", ".pt", ".nnet"):
            path = Path(tmp) / f"g{suffix}"
            try:
                api.save(g, path, domain=box)
                back = api.load(path)
            except ExactCompError:
                refused += 1
                continue
            d = np.abs(back.forward(x) - want)
            if d.shape != want.shape or np.any(d > allowed):
                i = int(np.argmax(np.max(d - allowed, axis=1))) if d.shape == want.shape else 0
                detail = f"{suffix} read back differs: {float(np.max(d))!r}"
                found.append(Finding("file-written", detail, x[i].tolist()))
    return found, refused


def check_quantized_file(res: Any, f: Network, what: str) -> list[Finding]:
    """``file-written`` for a quantised result ``res`` of ``f`` (the ``conv-lossy`` family,
    :mod:`benchmarks.soak_conv_lossy`): written to ``.onnx`` and read back by exactcomp's
    reader, it must be ``res.network`` (the proven network) entry for entry, and every
    convolution of the network quantised (``res.reference``: ``f``'s exact compression for
    ``exactcomp.quantize``, its layers merged or emptied; else ``f``) a convolution of both
    (never a dense matrix)."""
    from ..conv import ConvSpec
    from ..io import load

    out: list[Finding] = []
    g = res.network
    with tempfile.TemporaryDirectory() as tmp:
        path, written = Path(tmp) / "q.onnx", Path(tmp) / "w.onnx"
        dataclasses.replace(res, alternative=None).save(path)  # the quantised file itself
        res.save(written)  # what the command writes: the float network started from if smaller
        if written.stat().st_size > path.stat().st_size:
            out.append(Finding("file-written", f"{what}: the file written is the larger"))
        back = load(path)
    if len(back.layers) != len(g.layers):
        return [Finding("file-written", f"{what}: {len(back.layers)} layers read back")]
    ref = f if res.reference is None else res.reference
    for k, (a, b, o) in enumerate(zip(back.layers, g.layers, ref.layers, strict=True)):
        wa = a.weight.toarray() if a.sparse else a.weight
        wb = b.weight.toarray() if b.sparse else b.weight
        if not (np.array_equal(wa, wb) and np.array_equal(a.bias, b.bias)):
            out.append(Finding("file-written", f"{what}: layer {k} read back differs"))
        conv = [isinstance(la.structure, ConvSpec) for la in (o, b, a)]
        if conv[0] and not all(conv):
            out.append(Finding("file-written", f"{what}: layer {k} is no longer a convolution"))
    return out
