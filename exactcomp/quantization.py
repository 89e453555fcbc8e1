"""Certified quantisation: the API behind ``quantize``, within the call's one deadline.

:func:`quantize` returns a :class:`~exactcomp.lossy_result.LossyResult` like
:func:`exactcomp.approx.compress_lossy`, and keeps to one time limit the same way
(:data:`~exactcomp.approx.TIME_LIMIT`, of which :data:`~exactcomp.approx.FINAL_SHARE` is kept
for the final proof and the sampling): the bit search (:mod:`exactcomp.rewrite.bitwidths`)
stops trying narrowings at ``(1 - FINAL_SHARE) * time_limit`` after the call's start and keeps
what it has proven so far; every width is only *chosen* there, the claim is the final proof
of the chosen network.

Given ``exact`` (``exactcomp.quantize`` and the CLI pass :func:`exactcomp.api.compress`),
:func:`quantize` first runs the exact compression as ``compress --tol`` does and quantises
its network: the neurons it proves stable cost no grid and no error (nn4sys pensieve ``--bits
8``: 123,725 B in its own graph, 18,333 B from the exact compression, RESULTS.md "audit24").
A DAG file is quantised both ways, and the smaller ONNX file (with ``tol``: proven within it)
is returned.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .approx import (
    BOUNDS_SHARE,
    COMPENSATION_SHARE,
    EXACT_REWRITE_SHARE,
    FINAL_SHARE,
    LP_SECONDS,
    PREPARE_SHARE,
    TIGHTEN_SECONDS,
    TIME_LIMIT,
    TOP1_ENGINE_SECONDS,
    original_charger,
)
from .exact_reference import exact_reference
from .float_candidate import float_candidate, rounded_reference
from .io.binding import bind_domain, load
from .lossy_result import (
    LossyResult,
    check_data,
    nonzero_parameters,
    report_document,
    source_bytes,
)
from .progress import SILENT, Progress
from .quantize_plan import METHODS, chain_budget, checked_options, layer_action, onnx_bytes
from .rewrite.acceptance import Gate
from .rewrite.bitwidths import (
    SPLIT_PROOF_SECONDS,
    SPLIT_SAMPLE_POINTS,
    SPLIT_SEARCH_SECONDS,
    choose_bits,
    narrow_with_lp,
    narrow_with_split,
)
from .rewrite.compensation import domain_compensation
from .rewrite.kernels import stored_weights
from .rewrite.quantize import BITS, fits_float16, quantisable, quantize_network
from .rewrite.storage import ROUNDED_DTYPES, holds
from .rewrite.structural import drop_unused_grids
from .source_quantization import choose_source_bits, source_bits, source_plan, source_rows
from .strategies import exact_pass_facts
from .verify.charge import SPLIT_MAX_INPUTS
from .verify.falsify import sampled_max_difference
from .verify.margin import top1_tolerance

#: Per-layer bit widths tried by ``quantize(tol=...)``, fewest bits first (16 = float16).
BIT_LADDER: tuple[float, ...] = (1.5, 2, 3, 4, 8, 16)
#: Seconds of the stability engine for the final claim of ``quantize --tol`` when only the
#: last layer is quantised (:mod:`exactcomp.verify.head`: the error is then affine in ``f``'s
#: last hidden layer, a question of one network; RESULTS.md "head14").
HEAD_SECONDS = 60.0
#: After the final proof, the float candidate's proof of its rounding
#: (:mod:`exactcomp.float_candidate`; symbolic, then input splitting within ``split_seconds``,
#: as ``compress --tol``'s claim) starts only where the last proof's seconds say it ends by
#: this share of ``time_limit``, and its splitting stops there: half the sampling's share is
#: left to it (the final proof's LP may run to its own end, ``1 - FINAL_SHARE / 2``).
CANDIDATE_END = 1 - FINAL_SHARE / 4
#: Of ``quantize``'s time on a DAG file, the share of its own graph's quantisation; the exact
#: pass and the quantisation of its chain take the rest.
OWN_GRAPH_SHARE = 0.5


def quantize(
    model: Any,
    domain: Any,
    *,
    bits: float | None = None,
    tol: float | None = None,
    tol_mode: str = "linf",
    time_limit: float = TIME_LIMIT,
    exact: Callable[..., Any] | None = None,
    progress: Progress = SILENT,
    **options: Any,
) -> LossyResult:
    """Quantise ``model`` (:func:`_quantize`: the options), after the exact compression
    ``exact`` (``exact(f, boxes, deadline=..., analysis_end=...)``, as ``compress --tol``'s:
    :data:`~exactcomp.approx.EXACT_SHARE` of ``time_limit``) where given: its network is the
    reference where :func:`~exactcomp.exact_reference.exact_reference` proves it equal to
    ``f`` (without ``tol``, or in ``top1``: its gap within
    :data:`~exactcomp.exact_reference.UNTOLD_GAP`), the gap claimed; the rest of the time, at
    least :data:`~exactcomp.approx.SEARCH_FLOOR` of it plus the final share, quantises it;
    the report's ``exact_pass`` says what it removed. A :class:`LossyResult` (already after
    an exact pass), or ``exact=None``: quantised as it is. A DAG file is quantised in its own
    graph first (:data:`OWN_GRAPH_SHARE` of the time; the exact pass and the chain then share
    what it left, within ``time_limit``: :func:`~exactcomp.quantize_plan.chain_budget`); its
    chain is skipped where its nonzero parameters at the fewest bits take the bytes of the
    own graph's file, or too little time is left (``graph_choice``).
    The float network it started from is the result's ``alternative`` (written instead
    where smaller: :mod:`exactcomp.float_candidate`)."""
    common = {"bits": bits, "tol": tol, "tol_mode": tol_mode, "progress": progress, **options}
    if exact is None or isinstance(model, LossyResult):
        return _quantize(model, domain, time_limit=time_limit, **common)
    t0 = time.perf_counter()
    common["bits"], common["tol"] = bits, tol = checked_options(
        options.get("method", "corrected"), tol_mode, bits, tol
    )
    f = load(model)
    boxes = bind_domain(domain, f)
    own = None
    if f.meta.get("carried") and f.meta.get("source"):  # a DAG: its own graph first
        own = _quantize(model, domain, time_limit=OWN_GRAPH_SHARE * time_limit, **common)
        if own.source is None:  # not quantised in its own graph: the chain alone
            own = None
    t1 = time.perf_counter()
    progress.task("exact pass", 1)
    share, floor, least = chain_budget(time_limit, t1 - t0, dag=own is not None)
    end = t1 + share
    done = exact(f, boxes, deadline=end, analysis_end=end - EXACT_REWRITE_SHARE * share)
    gap_tol = tol if tol_mode == "linf" else None  # top1: tol is less than this
    ref, done, gap = exact_reference(f, done, boxes, gap_tol, time_limit)
    if not quantisable(ref):  # a layer held sparse lost its convolution: f as it is
        ref, done, gap = f, dataclasses.replace(done, network=f, rewrite=None), 0.0
    facts = exact_pass_facts(f, done, time.perf_counter() - t1, gap)
    own_bytes = None if own is None else onnx_bytes(own)
    fewest = bits if bits is not None else min(BIT_LADDER)
    left = max(time_limit - (time.perf_counter() - t0), floor)
    small = own_bytes is not None and nonzero_parameters(ref) * fewest / 8 >= own_bytes
    if own is not None and (small or left <= least):  # the chain could not be smaller, or
        own.report["exact_pass"] = facts  # would end past the time limit
        own.report["graph_choice"] = {"own_graph_bytes": own_bytes, "written": "own graph"}
        own.report["seconds"] = round(time.perf_counter() - t0, 4)
        return float_candidate(own, boxes, t0 + time_limit)
    start = LossyResult(f, ref, None, gap, np.nan, {}, ref, ref, reference_gap=gap)
    chain = _quantize(start, boxes, time_limit=left, **common)
    chain.report["exact_pass"] = facts
    chain.report["bytes_before"] = source_bytes(model)
    chain.report["seconds"] = round(time.perf_counter() - t0, 4)
    if own is None:
        return float_candidate(chain, boxes, t0 + time_limit)
    claimed = chain.report["tol"]
    fine = [r for r in (chain, own) if claimed is None or r.proven <= claimed]
    sizes = {id(r): (onnx_bytes(r) if r is chain else own_bytes) for r in fine}
    best = min(fine, key=lambda r: sizes[id(r)]) if fine else own
    best.report["graph_choice"] = {
        "own_graph_bytes": own_bytes,
        "exact_chain_bytes": sizes.get(id(chain)),
        "written": "own graph" if best is own else "exact compression's chain",
    }
    best.report.setdefault("exact_pass", facts)
    best.report["seconds"] = round(time.perf_counter() - t0, 4)
    return float_candidate(best, boxes, t0 + time_limit)


def _quantize(
    model: Any,
    domain: Any,
    *,
    bits: float | None = None,
    tol: float | None = None,
    data: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    split_seconds: float = 10.0,
    tighten_seconds: float = TIGHTEN_SECONDS,
    lp_seconds: float = LP_SECONDS,
    bab_seconds: float = 0.0,
    milp_seconds: float = 0.0,
    method: str = "corrected",
    tol_mode: str = "linf",
    top1_class: str = "argmax",
    time_limit: float = TIME_LIMIT,
    progress: Progress = SILENT,
) -> LossyResult:
    """Quantise the weights of ``model`` and prove ``max |f - g|`` over ``domain``.

    ``model`` may be the :class:`LossyResult` of :func:`~exactcomp.approx.compress_lossy`: its pruned network
    is quantised and the bound is proven against *its* reference (its original, or the exact
    compression of it that equals it on the domain: the composition, end to end); the
    sampled difference, the data and the sizes before are the original's.
    ``bits``: every layer to this width (8, 4, 3, 2, 1.5 = ternary, 16 = float16). With
    ``tol``: per layer the fewest bits of :data:`BIT_LADDER` by a measured greedy rule
    (:func:`exactcomp.rewrite.bitwidths.choose_bits`, then
    :func:`~exactcomp.rewrite.bitwidths.narrow_with_lp`; on at most
    :data:`~exactcomp.verify.charge.SPLIT_MAX_INPUTS` inputs, with ``split_seconds`` > 0,
    :func:`~exactcomp.rewrite.bitwidths.narrow_with_split` between them, under the input
    splitting proof, :data:`~exactcomp.rewrite.bitwidths.SPLIT_PROOF_SECONDS` each,
    :data:`~exactcomp.rewrite.bitwidths.SPLIT_SEARCH_SECONDS` in all)
    (with ``bits`` given, at most that many) such that the whole network is still
    proven within ``tol``; layers that no width keeps within ``tol`` stay float32. Raises
    :class:`InvalidOptionError` for bits outside the set or ``tol`` not > 0.
    ``time_limit``: the whole call's seconds, as :func:`~exactcomp.approx.compress_lossy`'s
    (the class margin's engine and the tightening of ``f``'s bounds each capped at a quarter
    of it): the bit search (the greedy, the splitting and the LP narrowings) stops starting
    trials :data:`~exactcomp.approx.FINAL_SHARE` of it before its end and keeps the widths
    proven so far (a trial is started only if the last proof's seconds still fit), and the
    final proof's LP and head engine end half that share before it (the rest: the sampling,
    kept to the time left: :func:`~exactcomp.verify.falsify.sampled_worst`); the bounds of
    the original end :data:`~exactcomp.approx.BOUNDS_SHARE` of it after the start (the LP
    tightening stops there, keeping what it has tightened; it is skipped where ``f``'s
    symbolic bounds took more than :data:`~exactcomp.approx.PREPARE_SHARE` of it:
    :func:`~exactcomp.approx.original_charger`, as ``compress --tol``'s).
    ``lp_seconds`` counts from the end of the tightening; ``bab_seconds``, ``milp_seconds`` and the
    final proof's ``split_seconds`` come on top of ``time_limit`` (off, or at most 10 s).
    ``tighten_seconds``: LP tightening of ``f``'s bounds, once (:data:`TIGHTEN_SECONDS`);
    ``bab_seconds`` > 0: the final claim by branch and bound in the joint LP
    (:mod:`exactcomp.verify.diffbab`; off by default: 1 % tighter in 120 s at 8 bits);
    ``milp_seconds`` > 0 (with ``tol``): last, the exact joint MILP's decision "within
    ``tol``?" (:mod:`exactcomp.verify.diffmilp`; off by default: exact on small networks, no
    verdict in 60 s per side on the digits model, 400 phase binaries).
    ``method``: ``corrected`` (default) folds each layer's mean weight error on the domain
    into its float32 bias and searches each row's scale of 2-4-bit grids
    (:mod:`exactcomp.rewrite.quantize`, moments over
    :data:`~exactcomp.rewrite.compensation.COMPENSATION_POINTS` uniform
    domain points); ``rtn``: plain round-to-nearest. Either way the claim is the verifier's.
    ``tol_mode="top1"``: ``tol`` becomes ``min(tol, m / 2)`` less a slack for the proven
    class margin ``m`` of the original (as :func:`~exactcomp.approx.compress_lossy`; ``tol`` may be None).
    ``progress``: each phase is announced as a task of one step (its name and time shown)."""
    t0 = time.perf_counter()  # the one deadline's start, and the report's seconds
    bits, tol = checked_options(method, tol_mode, bits, tol)
    if isinstance(model, LossyResult):
        f, base = model.original, model.pruned if model.pruned is not None else model.network
        ref = model.reference if model.reference is not None else f
    else:
        f = base = ref = load(model)
    boxes = bind_domain(domain, f)
    check_data(f, data, labels)
    top1: dict = {"tol_mode": tol_mode}
    if tol_mode == "top1":
        progress.task("class margin", 1)
        engine = min(TOP1_ENGINE_SECONDS, time_limit / 4)  # larger margins, by the engine
        tol, top1 = top1_tolerance(f, list(boxes), tol, rule=top1_class, milp_seconds=engine)
    # a compress --tol result's reference is proven within its gap of f (exact_reference):
    # the search keeps tol less it, the claim adds it
    gap = model.reference_gap if isinstance(model, LossyResult) else 0.0
    claimed, tol = tol, None if tol is None else tol - gap
    # one deadline: the bit search stops FINAL_SHARE before it, the final proof's solvers half
    # that share before it, the sampling takes the rest
    stop = t0 + (1 - FINAL_SHARE) * time_limit
    final_end = t0 + (1 - FINAL_SHARE / 2) * time_limit
    # a DAG: its own file quantised (source_quantization), else the chain read from it
    moments_end = t0 + COMPENSATION_SHARE * time_limit  # the domain moments stop adding there
    plan = source_plan(model, f, boxes, method == "corrected", moments_end)
    src = None
    if plan is not None and tol is None:
        src = plan.build(bits)
        plan = None if src is None else plan  # the chain is quantised and written instead
    progress.task("bounds of the original", 1)
    # the bounds phase ends BOUNDS_SHARE into the deadline: the tightening, last, stops there
    corrected = method == "corrected" and plan is None
    comp = domain_compensation(base, boxes, moments_end) if corrected else None
    charger = original_charger(ref, boxes, t0, time_limit, tighten_seconds, final_end)
    n = len(base.layers)
    lp_end = time.perf_counter() + lp_seconds
    lp_bound = np.inf  # a joint-LP proof of the chosen network, when narrowing made one
    ladder: list[float] = []  # --tol: the widths tried, float16 only where every layer fits
    if tol is not None:  # it (else its weights would be inf)
        fits = all(fits_float16(la.weight) for la in base.layers)
        ladder = [b for b in BIT_LADDER if (bits is None or b <= bits) and (b != 16 or fits)]
    if plan is not None and tol is not None:
        progress.task("choosing bits", 1)
        widths, src, lp_bound = choose_source_bits(plan, charger, tol, ladder, stop, lp_end)
        if widths is None:  # not read back paired: the chain, as before
            plan = None
            comp = domain_compensation(base, boxes, moments_end) if method == "corrected" else None
    chosen: list[float | None] = [bits] * n  # the chain's widths (unused for the file's own)
    if plan is None and tol is not None:
        progress.task("choosing bits", 1)
        chosen = choose_bits(base, charger, tol, ladder, comp, end=stop)
        if split_seconds > 0 and min(b.dim for b in boxes) <= SPLIT_MAX_INPUTS:
            chosen = narrow_with_split(
                base,
                charger,
                tol,
                ladder,
                chosen,
                comp,
                sampled=lambda g: sampled_max_difference(ref, g, boxes, points=SPLIT_SAMPLE_POINTS),
                proof_seconds=SPLIT_PROOF_SECONDS,
                end=min(time.perf_counter() + SPLIT_SEARCH_SECONDS, stop),
            )
        end = min(lp_end, stop)
        chosen, lp_bound = narrow_with_lp(base, charger, tol, ladder, chosen, end, comp)
    progress.task("final proof", 1)
    qn = quantize_network(base, chosen, comp) if plan is None else None
    g = (f if src is None else src.network) if qn is None else qn.network  # f: nothing proven
    now = time.perf_counter()
    # the chain's narrowing ended in a joint-LP proof: none again; the file's own search
    # returns its last bound (symbolic, or the LP's): the final proof may still tighten it
    done = np.isfinite(lp_bound) and plan is None
    left = 0.0 if done else max(min(lp_end, final_end) - now, 0.0)
    proven = charger.proven(
        g,
        split_seconds=split_seconds,
        target=tol or 0.0,
        lp_seconds=left,
        bab_seconds=bab_seconds,
        milp_seconds=milp_seconds,
        head_seconds=max(min(HEAD_SECONDS, final_end - now), 0.0),
        end=final_end,  # a symbolic bound past it gives way to the interval bound
    )
    proven = min(proven, lp_bound) + gap  # two proofs of the same network: the tighter
    # the network it started from, rounded, for the float candidate (float_candidate): its
    # rounding proven as compress --tol's store proves it (symbolic, then input splitting),
    # no proof started that the last proof's seconds say would end past CANDIDATE_END
    started = None
    if f.dtype in ROUNDED_DTYPES and not holds(ref, f.dtype):
        rounded = rounded_reference(ref, f.dtype)
        gate = Gate(charger, t0 + CANDIDATE_END * time_limit)
        if rounded is not None:
            started = (rounded, gate.proven(rounded, split_seconds=split_seconds))
    progress.task("sampling", 1)
    sampled = sampled_max_difference(f, g, boxes, proven=proven, deadline=t0 + time_limit)
    progress.advance()
    if plan is None:
        small, grids = drop_unused_grids(qn.network, qn.weights)
        layers = [
            {
                "layer": k,
                "action": layer_action(q, la),
                "bits": (32 if stored_weights(la) else 0) if q is None else q.storage_bits,
                "entropy_bits": None if q is None else q.entropy(),
            }
            for k, (q, la) in enumerate(zip(grids, small.layers, strict=True))
        ]
        per_weight, entropy = qn.bits_per_weight(), qn.entropy_bits()
    else:  # the file's own tensors are the rows; the chain read from it is not written
        small, grids = g, None
        layers = source_rows(plan, src)
        per_weight, entropy = source_bits(plan, src)
    own_method = "corrected" if src is not None and src.corrected else "rtn"
    doc = report_document(
        f,
        small,
        claimed,
        proven,
        sampled,
        time.perf_counter() - t0,
        layers,
        data,
        labels,
        bytes_before=source_bytes(model),
        bytes_float32=4 * f.num_parameters,
        command="quantize",
        method=method if plan is None else own_method,  # the file's own: bias corrected or not
        bits=bits,
        bits_per_weight=per_weight,
        entropy_bits_per_weight=entropy,
        proofs=charger.calls,
        proofs_late=charger.late,
        **top1,
    )
    if tol_mode == "top1":  # d < m / 2 proven: no class changes on any box
        doc["top1_proven"] = bool(proven < top1["margin_proven_min"] / 2)
    if plan is not None:
        doc["weights"] = "the input file's own tensors, its graph kept"
    grids = None if grids is None else tuple(grids)
    unedited = plan is not None and src is None  # nothing proven: the input itself
    res = LossyResult(f, small, grids, proven, sampled, doc, g, ref, unedited, source=src)
    return dataclasses.replace(res, reference_gap=gap, started_from=started)


__all__ = [
    "BITS",
    "BIT_LADDER",
    "BOUNDS_SHARE",
    "HEAD_SECONDS",
    "METHODS",
    "PREPARE_SHARE",
    "quantize",
]
