"""Diagnose the ReLU-split questions a capture left open: proven bound against best attack.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/split_diagnose.py OUT.pkl LAYER:J[,J...] [...] \
        [--nodes N] [--restarts R] [--milp SECONDS] [--fsb K] [--fsb-steps T] [--lps L] [--starts S]

``OUT.pkl`` is a capture of ``scripts/relu_split_replay.py``. For each neuron ``j`` of layer
``k`` (the captured bounds of that layer's call) and each sign the call asked for, prints one
JSON line with:

* ``tree``: the batched tree's proven bound of ``sign * z`` after ``N`` nodes (alone, ``K``
  candidates per node for the branching rule, each child given ``T`` Adam steps before
  they are compared), and
  the largest ``sign * z`` (float64) at any ``x*`` of its nodes (the leaves' primal points);
* ``pgd``: the largest ``sign * z`` reached by projected gradient ascent from ``R`` random
  starts (torch, Adam on the box, 300 steps) and by the engine's sign-gradient ascent
  (:func:`exactcomp.search.gradient_points`) from the same starts;
* ``region``: the largest ``sign * z`` of the engine's LP region search
  (:func:`exactcomp.stability.region_search.region_search`, ``L`` LPs) from the best
  point of the Adam ascent and the ``S`` best ``x*`` of the tree;
* ``milp``: the largest ``sign * z`` at the incumbents of the layer's MILP maximising
  ``sign * z`` for ``SECONDS`` (HiGHS, ``mode="optimal"``), and whether it was proven;
* ``prefix`` (``--prefix SECONDS``): the same MILP after the unstable neurons of layers
  ``1..k-1`` are bounded again, layer by layer, by the ideal-cut LPs on both sides
  (:func:`~exactcomp.bounds.ideal_cuts.ideal_cut_layer_result`, ``probe=False``) and, with
  ``--tighten-milp S``, by a MILP per side (``S`` CPU seconds each, dual bound plus margin);
  prints the binaries and bound widths per layer before and after, the CPU of each step,
  and the MILP's status, dual bound and best ``sign * z``.

``--no-stop`` switches :data:`exactcomp.bab.outlook.STOP_HOPELESS` off (the tree runs to ``N``).

A positive value would be a witness of the unproven sign (the engine's rule decides);
the gap between ``tree`` and the attacks says how far the proof is.
"""

from __future__ import annotations

import json
import pickle
import sys
import time

import numpy as np


def _pgd(net, box, k, j, sign, starts, steps=300, lr=0.05):
    import torch

    torch.set_num_threads(1)
    lo = torch.tensor(box.lower)
    hi = torch.tensor(box.upper)
    ws = [(torch.tensor(la.weight), torch.tensor(la.bias), la.relu) for la in net.layers[: k + 1]]
    # optimise in [0, 1] coordinates: x = lo + u (hi - lo)
    u = torch.tensor((starts - box.lower) / np.maximum(box.upper - box.lower, 1e-300))
    u.requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    best = -np.inf
    best_x = None
    for _ in range(steps + 1):
        x = lo + u.clamp(0, 1) * (hi - lo)
        h = x
        for i, (w, b, relu) in enumerate(ws):
            z = h @ w.T + b
            if i == k:
                val = sign * z[:, j]
                break
            h = z.clamp(min=0) if relu else z
        v = val.detach().numpy()
        if v.max() > best:
            best, best_x = float(v.max()), x[int(v.argmax())].detach().numpy()
        opt.zero_grad()
        (-val.sum()).backward()
        opt.step()
        with torch.no_grad():
            u.clamp_(0, 1)
    return best, best_x


def _value(net, k, j, sign, x):
    z = net.preactivations(np.atleast_2d(x))[k][:, j]
    return float((sign * z).max())


def _tighten(net, box, k, known, milp_s, log):
    """The captured ``known`` with the unstable neurons of layers ``1..k-1`` bounded again
    (ideal-cut LPs, then MILPs of ``milp_s`` CPU seconds per side); sound bounds only."""
    from exactcomp.bounds.ideal_cuts import ideal_cut_layer_result
    from exactcomp.bounds.linear import finite_prefix_bounds
    from exactcomp.highs.milp import run_milp
    from exactcomp.highs.runtime import milp_options
    from exactcomp.milp.layer import layer_milp
    from exactcomp.tolerances import DEFAULT

    known = [(lo.copy(), hi.copy()) for lo, hi in finite_prefix_bounds(net, box, k, known, DEFAULT)]
    for i in range(1, k):
        lo, hi = known[i]
        un = np.flatnonzero((lo < 0) & (hi > 0))
        row = {"layer": i, "unstable": int(un.size), "width": float((hi - lo)[un].sum())}
        c0 = time.process_time()
        res = ideal_cut_layer_result(net, box, i, known, un, np.zeros(un.size, int), probe=False)
        lo, hi = np.maximum(lo, res.lower), np.minimum(hi, res.upper)
        known[i] = (lo, hi)
        row["cuts_cpu"] = round(time.process_time() - c0, 1)
        un2 = np.flatnonzero((lo < 0) & (hi > 0))
        row["after_cuts"] = {"unstable": int(un2.size), "width": float((hi - lo)[un2].sum())}
        if milp_s > 0 and un2.size:
            c0 = time.process_time()
            mag = np.maximum(np.abs(lo), np.abs(hi))
            lm = layer_milp(net, box, i, known, mag)
            for j in un2.tolist():
                for sign in (1, -1):
                    cost = np.zeros(lm.milp.num_cols)
                    cost[lm.milp.target_cols[j]] = -float(sign)
                    out = run_milp(
                        lm.milp, cost, lm.milp.integer, time_limit=10 * milp_s,
                        options=milp_options(lm.coarse, lm.deep), cpu_limit=milp_s,
                    )  # fmt: skip
                    if out.error is not None or not np.isfinite(out.dual):
                        continue
                    top = -out.dual + lm.margin(DEFAULT, j)  # sign * z <= top
                    if sign > 0:
                        hi[j] = min(hi[j], top)
                    else:
                        lo[j] = max(lo[j], -top)
            known[i] = (lo, hi)
            un3 = np.flatnonzero((lo < 0) & (hi > 0))
            row["after_milps"] = {"unstable": int(un3.size), "width": float((hi - lo)[un3].sum())}
            row["milps_cpu"] = round(time.process_time() - c0, 1)
        log.append(row)
    return known


def _prefix(net, box, k, known, j, sign, seconds, milp_s):
    """The layer's MILP on re-tightened bounds (module docstring, ``prefix``)."""
    from exactcomp.highs.milp import run_milp
    from exactcomp.highs.runtime import milp_options
    from exactcomp.milp.layer import layer_milp
    from exactcomp.tolerances import DEFAULT

    log: list = []
    c0 = time.process_time()
    known = _tighten(net, box, k, known, milp_s, log)
    tighten_cpu = time.process_time() - c0
    c0 = time.process_time()
    mag = np.maximum(np.abs(known[k][0]), np.abs(known[k][1]))
    lm = layer_milp(net, box, k, known, mag)
    cost = np.zeros(lm.milp.num_cols)
    cost[lm.milp.target_cols[j]] = -float(sign)
    out = run_milp(
        lm.milp, cost, lm.milp.integer, time_limit=10 * seconds,
        options=milp_options(lm.coarse, lm.deep), cpu_limit=seconds,
    )  # fmt: skip
    inc = None if out.values is None else _value(net, k, j, sign, out.values[lm.milp.x_cols])
    return {
        "layers": log,
        "tighten_cpu": round(tighten_cpu, 1),
        "binaries": int(lm.milp.integer.sum()),
        "status": out.text,
        "max_bound": -out.dual + lm.margin(DEFAULT, j),
        "incumbent": inc,
        "cpu": round(time.process_time() - c0, 1),
    }


def main(argv: list[str]) -> None:
    from exactcomp.api import load, read_vnnlib
    from exactcomp.bab import beta_tree, branching
    from exactcomp.milp.highs import solve_question
    from exactcomp.milp.layer import layer_milp
    from exactcomp.search import gradient_points
    from exactcomp.stability.region_search import region_search
    from exactcomp.tolerances import DEFAULT

    def opt(name, default):
        if name in argv:
            i = argv.index(name)
            val = argv[i + 1]
            del argv[i : i + 2]
            return type(default)(val)
        return default

    nodes = opt("--nodes", 8000)
    restarts = opt("--restarts", 2000)
    milp_s = opt("--milp", 0.0)
    fsb = opt("--fsb", 1)
    lps = opt("--lps", 0)
    starts_n = opt("--starts", 1)
    branching.FSB_STEPS = opt("--fsb-steps", 0)
    prefix_s = opt("--prefix", 0.0)
    if "--no-stop" in argv:  # the tree alone, without outlook's early stop
        from exactcomp.bab import outlook

        outlook.STOP_HOPELESS = False
        argv.remove("--no-stop")
    tighten_s = opt("--tighten-milp", 0.0)
    with open(argv[0], "rb") as f:
        calls = pickle.load(f)
    net = load(calls[0]["args"][0])
    box = read_vnnlib(calls[0]["args"][1], net.input_size).boxes[0]
    rng = np.random.default_rng(0)
    for spec in argv[1:]:
        k, js = spec.split(":")
        k = int(k)
        call = [c for c in calls if c["q"]["k"] == k][-1]
        q = call["q"]
        neurons = np.asarray(q["neurons"])
        for j in (int(s) for s in js.split(",")):
            side = int(np.sign(np.asarray(q["sides"])[list(neurons).index(j)]))
            for sign in {0: (1, -1), 1: (1,), -1: (-1,)}[side]:
                row = {"layer": k, "neuron": j, "sign": sign}
                lo, hi = q["known"][k][0][j], q["known"][k][1][j]
                row["known"] = [float(lo), float(hi)]
                # the tree alone, recording the primal points of its nodes
                seen, pool = [-np.inf], []
                real = beta_tree._bound

                def spy(
                    model, chunk, tol, steps, real=real, sign=sign, j=j, k=k, seen=seen, pool=pool
                ):
                    got = real(model, chunk, tol, steps)
                    v = sign * net.preactivations(got[1])[k][:, j]
                    if v.max() > seen[0]:
                        seen[0] = float(v.max())
                    for at in np.argsort(-v)[:starts_n]:
                        pool.append((float(v[at]), got[1][at]))
                    pool.sort(key=lambda t: -t[0])
                    del pool[starts_n:]
                    return got

                beta_tree._bound = spy
                c0 = time.process_time()
                log: list = []
                res = beta_tree.prove_signs_beta(
                    net,
                    box,
                    k,
                    q["known"],
                    np.array([j]),
                    np.array([sign]),
                    max_nodes=nodes,
                    total_nodes=nodes,
                    fsb=fsb,
                    log=log,
                )
                beta_tree._bound = real
                bound = res.upper[0] if sign > 0 else -res.lower[0]
                proven = bool(res.inactive[0] if sign > 0 else res.active[0])
                row["tree"] = {
                    "nodes": res.nodes,
                    "bound": float(bound),
                    "proven": proven,
                    "best_xstar": seen[0],
                    "marks": [[m, round(b, 4)] for m, b in log[0][5]] if log else [],
                    "cpu": round(time.process_time() - c0, 1),
                }
                c0 = time.process_time()
                starts = box.sample(restarts, rng)
                best, best_x = _pgd(net, box, k, j, sign, starts)
                pts = gradient_points(
                    net, box, k, np.full(restarts, j), np.full(restarts, sign), starts, 100
                )
                row["pgd"] = {
                    "adam": best,
                    "signgrad": _value(net, k, j, sign, pts),
                    "restarts": restarts,
                    "cpu": round(time.process_time() - c0, 1),
                }
                if lps > 0:
                    c0 = time.process_time()
                    found = [
                        region_search(net, box, k, q["known"], None, j, sign, x0, lps)
                        for x0 in [best_x] + [x for _, x in pool]
                    ]
                    found = [f for f in found if len(f)]
                    row["region"] = {
                        "best": _value(net, k, j, sign, np.concatenate(found)) if found else None,
                        "lps": lps,
                        "cpu": round(time.process_time() - c0, 1),
                    }
                if milp_s > 0:
                    c0 = time.process_time()
                    mag = np.maximum(np.abs(q["known"][k][0]), np.abs(q["known"][k][1]))
                    lm = layer_milp(net, box, k, q["known"], mag)
                    ans = solve_question(
                        lm.milp, lm.question(DEFAULT, j, sign, milp_s, mode="optimal")
                    )
                    inc = _value(net, k, j, sign, ans.points) if len(ans.points) else None
                    row["milp"] = {
                        "status": ans.status,
                        "proven": ans.proven,
                        "incumbent": inc,
                        "cpu": round(time.process_time() - c0, 1),
                    }
                if prefix_s > 0:
                    row["prefix"] = _prefix(net, box, k, q["known"], j, sign, prefix_s, tighten_s)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
