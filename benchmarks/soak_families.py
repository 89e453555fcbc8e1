"""Generator families of the soak, each aimed at one class of unsound shortcut (issue 18).

======================  ==============================================  =====================
family                  cases                                           checks
======================  ==============================================  =====================
``random``              :func:`random_case`: mixed scales, ties, exact  every check of
                        duplicates, degenerate boxes                    :func:`check_case`
``near-duplicate``      :func:`near_duplicate_case`: rows agreeing to   the same, on the
                        ``1e-12..1e-8``, a kink slab, weights ``1e9``   compressed network
``near-dependent``      :func:`near_dependent_case`: active rows, one   the same, on the
                        a combination of others up to ``1e-13..1e-9``   compressed network
``nnet``                :func:`nnet_case`: ``.nnet`` files, boxes in,   :mod:`.soak_nnet`
                        across and around the input limits
``onnx``                :func:`onnx_case`: casts (FLOAT16, DOUBLE,      :mod:`.soak_onnx`
                        INT32) and non-affine ops in ONNX graphs
``splits``              :func:`random_case` deep (2-6 layers) with      every check of
                        2-8 inputs: the input splits of                 :func:`check_case`
                        :mod:`exactcomp.bab`
``relusplits``          :func:`random_case` deep (3-6 layers) with      every check of
                        8-16 inputs: the ReLU splits of                 :func:`check_case`
                        :mod:`exactcomp.bab.relu`
``conv``                two seeds in three :func:`conv_onnx_case`:      every check of
                        ONNX graphs read by the reader (stride with     :func:`check_case`, the
                        padding, dilation, groups, asymmetric pads,     channel rewrite too; the
                        ``Pad``, pools after padding, BatchNorm, zero   file read and the one
                        kernels); the third :func:`random_conv_case`    written vs onnxruntime
``conv-sparse``         the same cases with their conv and pool layers  the claims of the cone
                        held sparse (:func:`as_sparse`), as the reader  analysis against the
                        holds large ones                                exact oracle
``conv-residual``       residual ``Add`` / ``Concat`` graphs read by    every check of
                        carrying skip tensors                           :func:`check_case`
                        (:mod:`benchmarks.soak_residual`)
``conv-lossy``          :func:`random_conv_case` in float32, sparse on  proven bound vs the
                        odd seeds, quantised at 8/4/3/2/1.5/16 bits     exact max |f - g|; the
                        (:mod:`benchmarks.soak_conv_lossy`)             .onnx read back
``conv-compress``       :func:`random_conv_case` held sparse, a dense   claim vs the exact
                        ReLU layer after the flatten on two seeds in    max |f - g|; sparse
                        three: ``compress --tol``, tail edits           layers kept; the
                        (:mod:`benchmarks.soak_conv_lossy`)             prefix proof's bound
``degenerate``          :func:`~exactcomp.testing.degenerate.           every check of
                        degenerate_case`: emptied and zero-width        :func:`check_case`; on
                        layers, zero rows and columns, duplicates,      the compressed network
                        widths of 1, point / tiny / wide boxes,         stability, reverse
                        weights ``1e-8..1e4``, affine and constant      equivalence, files,
                        networks                                        lossy bounds, the CLI
                                                                        (:mod:`.soak_degenerate`)
``pools``               :func:`~exactcomp.testing.random_conv.          bounds, claims (dense
                        random_pool_case`: max-pools of every           and sparse) and the
                        geometry on 2-3 inputs, signed, mistagged and   differential bound vs
                        altered blocks                                  the exact oracle
                                                                        (``testing.pool_checks``)
``readers``             :func:`~.soak_readers.reader_case`: a tiny      read vs torch /
                        network as a module, pickle, state_dict,        onnxruntime; compress's
                        TorchScript, ONNX (exported, by hand), .nnet;   file read back and run;
                        float16/32/64; heads; Flatten, BatchNorm, conv  refusals one line, no file
``lattice``             :func:`~exactcomp.testing.lattice_cases.        every check of
                        lattice_case`: opposite pairs whose class       :func:`check_case`; the
                        sums almost cancel, scaled pairs, copies one    weight-read facts in
                        ulp apart, constant units, the identity's ``F`` exact rationals;
                        exactly 0 or ``2^-60`` off                      ``verify`` against the
                                                                        compression with a
                                                                        planted bug
                                                                        (:mod:`.soak_lattice`)
======================  ==============================================  =====================

Without ``--family`` the soak mixes them by seed (:data:`ROTATION`: 5 cases of 14 random;
the conv families, ``pools`` and ``readers`` only when named).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from exactcomp import api
from exactcomp.testing.adversarial import near_dependent_case, near_duplicate_case
from exactcomp.testing.nnet_cases import nnet_case
from exactcomp.testing.oracle import OracleError
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.testing.random_networks import Case, random_case
from exactcomp.testing.soak_case import check_case
from exactcomp.testing.soak_checks import Checker
from exactcomp.testing.soak_results import CaseResult, SoakOptions, method_for, skipped_result
from exactcomp.verdicts import Verdict

FAMILIES = (
    "random",
    "near-duplicate",
    "near-dependent",
    "nnet",
    "onnx",
    "splits",
    "relusplits",
    "conv",
    "conv-sparse",
    "conv-residual",
    "conv-lossy",
    "conv-compress",
    "degenerate",
    "pools",
    "readers",
    "lattice",
)
ROTATION = ("random",) * 5 + ("near-duplicate",) * 2
ROTATION += ("near-dependent", "nnet", "onnx", "splits", "relusplits", "degenerate", "lattice")
"""The default mix, one entry per seed modulo 14 (``lattice`` since red25). ``degenerate`` (since degen12) takes 2.6 s a
case (its CLI cases 10-50 s) against the mix's mean of 1.5 s (near-duplicate's 6.0): the
default soak about 6% longer per case (RESULTS.md, degen12). ``conv`` runs only when asked for
(``--family conv`` or ``all``): some of its cases take minutes (dense oracle on up to 50
inputs)."""
DEFAULT_FAMILIES = tuple(dict.fromkeys(ROTATION))
"""The families of a soak run without ``--family``."""
SPLIT_INPUTS = (2, 8)
SPLIT_DEPTH = (2, 6)
RELU_SPLIT_INPUTS = (8, 16)
"""More than :data:`exactcomp.bab.split.MAX_INPUTS`: the engine splits ReLUs, not inputs."""
RELU_SPLIT_DEPTH = (3, 6)


def parse_families(text: str) -> tuple[str, ...]:
    """``"all"`` or a comma-separated subset of :data:`FAMILIES`."""
    if text.strip() == "all":
        return FAMILIES
    out = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in out if t not in FAMILIES]
    if bad or not out:
        raise ValueError(f"unknown family {', '.join(bad) or text!r}; choose from {FAMILIES}")
    return out


def family_for(seed: int, families: Sequence[str]) -> str:
    """The family of case ``seed``: :data:`ROTATION` restricted to ``families`` (plus
    the conv families when they are named)."""
    extra = ("conv", "conv-sparse", "conv-residual", "conv-lossy", "conv-compress", "pools")
    extra += ("readers",)
    rotation = [f for f in (*ROTATION, *extra) if f in families]
    return rotation[seed % len(rotation)]


def run_case(family: str, seed: int, opts: SoakOptions) -> tuple[dict[str, Any], CaseResult]:
    """Generate case ``seed`` of ``family``, check it; return its JSON and the result."""
    method = method_for(seed)
    if family == "nnet":
        from .soak_nnet import check_nnet_case

        hi = min(opts.inputs[1], 3)
        nc = nnet_case(seed, inputs=(min(opts.inputs[0], hi), hi), max_neurons=opts.max_neurons)
        return nc.to_json(), check_nnet_case(nc, opts, method)
    if family == "onnx":
        from .soak_onnx import check_onnx_case, onnx_case

        hi = min(opts.inputs[1], 3)
        oc = onnx_case(seed, inputs=(min(opts.inputs[0], hi), hi), max_neurons=opts.max_neurons)
        return oc.to_json(), check_onnx_case(oc, opts, method)
    if family in ("random", "splits", "relusplits"):
        depth, inputs = {
            "random": (opts.depth, opts.inputs),
            "splits": (SPLIT_DEPTH, SPLIT_INPUTS),
            "relusplits": (RELU_SPLIT_DEPTH, RELU_SPLIT_INPUTS),
        }[family]
        case = random_case(
            seed, depth=depth, width=opts.width, inputs=inputs, max_neurons=opts.max_neurons
        )
        result = dataclasses.replace(check_case(case, opts, method), family=family)
        return {"family": family, **case.to_json()}, result
    if family == "conv-sparse":
        return _conv_sparse(seed, opts, method)
    if family == "conv":
        return _conv(seed, opts, method)
    if family == "conv-residual":
        from .soak_residual import run_residual_case

        return run_residual_case(seed, opts, method)
    if family == "conv-lossy":
        from .soak_conv_lossy import run_conv_lossy_case

        return run_conv_lossy_case(seed, opts, method)
    if family == "conv-compress":
        from .soak_conv_lossy import run_conv_compress_case

        return run_conv_compress_case(seed, opts, method)
    if family == "pools":
        from exactcomp.testing.pool_checks import run_pool_case

        return run_pool_case(seed, opts, method)
    if family == "degenerate":
        from .soak_degenerate import run_degenerate_case

        return run_degenerate_case(seed, opts, method)
    if family == "lattice":
        from .soak_lattice import run_lattice_case

        return run_lattice_case(seed, opts, method)
    if family == "readers":
        from .soak_readers import run_reader_case

        return run_reader_case(seed, opts, method)
    if family == "near-duplicate":
        case = near_duplicate_case(seed, inputs=opts.inputs, max_neurons=opts.max_neurons)
    elif family == "near-dependent":
        lo = max(2, opts.inputs[0])
        case = near_dependent_case(
            seed, inputs=(lo, max(lo, opts.inputs[1])), max_neurons=opts.max_neurons
        )
    else:
        raise ValueError(f"unknown family {family!r}")
    result = check_case(case, dataclasses.replace(opts, mutants=False), method)
    return {"family": family, **case.to_json()}, dataclasses.replace(result, family=family)


def _conv_case(seed: int) -> tuple[dict[str, Any], Case, Any]:
    """Case ``seed`` of the conv families: an aimed ONNX graph (:func:`.soak_conv.conv_onnx_case`)
    for two seeds in three, else :func:`random_conv_case`; its JSON, the case, and the
    :class:`~.soak_conv.ConvOnnxCase` (or None)."""
    if seed % 3:
        from .soak_conv import conv_onnx_case

        oc = conv_onnx_case(seed)
        return oc.to_json(), oc.case, oc
    case = random_conv_case(seed)
    return case.to_json(), case, None


def _conv(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """A conv case: every check of :func:`check_case`; for an ONNX case also the files
    against onnxruntime (:mod:`.soak_conv`: ``onnx-load``, ``onnx-written``)."""
    doc, case, oc = _conv_case(seed)
    doc = {"family": "conv", **doc}
    if oc is None:
        return doc, dataclasses.replace(check_case(case, opts, method), family="conv")
    from .soak_conv import check_read, check_written

    read = check_read(oc)
    result = check_case(case, opts, method, written=lambda c, g: check_written(c, g, case.network))
    return doc, dataclasses.replace(result, family="conv", findings=result.findings + tuple(read))


def _conv_sparse(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """A conv case held sparse: every claim of the cone-by-cone analysis against the exact
    oracle of the same network (the rewrite and equivalence checks are the ``conv`` family's:
    the verifier refuses sparse networks)."""
    t0 = time.perf_counter()
    doc, case, _ = _conv_case(seed)
    doc = {"family": "conv-sparse", **doc}
    try:
        c = Checker(case, opts, method)
    except OracleError as exc:
        return doc, skipped_result(case, method, exc, family="conv-sparse")
    net = as_sparse(case.network)
    report = c.guard(
        f"stable_neurons[{method}, cones]",
        lambda: api.stable_neurons(
            net, case.box, method=method, jobs=1, time_limit=opts.time_limit, seed=seed
        ),
    )
    claims: Counter[str] = Counter()
    if report is not None:
        for ls in report.layers:
            claims.update(Verdict(v).name for v in ls.verdict)
        c.claims(report, f"{method} cones")
    return doc, c.result(claims, t0, family="conv-sparse")
