"""The public Python API: ``compress``, ``stable_neurons``, ``verify_equivalence``, ``load``, ``save``.

Each function accepts a model as a :class:`~exactcomp.network.Network`, an in-memory
``torch.nn.Module``, or a path to a checkpoint (``.pt``/``.pth``/``.onnx``/``.nnet``), and a
domain as a :class:`~exactcomp.domain.Box`, a sequence of boxes (their union), or a pair
``(lo, hi)`` of numbers meaning ``[lo, hi]^n``. The CLI is a thin layer over these.
"""

from __future__ import annotations

from typing import Any

from ..domain import Box
from ..errors import UnsupportedModelError
from ..io.binding import DomainLike, ModelLike, as_domain, bind_domain, load
from ..network import Network
from ..regions import RegionCount
from ..verdicts import StabilityReport
from ..verify import EquivalenceResult, EquivalenceStatus, RecheckResult
from .checking import (
    RECHECK_SHARE,
    CheckedCompression,
    Verification,
    compress_verified,
    default_tolerance,
    proof_time,
    recheck_certificates,
    refuse_sparse,
    verification_budget,
    verify_equivalence,
    verify_with_certificates,
)
from .compressing import (
    CompressionResult,
    build_report,
    check_memory,
    check_options,
    compress,
    memory_estimate,
    peak_memory_mb,
    save,
    stable_neurons,
)
from .equivalence_tolerance import rounding_bound, suggest_tolerance
from .regions import count_regions
from .sampling import CHECK_ENTRIES, SampleCheck, check_points, sample_check, stored

#: Where each part lives: :mod:`.compressing` (analysis, rewrite, report), :mod:`.sampling`
#: (the re-check on sample points),
#: :mod:`.checking` (verification and compress-then-verify), :mod:`.regions`.
__all__ = [
    "Box",
    "CHECK_ENTRIES",
    "CheckedCompression",
    "CompressionResult",
    "DomainLike",
    "EquivalenceResult",
    "EquivalenceStatus",
    "ModelLike",
    "Network",
    "RECHECK_SHARE",
    "RecheckResult",
    "RegionCount",
    "SampleCheck",
    "StabilityReport",
    "UnsupportedModelError",
    "Verification",
    "as_domain",
    "bind_domain",
    "build_report",
    "check_memory",
    "check_options",
    "check_points",
    "compress",
    "compress_verified",
    "count_regions",
    "default_tolerance",
    "load",
    "memory_estimate",
    "peak_memory_mb",
    "proof_time",
    "recheck_certificates",
    "refuse_sparse",
    "rounding_bound",
    "sample_check",
    "save",
    "stable_neurons",
    "stored",
    "suggest_tolerance",
    "verification_budget",
    "verify_equivalence",
    "verify_with_certificates",
]


def __getattr__(name: str) -> Any:
    """Names also public here, for scripts and benchmarks, which use exactcomp through this
    module only; imported on first use (they would cost every command's start-up):
    certified lossy compression and quantisation (``compress_lossy``, ``quantize``,
    ``LossyResult``: :mod:`exactcomp.approx`, :mod:`exactcomp.quantization`; the corrected quantiser's moments
    ``domain_compensation``: :mod:`exactcomp.rewrite.compensation`), the proven and the sampled ``max |f - g|``
    (``Charger``, ``sampled_max_difference``, and ``SPLIT_MAX_INPUTS``, the input count up to
    which its proofs may split the box: :mod:`exactcomp.verify.charge`), a plain
    quantisation with no proof (``quantize_network``), the bits a grid takes in the written
    file (``storage_bits``), VNN-LIB properties (``read_vnnlib``) and the low-rank candidate
    of ``compress --tol`` (the module ``lowrank``: :mod:`exactcomp.rewrite.lowrank`; also
    ``lossy`` and ``merging``, :mod:`exactcomp.rewrite.merging`)."""
    if name in ("compress_lossy", "quantize"):  # the exact passes first, then the search
        from . import compressing as module
    elif name in ("LossyResult", "TIGHTEN_SECONDS"):
        from .. import approx as module
    elif name == "domain_compensation":
        from ..rewrite import compensation as module
    elif name in ("quantize_network", "storage_bits"):
        from ..rewrite import quantize as module
    elif name in ("Charger", "sampled_max_difference", "SPLIT_MAX_INPUTS"):
        from ..verify import charge as module
    elif name == "read_vnnlib":
        from ..io import vnnlib as module
    elif name == "lowrank":
        from ..rewrite import lowrank

        return lowrank
    elif name in ("lossy", "merging"):  # the greedy search and its merge edits (soak)
        import importlib

        return importlib.import_module(f"exactcomp.rewrite.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
