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
``conv``                :func:`random_conv_case`: small convolutions,   every check of
                        strides, padding, pooling (max pool as ReLUs),  :func:`check_case`, the
                        kept as structure                               channel rewrite too
``conv-sparse``         the same cases with their conv and pool layers  the claims of the cone
                        held sparse (:func:`as_sparse`), as the reader  analysis against the
                        holds large ones                                exact oracle
======================  ==============================================  =====================

Without ``--family`` the soak mixes them by seed (:data:`ROTATION`: 5 cases of 12 random;
``conv`` only when named).
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
from exactcomp.testing.random_networks import random_case
from exactcomp.testing.soak_checks import CaseResult, Checker, SoakOptions, check_case, method_for
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
)
ROTATION = ("random",) * 5 + ("near-duplicate",) * 2
ROTATION += ("near-dependent", "nnet", "onnx", "splits", "relusplits")
"""The default mix, one entry per seed modulo 11. ``conv`` runs only when asked for
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
    ``conv`` when it is named)."""
    rotation = [f for f in (*ROTATION, "conv", "conv-sparse") if f in families]
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
        case = random_conv_case(seed)
        result = dataclasses.replace(check_case(case, opts, method), family=family)
        return {"family": family, **case.to_json()}, result
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


def _conv_sparse(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """A conv case held sparse: every claim of the cone-by-cone analysis against the exact
    oracle of the same network (the rewrite and equivalence checks are the ``conv`` family's:
    the verifier refuses sparse networks)."""
    t0 = time.perf_counter()
    case = random_conv_case(seed)
    doc = {"family": "conv-sparse", **case.to_json()}
    f = case.network
    try:
        c = Checker(case, opts, method)
    except OracleError as exc:
        return doc, CaseResult(
            seed, f.num_neurons, 0, method, {}, {}, (), notes=(str(exc),), family="conv-sparse"
        )
    net = as_sparse(f)
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
    oracle = Counter(Verdict(v).name if v else "AMBIGUOUS" for a in c.exact.stability for v in a)
    return doc, CaseResult(
        seed=seed,
        neurons=f.num_neurons,
        regions=c.exact.regions,
        method=method,
        oracle=dict(oracle),
        claims=dict(claims),
        findings=tuple(c.findings),
        missed=c.missed,
        seconds=time.perf_counter() - t0,
        notes=tuple(c.notes),
        exact_points=c.exact_points,
        family="conv-sparse",
    )


# ------------------------------------------------------------------- conv-residual (issue 19)
# Residual Add / Concat graphs read by carrying skip tensors (benchmarks/soak_residual.py),
# every check of check_case on the chain. Runs only when named, like ``conv``.
FAMILIES = (*FAMILIES, "conv-residual")
_family_for_chains = family_for
_run_chain_case = run_case


def family_for(seed: int, families: Sequence[str]) -> str:  # noqa: F811 - extends the above
    """:func:`_family_for_chains`, with ``conv-residual`` last in the rotation when named."""
    if "conv-residual" not in families:
        return _family_for_chains(seed, families)
    rotation = [f for f in (*ROTATION, "conv", "conv-sparse") if f in families]
    rotation.append("conv-residual")
    return rotation[seed % len(rotation)]


def run_case(family: str, seed: int, opts: SoakOptions) -> tuple[dict[str, Any], CaseResult]:  # noqa: F811
    """:func:`_run_chain_case`, and the ``conv-residual`` family."""
    if family == "conv-residual":
        from .soak_residual import run_residual_case

        return run_residual_case(seed, opts, method_for(seed))
    return _run_chain_case(family, seed, opts)
