r"""The network ``compress --tol`` starts from: the exact pass's, only where it *equals* ``f``.

``compress --tol`` runs the exact compression first and proves its claim against that network
``f_e`` (:func:`exactcomp.approx.compress_lossy`; ``quantize`` of such a result the same,
:func:`exactcomp.quantization.quantize`), taking ``max |f - g| = max |f_e - g|`` on the domain.
That holds only if ``f_e = f`` there *as stored in float64*. Deleting neurons proven stably
inactive, or read by nothing, copies the remaining numbers: exact. Folds, merges of duplicates
and layers, and new biases compute new weights, which round by ``2^-53`` of the terms summed;
where those terms dwarf the outputs, so does the rounding: soak ``near-dependent`` seed 25400
(terms of 8.6e15 on outputs of 2.6e4) has an exact ``max |f - f_e| = 0.09``, and ``compress
--tol 0.01`` claimed ``proven <= 0`` with 0.09 sampled. (``compress`` itself only claims the
function up to such rounding, which ``--verify`` proves: :func:`exactcomp.api.checking.
verification_tolerance`.)

So the search starts from ``f_e`` with no cost when it is a *restriction* of ``f``
(:func:`is_restriction`: the same layers, every removed neuron 0 on the domain or read by
nothing, each layer's numbers those of ``f`` on the kept rows and columns, bit for bit, the
biases exactly); else, on a dense network, with the *gap* ``max |f - f_e|`` the verifier
proves added to every claim (``max |f - g| <= gap + max |f_e - g|``), where it is small; else
from the rewrite of the same proofs by the deleting passes alone (:data:`COPYING_PASSES`,
checked the same way); else from ``f`` itself. What the folds would have removed is then left
to the search, which charges it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.sparse as sp

from .domain import Box
from .exact_gap import kept_rows, replayed_gap, same_layers
from .network import Network
from .rewrite.pipeline import compress_network
from .rewrite.record import Reason, RewriteResult
from .rewrite.stable import remove_inactive
from .rewrite.structural import drop_dead
from .verify.equivalence import verify_equivalence

#: Of the tolerance, what the folds' proven rounding may take (else only deletions are kept).
GAP_SHARE = 0.1
#: Without a tolerance (``quantize --bits`` alone, ``top1`` without ``--tol``), the gap the
#: folds may take: the default tolerance ``verify`` allows an exact compression stored in
#: float64 (README), far below a grid of 16 bits or fewer (pensieve: 1.7e-15 in 4.7 s).
UNTOLD_GAP = 1e-6
#: Of ``compress --tol``'s time, the most that proof takes.
GAP_SECONDS = 0.05
#: At most this many products summed exactly when deleted constants are checked to cancel.
MAX_EXACT_TERMS = 200_000
#: The rewrite passes that only delete (neurons inactive on the domain, or read by nothing).
COPYING_PASSES = (drop_dead, remove_inactive)


def exact_reference(
    f: Network, done: Any, boxes: Sequence[Box], tol: float | None, time_limit: float
) -> tuple[Network, Any, float]:
    """The network the search starts from, ``done`` (the exact pass's ``CompressionResult``)
    with that network and rewrite in it (its facts are reported), and the *gap*: a proven
    bound on ``max |f - network|`` over ``boxes`` that every claim adds. A restriction has
    gap 0; a network whose folds round keeps them where their gap is proven within
    :data:`GAP_SHARE` of ``tol``: by the rewrite's identities replayed in rationals
    (:func:`~exactcomp.exact_gap.replayed_gap`: tll24's 790 duplicates and 270 constants,
    0 in 0.2-0.3 s), else, on a dense network, by the verifier in :data:`GAP_SECONDS` of
    ``time_limit`` (ACAS Xu 1_1 over prop_1: 3.9e-14 in 0.17 s, prop_3: 1.2e-14 in 0.20 s);
    else the deleting passes' rewrite (gap 0); else ``f``. ``tol`` None: the gap within
    :data:`UNTOLD_GAP`."""
    if is_restriction(f, done.rewrite):
        return done.network, done, 0.0
    most = UNTOLD_GAP if tol is None else GAP_SHARE * tol
    gap = replayed_gap(f, done.rewrite, done.stability, boxes)  # its identities, exactly
    if gap is not None and gap <= most:
        return done.network, done, gap
    if any(la.sparse for la in f.layers):  # the verifier reads dense layers only
        return f, dataclasses.replace(done, network=f, rewrite=None), 0.0
    gap = _proven_gap(f, done, boxes, most, GAP_SECONDS * time_limit)
    if gap <= most:
        return done.network, done, gap
    copied = compress_network(f, done.stability, passes=COPYING_PASSES, late_passes=())
    if is_restriction(f, copied):
        return (
            copied.network,
            dataclasses.replace(done, network=copied.network, rewrite=copied),
            0.0,
        )
    return f, dataclasses.replace(done, network=f, rewrite=None), 0.0


def _proven_gap(f: Network, done: Any, boxes: Sequence[Box], tol: float, seconds: float) -> float:
    """The largest upper bound :func:`~exactcomp.verify.equivalence.verify_equivalence`
    proves for ``max |f - g|`` on each box (``g = done.network``), asked at ``tol``; ``inf``
    where it proves none or the ``seconds`` run out. ``f``'s verdicts are the exact pass's
    own (``known_f``): ``g`` rests on them already, so the gap adds no trust, and ``verify``
    skips ``f``'s analysis (ACAS Xu 1_1 over prop_1: 4.9 s -> 0.17 s)."""
    end, gap = time.perf_counter() + seconds, 0.0
    for box in boxes:
        left = end - time.perf_counter()
        if not (tol > 0 and left > 0):
            return np.inf
        res = verify_equivalence(
            f, done.network, box, tol=tol, time_limit=left, known_f=done.stability
        )
        gap = max(gap, float(res.upper_bound))
    return gap


def is_restriction(f: Network, rewrite: RewriteResult | None) -> bool:
    r"""True when ``rewrite.network`` is ``f`` with neurons deleted, nothing else recomputed.

    Layer by layer (the same layers and ReLU flags): each deleted neuron of a ReLU layer is
    ``inactive`` (0 on the domain, proven), or read by nothing (its column of the next layer
    is 0), or reads none of the kept units below, so that its value is a constant ``relu(b +
    \sum_j w_j v_j)`` over the deleted units ``j`` below with constant values ``v_j``
    (``constant`` units; a max-pool level's ``a + relu(b - a)`` over removed channels);
    an affine layer may lose rows only of that kind too. Each kept row's weights are
    ``f``'s on the kept columns, bit for bit, and its bias is ``f``'s plus ``\sum_j w_j
    v_j`` *exactly* (rational arithmetic: a positive constant folded into a bias rounds)."""
    if not same_layers(f, rewrite):
        return False
    g = rewrite.network
    fates = rewrite.neuron_map
    cols, values = np.arange(f.input_size), {}  # kept units below; deleted ones' constants
    for k, (a, b) in enumerate(zip(f.layers, g.layers, strict=True)):
        n = a.out_features
        reads_kept = np.asarray(abs(_restricted(a.weight, _all(a), cols)).sum(axis=1)).ravel() > 0
        shift = _shifts(a, values)
        if shift is None:
            return False
        if a.relu:
            rows = kept_rows(fates, k, n)
        else:
            rows = _all(a) if b.out_features == n else np.flatnonzero(reads_kept)
        if rows is None or rows.size != b.out_features:
            return False
        kept = np.zeros(n, dtype=bool)
        kept[rows] = True
        nxt = f.layers[k + 1] if k + 1 < len(f.layers) else None
        read = None if nxt is None else np.asarray(abs(nxt.weight).sum(axis=0)).ravel() > 0
        values = {}
        for i in np.flatnonzero(~kept).tolist():
            if a.relu and fates[(k, i)].reason == Reason.INACTIVE:
                continue  # 0 on the domain
            if read is not None and not read[i]:
                continue  # read by nothing
            if reads_kept[i]:
                return False
            v = Fraction(float(a.bias[i])) + shift.get(i, Fraction(0))
            v = max(v, Fraction(0)) if a.relu else v
            if v != 0:
                values[i] = v
        if not _same(_restricted(a.weight, rows, cols), b.weight):
            return False
        bias = np.asarray(a.bias)[rows]
        new = np.asarray(b.bias)
        if any(
            Fraction(float(new[t])) != Fraction(float(bias[t])) + shift.get(int(r), Fraction(0))
            for t, r in enumerate(rows.tolist())
            if shift.get(int(r), 0) != 0 or new[t] != bias[t]
        ):
            return False
        cols = rows
    return True


def _shifts(layer, values: dict) -> dict[int, Fraction] | None:
    r"""Per row of ``layer``, ``\sum_j w_j v_j`` over the deleted units ``j`` below with
    constant values ``v_j``, exactly (rows where it is not 0); ``None`` past
    :data:`MAX_EXACT_TERMS` products."""
    if not values:
        return {}
    units = sorted(values)
    m = sp.coo_matrix(_restricted(layer.weight, _all(layer), np.array(units)))
    if m.nnz > MAX_EXACT_TERMS:
        return None
    sums: dict[int, Fraction] = {}
    for r, c, w in zip(m.row.tolist(), m.col.tolist(), m.data.tolist(), strict=True):
        sums[r] = sums.get(r, Fraction(0)) + Fraction(w) * values[units[c]]
    return {r: v for r, v in sums.items() if v != 0}


def _all(layer) -> np.ndarray:
    return np.arange(layer.out_features)


def _restricted(w, rows: np.ndarray, cols: np.ndarray):
    if sp.issparse(w):
        return sp.csr_matrix(w)[rows][:, cols]
    return np.asarray(w)[np.ix_(rows, cols)]


def _same(a, b) -> bool:
    if sp.issparse(a) or sp.issparse(b):
        a, b = sp.csr_matrix(a), sp.csr_matrix(b)
        return a.shape == b.shape and (a != b).nnz == 0
    return a.shape == np.shape(b) and np.array_equal(a, np.asarray(b))
