r"""The re-check of a compressed network on sample points of the domain (``compress --check``).

The re-check is not part of any proof: every removal, fold and merge is proven on the domain
before it is made. It is a safety net against bugs in the rewrite, the writers and the proofs
themselves: ``g = compress(f)`` is evaluated beside ``f`` and any difference beyond rounding,

.. math::

    |f(x) - g(x)| > c_{abs} + c_{rel} \max(1, |f(x)|) + c_{scale} S(x),

raises :class:`~exactcomp.errors.VerificationError` (``S`` is :meth:`Network.term_scale`;
the constants are :class:`~exactcomp.tolerances.Tolerances`' ``check_*``).

Cost. Per chunk of points it evaluates ``f`` and ``g`` once each. The two other quantities it
needs come almost free:

* ``S(x)`` enters only the allowance, with a non-negative coefficient, so a point with
  ``|f(x) - g(x)| <= c_abs + c_rel max(1, |f(x)|)`` passes whatever ``S(x)`` is; ``S`` is
  computed only on the rows that fail that smaller allowance (usually none). The decision is
  the same as computing ``S`` everywhere.
* the stored copy of ``g`` (weights rounded to the file's dtype, :func:`stored`) is evaluated
  only when its values differ from ``g``'s; when every weight and bias is already
  representable in that dtype (a channel rewrite removes channels, it computes nothing new)
  it *is* ``g``, and its deviation from ``f`` is the difference already computed.

On Convnet_avgpool held sparse (23,328 x 784 convolution, then an average pool) these two cut
the re-check from four sparse passes per point to two (RESULTS.md "budget17").

Point count. ``points`` is what ``--check N`` asks for, checked in full. Without ``--check``,
the API checks up to :data:`CHECK_POINTS` points but stops drawing new chunks once the next
would end more than :data:`CHECK_SECONDS` (or the caller's deadline, whichever is sooner)
after the re-check began, never before :data:`CHECK_FLOOR` points (:data:`FLOOR_CHUNK` past
the caller's ``end``); the number checked is in the
report (``check.points``) as always. Small networks are checked on all 100,000 points in well
under a second; networks held sparse get as many as the time allows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..conv import rounded
from ..domain import Box
from ..errors import VerificationError
from ..network import Network
from ..tolerances import Tolerances, check_allowance

#: Largest ``points x width`` the re-check holds at once (128 MB of float64; ``width`` the
#: widest of the input and the layers): an image network's 100,000 points are checked in
#: chunks instead of one 2.5 GB array (or 4 GB of a 23,328-unit convolution per chunk).
CHECK_ENTRIES = 1 << 24
#: ``compress``'s re-check without ``--check``: at most this many points (``--check``'s
#: former fixed default; the digits models' all take under a second).
CHECK_POINTS = 100_000
#: ... drawn in chunks while the next is predicted (from the seconds per point measured so
#: far) to end within this many seconds of the re-check's start. Measured (RESULTS.md
#: "budget17", load 2-4): the 100,000 points take 0.3 s CPU on the digits model, 10 s CPU
#: on Convnet_avgpool held sparse after the savings above (52 s before), 50 s on
#: Convnet_maxpool; 10 s keeps the re-check under about a quarter of ``compress --tol``'s
#: default 90 s and within its exact pass's share (22.5 s).
CHECK_SECONDS = 10.0
#: ... but never fewer than this many points (a quarter of them near vertices of the box,
#: one its centre, :func:`check_points`): the first chunk, checked whatever the clock says.
CHECK_FLOOR = 2_000
#: ... except past the caller's ``end`` (``compress --tol``'s exact pass): then the floor is
#: checked in chunks of this many points and none starts past ``end`` after the first (on
#: cifar_base_kw the floor took 0.3 s CPU, 1.2 s wall at load ~5: RESULTS.md "ccsoak21").
FLOOR_CHUNK = 250


@dataclass(frozen=True, eq=False)
class SampleCheck:
    """Result of re-evaluating original and compressed networks on many points of the domain."""

    points: int
    max_abs_diff: float
    float32_max_deviation: float  # extra deviation caused by storing the result in its dtype
    #: the largest allowance the re-check could grant on the domain (:func:`rounding_allowance`)
    allowance: float = 0.0


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


def same_values(a: Network, b: Network) -> bool:
    """True when ``a`` and ``b`` have the same layers' weights and biases, entry by entry
    (``b`` e.g. :func:`stored` of ``a``): their float64 evaluations are then the same."""
    for la, lb in zip(a.layers, b.layers, strict=True):
        if la.sparse != lb.sparse or not np.array_equal(la.bias, lb.bias):
            return False
        if la.sparse and (la.weight != lb.weight).nnz:
            return False
        if not la.sparse and not np.array_equal(la.weight, lb.weight):
            return False
    return True


def check_seconds(deadline: float | None) -> float:
    """The re-check's time without ``--check``: :data:`CHECK_SECONDS`, or what is left to
    ``deadline`` (a ``time.perf_counter()`` value) when that is sooner (0 past it: the floor)."""
    if deadline is None:
        return CHECK_SECONDS
    return min(CHECK_SECONDS, max(deadline - time.perf_counter(), 0.0))


def sample_check(
    original: Network,
    compressed: Network,
    boxes: Sequence[Box],
    *,
    points: int,
    tol: Tolerances,
    seed: int = 0,
    seconds: float | None = None,
    end: float | None = None,
) -> SampleCheck:
    """Re-check ``compressed == original`` by evaluation; raise :class:`VerificationError` on a
    mismatch beyond ``check_abs + check_rel * max(1, |f(x)|) + check_scale * S(x)`` (see
    :class:`~exactcomp.tolerances.Tolerances`). ``points``: how many; with ``seconds``, at
    least :data:`CHECK_FLOOR` of them and after those only while the next chunk is predicted
    to end within ``seconds`` (see the module docstring). ``end`` (a ``time.perf_counter()``
    instant, with ``seconds``): the floor too is drawn in chunks of :data:`FLOOR_CHUNK`,
    and no chunk after the first starts past ``end`` (the count checked is ``points``)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    # the widest array a chunk makes: its points, or a layer's outputs for them
    dim = max(boxes[0].dim, *(la.out_features for la in original.layers), 1)
    per = max(1, CHECK_ENTRIES // dim)
    first = points if seconds is None else min(points, CHECK_FLOOR)
    step = per if end is None or seconds is None else min(per, FLOOR_CHUNK)
    sizes = [first] if first <= step else [step] * (first // step) + [first % step]
    rest = points - first  # wide inputs (images): checked in chunks of ``per``
    sizes += [per] * (rest // per) + [rest % per]
    kept = stored(compressed)
    kept = None if same_values(compressed, kept) else kept
    total, worst, deviation, magnitude = 0, 0.0, 0.0, 0.0
    for size in (s for s in sizes if s):
        spent = time.perf_counter() - t0
        if seconds is not None and total >= first and spent * (1 + size / total) > seconds:
            break
        if seconds is not None and end is not None and total and time.perf_counter() >= end:
            break  # the floor's chunks too, after the first
        x = check_points(boxes, size, rng)
        fx = original.forward(x)
        diff = np.abs(fx - compressed.forward(x))
        allowed = check_allowance(tol, np.abs(fx), 0.0)
        rows = np.flatnonzero((diff > allowed).any(axis=1))
        if rows.size:  # only these can fail: add their term scale (module docstring)
            allowed[rows] = check_allowance(tol, np.abs(fx[rows]), original.term_scale(x[rows]))
            bad = np.argwhere(diff[rows] > allowed[rows])
            if bad.size:
                i, j = rows[bad[0][0]], bad[0][1]
                raise VerificationError(
                    f"the compressed network differs from the original by {diff[i, j]:.3g} "
                    f"at output {j} (input row {total + i} of the re-check); this is a bug, "
                    "nothing was written"
                )
        worst = max(worst, float(diff.max(initial=0.0)))
        magnitude = max(magnitude, float(np.abs(fx).max(initial=0.0)))
        # the written (rounded) network against f(x), already computed
        if kept is not None:
            deviation = max(deviation, float(np.abs(fx - kept.forward(x)).max(initial=0.0)))
        total += len(x)
    return SampleCheck(
        points=total,
        max_abs_diff=worst,
        float32_max_deviation=worst if kept is None else deviation,
        allowance=rounding_allowance(original, boxes, magnitude, tol),
    )


def rounding_allowance(
    original: Network, boxes: Sequence[Box], magnitude: float, tol: Tolerances
) -> float:
    """The largest allowance of the re-check (:func:`~exactcomp.tolerances.check_allowance`)
    at any checked point whose ``|f(x)| <= magnitude``: ``S(x)`` (:meth:`Network.term_scale`)
    grows with ``|x|`` entry by entry, so its largest value on a box is at the point
    ``max(|lower|, |upper|)``."""
    scale = max(
        float(np.max(original.term_scale(np.maximum(np.abs(b.lower), np.abs(b.upper)))))
        for b in boxes
    )
    return float(check_allowance(tol, magnitude, scale))
