r"""Equivalence of a network with sparse layers and its channel compression, from claims.

A convolution too large to hold densely (:attr:`~exactcomp.network.Layer.sparse`) is
analysed cone by cone (:mod:`exactcomp.stability.cones`); no MILP over the whole network
can be built. Its compression only *removes* units (whole channels proven INACTIVE, dead
channels, and the pooled units after them), so equivalence follows from two checks, each
exact:

1. **The claims, re-proven cone by cone**
   (:func:`~exactcomp.verify.cone_recheck.recheck_by_cones`;
   the argument is in that module's docstring).

2. **g is f with proven-constant units removed** (:func:`match_removal`). Let ``C_k`` be the
   units of layer ``k`` of ``f`` that are constant on the box, with their exact value
   (:func:`constant_units`): 0 for a re-proven INACTIVE claim; and ``act(sum_l w_l c_l + b)``,
   in rational arithmetic, for a unit whose row reads only units of ``C_{k-1}`` (a dead
   channel, the pooled units after a removed channel, a constant channel). Layer by layer,
   with ``m_{k-1}`` the map from ``g``'s units of layer ``k-1`` to ``f``'s (the identity on
   the inputs), each row ``i`` of ``g``'s layer ``k`` must equal, entry for entry, an ``f`` row
   ``r = m_k(i)`` restricted to the columns ``m_{k-1}``, in order; every ``f`` row skipped must
   lie in ``C_k``; the output layer keeps every row. The columns ``g`` lacks read constants,
   so ``f``'s unit computes ``g``'s row plus the exact bias
   ``b'_r = b_r + sum_{l removed} w_{rl} c_l``; ``delta_i = |b^g_i - b'_r|`` is 0 unless the
   compressor folded a constant in float64. By induction (ReLU is 1-Lipschitz),
   ``|f - g| <= e_L`` on the box with ``e_0 = 0``, ``e_k = |W^g_k| e_{k-1} + delta_k``
   (:func:`bias_bound`, rounded up): in the usual case every ``delta`` is 0 and
   ``max |f - g| = 0`` exactly, with no rounding argument at all (weights are compared as
   floats, i.e. exact dyadics). EQUIVALENT when ``e_L <= tol``.

Anything else (a changed weight, a live unit removed, a cone too large to
re-check, a claim not re-proven in time) is not proven: a search for a counterexample runs
(float64 forward passes on sampled, corner and centre points; a difference counts only above
the tolerance plus a proven bound on the float64 rounding of both passes), and without one
the verdict is UNKNOWN with a one-line reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..domain import Box
from ..network import Network
from ..verdicts import StabilityReport, Verdict
from .cone_recheck import claims_of
from .falsify import candidate_points
from .result import (
    Counterexample,
    EquivalenceResult,
    EquivalenceStatus,
    RecheckResult,
)

__all__ = [
    "Match",
    "bias_bound",
    "constant_units",
    "match_removal",
    "verify_by_claims",
]


def constant_units(
    net: Network, report: StabilityReport, recheck: RecheckResult
) -> list[dict[int, Fraction]]:
    """Per layer of ``net``, the units constant on the box, with their exact value: 0 for an
    INACTIVE claim of ``report`` that ``recheck`` did not fail; and, layer by layer, a unit
    whose row reads only constant units has the value ``act(sum_l w_l c_l + b)``, computed
    in exact rational arithmetic (module docstring, 2)."""
    failed = {(f.layer, f.neuron) for f in recheck.failures}
    out: list[dict[int, Fraction]] = []
    prev: dict[int, Fraction] = {}
    for k, la in enumerate(net.layers):
        const: dict[int, Fraction] = {}
        if la.relu:
            for j in np.flatnonzero(claims_of(report, k, la.out_features) == Verdict.INACTIVE):
                if (k, int(j)) not in failed:
                    const[int(j)] = Fraction(0)
        is_const = np.zeros(la.in_features, np.int64)
        is_const[list(prev)] = 1
        w = _csr(la)
        nnz = np.diff(w.indptr)
        rows = np.repeat(np.arange(w.shape[0]), nnz)
        reads = np.bincount(rows, weights=is_const[w.indices], minlength=w.shape[0])
        for j in np.flatnonzero(np.where(nnz > 0, reads, 0) == nnz):
            j = int(j)
            if j in const:
                continue
            z = Fraction(float(la.bias[j]))
            for c, v in zip(
                w.indices[w.indptr[j] : w.indptr[j + 1]],
                w.data[w.indptr[j] : w.indptr[j + 1]],
                strict=True,
            ):
                if prev[int(c)]:
                    z += Fraction(float(v)) * prev[int(c)]
            const[j] = max(z, Fraction(0)) if la.relu else z
        out.append(const)
        prev = const
    return out


def _csr(la):
    from scipy import sparse

    w = sparse.csr_array(la.weight)
    w.eliminate_zeros()
    w.sort_indices()
    return w


def _weights(w, r: int, col_map: np.ndarray | None) -> tuple[bytes, bytes]:
    """Row ``r``'s non-zero entries, columns renamed by ``col_map`` (-1: a column ``g`` does
    not have, left out), as a comparable key."""
    lo, hi = w.indptr[r], w.indptr[r + 1]
    cols, vals = w.indices[lo:hi], w.data[lo:hi]
    if col_map is not None:
        cols = col_map[cols]
        keep = cols >= 0
        cols, vals = cols[keep], vals[keep]
    return cols.astype(np.int64).tobytes(), (vals + 0.0).tobytes()


def _folded_bias(w, bias, r: int, col_map, prev: dict[int, Fraction]) -> Fraction | None:
    """``b_r + sum`` of row ``r``'s weights times the constants of the columns ``g`` lacks
    (exact), or ``None`` when such a column is not constant."""
    z = Fraction(float(bias[r]))
    if col_map is None:
        return z
    lo, hi = w.indptr[r], w.indptr[r + 1]
    for c, v in zip(w.indices[lo:hi], w.data[lo:hi], strict=True):
        if col_map[c] < 0:
            value = prev.get(int(c))
            if value is None:
                return None
            if value:
                z += Fraction(float(v)) * value
    return z


@dataclass(frozen=True)
class Match:
    """:func:`match_removal`'s answer: ``reason`` (``None`` when ``g`` is ``f`` with constant
    units removed) and, per layer of ``g``, ``|b_g - b'|`` per unit, ``b'`` the exact bias of
    its ``f`` unit with the removed constants folded in (rounded up to float64)."""

    reason: str | None
    deltas: tuple[np.ndarray, ...] = ()


def match_removal(f: Network, g: Network, const: list[dict[int, Fraction]]) -> Match:
    """Whether ``g`` is ``f`` with units of ``const`` removed, their values folded into the
    biases of the units reading them (module docstring, 2)."""
    if len(f.layers) != len(g.layers) or f.input_size != g.input_size:
        return Match(f"g ({g.describe()}) does not have f's ({f.describe()}) layers")
    col_map: np.ndarray | None = None  # f's unit of layer k-1 -> g's, or -1
    prev: dict[int, Fraction] = {}
    last = len(f.layers) - 1
    deltas = []
    for k, (fl, gl) in enumerate(zip(f.layers, g.layers, strict=True)):
        if fl.relu != gl.relu:
            return Match(f"layer {k} has a ReLU in one network only")
        fw, gw = _csr(fl), _csr(gl)
        if col_map is not None and gw.shape[1] != int((col_map >= 0).sum()):
            return Match(f"layer {k} of g reads {gw.shape[1]} units, not the ones kept")
        mapping = np.full(fw.shape[0], -1, np.int64)
        delta = np.zeros(gw.shape[0])
        r = 0
        for i in range(gw.shape[0]):
            want, gb = _weights(gw, i, None), Fraction(float(gl.bias[i]))
            while True:  # the next f row with g's weights; a constant one also with its bias
                if r == fw.shape[0]:
                    return Match(f"unit {i} of layer {k} of g matches no unit of f")
                skip = k != last and r in const[k]
                if _weights(fw, r, col_map) == want:
                    b = _folded_bias(fw, fl.bias, r, col_map, prev)
                    if b is None:
                        return Match(f"unit {r} of layer {k} of f reads a removed live unit")
                    if b == gb or not skip:
                        break
                if not skip:
                    return Match(f"unit {r} of layer {k} of f is not in g, nor constant")
                r += 1
            d = abs(gb - b)
            delta[i] = float(d) if float(d) >= d else np.nextafter(float(d), np.inf)
            mapping[r] = i
            r += 1
        if any(k == last or j not in const[k] for j in range(r, fw.shape[0])):
            return Match(f"units of layer {k} of f missing from g are not constant on the box")
        col_map, prev = mapping, const[k]
        deltas.append(delta)
    return Match(None, tuple(deltas))


def bias_bound(g: Network, deltas: Sequence[np.ndarray]) -> float:
    """A proven bound on ``max |f - g|`` when ``g``'s units equal ``f``'s up to bias errors
    ``deltas``: ``e_0 = 0``, ``e_k = |W_k| e_{k-1} + delta_k`` (ReLU is 1-Lipschitz), computed
    in float64 and rounded up by ``1 + 2 gamma_n`` per layer (non-negative terms)."""
    e = np.zeros(g.input_size)
    u = 2.0**-53
    for la, d in zip(g.layers, deltas, strict=True):
        if not e.any() and not d.any():
            e = np.zeros(la.out_features)
            continue
        n = int(np.diff(_csr(la).indptr).max(initial=0)) + 2
        e = (np.asarray(la.abs_weight() @ e).ravel() + d) * (1.0 + 2.0 * n * u / (1.0 - n * u))
    return float(e.max(initial=0.0))


def _rounding(net: Network, x: np.ndarray) -> np.ndarray:
    """A proven bound on the float64 rounding error of ``net.forward(x)``, per output:
    ``sum_k gamma_{n_k} s_L(x)``, ``gamma_n = n u / (1 - n u)``, ``n_k`` the largest number of
    terms a row of layer ``k`` sums (its non-zeros plus the bias), ``s_L`` the term scale
    (:meth:`Network.term_scale`; by induction ``e_k <= |W_k| e_{k-1} + gamma_{n_k} s_k``, and
    ReLU is 1-Lipschitz), padded by 1 % for the rounding of ``s_L`` itself."""
    u = 2.0**-53
    gamma = 0.0
    for la in net.layers:
        n = int(np.diff(_csr(la).indptr).max(initial=0)) + 1
        gamma += n * u / (1.0 - n * u)
    return 1.01 * gamma * net.term_scale(x)


def _falsify(f, g, boxes, tol, outputs, seed: int) -> Counterexample | None:
    """A point where ``|f_i - g_i| > tol`` beyond float64 rounding, if sampling finds one."""
    rng = np.random.default_rng(seed)
    keep = slice(None) if outputs is None else list(outputs)
    for b in boxes:
        x = candidate_points(b, 512, rng)
        for lo in range(0, len(x), 256):
            xs = x[lo : lo + 256]
            fx, gx = f.forward(xs), g.forward(xs)
            slack = _rounding(f, xs) + _rounding(g, xs)
            d = (np.abs(fx - gx) - slack)[:, keep]
            i = int(np.argmax(d.max(axis=1)))
            if d[i].max() > tol:
                diff = float(np.abs(fx[i] - gx[i])[keep].max())
                return Counterexample(xs[i], fx[i], gx[i], diff, "sampling")
    return None


def verify_by_claims(
    f: Network,
    g: Network,
    boxes: Sequence[Box],
    certificates: StabilityReport,
    recheck: RecheckResult,
    *,
    mode: str = "linf",
    tol: float = 1e-6,
    outputs: Sequence[int] | None = None,
    seed: int = 0,
) -> EquivalenceResult:
    """Prove ``f == g`` on ``boxes`` from re-checked claims (module docstring), or find a
    counterexample (``linf``), or UNKNOWN with a one-line reason. In ``top1`` mode only an
    exact match (bound 0) is EQUIVALENT."""
    t0 = time.perf_counter()
    match = match_removal(f, g, constant_units(f, certificates, recheck))
    reason = match.reason
    bound = np.inf if reason is not None else bias_bound(g, match.deltas)
    if reason is None and not bound <= (tol if mode == "linf" else 0.0):  # top1: only f == g
        reason = (
            f"g's biases differ from f's with the removed constants folded in by up to {bound:.3g}"
        )

    def result(status, ub, lb, cex=None, why="", cause=""):
        return EquivalenceResult(
            status, mode, tol, ub, lb, cex, timings={"total": time.perf_counter() - t0},
            reason=why, cause=cause,
        )  # fmt: skip

    if reason is None:
        why = "g is f with units removed that are proven constant on the box (re-proven claims)"
        return result(EquivalenceStatus.EQUIVALENT, bound, 0.0, why=why)
    cex = _falsify(f, g, boxes, tol, outputs, seed) if mode == "linf" else None
    if cex is not None:
        return result(EquivalenceStatus.NOT_EQUIVALENT, bound, cex.difference, cex, reason)
    cause = "structure" if match.reason is not None else ""  # else: a bias bound above tol
    if not recheck.ok:
        reason += f" ({len(recheck.failures)} claims not re-proven)"
        cause = "claims"
    return result(EquivalenceStatus.UNKNOWN, bound, 0.0, why=reason, cause=cause)
