"""``verify_equivalence`` and compress-then-verify: the proofs, their budgets and tolerances."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import (
    InvalidNetworkError,
    InvalidOptionError,
    UnsupportedModelError,
)
from ..io.binding import DomainLike, ModelLike, bind_domain, load
from ..network import Network
from ..progress import SILENT, Progress
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import StabilityReport
from ..verify import EquivalenceResult, RecheckResult
from ..verify import EquivalenceStatus as EquivalenceStatus
from ..verify import recheck_certificates as _recheck_certificates
from ..verify import verify_equivalence as _verify_equivalence
from .compressing import CompressionResult, compress
from .equivalence_tolerance import default_tolerance
from .sampling import SampleCheck, stored

#: Of a ``verify`` time limit, the most the re-check of certificates may use (the proof gets
#: the rest, and never less than a tenth of the limit).
RECHECK_SHARE = 0.6


def verify_equivalence(
    f: ModelLike,
    g: ModelLike,
    domain: DomainLike,
    *,
    mode: str = "linf",
    tol: float | None = None,
    time_limit: float = 60.0,
    data: np.ndarray | None = None,
    trust_pickle: bool = False,
    progress: Progress = SILENT,
    seed: int = 0,
    certificates: StabilityReport | None = None,
    rechecked: RecheckResult | None = None,
    outputs: Sequence[int] | None = None,
    nnet_units: str = "raw",
) -> EquivalenceResult:
    """Prove ``f == g`` on the domain (``linf``: max |f - g| <= tol; ``top1``: same argmax), or
    return a counterexample re-checked in float64, or UNKNOWN with the bounds reached.

    ``tol=None``: :func:`default_tolerance` (1e-6, or for a ``g`` stored in float32 twice the
    proven bound on what rounding its weights can change). After an UNKNOWN,
    :func:`~exactcomp.api.equivalence_tolerance.suggest_tolerance` gives a value that the
    same run would prove.

    ``certificates``: the stability report of ``f`` that a compression used (e.g.
    ``CompressionResult.stability``). Its claims are first re-proven independently
    (:func:`recheck_certificates`); only if every one holds are they used, which lets a deep
    network and its compressed version be proven equal without re-deciding hard neurons.
    ``rechecked``: the result of :func:`recheck_certificates` on exactly these certificates,
    ``f`` and domain, if the caller already has it (it is then not run again).
    ``time_limit`` covers the re-check and the proof together (the proof always keeps at least
    a tenth of it, so a call ends within about 1.1 times the limit).
    ``outputs``: in ``linf`` mode, the output indices compared (default all).
    ``nnet_units``: for ``.nnet`` files, see :func:`load`."""
    if not time_limit > 0:
        raise InvalidOptionError(f"the time limit must be > 0 seconds, got {time_limit}")
    fn = load(f, trust_pickle=trust_pickle, nnet_units=nnet_units)
    gn = load(g, trust_pickle=trust_pickle, nnet_units=nnet_units)
    if (fn.input_size, fn.output_size) != (gn.input_size, gn.output_size):
        raise InvalidNetworkError(
            f"the networks differ in shape: {fn.input_size} inputs/{fn.output_size} outputs vs "
            f"{gn.input_size} inputs/{gn.output_size} outputs"
        )
    if fn.meta.get("head") != gn.meta.get("head"):
        raise InvalidNetworkError(
            f"the networks end differently: {_head_label(fn)} vs {_head_label(gn)}; the logits "
            "before a Softmax head are compared, so both must have the same head (or none)"
        )
    boxes = bind_domain(domain, fn, gn)
    if any(la.sparse for la in fn.layers + gn.layers):  # no MILP: re-proven claims, exactly
        return _verify_sparse(fn, gn, boxes, mode, tol, time_limit, certificates, rechecked,
                              outputs, seed, progress)  # fmt: skip
    kwargs: dict[str, Any] = dict(
        mode=mode, time_limit=time_limit, data=data, progress=progress, seed=seed
    )
    kwargs["tol"] = default_tolerance(gn, boxes) if tol is None else tol
    if outputs is not None:
        kwargs["outputs"] = list(outputs)
    if certificates is not None:
        t0 = time.perf_counter()
        recheck = rechecked or _recheck_certificates(
            fn,
            certificates,
            boxes if len(boxes) > 1 else boxes[0],
            time_limit=time_limit,
            progress=progress,
        )
        if recheck.ok:
            kwargs["known_f"] = certificates
        # one budget for the whole call: the proof gets what the re-check left, but never
        # less than a tenth of it (a fast exact argument needs no more)
        kwargs["time_limit"] = proof_time(time_limit, t0)
    if len(boxes) == 1:
        return _verify_equivalence(fn, gn, boxes[0], **kwargs)
    # A union of boxes: equivalent iff equivalent on each; stop at the first non-equivalence.
    # The boxes share the budget: each gets an equal part of what is left when it starts.
    results = []
    end = time.perf_counter() + kwargs["time_limit"]
    for i, b in enumerate(boxes):
        kwargs["time_limit"] = max(end - time.perf_counter(), 0.01) / (len(boxes) - i)
        res = _verify_equivalence(fn, gn, b, **kwargs)
        if res.status.name != "EQUIVALENT":
            return res
        results.append(res)
    return max(results, key=lambda r: r.upper_bound)


def _verify_sparse(fn, gn, boxes, mode, tol, time_limit, certificates, rechecked, outputs,
                   seed, progress) -> EquivalenceResult:  # fmt: skip
    """:func:`verify_equivalence` for networks with sparse layers: only from certificates,
    re-proven cone by cone, and ``g`` checked to be ``f`` with proven-zero units removed
    (:mod:`exactcomp.verify.sparse`)."""
    from ..verify.cone_recheck import recheck_by_cones
    from ..verify.sparse import verify_by_claims

    if certificates is None:
        for net, name in ((fn, "the first"), (gn, "the second")):
            refuse_sparse(net, f"{name} network", "proving equivalence without certificates")
    recheck = rechecked or recheck_by_cones(
        fn, certificates, boxes, time_limit=time_limit, progress=progress
    )
    tol = DEFAULT.equivalence if tol is None else tol
    return verify_by_claims(
        fn, gn, boxes, certificates, recheck, mode=mode, tol=tol, outputs=outputs, seed=seed
    )


def proof_time(time_limit: float, t0: float) -> float:
    """Seconds left for the proof of a call limited to ``time_limit`` that started at
    ``t0`` (``time.perf_counter()``) and re-checked certificates first: what the re-check
    left, but never less than a tenth of the limit (a fast exact argument needs no more), so
    a call ends within about 1.1 times its limit."""
    return max(time_limit - (time.perf_counter() - t0), 0.1 * time_limit)


@dataclass(frozen=True, eq=False)
class Verification:
    """What :func:`verify_with_certificates` returns: the verdict, and the re-check of the
    certificates it was given (None without them)."""

    result: EquivalenceResult
    recheck: RecheckResult | None = None


def verify_with_certificates(
    f: ModelLike,
    g: ModelLike,
    domain: DomainLike,
    *,
    certificates: StabilityReport | None = None,
    time_limit: float = 60.0,
    progress: Progress = SILENT,
    trust_pickle: bool = False,
    nnet_units: str = "raw",
    **options: Any,
) -> Verification:
    """:func:`verify_equivalence` of ``f`` and ``g`` under one time limit, after re-proving
    ``certificates`` (claims about ``f``, e.g. from :func:`exactcomp.report.read_certificates`)
    with at most :data:`RECHECK_SHARE` of it; the proof gets what is left, and never less
    than a tenth. ``options``: those of :func:`verify_equivalence` (``mode``, ``tol``,
    ``outputs``, ``data``, ``seed``). What ``exactcomp verify`` runs."""
    if not time_limit > 0:
        raise InvalidOptionError(f"the time limit must be > 0 seconds, got {time_limit}")
    f = load(f, trust_pickle=trust_pickle, nnet_units=nnet_units)
    g = load(g, trust_pickle=trust_pickle, nnet_units=nnet_units)
    t0 = time.perf_counter()
    recheck = None
    if certificates is not None:  # re-proven first, within the same overall limit
        recheck = recheck_certificates(
            f,
            certificates,
            domain,
            time_limit=RECHECK_SHARE * time_limit,
            progress=progress,
        )
    result = verify_equivalence(
        f,
        g,
        domain,
        time_limit=proof_time(time_limit, t0),
        progress=progress,
        certificates=certificates,
        rechecked=recheck,
        **options,
    )
    return Verification(result, recheck)


def verification_budget(stability: StabilityReport) -> float:
    """Seconds to re-prove the certificates of a compression before proving it equivalent:
    re-proving from weaker, independent bounds costs more than proving, so four times the
    MILP time of the analysis, and at least 60 s."""
    return max(60.0, 4.0 * float(stability.stats.get("seconds_milp", 0.0)))


@dataclass(frozen=True, eq=False)
class CheckedCompression:
    """What :func:`compress_verified` returns: the compression, the network the file will
    hold (its weights rounded to the written dtype), and with ``verify`` the re-check of every
    stability claim, the equivalence verdict of the written network and the tolerance derived
    from rounding (:func:`verification_tolerance`)."""

    compression: CompressionResult
    written: Network
    recheck: RecheckResult | None = None
    verdict: EquivalenceResult | None = None
    rounding_tol: float | None = None

    @property
    def ok(self) -> bool:
        """True unless a verification ran and did not prove the written network."""
        if self.verdict is None:
            return True
        return self.verdict.status.name == "EQUIVALENT" and bool(self.recheck and self.recheck.ok)


def compress_verified(
    model: ModelLike,
    domain: DomainLike,
    *,
    dtype: str = "input",
    verify: bool = False,
    verify_tol: float | None = None,
    progress: Progress = SILENT,
    trust_pickle: bool = False,
    nnet_units: str = "raw",
    **options: Any,
) -> CheckedCompression:
    """:func:`compress`, then the network to write in ``dtype`` (``"input"``: the
    checkpoint's, folded weights rounded to it; ``"float64"``: exactly the network analysed),
    and with ``verify`` every stability claim re-proven independently
    (:func:`recheck_certificates`, :func:`verification_budget` seconds) and the *written*
    network proven equivalent to the original (``verify_tol``; default
    :func:`verification_tolerance`). The report gains ``dtype_written`` and, with ``verify``,
    ``certificates`` and ``verification``. What ``exactcomp compress`` runs; nothing is
    written here (check :attr:`CheckedCompression.ok`, then :func:`save` ``written``)."""
    if dtype not in ("input", "float64"):
        raise InvalidOptionError(f"dtype must be input or float64, got {dtype!r}")
    if verify_tol is not None and not verify_tol > 0:
        raise InvalidOptionError(f"the verification tolerance must be > 0, got {verify_tol}")
    net = load(model, trust_pickle=trust_pickle, nnet_units=nnet_units)
    result = compress(net, domain, progress=progress, **options)
    written = stored(result.network, None if dtype == "input" else "float64")
    if dtype == "input" and result.report.get("structure", {}).get("written") == "original":
        written = result.network  # the file's own function, unrounded: the source is written
    result.report["dtype_written"] = written.dtype
    if not verify:
        return CheckedCompression(result, written)
    recheck = recheck_certificates(
        net,
        result.stability,
        domain,
        time_limit=verification_budget(result.stability),
        progress=progress,
        trees=result.stability.trees,  # where the analysis cut: a hint, replayed
    )
    derived = verification_tolerance(default_tolerance(written, domain, exact=result.network),
                                     result.check)  # fmt: skip
    verdict = verify_equivalence(
        net,
        written,
        domain,
        tol=derived if verify_tol is None else verify_tol,
        progress=progress,
        certificates=result.stability,
        rechecked=recheck,
    )
    result.report["certificates"] = {
        "checked": recheck.checked,
        "failures": len(recheck.failures),
        "summary": recheck.summary(),
        "seconds": round(recheck.seconds, 4),
    }
    result.report["verification"] = verdict.to_json()
    return CheckedCompression(result, written, recheck, verdict, derived)


def verification_tolerance(default: float, check: SampleCheck) -> float:
    """The tolerance ``compress --verify`` proves without ``--verify-tol``: ``default``
    (:func:`default_tolerance`), or, where the re-check accepted a difference above it as
    float64 rounding (folds re-associating sums of terms that dwarf the outputs: terms of 8.6e15
    on outputs of 2.6e4 move them by an exact 0.09), the *rounding allowance* it granted,
    ``check.allowance`` (reported as ``check.rounding_allowance``). So ``compress --verify``
    proves what the re-check accepted, no more and no less, and ``exactcomp verify A B --tol``
    with the reported tolerance reaches the same verdict."""
    if check.max_abs_diff > default:
        return max(default, check.allowance)
    return default


def refuse_sparse(net: Network, what: str, task: str) -> None:
    """Refuse, in one line, a ``task`` that needs dense layers on a network with sparse ones."""
    if any(la.sparse for la in net.layers):
        raise UnsupportedModelError(
            f"{what} has convolution or max-pool layers too large to hold densely (analysed "
            f"cone by cone); {task} is not supported for such networks yet"
        )


def _head_label(net: Network) -> str:
    head = net.meta.get("head")
    return f"a {head} head" if head else "no head"


def recheck_certificates(
    model: ModelLike,
    report: StabilityReport,
    domain: DomainLike,
    *,
    time_limit: float = 60.0,
    trust_pickle: bool = False,
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
    trees: Sequence[Any] = (),
) -> RecheckResult:
    """Re-prove every stability claim of ``report`` independently of the bounds that made it,
    and re-check every instability witness; failures are listed, never hidden. ``trees``: the
    analysis's records of its input-split trees (``report.trees`` of a report made in this
    process), replayed with the re-check's own bounds (a hint only; see
    :func:`exactcomp.verify.recheck_certificates`)."""
    net = load(model, trust_pickle=trust_pickle)
    boxes = bind_domain(domain, net)
    if any(la.sparse for la in net.layers):  # too large to re-check whole: cone by cone
        from ..verify.cone_recheck import recheck_by_cones

        return recheck_by_cones(
            net, report, boxes, time_limit=time_limit, tol=tol, progress=progress
        )
    return _recheck_certificates(
        net,
        report,
        boxes if len(boxes) > 1 else boxes[0],
        time_limit=time_limit,
        tol=tol,
        progress=progress,
        trees=trees,
    )
