r"""Every INACTIVE/ACTIVE claim about a network with sparse layers, re-proven cone by cone.

The first of the two checks of :mod:`exactcomp.verify.sparse`. For each group of
claimed neurons of ReLU layer ``k`` the prefix cone is built *from f's weights*
(:func:`~exactcomp.stability.cones.prefix_cone`), and the dense re-check
(:func:`~exactcomp.verify.recheck.recheck_certificates`: fresh interval, linear, LP,
branch-and-bound and MILP proofs, nothing taken from the report but the claim) runs on the
cone network over the projected box. The cone computes each neuron of the group exactly
as ``f`` does (see :mod:`~exactcomp.stability.cones`), so a proof on the cone is a proof
on ``f``. Layers go in order; a unit of an earlier layer leaves later cones only once
*this* re-check has proven it zero. A claimed neuron whose live inputs are all proven
zero has the constant pre-activation ``b_j`` (exactly): its claim holds iff ``b_j <= 0``
(INACTIVE) or ``b_j >= 0`` (ACTIVE), the tie a bound with margin cannot prove.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np

from ..domain import Box
from ..network import Network
from ..progress import SILENT, Progress
from ..stability.cones import cone_groups, cone_network, sparsity_patterns
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import LayerStability, StabilityReport, Verdict
from .recheck import recheck_certificates
from .result import ClaimFailure, RecheckResult

_ROUTES = ("interval", "linear", "lp", "bab", "relu_split", "milp", "witness", "constant")


def claims_of(report: StabilityReport, k: int, width: int) -> np.ndarray:
    """The claims (INACTIVE/ACTIVE) of ReLU layer ``k`` (``width`` units) in ``report``, as
    a verdict array (UNDECIDED elsewhere, and for a layer the report lacks)."""
    for ls in report.layers:
        if ls.layer == k:
            v = np.asarray(ls.verdict)
            if v.shape != (width,):
                raise ValueError(f"the report's layer {k} does not match the network's")
            return np.where(np.isin(v, (Verdict.INACTIVE, Verdict.ACTIVE)), v, Verdict.UNDECIDED)
    return np.zeros(width, np.int8)


def recheck_by_cones(
    net: Network,
    report: StabilityReport,
    boxes: Sequence[Box],
    *,
    time_limit: float = 60.0,
    tol: Tolerances = DEFAULT,
    progress: Progress = SILENT,
) -> RecheckResult:
    """Re-prove every INACTIVE/ACTIVE claim of ``report`` about ``net``, cone by cone.

    See the module docstring, step 1. The claims share one deadline, each group a share
    proportional to its claims. UNSTABLE witnesses are not re-checked here: no rewrite rests
    on them. ``checked["constant"]`` counts claims settled by a constant pre-activation."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    boxes = list(boxes)
    for b in boxes:
        b.check_size(net.input_size)
    patterns = sparsity_patterns(net)
    relu = net.relu_layers
    claims = {k: claims_of(report, k, net.layers[k].out_features) for k in relu}
    total = sum(int(np.count_nonzero(c)) for c in claims.values())
    checked = dict.fromkeys(_ROUTES, 0)
    failures: list[ClaimFailure] = []
    proven = {k: np.zeros(net.layers[k].out_features, bool) for k in relu}
    progress.task("re-checking certificates, cone by cone", total)
    left = total
    cache: dict[bytes, RecheckResult] = {}
    milps = 0
    for k in relu:
        c = claims[k]
        if not np.any(c):
            continue
        dead = {i: proven[i] & (claims[i] == Verdict.INACTIVE) for i in relu if i < k}
        todo = np.flatnonzero(c != Verdict.UNDECIDED)
        todo = todo[~_constant(net, patterns, k, todo, c, dead, proven, checked)]
        left -= len(np.flatnonzero(c != Verdict.UNDECIDED)) - len(todo)
        for group, sets in cone_groups(patterns, k, todo, dead):
            if sets is None:
                j = int(group[0])
                failures.append(ClaimFailure(k, j, Verdict(c[j]).name, False, "cone too large"))
                left -= 1
                continue
            share = max(deadline - time.perf_counter(), 0.0) * len(group) / max(left, 1)
            left -= len(group)
            res = _recheck_cone(net, sets, boxes, c[group], share, tol, cache)
            milps += res.milps
            for route, n in res.checked.items():
                checked[route] = checked.get(route, 0) + n
            bad = {f.neuron: f for f in res.failures}
            for s, j in enumerate(group):
                f = bad.get(s)
                if f is None:
                    proven[k][j] = True
                else:
                    failures.append(ClaimFailure(k, int(j), f.claimed, f.refuted, f.detail))
            progress.advance(len(group))
    failures.sort(key=lambda f: (f.layer, f.neuron))
    return RecheckResult(checked, tuple(failures), time.perf_counter() - t0, milps)


def _constant(net, patterns, k, todo, claim, dead, proven, checked) -> np.ndarray:
    """Mask of ``todo`` settled exactly: every non-zero weight reads a proven-zero unit, so
    ``z_j = b_j``; the claim holds iff ``b_j <= 0`` (INACTIVE) or ``b_j >= 0`` (ACTIVE)."""
    if k == 0 or k - 1 not in dead:
        return np.zeros(len(todo), bool)
    rows = patterns[k][todo]
    live = rows.astype(np.int64) @ (~dead[k - 1]).astype(np.int64)
    b = net.layers[k].bias[todo]
    holds = np.where(claim[todo] == Verdict.INACTIVE, b <= 0.0, b >= 0.0)
    done = (np.asarray(live).ravel() == 0) & holds
    proven[k][todo[done]] = True
    checked["constant"] += int(done.sum())
    return done


def _recheck_cone(net, sets, boxes, claim, limit, tol, cache) -> RecheckResult:
    """The dense re-check of ``claim`` (verdicts of the group, the cone's last layer) on the
    cone network of ``sets`` over the projected boxes; failures name the group position."""
    sub = cone_network(net, sets)
    inputs = sets[0]
    sub_boxes = [Box(b.lower[inputs], b.upper[inputs]) for b in boxes]
    key = _digest(sub, sub_boxes, claim)
    if key in cache:  # the same cone, boxes and claims: the same (deterministic) re-check
        res = cache[key]
        return RecheckResult(res.checked, res.failures, 0.0, 0)  # its claims, counted again
    layers = []
    for k in sub.relu_layers:
        ls = LayerStability.undecided(k, sub.layers[k].out_features)
        if k == len(sub.layers) - 1:
            ls.verdict[:] = claim
        layers.append(ls)
    rep = StabilityReport(tuple(layers), np.zeros((0, sub.input_size)))
    res = recheck_certificates(sub, rep, sub_boxes, time_limit=max(limit, 1e-3), tol=tol)
    cache[key] = res
    return res


def _digest(sub: Network, boxes: list[Box], claim: np.ndarray) -> bytes:
    h = hashlib.sha256()
    for la in sub.layers:
        h.update(repr((la.weight.shape, la.relu)).encode())
        h.update(np.ascontiguousarray(la.weight).tobytes())
        h.update(la.bias.tobytes())
    for b in boxes:
        h.update(b.lower.tobytes())
        h.update(b.upper.tobytes())
    h.update(np.asarray(claim, np.int8).tobytes())
    return h.digest()
