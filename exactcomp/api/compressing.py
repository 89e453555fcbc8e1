"""``compress`` and ``stable_neurons``: the analysis, the rewrite, the sample re-check, the report."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import io as _io
from ..domain import Box
from ..errors import InvalidOptionError, ResourceLimitError
from ..io.binding import DomainLike, ModelLike, as_domain, bind_domain, load
from ..network import Network
from ..progress import SILENT, Progress
from ..rewrite import RewriteResult, compress_network
from ..rewrite.channels import choose_structured
from ..stability import stable_neurons as _stable_neurons
from ..stability.cones import stable_by_cones
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import METHODS, StabilityReport
from ..verify import EquivalenceStatus as EquivalenceStatus
from .sampling import CHECK_POINTS, SampleCheck, check_seconds, sample_check


def save(
    network: Network,
    path: str | Path,
    *,
    inputs: Sequence[str | Path] = (),
    domain: DomainLike | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``network`` atomically in the format given by the suffix of ``path``.

    ``inputs`` are paths that must never be overwritten. Nor is the file ``network`` (or the
    network it was compressed from) was loaded from, unless ``overwrite=True``: saving a
    compressed copy there would lose the original (:class:`~exactcomp.errors.OutputPathError`).
    The file is run before it is renamed into place (onnxruntime, or torch in float64) and
    compared with ``network`` on the corners and samples of ``[-1, 1]^n`` (and, for a ``.pt``
    file, of ``domain``); nothing is written if they differ beyond rounding.
    """
    boxes = () if domain is None else as_domain(domain, network.input_size)
    _io.save(network, path, inputs=tuple(inputs), boxes=boxes, overwrite=overwrite)


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


def check_options(method: str, time_limit: float) -> None:
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
    verdicts do not depend on it, nor on the load. ``jobs`` >= 2 also deals the leaves of a
    layer's ReLU-split trees to the workers (:mod:`exactcomp.bab.beta_parts`), whose node
    budgets differ from one process's, so a hard neuron may be decided with one ``jobs`` and
    left UNDECIDED with another (every verdict is proven either way). ``deadline``: a ``time.perf_counter()``
    instant after which nothing new is started (what is left stays UNDECIDED; see
    :func:`exactcomp.stability.engine.stable_neurons`)."""
    check_options(method, time_limit)
    net = load(model, trust_pickle=trust_pickle)
    boxes = bind_domain(domain, net)
    if any(la.sparse for la in net.layers):  # too large to analyse whole: cone by cone

        def analyse(sub: Network, sub_boxes: list[Box], sub_data: np.ndarray | None):
            return _stable_neurons(
                sub, sub_boxes if len(sub_boxes) > 1 else sub_boxes[0], method=method,
                time_limit=time_limit, jobs=jobs, data=sub_data, solver=solver, tol=tol,
                seed=seed, cluster=cluster, deadline=deadline,
            )  # fmt: skip

        return stable_by_cones(
            net, boxes, analyse, data=data, progress=progress, deadline=deadline, tol=tol
        )
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
        from ..io.torch_io import to_torch_module

        return to_torch_module(self.network)


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
    check: int | None = None,
    progress: Progress = SILENT,
    tol: Tolerances | float = DEFAULT,
    seed: int = 0,
    partial: bool = False,
    cluster: str | None = None,
    nnet_units: str = "raw",
    deadline: float | None = None,
    tol_mode: str = "linf",
    analysis_end: float | None = None,
) -> Any:  # CompressionResult, or a LossyResult for a number ``tol``
    """Compress ``model`` exactly over ``domain``.

    Classifies every neuron (:func:`stable_neurons`), rewrites the network using only proven
    verdicts, and re-checks the result on ``check`` points of the domain before returning it
    (a mismatch raises :class:`VerificationError`: a bug, never a silent wrong network;
    ``check=None``: up to 100,000 points within 10 s, or ``deadline``, never fewer than
    2,000: :mod:`exactcomp.api.sampling`; ``report["check"]["points"]`` says how many).
    With ``partial=True``, a Ctrl-C during the stability analysis compresses with the verdicts
    proven so far (still exact; ``report["interrupted"]`` is True) instead of raising.
    ``cluster``: a Dask scheduler address to solve the MILPs on (see :func:`stable_neurons`).
    ``tol`` a number: certified *lossy* compression, ``max |f - g|`` proven ``<= tol`` on the
    domain (:func:`compress_lossy`, which returns a ``LossyResult``). ``tol_mode="top1"``:
    lossy, the predicted class proven unchanged on the domain (``tol`` a number caps the
    ``linf`` tolerance or may be left out; :func:`exactcomp.approx.compress_lossy`).
    A network with convolutions or pools is rewritten channel by channel as well, and the
    smaller as written of that, the position-level rewrite and the unchanged network is
    returned (:func:`~exactcomp.rewrite.channels.choose_structured`; ``report["structure"]``).
    ``nnet_units``: see :func:`load`. ``deadline``: see :func:`stable_neurons` (the neurons
    left UNDECIDED are kept, so the result is still exact), and the re-check's time.
    ``analysis_end``: where sooner, the stability analysis's own deadline instead, so that a
    caller whose ``deadline`` is the whole call's (``compress --tol``'s exact pass) keeps the
    rewrite and the re-check's floor within it: they start only after the analysis. Given,
    the steps after the analysis keep to ``deadline`` as well, each where it can stop and
    stay exact: the rewrite between two passes (then only removing the proven inactive
    neurons), the re-check's floor between chunks (``check.points`` says how many were
    checked). The structured choice's channel rewrite is made whatever the clock: on
    cifar_base_kw it is the rewrite written, and without it the exact pass removed nothing
    (RESULTS.md "clock22"). Without ``analysis_end`` they run whole (``compress --budget``:
    the analysis takes all of its budget, the rewrite comes after it).
    """
    if not isinstance(tol, Tolerances) or tol_mode != "linf":
        eps = None if isinstance(tol, Tolerances) else tol
        return compress_lossy(
            model, domain, eps, tol_mode=tol_mode, time_limit=max(time_limit, 60.0), data=data
        )
    if check is not None and not check >= 1:
        raise InvalidOptionError(f"the number of re-check points must be >= 1, got {check}")
    t0 = time.perf_counter()
    original = load(model, trust_pickle=trust_pickle, nnet_units=nnet_units)
    boxes = bind_domain(domain, original)
    ends = [t for t in (deadline, analysis_end) if t is not None]
    report = stable_neurons(
        original,
        boxes,
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
        deadline=min(ends, default=None),
    )
    sparse = any(la.sparse for la in original.layers)  # no dense position-level rewrite
    # with analysis_end the caller split its deadline: the steps after the analysis keep to it
    after = deadline if analysis_end is not None else None
    rewritten = None if sparse else compress_network(original, report, tol=tol, deadline=after)
    rewritten, structure = choose_structured(original, report, rewritten, tol)
    progress.task("re-checking on sample points", 1)
    sc = sample_check(
        original,
        rewritten.network,
        boxes,
        points=CHECK_POINTS if check is None else check,
        tol=tol,
        seed=seed + 1,
        seconds=check_seconds(deadline) if check is None else None,
        end=after if check is None else None,
    )
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


def compress_lossy(model: ModelLike, domain: DomainLike, tol: float | None, **options: Any) -> Any:
    """Certified lossy compression (``compress --tol``): :func:`compress` first, exact on the
    domain, then the lossy search on its network, the claim proven against it
    (:func:`exactcomp.approx.compress_lossy` with ``exact``; ``options`` are its own, an
    ``exact`` of the caller's included: the lossy soak's cuts its first call short)."""
    from ..approx import compress_lossy as lossy

    return lossy(model, domain, tol, **({"exact": compress} | options))


def quantize(model: ModelLike, domain: DomainLike, **options: Any) -> Any:
    """Certified quantisation (``quantize``): :func:`compress` first, exact on the domain,
    then the quantisation of its network, the claim proven against it
    (:func:`exactcomp.quantization.quantize` with ``exact``; ``options`` are its own)."""
    from ..quantization import quantize as quantise

    return quantise(model, domain, exact=compress, **options)


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
            "rounding_allowance": check.allowance,
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
