"""The public Python API: ``compress``, ``stable_neurons``, ``verify_equivalence``, ``load``, ``save``.

Each function accepts a model as a :class:`~exactcomp.network.Network`, an in-memory
``torch.nn.Module``, or a path to a checkpoint (``.pt``/``.pth``/``.onnx``/``.nnet``), and a
domain as a :class:`~exactcomp.domain.Box`, a sequence of boxes (their union), or a pair
``(lo, hi)`` of numbers meaning ``[lo, hi]^n``. The CLI is a thin layer over these.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import io as _io
from .conv import rounded
from .domain import Box
from .errors import (
    InvalidDomainError,
    InvalidNetworkError,
    InvalidOptionError,
    ResourceLimitError,
    UnsupportedModelError,
    VerificationError,
)
from .io.binding import DomainLike, ModelLike, as_domain, bind_domain, load
from .network import Network
from .progress import SILENT, Progress
from .regions import RegionCount
from .rewrite import RewriteResult, compress_network
from .rewrite.channels import choose_structured
from .stability import stable_neurons as _stable_neurons
from .stability.cones import stable_by_cones
from .tolerances import DEFAULT, Tolerances, rounding_deltas, stored_rounding_bound
from .verdicts import METHODS, StabilityReport
from .verify import EquivalenceResult, RecheckResult
from .verify import EquivalenceStatus as EquivalenceStatus
from .verify import recheck_certificates as _recheck_certificates
from .verify import verify_equivalence as _verify_equivalence


def __getattr__(name: str) -> Any:
    """Names also public here, for scripts and benchmarks, which use exactcomp through this
    module only; imported on first use (they would cost every command's start-up):
    certified lossy compression and quantisation (``compress_lossy``, ``quantize``,
    ``LossyResult``: :mod:`exactcomp.approx`), the proven and the sampled ``max |f - g|``
    (``Charger``, ``sampled_max_difference``: :mod:`exactcomp.verify.charge`), a plain
    quantisation with no proof (``quantize_network``) and VNN-LIB properties
    (``read_vnnlib``)."""
    if name in ("compress_lossy", "quantize", "LossyResult", "TIGHTEN_SECONDS"):
        from . import approx as module
    elif name == "quantize_network":
        from .rewrite import quantize as module
    elif name in ("Charger", "sampled_max_difference"):
        from .verify import charge as module
    elif name == "read_vnnlib":
        from .io import vnnlib as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


#: Of a ``verify`` time limit, the most the re-check of certificates may use (the proof gets
#: the rest, and never less than a tenth of the limit).
RECHECK_SHARE = 0.6


def save(
    network: Network,
    path: str | Path,
    *,
    inputs: Sequence[str | Path] = (),
    domain: DomainLike | None = None,
) -> None:
    """Write ``network`` atomically in the format given by the suffix of ``path``.

    ``inputs`` are paths that must never be overwritten (the model the network came from).
    The file is run before it is renamed into place (onnxruntime, or torch in float64) and
    compared with ``network`` on the corners and samples of ``[-1, 1]^n`` (and, for a ``.pt``
    file, of ``domain``); nothing is written if they differ beyond rounding.
    """
    boxes = () if domain is None else as_domain(domain, network.input_size)
    _io.save(network, path, inputs=tuple(inputs), boxes=boxes)


def memory_estimate(net: Network) -> int:
    """Bytes the analysis needs at its peak, roughly: the witness pool (about 3,000 inputs'
    pre-activations of every neuron) plus the linear-bound back-substitution matrices of the
    widest layer (lower and upper, positive and negative parts)."""
    widths = [layer.out_features for layer in net.layers]
    fan_in = [net.input_size] + widths[:-1]
    widest_prefix = max(max(w, f) for w, f in zip(widths, fan_in, strict=True))
    pool = 3 * 1024 * sum(widths)
    crown = 4 * max(widths) * widest_prefix
    return 8 * (pool + crown)


def check_memory(net: Network, available: int | None = None) -> None:
    """Fail early, with an estimate, when ``net`` would need more than half the memory."""
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = memory_estimate(net)
    if need > available // 2:
        raise ResourceLimitError(
            f"the network ({net.describe()}, {net.num_neurons} neurons) needs about "
            f"{need / 2**30:.1f} GiB for its bounds, more than half of the {available / 2**30:.1f} GiB "
            "of memory here; run it on a larger machine"
        )


def _check_options(method: str, time_limit: float) -> None:
    if method not in METHODS:
        raise InvalidOptionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not time_limit > 0:
        raise InvalidOptionError(f"the time limit must be > 0 seconds, got {time_limit}")


def stable_neurons(
    model: ModelLike,
    domain: DomainLike,
    *,
    method: str = "fast",
    time_limit: float = 10.0,
    jobs: int | None = None,
    data: np.ndarray | None = None,
    solver: str = "highs",
    trust_pickle: bool = False,
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
    seed: int = 0,
    partial: bool = False,
    cluster: str | None = None,
    deadline: float | None = None,
) -> StabilityReport:
    """Classify every ReLU neuron of ``model`` over ``domain`` as stably active/inactive,
    unstable or undecided, each verdict with its proof kind.

    With ``partial=True`` a Ctrl-C returns the verdicts proven so far (the rest UNDECIDED)
    instead of raising ``KeyboardInterrupt``. ``cluster``: the address of a Dask scheduler
    (``"tcp://host:8786"``; ``pip install 'exactcomp[cluster]'``) to solve the MILPs on; the
    verdicts do not depend on it, nor on ``jobs``. ``deadline``: a ``time.perf_counter()``
    instant after which nothing new is started (what is left stays UNDECIDED; see
    :func:`exactcomp.stability.engine.stable_neurons`)."""
    _check_options(method, time_limit)
    net = load(model, trust_pickle=trust_pickle)
    boxes = bind_domain(domain, net)
    if any(la.sparse for la in net.layers):  # too large to analyse whole: cone by cone

        def analyse(sub: Network, sub_boxes: list[Box], sub_data: np.ndarray | None):
            return _stable_neurons(
                sub, sub_boxes if len(sub_boxes) > 1 else sub_boxes[0], method=method,
                time_limit=time_limit, jobs=jobs, data=sub_data, solver=solver, tol=tol,
                seed=seed, cluster=cluster, deadline=deadline,
            )  # fmt: skip

        return stable_by_cones(net, boxes, analyse, data=data, progress=progress)
    check_memory(net)
    return _stable_neurons(
        net,
        boxes if len(boxes) > 1 else boxes[0],
        method=method,
        time_limit=time_limit,
        jobs=jobs,
        data=data,
        solver=solver,
        progress=progress,
        tol=tol,
        seed=seed,
        partial=partial,
        cluster=cluster,
        deadline=deadline,
    )


@dataclass(frozen=True, eq=False)
class SampleCheck:
    """Result of re-evaluating original and compressed networks on many points of the domain."""

    points: int
    max_abs_diff: float
    float32_max_deviation: float  # extra deviation caused by storing the result in its dtype


@dataclass(frozen=True, eq=False)
class CompressionResult:
    """What :func:`compress` returns: the smaller network, its proofs, and a JSON-able report."""

    original: Network
    network: Network
    stability: StabilityReport
    rewrite: RewriteResult
    check: SampleCheck
    seconds: float
    report: dict

    def to_module(self):  # -> torch.nn.Sequential
        """The compressed network as a plain ``torch.nn.Sequential`` of Linear/ReLU, with
        Conv2d and pool modules for its convolutions and pools (then the Softmax/LogSoftmax
        head, if the model ended with one)."""
        from .io.torch_io import to_torch_module

        return to_torch_module(self.network)


#: Largest ``points x width`` the re-check holds at once (128 MB of float64; ``width`` the
#: widest of the input and the layers): an image network's 100,000 points are checked in
#: chunks instead of one 2.5 GB array (or 4 GB of a 23,328-unit convolution per chunk).
CHECK_ENTRIES = 1 << 24


def check_points(boxes: Sequence[Box], n: int, rng: np.random.Generator) -> np.ndarray:
    """Points to re-check on: uniform in each box, plus points near random box vertices
    (where stability arguments are most often wrong), plus each box's centre."""
    per_box = max(1, n // len(boxes))
    parts = []
    for b in boxes:
        n_vert = per_box // 4
        uniform = b.sample(per_box - n_vert, rng)
        vertices = np.where(rng.random((n_vert, b.dim)) < 0.5, b.lower, b.upper)
        jitter = rng.random((n_vert, b.dim)) * 0.01 * (b.upper - b.lower)
        near = b.clip(np.where(vertices == b.lower, vertices + jitter, vertices - jitter))
        parts += [uniform, near, b.center[None, :]]
    return np.concatenate(parts)


def stored(net: Network, dtype: str | None = None) -> Network:
    """The network a saved file holds: weights rounded to ``dtype`` (default: ``net.dtype``,
    the precision of the checkpoint it came from), which becomes its dtype.

    Folding stably active neurons computes new float64 weights; a float32 file rounds them, so
    it holds a (very slightly) different function. Verify *this* network when the claim is
    about the file; ``dtype="float64"`` keeps exactly the network that was analysed."""
    name = dtype or net.dtype
    dt = np.dtype(name) if name in ("float16", "float32", "float64") else np.dtype(np.float64)
    layers = [
        type(la)(
            la.weight.astype(dt).astype(np.float64),
            la.bias.astype(dt).astype(np.float64),
            la.relu,
            rounded(la.structure, dt),
        )
        for la in net.layers
    ]
    return Network(tuple(layers), dtype=dt.name, meta=dict(net.meta))


def sample_check(
    original: Network,
    compressed: Network,
    boxes: Sequence[Box],
    *,
    points: int,
    tol: Tolerances,
    seed: int = 0,
) -> SampleCheck:
    """Re-check ``compressed == original`` by evaluation; raise :class:`VerificationError` on a
    mismatch beyond ``check_abs + check_rel * max(1, |f(x)|) + check_scale * S(x)`` (see
    :class:`~exactcomp.tolerances.Tolerances`)."""
    rng = np.random.default_rng(seed)
    # the widest array a chunk makes: its points, or a layer's outputs for them
    dim = max(boxes[0].dim, *(la.out_features for la in original.layers), 1)
    if points * dim <= CHECK_ENTRIES:
        sizes = [points]
    else:  # wide inputs (images): the same number of points, drawn and checked in chunks
        per = max(1, CHECK_ENTRIES // dim)
        sizes = [per] * (points // per) + ([points % per] if points % per else [])
    kept = stored(compressed)
    total, worst, deviation = 0, 0.0, 0.0
    for size in sizes:
        x = check_points(boxes, size, rng)
        fx = original.forward(x)
        diff = np.abs(fx - compressed.forward(x))
        allowed = (
            tol.check_abs
            + tol.check_rel * np.maximum(1.0, np.abs(fx))
            + tol.check_scale * original.term_scale(x)
        )
        bad = np.argwhere(diff > allowed)
        if bad.size:
            i, j = bad[0]
            raise VerificationError(
                f"the compressed network differs from the original by {diff[i, j]:.3g} at "
                f"output {j} (input row {total + i} of the re-check); this is a bug, nothing "
                "was written"
            )
        worst = max(worst, float(diff.max(initial=0.0)))
        # the written (rounded) network against f(x), already computed
        deviation = max(deviation, float(np.abs(fx - kept.forward(x)).max(initial=0.0)))
        total += len(x)
    return SampleCheck(points=total, max_abs_diff=worst, float32_max_deviation=deviation)


def compress(
    model: ModelLike,
    domain: DomainLike,
    *,
    method: str = "fast",
    time_limit: float = 10.0,
    jobs: int | None = None,
    data: np.ndarray | None = None,
    solver: str = "highs",
    trust_pickle: bool = False,
    check: int = 100_000,
    progress: Progress = SILENT,
    tol: Tolerances | float = DEFAULT,
    seed: int = 0,
    partial: bool = False,
    cluster: str | None = None,
    nnet_units: str = "raw",
    deadline: float | None = None,
) -> Any:  # CompressionResult, or a LossyResult for a number ``tol``
    """Compress ``model`` exactly over ``domain``.

    Classifies every neuron (:func:`stable_neurons`), rewrites the network using only proven
    verdicts, and re-checks the result on ``check`` points of the domain before returning it
    (a mismatch raises :class:`VerificationError`: a bug, never a silent wrong network).
    With ``partial=True``, a Ctrl-C during the stability analysis compresses with the verdicts
    proven so far (still exact; ``report["interrupted"]`` is True) instead of raising.
    ``cluster``: a Dask scheduler address to solve the MILPs on (see :func:`stable_neurons`).
    ``tol`` a number: certified *lossy* compression, ``max |f - g|`` proven ``<= tol`` on the
    domain (:func:`exactcomp.approx.compress_lossy`, which returns a ``LossyResult``).
    A network with convolutions or pools is rewritten channel by channel as well, and the
    smaller as written of that, the position-level rewrite and the unchanged network is
    returned (:func:`~exactcomp.rewrite.channels.choose_structured`; ``report["structure"]``).
    ``nnet_units``: see :func:`load`. ``deadline``: see :func:`stable_neurons` (the neurons
    left UNDECIDED are kept, so the result is still exact).
    """
    if not isinstance(tol, Tolerances):
        from .approx import compress_lossy

        return compress_lossy(model, domain, tol, time_limit=max(time_limit, 60.0), data=data)
    if not check >= 1:
        raise InvalidOptionError(f"the number of re-check points must be >= 1, got {check}")
    t0 = time.perf_counter()
    original = load(model, trust_pickle=trust_pickle, nnet_units=nnet_units)
    boxes = bind_domain(domain, original)
    report = stable_neurons(
        original,
        list(boxes),
        method=method,
        time_limit=time_limit,
        jobs=jobs,
        data=data,
        solver=solver,
        progress=progress,
        tol=tol,
        seed=seed,
        partial=partial,
        cluster=cluster,
        deadline=deadline,
    )
    sparse = any(la.sparse for la in original.layers)  # no dense position-level rewrite
    rewritten = None if sparse else compress_network(original, report, tol=tol)
    rewritten, structure = choose_structured(original, report, rewritten, tol)
    progress.task("re-checking on sample points", 1)
    sc = sample_check(original, rewritten.network, boxes, points=check, tol=tol, seed=seed + 1)
    progress.advance()
    seconds = time.perf_counter() - t0
    doc = build_report(
        original, rewritten, report, sc, seconds, method=method, boxes=boxes, cluster=cluster
    )
    if structure:
        doc["structure"] = structure
    return CompressionResult(
        original=original,
        network=rewritten.network,
        stability=report,
        rewrite=rewritten,
        check=sc,
        seconds=seconds,
        report=doc,
    )


def _kept_per_layer(rewritten: RewriteResult, layer: int, width: int) -> int:
    """How many neurons of original ReLU layer ``layer`` survive as ReLU neurons."""
    return sum(1 for j in range(width) if rewritten.kept(layer, j))


def build_report(
    original: Network,
    rewritten: RewriteResult,
    stability: StabilityReport,
    check: SampleCheck,
    seconds: float,
    *,
    method: str,
    boxes: Sequence[Box],
    cluster: str | None = None,
) -> dict:
    """The JSON report of a compression (documented in the README)."""
    small = rewritten.network
    layers = []
    for ls in stability.layers:
        after = _kept_per_layer(rewritten, ls.layer, ls.width)
        row = {"layer": ls.layer, "width_before": ls.width, "width_after": after}
        layers.append({**row, **ls.summary()})
    return {
        "tool": "exactcomp",
        "method": method,
        "cluster": cluster,
        "architecture_before": original.describe(),
        "architecture_after": small.describe(),
        "neurons_before": original.num_neurons,
        "neurons_after": small.num_neurons,
        "parameters_before": original.num_parameters,
        "parameters_after": small.num_parameters,
        "seconds": round(seconds, 4),
        "layers": layers,
        "passes": [r.summary() for r in rewritten.records],
        "stability_stats": {k: float(v) for k, v in stability.stats.items()},
        "check": {
            "points": check.points,
            "max_abs_diff": check.max_abs_diff,
            "stored_dtype": small.dtype,
            "stored_dtype_max_deviation": check.float32_max_deviation,
        },
        "domain": {"boxes": len(boxes), "dim": boxes[0].dim},
        "interrupted": bool(stability.stats.get("interrupted", 0)),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        # what the reader assumed or set aside (e.g. a state_dict's architecture, a head)
        "notes": list(original.meta.get("notes", ())),
        "head": original.meta.get("head"),
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    :func:`suggest_tolerance` gives a value that the same run would prove.

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
    from .verify.sparse import recheck_by_cones, verify_by_claims

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
    from rounding (:func:`default_tolerance`)."""

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
    :func:`default_tolerance`). The report gains ``dtype_written`` and, with ``verify``,
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
    )
    derived = default_tolerance(written, domain, exact=result.network)
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
    }
    result.report["verification"] = verdict.to_json()
    return CheckedCompression(result, written, recheck, verdict, derived)


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


def _stored_dtype(net: Network) -> np.dtype | None:
    """The narrower dtype ``net``'s weights are stored in exactly, or None (float64 or an
    analysed network whose folded weights are not representable in its checkpoint's dtype)."""
    if net.dtype not in ("float16", "float32"):
        return None
    dt = np.dtype(net.dtype)
    for la in net.layers:
        for arr in (la.weight, la.bias):
            with np.errstate(over="ignore"):
                if not np.array_equal(arr.astype(dt).astype(np.float64), arr):
                    return None
    return dt


def rounding_bound(net: Network, domain: DomainLike, exact: Network | None = None) -> float:
    """Proven bound on ``max |exact - net|`` over the domain, where ``net`` holds weights
    stored in a narrower dtype than float64 (a float32 file) and ``exact`` is the float64
    network that was rounded to write it (:func:`~exactcomp.tolerances.stored_rounding_bound`).

    Without ``exact``, any network whose weights round to ``net``'s is allowed (a looser
    bound, from :func:`~exactcomp.tolerances.rounding_deltas`). 0.0 when ``net`` is not stored
    in a narrower dtype."""
    from .bounds.interval import activation_bounds
    from .bounds.linear import linear_bounds

    dt = _stored_dtype(net)
    if dt is None:
        return 0.0
    layers = [(la.weight, la.bias) for la in net.layers]
    if exact is not None and exact.describe() == net.describe():
        deltas = [
            (np.abs(x.weight - la.weight), np.abs(x.bias - la.bias))
            for x, la in zip(exact.layers, net.layers, strict=True)
        ]
    else:
        deltas = [rounding_deltas(la.weight, la.bias, dt.name) for la in net.layers]
    worst = 0.0
    for box in as_domain(domain, net.input_size):
        mags = [np.maximum(np.abs(box.lower), np.abs(box.upper))]
        for layer, zb in zip(net.layers[:-1], linear_bounds(net, box), strict=False):
            lo, hi = activation_bounds(layer, zb)
            mags.append(np.maximum(np.abs(lo), np.abs(hi)))
        worst = max(worst, float(np.max(stored_rounding_bound(layers, deltas, mags))))
    return worst


def default_tolerance(
    g: ModelLike, domain: DomainLike, exact: Network | None = None, tol: Tolerances = DEFAULT
) -> float:
    """The ``linf`` tolerance :func:`verify_equivalence` uses when none is given.

    ``max(tol.equivalence, tol.rounding_factor * E)`` with ``E`` = :func:`rounding_bound` of
    ``g`` (the second, compressed network; ``exact``: the float64 network it was rounded
    from, if known). An exact compression written in float32 then passes, because rounding
    its weights moves its outputs by at most ``E`` (proven), while a difference above
    ``rounding_factor * E`` is still found. For a float64 ``g`` it is ``tol.equivalence``."""
    g = load(g)
    if any(la.sparse for la in g.layers):  # proven exactly or not at all (verify.sparse)
        return tol.equivalence
    e = rounding_bound(g, domain, exact)
    if not np.isfinite(e):
        return tol.equivalence
    return max(tol.equivalence, tol.rounding_factor * e)


def suggest_tolerance(result: EquivalenceResult) -> float | None:
    """A tolerance with which the same comparison would be proven, or None if none is known.

    Above the proven upper bound reached (the differential bound, when that is what was
    reached) and above the solver margin, with 50% room, rounded up to one significant digit.
    None for NOT_EQUIVALENT (a real difference above ``tol`` was found) or without a finite
    upper bound (give more time instead)."""
    if result.status.name != "UNKNOWN" or not np.isfinite(result.upper_bound):
        return None
    need = max(result.upper_bound, result.margin if np.isfinite(result.margin) else 0.0)
    need = 1.5 * max(need, result.tol)
    exponent = np.floor(np.log10(need))
    return float(np.ceil(need / 10**exponent) * 10**exponent)


def recheck_certificates(
    model: ModelLike,
    report: StabilityReport,
    domain: DomainLike,
    *,
    time_limit: float = 60.0,
    trust_pickle: bool = False,
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
) -> RecheckResult:
    """Re-prove every stability claim of ``report`` independently of the bounds that made it,
    and re-check every instability witness; failures are listed, never hidden."""
    net = load(model, trust_pickle=trust_pickle)
    boxes = bind_domain(domain, net)
    if any(la.sparse for la in net.layers):  # too large to re-check whole: cone by cone
        from .verify.sparse import recheck_by_cones

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
    )


def count_regions(
    model: ModelLike,
    domain: DomainLike,
    *,
    limit: int | None = None,
    jobs: int | None = 1,
    exact: bool = True,
    stability: str = "bounds",
    method: str = "fast",
    time_limit: float = 10.0,
    samples: int = 20_000,
    lines: int = 20,
    keep_cells: bool = False,
    seed: int = 0,
    trust_pickle: bool = False,
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
) -> RegionCount:
    """Count the activation regions (nonempty interior) of ``model`` over one box.

    The neurons proven stable on the box are fixed first: they never split a region, and the
    upper bound is also taken on the network exactly compressed without them. ``stability``
    picks the proofs: ``"bounds"`` (interval and linear bounds: milliseconds), ``"full"``
    (:func:`stable_neurons` with ``method``: LPs and MILPs too, what ``compress`` removes) or
    ``"none"``. ``limit`` (or Ctrl-C) stops the count, which is then a lower bound
    (``exact`` False). ``exact=False`` gives bounds and the estimate only. ``jobs``: worker
    processes for the 2-input counter. See :mod:`exactcomp.regions`.
    """
    from .regions import count_regions as _count
    from .regions.fixed import bound_verdicts, fixed_signs
    from .rewrite import fold_active, merge_duplicates, merge_linear, remove_inactive

    t0 = time.perf_counter()
    net = load(model, trust_pickle=trust_pickle)
    box = _region_box(bind_domain(domain, net), net)
    if stability not in ("none", "bounds", "full"):
        raise InvalidOptionError(f"stability must be none, bounds or full, got {stability!r}")
    fixed: list[np.ndarray] = []
    compressed = None
    if stability != "none" and net.num_neurons:
        if stability == "full":
            _check_options(method, time_limit)
            rep = _stable_neurons(
                net,
                box,
                method=method,
                time_limit=time_limit,
                jobs=jobs,
                progress=progress,
                tol=tol,
                seed=seed,
            )
        else:
            rep = bound_verdicts(net, box, tol)
        fixed = fixed_signs(rep)
        # every pass but drop_dead: an unread neuron still splits activation regions
        passes = (merge_duplicates, remove_inactive, fold_active, merge_linear)
        compressed = compress_network(net, rep, tol=tol, passes=passes).network
    counted = _count(
        net,
        box,
        fixed=fixed,
        limit=limit,
        jobs=jobs,
        exact=exact,
        keep_cells=keep_cells,
        samples=samples,
        lines=lines,
        seed=seed,
        compressed=compressed,
        progress=progress,
        tol=tol,
    )
    return replace(counted, seconds=time.perf_counter() - t0)  # stability included


def _region_box(boxes: Sequence[Box], net: Network) -> Box:
    """The one box regions are counted on; refused when it has no interior to count in."""
    if len(boxes) != 1:
        raise InvalidDomainError(
            f"regions are counted on one box; the domain has {len(boxes)} (overlapping boxes "
            "would count shared regions twice)"
        )
    box = boxes[0]
    flat = np.flatnonzero(box.upper <= box.lower)
    if flat.size == box.dim or (net.input_size == 2 and flat.size):
        raise InvalidDomainError(
            f"the box is empty inside: coordinate {int(flat[0])} has lower == upper, so no "
            "region has an interior"
        )
    return box
