r"""The network a lossy command started from, as a candidate of what it writes: never a larger file.

``compress --tol`` and ``quantize`` start from the exact pass's network ``f_e`` (proven within
its gap of ``f``: :mod:`exactcomp.exact_reference`), or from ``f``. What they then write (the
search's edits, a quantised copy) can take *more* bytes than ``f_e`` written as it is:
``quantize --bits 8`` of VNN-COMP's tll24 (a lattice, 12,634 nonzero weights in matrices of
914,053 entries) stores dense int8 matrices, 777,588 B, where its exact pass's float32
network takes about 86 KB (RESULTS.md "audit24", "lossy26"). A user given a larger file for a
lossy tolerance than for none sees the fault at once.

So each command also builds :func:`float_candidate`: ``f_e`` rounded to the model's dtype,
its claim the gap plus the proven effect of that rounding: the smaller of
:func:`~exactcomp.rewrite.storage.rounding_moves` (the actual errors through
:func:`~exactcomp.tolerances.stored_rounding_bound`, interval magnitudes: tll24 0.049) and,
where the command proved it (``LossyResult.started_from``: ``quantize``'s charger, the proof
``compress --tol`` gives its stored rounding, :func:`~exactcomp.rewrite.storage.store`; tll24
1.7e-05), the differential bound of the same rounded network against ``f_e``; attached to
the result as its ``alternative`` where that claim is within the command's ``tol``.
:meth:`LossyResult.save <exactcomp.lossy_result.LossyResult.save>` writes the result, then
the candidate beside it where its nonzero weights alone
(:func:`~exactcomp.lossy_result.least_bytes`) would take fewer bytes, and keeps the smaller
file in the target's own format; the report then describes what was written (its claim,
sampled difference, sizes) and ``written_choice`` names both
(:func:`~exactcomp.lossy_result.write_smaller`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .domain import Box
from .lossy_result import LossyResult, nonzero_parameters
from .network import Network
from .rewrite.kernels import restore_structure
from .rewrite.lossy import LossyOutcome
from .rewrite.storage import ROUNDED_DTYPES, holds, round_outcome, rounding_moves
from .verify.falsify import sampled_max_difference

__all__ = ["SAMPLE_POINTS", "float_candidate", "rounded_reference"]

#: Points of the candidate's sampled difference (a lower bound; its claim is a few ulps).
SAMPLE_POINTS = 512


def float_candidate(
    res: LossyResult, boxes: Sequence[Box], deadline: float | None = None
) -> LossyResult:
    """``res`` with the float network it started from attached as its ``alternative``
    (module docstring), where that network's claim is within the report's ``tol`` (None,
    ``quantize --bits`` alone: any) and it is not already what ``res`` writes; else ``res``
    unchanged."""
    f, tol = res.original, res.report.get("tol")
    ref = f if res.reference is None else res.reference
    if res.unedited and res.grids is None and res.source is None:
        return res  # res writes ref already
    net, claim = ref, float(res.reference_gap)
    if f.dtype in ROUNDED_DTYPES and not holds(ref, f.dtype):
        rounded, proven = res.started_from or (rounded_reference(ref, f.dtype), np.inf)
        if rounded is None:
            return res
        net = restore_structure(ref, rounded)  # a convolution still written as one
        claim += min(proven, rounding_moves(ref, net, boxes))
    if not np.isfinite(claim) or (tol is not None and claim > tol):
        return res
    sampled = sampled_max_difference(
        f, net, boxes, points=SAMPLE_POINTS, proven=claim, deadline=deadline
    )
    doc = dict(res.report)
    doc.update(
        proven_max_abs_diff=claim,
        sampled_max_abs_diff=sampled,
        neurons_after=net.num_neurons,
        parameters_after=nonzero_parameters(net),
        layers=[
            {"layer": k, "action": f"{net.dtype} (started from)", "bits": _bits(net.dtype)}
            for k in range(len(net.layers))
        ],
    )
    for key in ("bits_per_weight", "entropy_bits_per_weight", "weights", "graph_choice"):
        doc.pop(key, None)
    # unedited: the input file itself (f, claim 0) is written where it is smaller still
    alt = LossyResult(f, net, None, claim, sampled, doc, net, ref, unedited=True)
    alt = dataclasses.replace(alt, reference_gap=res.reference_gap)
    return dataclasses.replace(res, alternative=alt)


def rounded_reference(ref: Network, dtype: str) -> Network | None:
    """``ref`` with every weight and bias rounded to ``dtype`` (to nearest), or None where a
    number overflows it or a layer held sparse is not already in it."""
    try:
        return round_outcome(LossyOutcome(ref, 0.0, [], 0), dtype).network
    except ValueError:
        return None


def _bits(dtype: str) -> int:
    return 8 * np.dtype(dtype).itemsize
