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
  ``sign * z`` for ``SECONDS`` (HiGHS, ``mode="optimal"``), and whether it was proven.

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


def main(argv: list[str]) -> None:
    from exactcomp.api import load, read_vnnlib
    from exactcomp.bab import beta_tree
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
    beta_tree.FSB_STEPS = opt("--fsb-steps", 0)
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
                )
                beta_tree._bound = real
                bound = res.upper[0] if sign > 0 else -res.lower[0]
                proven = bool(res.inactive[0] if sign > 0 else res.active[0])
                row["tree"] = {
                    "nodes": res.nodes,
                    "bound": float(bound),
                    "proven": proven,
                    "best_xstar": seen[0],
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
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
