"""Does the pairwise ReLU hull (:mod:`exactcomp.bounds.pair_hull`) prove neurons the triangle LP
cannot? A measurement script, not an API (from the repository root)::

    PYTHONPATH=. OPENBLAS_NUM_THREADS=1 python scripts/pair_hull_lp.py CAPTURE.pkl K N \
        [--pairs-in J[,J2...]] [--top T] [--rounds R] [--rule influence|gap] \
        [--neurons i,...] [--triples T3] [--tighten J:T:R] [--oracle] [--ideal T] [--tree N]

``CAPTURE.pkl`` comes from ``scripts/relu_split_replay.py capture`` (the engine's bounds when
the ReLU-split phase of layer ``K`` was called, and the neurons it asked about with their
sides). For the first ``N`` of those neurons (or ``--neurons``), it solves the triangle LP of
layers ``0..K-1`` (:func:`~exactcomp.bounds.prefix_lp.build_prefix_lp`, the bound read from
the duals as :func:`~exactcomp.bounds.lp.lp_layer_result` does), then the same LP plus the
pair-hull rows of all pairs among the ``T`` unstable neurons of each layer ``J`` (default 0)
with the largest score for that neuron, in ``R`` rounds (each round re-scores at the new
optimum and adds the pairs of ``T`` more neurons), and prints one JSON line per neuron: both
sound bounds of ``side * z`` (a proof needs ``<= 0``), rows added, CPU seconds (``cpu_oct``:
octagons and triples; ``cpu_pairs``: the hulls and the LP solves); then a summary line.

Octagons: on layer 0 exact (:func:`~exactcomp.bounds.pair_hull.first_layer_octagons`);
deeper, ``z_a +- z_b`` bounded by the triangle LP itself (two LPs each, dual bound plus
the solver margin, as every LP bound here).

Scores (``--rule``): ``influence``: ``|c_a| (u_a - l_a)`` with ``c`` the neuron's weights
back-substituted to layer ``J`` through the triangle's upper slopes ``u / (u - l)`` of the
layers in between (1 active, 0 inactive); ``gap``: ``|c_a| (h_a - relu(z_a))`` at the
triangle LP's optimum for that neuron (how far inside its triangle it sits).

``--triples T3``: in the first round, also the hull rows of every triple among layer 0's
``T3`` best-scored neurons (:func:`triple_rows`; needs ``0`` in ``--pairs-in``).
``--tighten J:T:R``: first, both bounds of every unstable neuron of layer ``J`` by this LP
with pairs in ``J - 1`` (top ``T``, ``R`` rounds), intersected into the engine's bounds.
``--ideal T``: instead, the engine's ideal-cut LP on those neurons, with the pair rows of
all pairs among layer 0's ``T`` most influential unstable neurons (:func:`ideal_with_pairs`).
``--tree N``: instead, per question a best-first ReLU-split tree of ``N`` node LPs, once
without and once with the root's pair rows (:func:`lp_tree`), printing its bound by nodes.
``--oracle`` (**not sound, a diagnostic**): layers ``1..K-1`` get the ranges of sampled
inputs (2,000 uniform points and a sign-gradient ascent per neuron, as "wide11"'s oracle),
and their octagons the sampled ranges of ``z_a +- z_b``: what pairs could do with exact
earlier bounds (the sampled ranges are narrower than the exact ones).
"""

from __future__ import annotations

import itertools
import json
import pickle
import sys
import time

import numpy as np

from exactcomp.api import load, read_vnnlib
from exactcomp.bounds.ideal_cuts import add_cut_rows
from exactcomp.bounds.interval import pad
from exactcomp.bounds.linear import finite_prefix_bounds
from exactcomp.bounds.lp import layer_lp
from exactcomp.bounds.pair_hull import Octagon, first_layer_octagons, pair_hull_rows
from exactcomp.bounds.prefix_lp import build_prefix_lp
from exactcomp.highs.lp import lp_min
from exactcomp.highs.margins import solver_margin
from exactcomp.tolerances import DEFAULT

sys.path.insert(0, "scripts")
from pair_hull_variants import (  # noqa: E402
    back_coefs,
    ideal_with_pairs,
    lp_tree,
    pool,
    sampled_octagons,
    triple_rows,
)


def _opt(argv: list[str], name: str, default: str) -> tuple[str, list[str]]:
    if name in argv:
        at = argv.index(name)
        return argv[at + 1], argv[:at] + argv[at + 2 :]
    return default, argv


def _sound_min(solver, lp, cost, magnitude) -> tuple[float, np.ndarray] | None:
    """A sound lower bound of ``min cost . v`` (dual bound minus the solver margin)."""
    got = lp_min(solver, lp, cost, DEFAULT, None)
    if got is None:
        return None
    bound, v = got
    return bound - float(pad(np.asarray(abs(bound)), DEFAULT)) - solver_margin(
        DEFAULT, magnitude
    ), v


def _side_bound(bound: float, sign: float, b: float) -> float:
    """``max side * z`` from a sound ``bound <= min sign * w . h`` (``sign = -side``,
    ``z = w . h + b``): ``side * z = -(sign * w . h + sign * b) <= -(bound + sign * b)``."""
    return -(bound + sign * b) + float(pad(np.asarray(abs(bound) + abs(b)), DEFAULT))


class PairLP:
    """The triangle LP of layers ``0..k-1`` (one HiGHS model) and, per question, pair rows
    added in rounds and removed after it (the module docstring's options)."""

    def __init__(self, net, box, k, pre, layers, top, rounds, rule, zs=None, triples=0) -> None:
        self.triples = triples
        self.net, self.box, self.k, self.pre, self.zs = net, box, k, pre, zs
        self.layers, self.top, self.rounds, self.rule = layers, top, rounds, rule
        self.lp = build_prefix_lp(net, box, k, pre, DEFAULT, lazy=False)
        self.solver = layer_lp(self.lp)
        self.caches: dict[int, dict[tuple[int, int], Octagon]] = {j: {} for j in layers}

    def ask(self, i: int, side: int) -> dict:
        """Sound bounds of ``max side * z_{k,i}``: the triangle LP's, then with pair rows."""
        net, lp, solver, k, pre = self.net, self.lp, self.solver, self.k, self.pre
        base_rows = lp.matrix.shape[0]
        live = lp.out_cols >= 0
        layer = net.layers[k]
        sign = -1.0 if side > 0 else 1.0  # side +1: bound max z, i.e. min -z
        cost = np.zeros(lp.matrix.shape[1])
        cost[lp.out_cols[live]] = sign * layer.weight[i][live]
        mag = max(abs(pre[k][0][i]), abs(pre[k][1][i]))
        b = float(layer.bias[i])
        t0 = time.process_time()
        got = _sound_min(solver, lp, cost, mag)
        t_tri = time.process_time() - t0
        if got is None:
            return {"neuron": i, "side": side, "failed": "triangle"}
        tri = _side_bound(got[0], sign, b)  # max side * z <= tri
        t_oct = t_pair = 0.0
        cut, pair, marks = lp, tri, []
        chosen = {j: np.zeros(0, dtype=int) for j in self.layers}
        for _ in range(self.rounds):
            if got is None or pair <= 0.0:
                break
            v = got[1]
            t1 = time.process_time()
            cols, coefs, rhss = [], [], []
            for jl in self.layers:
                relus = next(r for r in lp.relus if r.layer == jl)
                c = back_coefs(net, pre, k, i, jl)[relus.neurons]
                if self.rule == "gap":
                    gap = v[relus.h] - np.maximum(v[relus.z], 0.0)
                    score = np.abs(c) * np.maximum(gap, 0.0)
                else:
                    score = np.abs(c) * (relus.upper - relus.lower)
                score[chosen[jl]] = -1.0
                new = np.argsort(-score)[: self.top]
                new = new[score[new] > 0]
                old = chosen[jl]
                chosen[jl] = np.concatenate([old, new])
                aa, bb = np.triu_indices(chosen[jl].size, 1)
                keep = bb >= old.size  # pairs with at least one new neuron
                pa, pb = chosen[jl][aa[keep]], chosen[jl][bb[keep]]
                t2 = time.process_time()
                if self.zs is not None and jl > 0:
                    octs = sampled_octagons(self.zs[jl][:, relus.neurons], pa, pb)
                else:
                    octs = _octagons(
                        net, self.box, solver, lp, jl, relus, pa, pb, pre, self.caches[jl]
                    )
                t_oct += time.process_time() - t2
                for x, y, o in zip(pa.tolist(), pb.tolist(), octs, strict=True):
                    rows = pair_hull_rows(o, DEFAULT)
                    idx = np.array([relus.z[x], relus.z[y], relus.h[x], relus.h[y]])
                    for r in range(rows.rhs.size):
                        nz = rows.coef[r] != 0.0
                        cols.append(idx[nz])
                        coefs.append(rows.coef[r][nz])
                        rhss.append(float(rows.rhs[r]))
            if self.triples and not marks:  # first round: triples of layer 0's top neurons
                relus = next(r for r in lp.relus if r.layer == 0)
                best = chosen[0][: self.triples]
                t2 = time.process_time()
                for tri3 in itertools.combinations(best.tolist(), 3):
                    ids = relus.neurons[list(tri3)]
                    bounds = (pre[0][0][ids], pre[0][1][ids])
                    w0, c0_ = net.layers[0].weight[ids], net.layers[0].bias[ids]
                    coef, rhs = triple_rows(w0, c0_, self.box, bounds)
                    idx = np.concatenate([relus.z[list(tri3)], relus.h[list(tri3)]])
                    for r in range(rhs.size):
                        nz = coef[r] != 0.0
                        cols.append(idx[nz])
                        coefs.append(coef[r][nz])
                        rhss.append(float(rhs[r]))
                t_oct += time.process_time() - t2
            if not cols:
                break
            cut = add_cut_rows(solver, cut, cols, coefs, rhss)
            got = _sound_min(solver, cut, cost, mag)
            t_pair += time.process_time() - t1
            if got is not None:
                pair = min(pair, _side_bound(got[0], sign, b))
            marks.append([cut.matrix.shape[0] - base_rows, round(pair, 4)])
        added = cut.matrix.shape[0] - base_rows
        solver.delete_rows(base_rows, added)
        row = {"neuron": i, "side": side, "triangle": round(tri, 4), "pairs": round(pair, 4)}
        row.update(rows=added, marks=marks, cpu_tri=round(t_tri, 2))
        row.update(cpu_oct=round(t_oct, 2), cpu_pairs=round(t_pair - t_oct, 2))
        row.update(tri_exact=tri, pairs_exact=pair)
        return row


def _root_octagons(self, i: int, side: int) -> dict:
    """The octagons of the pairs among the top ``T`` neurons (gap rule) of each layer of
    ``--pairs-in`` at the root optimum of question ``(i, side)``, by ``(layer, a, b)``."""
    lp, k = self.lp, self.k
    live = lp.out_cols >= 0
    sign = -1.0 if side > 0 else 1.0
    cost = np.zeros(lp.matrix.shape[1])
    cost[lp.out_cols[live]] = sign * self.net.layers[k].weight[i][live]
    got = _sound_min(self.solver, lp, cost, 1.0)
    out = {}
    for jl in self.layers:
        relus = next(r for r in lp.relus if r.layer == jl)
        c = back_coefs(self.net, self.pre, k, i, jl)[relus.neurons]
        v = got[1]
        score = np.abs(c) * np.maximum(v[relus.h] - np.maximum(v[relus.z], 0.0), 0.0)
        best = np.argsort(-score)[: self.top]
        best = best[score[best] > 0]
        aa, bb = np.triu_indices(best.size, 1)
        pa, pb = best[aa], best[bb]
        octs = _octagons(
            self.net, self.box, self.solver, lp, jl, relus, pa, pb, self.pre, self.caches[jl]
        )
        for x, y, o in zip(pa.tolist(), pb.tolist(), octs, strict=True):
            out[(jl, int(relus.neurons[x]), int(relus.neurons[y]))] = o
    return out


PairLP.root_octagons = _root_octagons
PairLP.sound_min = staticmethod(_sound_min)
PairLP.side_bound = staticmethod(_side_bound)


def _tighten(net, box, pre, k, layers, top, rounds, rule) -> tuple[list, dict]:
    """Layer ``k``'s unstable neurons' bounds, both sides, by the pair LP of layers ``< k``;
    returns ``pre`` with them intersected in (sound: each side a sound bound)."""
    c0 = time.process_time()
    ctx = PairLP(net, box, k, pre, layers, top, rounds, rule)
    lo, hi = pre[k][0].copy(), pre[k][1].copy()
    unstable = np.flatnonzero((lo < 0) & (hi > 0))
    tri_lo, tri_hi = lo.copy(), hi.copy()
    for i in unstable.tolist():
        up, down = ctx.ask(i, 1), ctx.ask(i, -1)
        if "failed" not in up:
            hi[i] = min(hi[i], up["pairs_exact"])
            tri_hi[i] = min(tri_hi[i], up["tri_exact"])
        if "failed" not in down:
            lo[i] = max(lo[i], -down["pairs_exact"])
            tri_lo[i] = max(tri_lo[i], -down["tri_exact"])
    out = list(pre)
    out[k] = (lo, hi)
    w0, wt, wp = (pre[k][1] - pre[k][0]), (tri_hi - tri_lo), (hi - lo)
    info = {"layer": k, "unstable": int(unstable.size), "cpu": round(time.process_time() - c0, 1)}
    info.update(width_before=round(float(np.median(w0[unstable])), 4))
    info.update(width_triangle=round(float(np.median(wt[unstable])), 4))
    info.update(width_pairs=round(float(np.median(wp[unstable])), 4))
    info.update(unstable_after=int(((lo < 0) & (hi > 0)).sum()))
    return out, info


def main(argv: list[str]) -> None:
    pairs_in, argv = _opt(argv, "--pairs-in", "0")
    rounds, argv = _opt(argv, "--rounds", "1")
    top, argv = _opt(argv, "--top", "20")
    rule, argv = _opt(argv, "--rule", "influence")
    only, argv = _opt(argv, "--neurons", "")
    tighten, argv = _opt(argv, "--tighten", "")
    triples, argv = _opt(argv, "--triples", "0")
    ideal, argv = _opt(argv, "--ideal", "")
    tree, argv = _opt(argv, "--tree", "")
    oracle = "--oracle" in argv
    argv = [a for a in argv if a != "--oracle"]
    layers = [int(j) for j in pairs_in.split(",")]
    top, rounds = int(top), int(rounds)
    with open(argv[0], "rb") as f:
        calls = pickle.load(f)
    k, n = int(argv[1]), int(argv[2])
    call = next(c for c in calls if c["q"]["k"] == k)
    net = load(call["args"][0])
    box = read_vnnlib(call["args"][1], net.input_size).boxes[0]
    q = call["q"]
    neurons, sides = np.asarray(q["neurons"]), np.asarray(q["sides"])
    if only:
        want = [int(s) for s in only.split(",")]
        pick = [int(np.flatnonzero(neurons == w)[0]) for w in want]
    else:
        pick = list(range(min(n, neurons.size)))
    pre = finite_prefix_bounds(net, box, k, q["known"], DEFAULT)
    zs = None
    if oracle:  # NOT SOUND: sampled ranges of layers 1..k-1, a diagnostic only
        zs = pool(net, box, k)
        pre = [pre[0]] + [(zs[j].min(0), zs[j].max(0)) for j in range(1, k)] + [pre[k]]
    if tighten:  # --tighten J:T:R: layer J's bounds first, pairs in J-1, top T, R rounds
        jt, tt, rt = (int(x) for x in tighten.split(":"))
        pre, info = _tighten(net, box, pre, jt, [jt - 1], tt, rt, rule)
        print(json.dumps({"tighten": info}), flush=True)
    if ideal:  # --ideal T: the ideal-cut LP with pairs among T layer-0 neurons, then stop
        idx = np.asarray(pick)
        print(json.dumps(ideal_with_pairs(net, box, k, pre, neurons[idx], sides[idx], int(ideal))))
        return
    if tree:  # --tree N: the LP tree on each question, without then with the pair rows
        ctx = PairLP(net, box, k, pre, layers, top, 1, "gap")
        for p in pick:
            i, side = int(neurons[p]), int(sides[p])
            for with_pairs in (False, True):
                c0 = time.process_time()
                marks = lp_tree(ctx, i, side, int(tree), with_pairs)
                cpu = round(time.process_time() - c0, 1)
                print(json.dumps({"neuron": i, "pairs": with_pairs, "marks": marks, "cpu": cpu}))
        return
    c0 = time.process_time()
    ctx = PairLP(net, box, k, pre, layers, top, rounds, rule, zs, int(triples))
    build_cpu = time.process_time() - c0
    summary = {"asked": 0, "proven_triangle": 0, "proven_pairs": 0, "cpu_triangle": 0.0}
    summary.update(cpu_pairs=0.0, cpu_octagons=0.0, rows=0, build_cpu=round(build_cpu, 2))
    gains = []
    for p in pick:
        row = ctx.ask(int(neurons[p]), int(sides[p]))
        if "failed" in row:
            print(json.dumps(row), flush=True)
            continue
        tri, pair = row.pop("tri_exact"), row.pop("pairs_exact")
        print(json.dumps(row), flush=True)
        summary["asked"] += 1
        summary["proven_triangle"] += int(tri <= 0.0)
        summary["proven_pairs"] += int(pair <= 0.0)
        summary["cpu_triangle"] += row["cpu_tri"]
        summary["cpu_pairs"] += row["cpu_pairs"]
        summary["cpu_octagons"] += row["cpu_oct"]
        summary["rows"] += row["rows"]
        gains.append((tri - pair, tri))
    if gains:
        g = np.array(gains)
        summary["median_triangle"] = round(float(np.median(g[:, 1])), 4)
        summary["median_pairs"] = round(float(np.median(g[:, 1] - g[:, 0])), 4)
        summary["median_gain"] = round(float(np.median(g[:, 0])), 4)
        summary["median_gain_share"] = round(float(np.median(g[:, 0] / np.abs(g[:, 1]))), 4)
    for key in ("cpu_triangle", "cpu_pairs", "cpu_octagons"):
        summary[key] = round(summary[key], 2)
    out = {"summary": summary, "oracle": oracle, "k": k, "pairs_in": layers, "rounds": rounds}
    print(json.dumps({**out, "top": top, "rule": rule, "tighten": tighten, "triples": triples}))


def _octagons(net, box, solver, lp, jl, relus, pa, pb, pre, cache) -> list[Octagon]:
    """Octagons of the pairs ``(pa[i], pb[i])`` (positions in ``relus``): exact on layer 0,
    else from the triangle LP (two solves per sum or difference, cached per pair)."""
    lo, hi = relus.lower, relus.upper
    if jl == 0:
        full = first_layer_octagons(
            net.layers[0], box, relus.neurons[pa], relus.neurons[pb], pre[0], DEFAULT
        )
        return full
    out = []
    for x, y in zip(pa.tolist(), pb.tolist(), strict=True):
        if (x, y) not in cache:
            sides = []
            for s in (1.0, -1.0):
                cost = np.zeros(lp.matrix.shape[1])
                cost[relus.z[x]], cost[relus.z[y]] = 1.0, s
                mag = max(abs(lo[x]), abs(hi[x])) + max(abs(lo[y]), abs(hi[y]))
                got_lo = _sound_min(solver, lp, cost, mag)
                got_hi = _sound_min(solver, lp, -cost, mag)
                slack = float(pad(np.asarray(mag), DEFAULT))
                s_lo = lo[x] + s * (lo[y] if s > 0 else hi[y]) - slack
                s_hi = hi[x] + s * (hi[y] if s > 0 else lo[y]) + slack
                sides.append(
                    (
                        s_lo if got_lo is None else max(s_lo, got_lo[0]),
                        s_hi if got_hi is None else min(s_hi, -got_hi[0]),
                    )
                )
            cache[(x, y)] = Octagon(
                (float(lo[x]), float(hi[x])), (float(lo[y]), float(hi[y])), sides[0], sides[1]
            )
        out.append(cache[(x, y)])
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
