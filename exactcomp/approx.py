"""Certified lossy compression and quantisation: the API behind ``compress --tol`` and ``quantize``.

Both return a :class:`LossyResult`: the new network, one *proven* bound of
``max_x |f(x) - g(x)|`` over the domain against the original ``f`` (the differential bounds of
:mod:`exactcomp.verify.symbolic`, via :class:`~exactcomp.verify.charge.Charger`), the
*sampled* lower bound, and a JSON report (keys documented in the README).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidOptionError
from .io.binding import bind_domain, load
from .lossy_result import (
    LossyResult,
    check_data,
    nonzero_parameters,
    report_document,
    source_bytes,
)
from .progress import SILENT, Progress
from .rewrite.bitwidths import (
    SPLIT_PROOF_SECONDS,
    SPLIT_SAMPLE_POINTS,
    SPLIT_SEARCH_SECONDS,
    choose_bits,
    narrow_with_lp,
    narrow_with_split,
)
from .rewrite.compensation import domain_compensation
from .rewrite.kernels import restore_structure, stored_weights
from .rewrite.lossy import drop_unused_grids, search
from .rewrite.lowrank import search_lowrank
from .rewrite.magnitude import magnitude_first, magnitude_last
from .rewrite.quantize import (
    BITS,
    check_bits,
    fits_float16,
    quantize_network,
)
from .rewrite.storage import store
from .strategies import better, exact_pass_facts, pad, written_network
from .verify.charge import SPLIT_MAX_INPUTS, Charger, sampled_max_difference
from .verify.margin import top1_tolerance

TOL_MODES: tuple[str, ...] = ("linf", "top1")  # compress --tol-mode
#: top1: at most these seconds (and a quarter of the time) of stability-engine proofs of a
#: larger class margin than the LP's (:func:`exactcomp.verify.margin.class_margin`).
TOP1_ENGINE_SECONDS = 30.0

#: Per-layer bit widths tried by ``quantize(tol=...)``, fewest bits first (16 = float16).
BIT_LADDER: tuple[float, ...] = (1.5, 2, 3, 4, 8, 16)
#: Seconds (all boxes together) spent once per run tightening ``f``'s hidden-layer bounds by
#: LP before any difference is bounded (:mod:`exactcomp.verify.tighten`); 0 turns it off.
TIGHTEN_SECONDS = 20.0
#: Seconds of the joint LP of ``f`` and ``g`` (:mod:`exactcomp.verify.difflp`, tighter than
#: the symbolic bound, seconds per proof on the digits model): the final claim of each command
#: and, for ``quantize --tol``, the narrowing steps it proves after the symbolic greedy.
LP_SECONDS = 60.0
#: Seconds of the stability engine for the final claim of ``quantize --tol`` when only the
#: last layer is quantised (:mod:`exactcomp.verify.head`: the error is then affine in ``f``'s
#: last hidden layer, a question of one network; RESULTS.md "head14").
HEAD_SECONDS = 60.0
MAGNITUDE_SHARE = 0.25  # of compress --tol's time: at most, the magnitude candidate's proofs
#: Of the search's time, the share of the low-rank strategy's greedy search, when some rank is
#: proven within its budget (:func:`exactcomp.rewrite.lowrank.search_lowrank`; else it costs
#: a few symbolic proofs and the plain search keeps all the time).
LOWRANK_TIME_SHARE = 0.5
#: ``compress --tol``'s time in seconds: of the API call, and in the CLI of the whole command
#: (loading the model included: 4.4-5.7 s of the sparse conv networks, RESULTS.md "budget18").
TIME_LIMIT = 90.0
#: Of ``compress --tol``'s time, the deadline of the exact pass that runs first (measured at
#: load 2-4, 0 undecided each: 1.8-2.2 s on the digits models, 5.1-10.7 s on ACAS Xu 1_1
#: prop_1, 11.8 s on MNIST 256x2 prop_0_0.03; past it nothing new starts, still exact, but
#: the cone-by-cone stability of a network held sparse runs its cones to the end:
#: Convnet_maxpool 38.9 s of stability at load 4-5, RESULTS.md "budget18").
EXACT_SHARE = 0.25
#: Of ``compress --tol``'s time, kept after the search for the final proof of the stored
#: network and the sampled difference (``sampled_max_difference``: 3.3-3.6 s wall at load 4-5
#: on the sparse conv networks, 0.3 s on the digits model, RESULTS.md "budget18"; 9 s of 90).
FINAL_SHARE = 0.1
#: Of ``compress --tol``'s time, the least the phases between the exact pass and the final
#: proof get when the exact pass overran into their time (one deadline for the call: they end
#: at ``time_limit`` less ``FINAL_SHARE``, but with 1 s the search made no edit: lossy16).
SEARCH_FLOOR = 0.25
#: ``quantize``'s quantisers: ``corrected`` (bias correction and scale search on the domain,
#: :class:`~exactcomp.rewrite.compensation.Compensation`) or ``rtn`` (plain round-to-nearest).
METHODS: tuple[str, ...] = ("corrected", "rtn")


def check_tol(tol: Any, *, positive: bool = False) -> float:
    """``tol`` as a float >= 0 (> 0 with ``positive``), or :class:`InvalidOptionError`."""
    try:
        t = float(tol)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"--tol must be a number, got {tol!r}") from None
    if not np.isfinite(t) or t < 0 or (positive and t == 0):
        need = "> 0" if positive else ">= 0"
        raise InvalidOptionError(f"--tol must be a finite number {need}, got {tol}")
    return t


def quantize(
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
    progress: Progress = SILENT,
) -> LossyResult:
    """Quantise the weights of ``model`` and prove ``max |f - g|`` over ``domain``.

    ``model`` may be the :class:`LossyResult` of :func:`compress_lossy`: its pruned network
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
    class margin ``m`` of the original (as :func:`compress_lossy`; ``tol`` may be None).
    ``progress``: each phase is announced as a task of one step (its name and time shown)."""
    t0 = time.perf_counter()
    if method not in METHODS:
        raise InvalidOptionError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if tol_mode not in TOL_MODES:
        raise InvalidOptionError(f"--tol-mode must be linf or top1, got {tol_mode!r}")
    if bits is None and tol is None and tol_mode == "linf":
        raise InvalidOptionError("give --bits, --tol or both")
    if bits is not None:
        bits = check_bits(bits)
    if tol is not None:
        tol = check_tol(tol, positive=True)
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
        tol, top1 = top1_tolerance(
            f, list(boxes), tol, rule=top1_class, milp_seconds=TOP1_ENGINE_SECONDS
        )
    progress.task("bounds of the original", 1)
    charger = Charger(ref, boxes, tighten_seconds=tighten_seconds)
    comp = domain_compensation(base, boxes) if method == "corrected" else None
    n = len(base.layers)
    lp_end = time.perf_counter() + lp_seconds
    lp_bound = np.inf  # a joint-LP proof of the chosen network, when narrowing made one
    if tol is None:
        chosen: list[float | None] = [bits] * n
    else:
        # float16 only where every layer fits it (else its weights would be inf)
        fits = all(fits_float16(la.weight) for la in base.layers)
        ladder = [b for b in BIT_LADDER if (bits is None or b <= bits) and (b != 16 or fits)]
        progress.task("choosing bits", 1)
        chosen = choose_bits(base, charger, tol, ladder, comp)
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
                end=time.perf_counter() + SPLIT_SEARCH_SECONDS,
            )
        chosen, lp_bound = narrow_with_lp(base, charger, tol, ladder, chosen, lp_end, comp)
    progress.task("final proof", 1)
    qn = quantize_network(base, chosen, comp)
    left = 0.0 if np.isfinite(lp_bound) else max(lp_end - time.perf_counter(), 0.0)
    proven = charger.proven(
        qn.network,
        split_seconds=split_seconds,
        target=tol or 0.0,
        lp_seconds=left,
        bab_seconds=bab_seconds,
        milp_seconds=milp_seconds,
        head_seconds=HEAD_SECONDS,
    )
    proven = min(proven, lp_bound)  # two proofs of the same network: the tighter holds
    progress.task("sampling", 1)
    sampled = sampled_max_difference(f, qn.network, boxes, proven=proven)
    progress.advance()
    small, grids = drop_unused_grids(qn.network, qn.weights)
    layers = [
        {
            "layer": k,
            "action": _action(g, la),
            "bits": (32 if stored_weights(la) else 0) if g is None else g.storage_bits,
            "entropy_bits": None if g is None else g.entropy(),
        }
        for k, (g, la) in enumerate(zip(grids, small.layers, strict=True))
    ]
    doc = report_document(
        f,
        small,
        tol,
        proven,
        sampled,
        time.perf_counter() - t0,
        layers,
        data,
        labels,
        bytes_before=source_bytes(model),
        bytes_float32=4 * f.num_parameters,
        command="quantize",
        method=method,
        bits=bits,
        bits_per_weight=qn.bits_per_weight(),
        entropy_bits_per_weight=qn.entropy_bits(),
        proofs=charger.calls,
        **top1,
    )
    if tol_mode == "top1":  # d < m / 2 proven: no class changes on any box
        doc["top1_proven"] = bool(proven < top1["margin_proven_min"] / 2)
    return LossyResult(f, small, tuple(grids), proven, sampled, doc, qn.network, ref)


def _action(g, layer) -> str:
    """A layer's row of the report: its grid, ``pool`` (no parameter: kept exactly) or float32."""
    if g is not None:
        return "float16" if g.bits == 16 else f"{g.bits:g}-bit"
    return "float32" if stored_weights(layer) else "pool"


def compress_lossy(
    model: Any,
    domain: Any,
    tol: float | None,
    *,
    tol_mode: str = "linf",
    top1_class: str = "argmax",
    time_limit: float = TIME_LIMIT,
    data: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    tighten_seconds: float = TIGHTEN_SECONDS,
    lp_seconds: float = LP_SECONDS / 2,
    bab_seconds: float = 0.0,
    centre: bool = False,
    refit: bool = False,
    merge: bool = True,
    exact: Callable[..., Any] | None = None,
    split_seconds: float = 10.0,
    progress: Progress = SILENT,
) -> LossyResult:
    """Prune ``model`` beyond exactness while ``max |f - g| <= tol`` stays proven on ``domain``
    (:func:`exactcomp.rewrite.lossy.search`), then drop the neurons left without effect.

    ``exact``: the exact compression to run first (``exactcomp.api.compress``, which
    ``exactcomp.api.compress_lossy`` and ``compress(tol=number)`` pass; called as
    ``exact(f, boxes, deadline=...)``, with :data:`EXACT_SHARE` of ``time_limit``), or None
    (the search starts from ``model`` itself). With it, the search and every proof run on its
    network ``f_exact`` (``LossyResult.reference``), and the claim is proven against it:
    ``f_exact = f`` on every point of the domain by the exact pass's own proofs (its removals,
    folds and merges each proven on the domain, in exact arithmetic; a neuron left UNDECIDED,
    e.g. at the deadline, is kept, so a partial pass is still exact), hence
    ``max |f - g| = max |f_exact - g|`` there. Neurons that only its MILPs or split trees prove
    stable so go for free, at tol 0 too. The report's sizes before, the sampled difference
    and the ``data`` agreement are the original's; ``exact_pass`` says what it removed.
    ``tighten_seconds``: LP tightening of ``f``'s bounds, once (:data:`TIGHTEN_SECONDS`);
    ``lp_seconds``: the budget of one joint-LP proof (the search spends the slack the LP shows
    over the symbolic bound, and the claim is the LP or symbolic proof of the final network,
    the smaller); ``time_limit`` the whole call's, the exact pass, LP proofs and the
    tightening of ``f``'s bounds included: the search phases end :data:`FINAL_SHARE` of it
    before its end (the final proof and the sampling), an exact pass past its share taking
    their time down to :data:`SEARCH_FLOOR` of it; ``bab_seconds`` > 0: then
    branch and bound in the joint LP for the claim (:mod:`exactcomp.verify.diffbab`);
    ``centre`` and ``refit``: the compensating edits of :func:`exactcomp.rewrite.lossy.search`;
    ``merge``: its near-parallel neuron merges (:mod:`exactcomp.rewrite.merging`).
    ``split_seconds``: on at most :data:`~exactcomp.verify.charge.SPLIT_MAX_INPUTS` inputs,
    input splitting for the claim too (as ``bab_seconds``, on top of ``time_limit``).
    Global magnitude pruning (:mod:`exactcomp.rewrite.magnitude`) is the other candidate: its
    symbolic bisection first, its joint-LP proof after the search, only where it can still win
    (``magnitude_first``, ``magnitude_last``), in time reserved before the search; the result
    keeps fewer parameters (:func:`~exactcomp.strategies.better`), so never less than that baseline proven by us.
    ``tol_mode="top1"``: the class of ``f`` (``top1_class``: ``argmax`` or ``argmin``) must
    be proven constant on each box, with margin ``m``; the search runs in ``linf`` at
    ``tol = min(tol, m / 2)`` less a slack (``tol`` may be None), so the class of ``g`` is
    proven unchanged (:func:`exactcomp.verify.margin.top1_tolerance`; report ``top1_proven``).
    ``progress``: each phase is announced as a task of one step (its name and time shown)."""
    start = time.perf_counter()  # the one deadline's start, and the report's seconds
    if tol_mode not in TOL_MODES:
        raise InvalidOptionError(f"--tol-mode must be linf or top1, got {tol_mode!r}")
    tol = None if tol is None and tol_mode == "top1" else check_tol(tol)
    original = load(model)
    boxes = bind_domain(domain, original)
    check_data(original, data, labels)
    f, exact_facts = original, {"tol_mode": tol_mode}
    if tol_mode == "top1":
        engine = min(TOP1_ENGINE_SECONDS, time_limit / 4)  # larger margins, by the engine
        progress.task("class margin", 1)
        tol, exact_facts = top1_tolerance(
            original, list(boxes), tol, rule=top1_class, milp_seconds=engine
        )
    if exact is not None:
        t1 = time.perf_counter()  # after top1's margin proofs: the exact pass keeps its share
        progress.task("exact pass", 1)
        done = exact(original, boxes, deadline=t1 + EXACT_SHARE * time_limit)
        spent = time.perf_counter() - t1
        f, exact_facts["exact_pass"] = done.network, exact_pass_facts(original, done, spent)
    # one deadline: the search phases end FINAL_SHARE before it (an exact pass that overran
    # takes their time, down to SEARCH_FLOOR), the final proof and sampling fit in the rest
    now = time.perf_counter()
    stop = max(start + (1 - FINAL_SHARE) * time_limit, now + SEARCH_FLOOR * time_limit)
    # the tightening (ideal cuts spend what the LP leaves) is capped at a quarter of the time
    progress.task("bounds of the original", 1)
    charger = Charger(f, boxes, tighten_seconds=min(tighten_seconds, time_limit / 4))
    left = stop - time.perf_counter()  # after f's tightening
    progress.task("magnitude pruning", 1)
    mag, lp_reserve = magnitude_first(
        f, boxes, tol, charger, time_limit=MAGNITUDE_SHARE * left, lp_seconds=lp_seconds
    )
    options = {"lp_seconds": lp_seconds, "centre": centre, "use_refit": refit, "use_merge": merge}
    t_lr, left = time.perf_counter(), stop - time.perf_counter() - lp_reserve
    progress.task("low rank", 1)
    low = search_lowrank(
        f, boxes, tol, charger, time_limit=max(LOWRANK_TIME_SHARE * left, 1.0), **options
    )
    lr_seconds = time.perf_counter() - t_lr
    progress.task("greedy search", 1)
    out = search(
        f,
        boxes,
        tol,
        charger,
        time_limit=max(stop - time.perf_counter() - lp_reserve, 1.0),
        **options,
    )
    mag = magnitude_last(f, mag, out, tol, charger, reserve=lp_reserve, lp_seconds=lp_seconds)
    out, strategies = better(out, mag.outcome, tol, low)
    ranks = strategies["strategies"].get("lowrank", {}).pop("ranks", [])
    strategies["lowrank"] = {"ranks": ranks, "seconds": round(lr_seconds, 3)}
    strategies["strategies"]["magnitude"].update(mag.facts)
    splits = split_seconds > 0 and min(b.dim for b in boxes) <= SPLIT_MAX_INPUTS
    progress.task("final proof", 1)
    out, stored = store(  # the model's dtype, proven again (the claims below are of it)
        out,
        original.dtype,
        tol,
        charger.proven,
        boxes,
        lambda g: charger.proven(g, lp_seconds=lp_seconds) if lp_seconds > 0 else np.inf,
        harder_above=tol if splits or bab_seconds > 0 else None,  # they tighten it after
    )
    if bab_seconds > 0 and out.proven > 0:  # two proofs of the same network: the tighter
        bab = charger.proven(out.network, bab_seconds=bab_seconds) + pad(out, boxes)
        out = dataclasses.replace(out, proven=min(out.proven, bab))
    if splits and out.proven > 0:
        split = charger.proven(out.network, split_seconds=split_seconds) + pad(out, boxes)
        out = dataclasses.replace(out, proven=min(out.proven, split))
    written = restore_structure(f, written_network(out))  # a conv still a conv: written as one
    g = drop_unused_grids(written, [None] * len(written.layers))[0]
    progress.task("sampling", 1)
    sampled = sampled_max_difference(original, written, boxes, proven=out.proven)
    progress.advance()
    if tol_mode == "top1":  # d < m / 2 proven: no class changes on any box
        exact_facts["top1_proven"] = bool(out.proven < exact_facts["margin_proven_min"] / 2)
    if "exact_pass" in exact_facts:
        exact_facts["lossy_search"] = {
            "neurons_removed": f.num_neurons - g.num_neurons,
            "parameters_removed": nonzero_parameters(f) - nonzero_parameters(g),
        }
    doc = report_document(
        original,
        g,
        tol,
        out.proven,
        sampled,
        time.perf_counter() - start,
        out.layers,
        data,
        labels,
        bytes_before=source_bytes(model),
        bytes_float32=4 * original.num_parameters,
        command="compress",
        proofs=charger.calls,
        lp_rounds=out.rounds,
        **stored,
        **strategies,
        **exact_facts,
    )
    return LossyResult(original, g, None, out.proven, sampled, doc, out.network, f)


__all__ = ["BITS", "LossyResult", "check_tol", "compress_lossy", "quantize"]
