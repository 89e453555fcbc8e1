"""What ``quantize`` is asked and how it splits its time: its options read, the exact pass's
and the chain's seconds on a DAG, a layer's row of the report, a result's ONNX bytes
(:mod:`exactcomp.quantization`)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from .approx import EXACT_SHARE, FINAL_SHARE, SEARCH_FLOOR, TOL_MODES, check_tol
from .errors import InvalidOptionError
from .lossy_result import LossyResult
from .rewrite.kernels import stored_weights
from .rewrite.quantize import check_bits

__all__ = ["METHODS", "chain_budget", "checked_options", "layer_action", "onnx_bytes"]

#: ``quantize``'s quantisers: ``corrected`` (bias correction and scale search on the domain,
#: :class:`~exactcomp.rewrite.compensation.Compensation`) or ``rtn`` (plain round-to-nearest).
METHODS: tuple[str, ...] = ("corrected", "rtn")


def chain_budget(time_limit: float, spent: float, *, dag: bool) -> tuple[float, float, float]:
    """Seconds of the exact pass, the least the chain's quantisation then gets, and the least
    it needs to run at all, ``spent`` seconds into a call of ``time_limit``.

    A network: :data:`~exactcomp.approx.EXACT_SHARE` of the time, and the chain at least
    ``SEARCH_FLOOR + FINAL_SHARE`` of it (past the limit only where the exact pass overran,
    as ``compress --tol``'s search). A DAG has its own graph quantised already (a result in
    hand): what is left, ``L = time_limit - spent``, is split as the network's is (the exact
    pass ``EXACT_SHARE / (EXACT_SHARE + SEARCH_FLOOR + FINAL_SHARE)`` of it), with no floor
    past the limit, and the chain is skipped where less than half its share is left
    (pensieve reached 1.1x the limit with the floor: RESULTS.md "qexact25", "lossy26")."""
    rest = SEARCH_FLOOR + FINAL_SHARE
    if not dag:
        return EXACT_SHARE * time_limit, rest * time_limit, 0.0
    left = max(time_limit - spent, 0.0)
    return EXACT_SHARE / (EXACT_SHARE + rest) * left, 0.0, rest / (EXACT_SHARE + rest) * left / 2


def onnx_bytes(res: LossyResult) -> int:
    """The bytes of ``res`` written as ONNX (in a temporary folder; its report untouched)."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "candidate.onnx"
        dataclasses.replace(res, report=dict(res.report)).save(target)
        return target.stat().st_size


def checked_options(method: str, tol_mode: str, bits: Any, tol: Any) -> tuple[Any, Any]:
    """``bits`` and ``tol`` read, or :class:`InvalidOptionError` for a bad option."""
    if method not in METHODS:
        raise InvalidOptionError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if tol_mode not in TOL_MODES:
        raise InvalidOptionError(f"--tol-mode must be linf or top1, got {tol_mode!r}")
    if bits is None and tol is None and tol_mode == "linf":
        raise InvalidOptionError("give --bits, --tol or both")
    bits = None if bits is None else check_bits(bits)
    return bits, None if tol is None else check_tol(tol, positive=True)


def layer_action(g, layer) -> str:
    """A layer's row of the report: its grid, ``pool`` (no parameter: kept exactly) or float32."""
    if g is not None:
        return "float16" if g.bits == 16 else f"{g.bits:g}-bit"
    return "float32" if stored_weights(layer) else "pool"
