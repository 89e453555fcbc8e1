"""Variants measured by ``scripts/pair_hull_lp.py`` (see its docstring for the commands):
the hull of three first-layer ReLUs (``--triples``), the engine's ideal-cut LP with pair rows
(``--ideal``), the unsound sampled-bounds oracle (``--oracle``), and the back-substituted
weights its selection rules score with. A measurement script, not an API.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from scipy.spatial import ConvexHull, QhullError

from exactcomp.bounds.interval import pad
from exactcomp.bounds.pair_hull import Octagon, first_layer_octagons, pair_hull_rows
from exactcomp.tolerances import DEFAULT


def back_coefs(net, pre, k: int, i: int, j: int) -> np.ndarray:
    """Neuron ``i`` of layer ``k`` back-substituted to ``h_j`` through upper triangle slopes."""
    c = net.layers[k].weight[i].copy()
    for m in range(k - 1, j, -1):
        lo, hi = pre[m]
        lam = np.where(lo >= 0, 1.0, np.where(hi <= 0, 0.0, hi / np.maximum(hi - lo, 1e-300)))
        c = (c * lam) @ net.layers[m].weight
    return c


def ideal_with_pairs(net, box, k, pre, neurons, sides, top: int) -> dict:
    """The engine's ideal-cut LP (:func:`~exactcomp.bounds.ideal_cuts.ideal_cut_layer_result`,
    every question asked) on the prefix LP plus the pair rows of all pairs among layer 0's
    ``top`` unstable neurons of largest influence summed over the questions (each
    question's scores scaled to a maximum of 1); ``top = 0``: the cuts alone."""
    from exactcomp.bounds import ideal_cuts
    from exactcomp.bounds.ideal_cuts import ideal_cut_layer_result

    real = ideal_cuts.build_prefix_lp
    added = {"rows": 0}

    def with_pairs(net_, box_, k_, pre_, tol, lazy=False):
        lp = real(net_, box_, k_, pre_, tol, lazy=lazy)
        relus = next((r for r in lp.relus if r.layer == 0), None)
        if relus is None or top == 0:
            return lp
        score = np.zeros(relus.neurons.size)
        for i in np.asarray(neurons).tolist():
            s = np.abs(back_coefs(net, pre, k, i, 0)[relus.neurons]) * (relus.upper - relus.lower)
            score += s / max(s.max(), 1e-300)
        best = np.argsort(-score)[:top]
        aa, bb = np.triu_indices(best.size, 1)
        pa, pb = best[aa], best[bb]
        octs = first_layer_octagons(
            net.layers[0], box, relus.neurons[pa], relus.neurons[pb], pre[0], DEFAULT
        )
        r_, c_, v_, hi = [], [], [], []
        for x, y, o in zip(pa.tolist(), pb.tolist(), octs, strict=True):
            rows = pair_hull_rows(o, DEFAULT)
            idx = np.array([relus.z[x], relus.z[y], relus.h[x], relus.h[y]])
            for r in range(rows.rhs.size):
                nz = rows.coef[r] != 0.0
                r_.append(np.full(int(nz.sum()), len(hi)))
                c_.append(idx[nz])
                v_.append(rows.coef[r][nz])
                hi.append(float(rows.rhs[r]))
        extra = sp.csr_matrix(
            (np.concatenate(v_), (np.concatenate(r_), np.concatenate(c_))),
            shape=(len(hi), lp.matrix.shape[1]),
        )
        added["rows"] = len(hi)
        return replace(
            lp,
            matrix=sp.vstack([lp.matrix, extra], format="csr"),
            row_lower=np.concatenate([lp.row_lower, np.full(len(hi), -np.inf)]),
            row_upper=np.concatenate([lp.row_upper, np.array(hi)]),
        )

    ideal_cuts.build_prefix_lp = with_pairs
    try:
        c0 = time.process_time()
        res = ideal_cut_layer_result(net, box, k, pre, neurons, sides, DEFAULT, probe=False)
        cpu = time.process_time() - c0
    finally:
        ideal_cuts.build_prefix_lp = real
    idx = np.asarray(neurons)
    v = np.where(np.asarray(sides) > 0, res.upper[idx], -res.lower[idx])
    out = {"ideal_cuts_top": top, "rows": added["rows"], "asked": int(idx.size)}
    out.update(median=round(float(np.median(v)), 4), proven=int((v <= 0).sum()))
    out.update(proven_neurons=[int(j) for j in idx[v <= 0]])
    out.update(cpu=round(cpu, 1), values=[round(float(x), 4) for x in v])
    return out


_DIRS = np.array(
    [d for d in itertools.product((-1, 0, 1), repeat=3) if any(d) and d[np.flatnonzero(d)[0]] > 0],
    dtype=np.float64,
)  # the 13 directions of {-1, 0, 1}^3 up to sign


def triple_rows(w: np.ndarray, c: np.ndarray, box, known) -> tuple[np.ndarray, np.ndarray]:
    """Facets of the hull of three first-layer ReLUs ``z = w x + c`` (``w``: 3 rows) over
    the polytope ``lo_d <= d . z <= hi_d`` of the 13 directions ``d`` (exact interval sums,
    padded; unit directions also within ``known``), that involve all three neurons; each
    constant recomputed over all candidate points and padded, as for the pairs
    (:mod:`exactcomp.bounds.pair_hull`; here a 3x3 solve per vertex, error ~1e-15 relative,
    far inside the 1e-9 pad). Returns ``(coef (m, 6), rhs)`` on ``(z_1..3, h_1..3)``."""
    lo, hi = box.lower, box.upper
    dw, dc = _DIRS @ w, _DIRS @ c
    slack = pad(
        np.abs(_DIRS) @ (np.abs(w) @ np.maximum(np.abs(lo), np.abs(hi)) + np.abs(c)), DEFAULT
    )
    dlo = np.maximum(dw, 0) @ lo + np.minimum(dw, 0) @ hi + dc - slack
    dhi = np.maximum(dw, 0) @ hi + np.minimum(dw, 0) @ lo + dc + slack
    for t in range(3):  # unit directions: also the known bounds
        u = int(np.flatnonzero((np.abs(_DIRS) == np.eye(3)[t]).all(1))[0])
        dlo[u], dhi[u] = max(dlo[u], known[0][t]), min(dhi[u], known[1][t])
    normals = np.vstack([_DIRS, _DIRS, np.eye(3)])
    consts = np.concatenate([dlo, dhi, np.zeros(3)])
    combos = np.array(list(itertools.combinations(range(normals.shape[0]), 3)))
    a = normals[combos]
    ok = np.abs(np.linalg.det(a)) > 0.5
    z = np.linalg.solve(a[ok], consts[combos[ok]][..., None])[..., 0]
    scale = max(1.0, float(np.abs(consts).max()))
    proj = z @ _DIRS.T
    feas = ((proj >= dlo - 1e-9 * scale) & (proj <= dhi + 1e-9 * scale)).all(1)
    z = z[feas]
    pts = []
    for sig in itertools.product((-1.0, 1.0), repeat=3):
        s = np.array(sig)
        inq = ((s * z) >= -1e-9 * scale).all(1)
        pts.append(np.hstack([z[inq], np.where(s > 0, z[inq], 0.0)]))
    v = np.unique(np.vstack(pts), axis=0)
    none = (np.zeros((0, 6)), np.zeros(0))
    try:
        eq = ConvexHull(v).equations
    except QhullError:
        return none
    n = eq[:, :6] / np.abs(eq[:, :6]).max(1, keepdims=True)
    n = np.unique(np.round(np.where(np.abs(n) < 1e-9, 0.0, n), 12), axis=0)
    per = np.abs(n[:, [0, 3]]).max(1), np.abs(n[:, [1, 4]]).max(1), np.abs(n[:, [2, 5]]).max(1)
    n = n[(per[0] > 0) & (per[1] > 0) & (per[2] > 0) & (np.abs(n[:, 3:]).max(1) > 0)]
    if not n.shape[0]:
        return none
    return n, (n @ v.T).max(1) + pad(np.abs(n) @ np.abs(v).T, DEFAULT).max(1)


def pool(net, box, k: int) -> list[np.ndarray]:
    """Pre-activations of sampled inputs: 2,000 uniform points and a sign-gradient ascent
    from random starts per neuron and sign of layers ``1..k-1`` (wide11's oracle pool)."""
    from exactcomp.search import gradient_points

    rng = np.random.default_rng(0)
    pts = [box.sample(2000, rng)]
    for j in range(1, k):
        m = net.layers[j].out_features
        for s in (1.0, -1.0):
            for _ in range(2):
                starts = box.sample(m, rng)
                pts.append(gradient_points(net, box, j, np.arange(m), np.full(m, s), starts, 60))
    return net.preactivations(np.concatenate(pts))


def sampled_octagons(z: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> list[Octagon]:
    """NOT SOUND: octagons of sampled pre-activations (columns of ``z``), a diagnostic."""
    out = []
    for x, y in zip(pa.tolist(), pb.tolist(), strict=True):
        a, b = z[:, x], z[:, y]
        out.append(
            Octagon(
                (float(a.min()), float(a.max())),
                (float(b.min()), float(b.max())),
                (float((a + b).min()), float((a + b).max())),
                (float((a - b).min()), float((a - b).max())),
            )
        )
    return out


def lp_tree(ctx, i: int, side: int, nodes: int, with_pairs: bool) -> list[list[float]]:
    """A small best-first ReLU-split tree on ``max side * z_{k,i}`` with one triangle LP per
    node (``--tree N``): a split clips the neuron's bounds at 0 in the node's ``pre`` (the
    rebuilt LP then fixes ``h = 0`` or ``h = z``; deeper bounds stay valid on the sub-box), on
    the open neuron of largest ``|c| (h - relu(z))`` at the node's optimum. With
    ``with_pairs`` each node LP also gets the rows of the pairs ``ctx`` chose at the root
    (top ``T`` per layer of ``--pairs-in``, by the gap rule) whose two neurons are both still
    unstable there; their octagons are the root's (valid on every sub-box). Returns
    ``[nodes, bound, CPU s]`` marks (the CPU from the root's solve; the root's octagons,
    computed before, are not in it): the bound is the largest over the open leaves (a leaf whose LP
    fails keeps its parent's bound)."""
    from exactcomp.bounds.ideal_cuts import add_cut_rows
    from exactcomp.bounds.lp import layer_lp
    from exactcomp.bounds.prefix_lp import build_prefix_lp

    net, box, k = ctx.net, ctx.box, ctx.k
    layer = net.layers[k]
    sign = -1.0 if side > 0 else 1.0
    b = float(layer.bias[i])
    mag = max(abs(ctx.pre[k][0][i]), abs(ctx.pre[k][1][i]))
    octs = ctx.root_octagons(i, side) if with_pairs else {}
    w0, b0 = net.layers[0].weight, net.layers[0].bias

    def solve(pre):
        lp = build_prefix_lp(net, box, k, pre, DEFAULT, lazy=False)
        solver = layer_lp(lp)
        cost = np.zeros(lp.matrix.shape[1])
        live = lp.out_cols >= 0
        cost[lp.out_cols[live]] = sign * layer.weight[i][live]
        model = lp
        if octs:
            cols, coefs, rhss = [], [], []
            for r in lp.relus:
                pos = {int(n): p for p, n in enumerate(r.neurons)}
                for (jl, na, nb), o in octs.items():
                    if jl != r.layer or na not in pos or nb not in pos:
                        continue
                    x, y = pos[na], pos[nb]
                    rows = pair_hull_rows(o, DEFAULT)
                    idx = np.array([r.z[x], r.z[y], r.h[x], r.h[y]])
                    for coef, rhs in zip(rows.coef, rows.rhs, strict=True):
                        cols.append(idx[coef != 0])
                        coefs.append(coef[coef != 0])
                        rhss.append(float(rhs))
            if cols:
                model = add_cut_rows(solver, lp, cols, coefs, rhss)
        # a layer-0 neuron split inactive: the LP drops its row (module docstring of
        # prefix_lp), so its half-space W x + b <= 0 is added back here
        off = np.flatnonzero((pre[0][1] <= 0.0) & (ctx.pre[0][1] > 0.0))
        if off.size:
            xs = np.arange(net.input_size)
            model = add_cut_rows(
                solver, model, [xs] * off.size, list(w0[off]), [-float(b0[n]) for n in off]
            )
        got = ctx.sound_min(solver, model, cost, mag)
        if got is None:
            return None
        return ctx.side_bound(got[0], sign, b), got[1], lp

    c0 = time.process_time()
    root = solve(list(ctx.pre))
    leaves = [(root[0], list(ctx.pre), root[1], root[2])]
    marks = [[1, round(root[0], 4), round(time.process_time() - c0, 1)]]
    count = 1
    while count < nodes and leaves:
        leaves.sort(key=lambda t: -t[0])
        bound, pre, v, lp = leaves.pop(0)
        if bound <= 0.0:
            leaves.append((bound, pre, v, lp))
            break
        best, pick = -1.0, None
        for r in lp.relus:
            c = back_coefs(net, pre, k, i, r.layer)[r.neurons]
            s = np.abs(c) * np.maximum(v[r.h] - np.maximum(v[r.z], 0.0), 0.0)
            j = int(np.argmax(s)) if s.size else -1
            if j >= 0 and s[j] > best:
                best, pick = float(s[j]), (r.layer, int(r.neurons[j]))
        if pick is None:
            leaves.append((bound, pre, v, lp))
            break
        jl, n = pick
        for clip in ("inactive", "active"):
            child = list(pre)
            lo, hi = child[jl][0].copy(), child[jl][1].copy()
            if clip == "inactive":
                hi[n] = 0.0
            else:
                lo[n] = 0.0
            child[jl] = (lo, hi)
            got = solve(child)
            count += 1
            if got is None:
                leaves.append((bound, child, v, lp))
            else:
                leaves.append((min(got[0], bound), child, got[1], got[2]))
        top = max(t[0] for t in leaves)
        if count in (3, 11, 51, 101, 201, 401, 801) or count >= nodes:
            marks.append([count, round(top, 4), round(time.process_time() - c0, 1)])
    return marks
