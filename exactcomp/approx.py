"""Certified lossy compression: the API behind ``compress --tol``, and the one deadline of a call.

:func:`compress_lossy` (and :func:`exactcomp.quantization.quantize`, which shares this
module's time limit, deadline shares, the charger of the original (:func:`original_charger`) and tolerances) returns a :class:`LossyResult`: the new network, one *proven* bound of
``max_x |f(x) - g(x)|`` over the domain against the original ``f`` (the differential bounds of
:mod:`exactcomp.verify.symbolic`, via :class:`~exactcomp.verify.charge.Charger`), the
*sampled* lower bound, and a JSON report (keys documented in the README)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import InvalidOptionError
from .exact_reference import exact_reference
from .float_candidate import float_candidate
from .io.binding import bind_domain, load
from .lossy_result import (
    LossyResult,
    check_data,
    nonzero_parameters,
    report_document,
    source_bytes,
)
from .phase_plan import LOWRANK_TIME_SHARE, MAGNITUDE_SHARE, PhasePlan, plan_phases
from .progress import SILENT, Progress
from .rewrite.acceptance import Gate
from .rewrite.kernels import restore_structure
from .rewrite.lossy import LossyOutcome, layer_facts, search
from .rewrite.lowrank import rank_proofs, search_lowrank
from .rewrite.magnitude import magnitude_first, magnitude_last, probe
from .rewrite.storage import store
from .rewrite.structural import drop_unused_grids
from .second_pass import left_undecided, second_exact_pass, taken
from .strategies import better, exact_pass_facts, pad, written_network
from .verify.charge import PROOF_PER_PREPARE, SPLIT_MAX_INPUTS, Charger
from .verify.falsify import sampled_max_difference
from .verify.margin import top1_tolerance
from .verify.prefix import shared_prefix

TOL_MODES: tuple[str, ...] = ("linf", "top1")  # compress --tol-mode
#: top1: at most these seconds (and a quarter of the time) of stability-engine proofs of a
#: larger class margin than the LP's (:func:`exactcomp.verify.margin.class_margin`).
TOP1_ENGINE_SECONDS = 30.0

#: Seconds (all boxes together) spent once per run tightening ``f``'s hidden-layer bounds by
#: LP before any difference is bounded (:mod:`exactcomp.verify.tighten`); 0 turns it off.
TIGHTEN_SECONDS = 20.0
#: Seconds of the joint LP of ``f`` and ``g`` (:mod:`exactcomp.verify.difflp`, tighter than
#: the symbolic bound, seconds per proof on the digits model): the final claim of each command
#: and, for ``quantize --tol``, the narrowing steps it proves after the symbolic greedy.
LP_SECONDS = 60.0
#: ``compress --tol``'s and ``quantize``'s time in seconds: of the API call, and in the CLI of
#: the whole command (loading the model included: 4.4-5.7 s of the sparse conv networks,
#: RESULTS.md "budget18").
TIME_LIMIT = 90.0
#: Of ``compress --tol``'s time, the deadline of the exact pass that runs first (measured at
#: load 2-4, 0 undecided each: 1.8-2.2 s on the digits models, 5.1-10.7 s on ACAS Xu 1_1
#: prop_1, 11.8 s on MNIST 256x2 prop_0_0.03; past it nothing new starts, still exact, but
#: the cone-by-cone stability of a network held sparse runs its cones to the end:
#: Convnet_maxpool 38.9 s of stability at load 4-5, RESULTS.md "budget18").
EXACT_SHARE = 0.25
#: ... of which this part is left by its stability analysis (which then starts nothing new:
#: ``analysis_end`` of :func:`exactcomp.api.compress`) to the steps after it, which do not
#: look at the clock: the rewrite, the structured rewrite's choice, the re-check's first 2,000
#: points. cifar_base_kw at load 1.5-2.5 (RESULTS.md "ccsoak21"): analysis 7.0 s, rewrite
#: 2.6 s, choice 0.4 s, re-check 0.4 s of a 22 s share; under load all of it slows alike
#: (RESULTS.md "lossybudget20"), and only the analysis can give way.
EXACT_REWRITE_SHARE = 0.4
#: Of ``compress --tol``'s (and ``quantize``'s) time, kept after the search for the final proof of the stored
#: network and the sampled difference (``sampled_max_difference``: 3.3-3.6 s wall at load 4-5
#: on the sparse conv networks, 0.3 s on the digits model, RESULTS.md "budget18"; 9 s of 90).
FINAL_SHARE = 0.1
#: Of ``compress --tol``'s time, the least the phases between the exact pass and the final
#: proof get when the exact pass overran into their time (one deadline for the call: they end
#: at ``time_limit`` less ``FINAL_SHARE``, but with 1 s the search made no edit: lossy16).
SEARCH_FLOOR = 0.25
#: The bounds phase of a lossy call (``f``'s symbolic bounds, then their LP tightening, which
#: stops here; :func:`original_charger`) ends this share of ``time_limit`` after the call's
#: start. Measured on cifar_base_kw at load 1-2 (RESULTS.md "qbudget19b"): ``quantize``'s
#: moments 3.8 s CPU, bounds 2.0 s, then the full :data:`TIGHTEN_SECONDS` (20 s): 26 s of the
#: CLI's ~87; the digits model's tightening ends by itself in 9-10 s (after ``compress
#: --tol``'s exact pass: 0.7 s, RESULTS.md "lossybudget20"). Under load the tightening is
#: what gives way, and with it the second symbolic bound of every proof
#: (:class:`~exactcomp.verify.charge.Charger`).
BOUNDS_SHARE = 1 / 3
#: ... and the tightening runs only if ``f``'s symbolic bounds took at most this share of
#: ``time_limit`` (:class:`~exactcomp.verify.charge.Charger`'s ``tighten_under``): they took
#: 2.0 s wall on cifar_base_kw at load 1 (2.2 % of 90 s), whose proofs (4-10 s CPU each)
#: the tightened pair doubles, and 2 ms on the digits model. Measured at equal load 2.1-2.6
#: (RESULTS.md "qbudget19b"): cifar within 90 s proves float16 everywhere (213,211 bytes)
#: with the 20 s tightening, and layer 2 at 8 bits (111,382 bytes, bound 0.0334) without;
#: ``compress --tol 0.05`` on it spent 21 s tightening and made 29 proofs of 6-11 s
#: (RESULTS.md "lossybudget20").
PREPARE_SHARE = 0.01
#: ``quantize --method corrected``'s domain moments add no chunk of points past this share of
#: ``time_limit`` after the call's start (:mod:`exactcomp.rewrite.compensation`; estimates,
#: never a proof): on resnet_2b they took 102.8 s CPU of a 90 s deadline (RESULTS.md "wide22").
COMPENSATION_SHARE = 0.1


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


def original_charger(
    f: Any, boxes: Any, start: float, time_limit: float, tighten_seconds: float, end: float
) -> Charger:
    """The proof engine of a lossy call that started at ``start`` (``time.perf_counter``):
    ``f``'s symbolic bounds on ``boxes``, then their LP tightening (``tighten_seconds``, at
    most a quarter of ``time_limit``) until :data:`BOUNDS_SHARE` of ``time_limit`` after
    ``start``, skipped where the symbolic bounds took more than :data:`PREPARE_SHARE` of it
    (``compress --tol`` and ``quantize`` alike). The symbolic bounds stop (the charger is then
    ``coarse``: interval bounds only) where they would leave no time before ``end`` for one
    proof, :data:`~exactcomp.verify.charge.PROOF_PER_PREPARE` times as long: past the first
    ``1 / (1 + PROOF_PER_PREPARE)`` of the time left (resnet_2b: 27-47 s of bounds, then
    proofs of 39-136 s, RESULTS.md "rn23")."""
    now = time.perf_counter()
    return Charger(
        f,
        boxes,
        tighten_seconds=min(tighten_seconds, time_limit / 4),
        tighten_end=start + BOUNDS_SHARE * time_limit,
        tighten_under=PREPARE_SHARE * time_limit,
        end=now + max(end - now, 0.0) / (1.0 + PROOF_PER_PREPARE),
    )


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
    ``exact(f, boxes, deadline=..., analysis_end=...)``, with :data:`EXACT_SHARE` of
    ``time_limit``, its analysis ending :data:`EXACT_REWRITE_SHARE` of that before), or None
    (the search starts from ``model`` itself). With it, the search and every proof run on its
    network ``f_exact`` (``LossyResult.reference``), and the claim is proven against it:
    ``f_exact = f`` on the domain by the exact pass's proofs (an UNDECIDED neuron is kept)
    and bit for bit on what it keeps (folds round: :mod:`exactcomp.exact_reference`), hence
    ``max |f - g| = max |f_exact - g|`` there. Neurons that only its MILPs or split trees prove
    stable so go for free, at tol 0 too. Where its analysis left many neurons undecided, a
    second exact pass runs on its network before the search, and where the search proves no
    edit, another with the search's time left (:mod:`exactcomp.second_pass`, each gap
    claimed). The report's sizes before, the sampled difference and the ``data`` agreement
    are the original's; ``exact_pass`` says what it removed.
    ``tighten_seconds``: LP tightening of ``f``'s bounds, once (:data:`TIGHTEN_SECONDS`);
    ``lp_seconds``: the budget of one joint-LP proof (the search spends the slack the LP shows
    over the symbolic bound, and the claim is the LP or symbolic proof of the final network,
    the smaller); ``time_limit`` the whole call's, the exact pass, LP proofs and the
    tightening of ``f``'s bounds included: the tightening ends :data:`BOUNDS_SHARE` of it
    after the start, and runs only where ``f``'s symbolic bounds are cheap
    (:func:`original_charger`); the search phases end :data:`FINAL_SHARE` of it before its
    end (the final proof and the sampling), an exact pass past its share taking their time
    down to :data:`SEARCH_FLOOR` of it, and each phase starts no proof that the last one's
    seconds say would end past the phase's end (:class:`~exactcomp.rewrite.acceptance.Gate`:
    a refused proof keeps no edit); the final proof's solvers end half that share before
    the end, and the sampling keeps to the end
    (:func:`~exactcomp.verify.falsify.sampled_worst`); ``bab_seconds`` > 0: then
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
    f, exact_facts, gap = original, {"tol_mode": tol_mode}, 0.0
    if tol_mode == "top1":
        engine = min(TOP1_ENGINE_SECONDS, time_limit / 4)  # larger margins, by the engine
        progress.task("class margin", 1)
        tol, exact_facts = top1_tolerance(
            original, list(boxes), tol, rule=top1_class, milp_seconds=engine
        )
    claimed = tol  # the report's; the search's is less the exact pass's gap (exact_reference)
    if exact is not None:  # after top1's margin proofs: the exact pass keeps its share
        t1 = time.perf_counter()
        progress.task("exact pass", 1)
        end, share = t1 + EXACT_SHARE * time_limit, EXACT_SHARE * time_limit
        done = exact(original, boxes, deadline=end, analysis_end=end - EXACT_REWRITE_SHARE * share)
        f, done, gap = exact_reference(original, done, boxes, tol, time_limit)
        exact_facts["exact_pass"] = exact_pass_facts(original, done, time.perf_counter() - t1, gap)
        tol -= gap
        if left_undecided(done):  # its analysis cut short: a second round, to the search's floor
            end = max(t1 + 2 * share, start + (1 - FINAL_SHARE - SEARCH_FLOOR) * time_limit)
            again = second_exact_pass(f, exact, boxes, tol, time_limit, end, EXACT_REWRITE_SHARE)
            f, gap, tol = taken(again, f, gap, tol, exact_facts["exact_pass"])
    # one deadline: the search phases end FINAL_SHARE before it (an exact pass that overran
    # takes their time, down to SEARCH_FLOOR), then the final proof and the sampling
    now = time.perf_counter()
    stop = max(start + (1 - FINAL_SHARE) * time_limit, now + SEARCH_FLOOR * time_limit)
    final_end = max(start + (1 - FINAL_SHARE / 2) * time_limit, stop)  # the claim's solvers
    progress.task("bounds of the original", 1)
    t_bounds = time.perf_counter()
    charger = original_charger(f, boxes, start, time_limit, tighten_seconds, stop)
    bounds_seconds = time.perf_counter() - t_bounds  # what a second pass's charger keeps
    # each phase starts no proof past its end (Gate): a refused proof keeps no edit; none runs
    # where not one proof fits (by the charger's estimate) before the search's end, or f's
    # bounds ran late (coarse): their candidates alone took 20-40 s on resnet_2b ("rn23")
    phases = not charger.coarse and Gate(charger, stop).fits()
    progress.task("magnitude pruning", 1)
    weights, cands = probe(f, boxes, Gate(charger, stop), centre=centre) if phases else (0, 0)
    left = stop - time.perf_counter()
    plan = (
        PhasePlan(charger.seconds, False, False, False)
        if not phases
        else plan_phases(
            charger.seconds,
            left,
            magnitude=math.ceil(math.log2(weights + 1)),
            lowrank=rank_proofs(f),
            search=math.ceil(math.log2(cands + 2)) + len(f.layers),
        )
    )
    lp_search = lp_seconds if plan.lp else 0.0  # the final claim keeps its LP
    share = MAGNITUDE_SHARE * left if plan.magnitude else 0.0  # skipped: no proof, no edit
    mag, lp_reserve = magnitude_first(
        f,
        boxes,
        tol,
        Gate(charger, time.perf_counter() + share),
        time_limit=share,
        lp_seconds=lp_search,
    )
    options = {"lp_seconds": lp_search, "centre": centre, "use_refit": refit, "use_merge": merge}
    t_lr, left = time.perf_counter(), stop - time.perf_counter() - lp_reserve
    progress.task("low rank", 1)
    low = None
    if plan.lowrank:
        span = max(LOWRANK_TIME_SHARE * left, 1.0)
        low = search_lowrank(f, boxes, tol, Gate(charger, t_lr + span), time_limit=span, **options)
    lr_seconds = time.perf_counter() - t_lr
    progress.task("greedy search", 1)
    span = max(stop - time.perf_counter() - lp_reserve, 1.0)
    gate = Gate(charger, time.perf_counter() + span)
    out = LossyOutcome(f, 0.0, [], charger.calls, layer_facts(f, [], {}))  # no edit: f
    if phases and gate.fits():
        out = search(f, boxes, tol, gate, time_limit=span, **options)
    mag = magnitude_last(
        f, mag, out, tol, Gate(charger, stop), reserve=lp_reserve, lp_seconds=lp_search
    )
    out, strategies = better(out, mag.outcome, tol, low)
    if not out.proven <= tol:  # every strategy's claim refused at a deadline: f itself
        out = LossyOutcome(f, 0.0, [], charger.calls, layer_facts(f, [], {}))
    proofs = 0  # of the chargers before the last
    again = None  # no edit proven: the search's time left to the exact pass (second_pass)
    if exact is not None and shared_prefix(f, out.network) == len(f.layers):
        progress.task("second exact pass", 1)
        end = stop - bounds_seconds  # its network's bounds to compute after it
        again = second_exact_pass(f, exact, boxes, tol, time_limit, end, EXACT_REWRITE_SHARE)
    if again is not None:  # max |f - g| <= gap + gap_2 + max |f_e2 - g|
        f, gap, tol = taken(again, f, gap, tol, exact_facts["exact_pass"])
        proofs = charger.calls
        charger = original_charger(f, boxes, start, time_limit, tighten_seconds, final_end)
        out = LossyOutcome(f, 0.0, [], charger.calls, layer_facts(f, [], {}))
    ranks = strategies["strategies"].get("lowrank", {}).pop("ranks", [])
    strategies["lowrank"] = {"ranks": ranks, "seconds": round(lr_seconds, 3)}
    strategies["phase_plan"] = plan.facts()
    strategies["strategies"]["magnitude"].update(mag.facts)
    splits = split_seconds > 0 and min(b.dim for b in boxes) <= SPLIT_MAX_INPUTS
    progress.task("final proof", 1)
    claim = Gate(charger, final_end)  # refused: the search's network is written unrounded
    unedited = shared_prefix(f, out.network) == len(f.layers)  # f's function: write_source
    out, stored = store(  # the model's dtype, proven again (the claims below are of it)
        out, original.dtype, tol, claim.proven, boxes,
        lambda g: claim.proven(g, lp_seconds=lp_seconds) if lp_seconds > 0 else np.inf,
        harder_above=tol if splits or bab_seconds > 0 else None,  # they tighten it after
    )  # fmt: skip
    if bab_seconds > 0 and out.proven > 0:  # two proofs of the same network: the tighter
        bab = charger.proven(out.network, bab_seconds=bab_seconds) + pad(out, boxes)
        out = dataclasses.replace(out, proven=min(out.proven, bab))
    if splits and out.proven > 0:
        split = charger.proven(out.network, split_seconds=split_seconds) + pad(out, boxes)
        out = dataclasses.replace(out, proven=min(out.proven, split))
    out = dataclasses.replace(out, proven=out.proven + gap)
    written = restore_structure(f, written_network(out))  # a conv still a conv: written as one
    g = drop_unused_grids(written, [None] * len(written.layers))[0]
    progress.task("sampling", 1)
    sampled = sampled_max_difference(
        original, written, boxes, proven=out.proven, deadline=start + time_limit
    )
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
        claimed,
        out.proven,
        sampled,
        time.perf_counter() - start,
        out.layers,
        data,
        labels,
        bytes_before=source_bytes(model),
        bytes_float32=4 * original.num_parameters,
        command="compress",
        proofs=proofs + charger.calls,
        proofs_late=charger.late,
        lp_rounds=out.rounds,
        **stored,
        **strategies,
        **exact_facts,
    )
    res = LossyResult(original, g, None, out.proven, sampled, doc, out.network, f, unedited)
    res = dataclasses.replace(res, reference_gap=gap)  # with the float network it started from
    return float_candidate(res, boxes, start + time_limit)  # never a larger file


__all__ = ["LossyResult", "PhasePlan", "check_tol", "compress_lossy", "plan_phases"]
