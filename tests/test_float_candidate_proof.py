"""``quantize``'s float candidate claims its float32 rounding by the command's own proof
(``LossyResult.started_from``: the charger's differential bound, as ``compress --tol``'s
stored rounding), where that is tighter than the interval-based
:func:`~exactcomp.rewrite.storage.rounding_moves`. Ground truth: exact rational outputs on a
grid of the box (the region oracle takes minutes at these widths)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import exactcomp
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.float_candidate import rounded_reference
from exactcomp.network import Network
from exactcomp.rewrite.storage import holds, rounding_moves

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
FAST = {"time_limit": 30.0, "tighten_seconds": 0.0, "split_seconds": 0.0}


def _copies(seed: int, widths: tuple[int, ...] = (2, 16, 16, 16, 2)) -> Network:
    """A float32 network whose neuron 1 of each hidden layer copies neuron 0, read with
    weights ``w (1 + 2^-20) + 2^-12`` beside ``w``: the exact pass merges the copies, and the
    merged column, exact in float64, is no float32 number (its rounding moves the outputs)."""
    rng = np.random.default_rng(seed)
    ws = [
        rng.uniform(-1, 1, (b, a)).astype(np.float32)
        for a, b in zip(widths[:-1], widths[1:], strict=True)
    ]
    bs = [rng.uniform(-0.3, 0.3, b).astype(np.float32) for b in widths[1:]]
    for k in range(len(ws) - 1):
        ws[k][1], bs[k][1] = ws[k][0], bs[k][0]
        ws[k + 1][:, 1] = ws[k + 1][:, 0] * np.float32(1 + 2**-20) + np.float32(2**-12)
    return Network.from_arrays(ws, bs, dtype="float32")


def _grid_max(f: Network, g: Network) -> Fraction:
    axis = np.linspace(-1.0, 1.0, 9)
    return max(
        abs(a - b)
        for x in np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
        for a, b in zip(exact_forward(f, x), exact_forward(g, x), strict=True)
    )


def test_the_candidate_claims_the_tighter_proof_of_its_rounding() -> None:
    """Seed 1: the charger proves the rounding within 1.97e-06 where ``rounding_moves`` gives
    2.31e-06; the candidate claims the smaller (on older code: the larger), and the claim is
    above the exact difference on the grid and within ``tol``."""
    f = _copies(1)
    res = exactcomp.quantize(f, BOX, bits=8, tol=0.5, **FAST)
    ref, alt = res.reference, res.alternative
    assert ref is not None and not holds(ref, "float32") and alt is not None
    rounded = rounded_reference(ref, "float32")
    loose = res.reference_gap + rounding_moves(ref, rounded, [BOX])
    assert alt.proven < loose
    assert alt.proven <= res.report["tol"] == 0.5
    assert _grid_max(f, alt.network) <= Fraction(alt.proven)
    assert alt.report["proven_max_abs_diff"] == alt.proven


def test_the_looser_bound_stays_where_it_is_the_smaller() -> None:
    """Seed 0: ``rounding_moves`` is the smaller there, and is claimed."""
    f = _copies(0)
    res = exactcomp.quantize(f, BOX, bits=8, **FAST)
    ref, alt = res.reference, res.alternative
    rounded = rounded_reference(ref, "float32")
    moves = rounding_moves(ref, rounded, [BOX])
    assert res.started_from is not None and alt is not None
    assert alt.proven == res.reference_gap + min(moves, res.started_from[1])
    assert _grid_max(f, alt.network) <= Fraction(alt.proven)
