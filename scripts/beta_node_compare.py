"""The batched optimised bound (:mod:`exactcomp.bab.beta`) against the node LP of the
ReLU-split trees (:mod:`exactcomp.bab.relu`, with its ideal cuts) on the same nodes.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/beta_node_compare.py SPLITS.pkl LAYER [NODES] [SEED] [cuts]

``SPLITS.pkl`` is a capture of ``scripts/relu_split_replay.py``. Nodes: the roots of the
layer's questions, then ``NODES`` random nodes (1-6 random splits on unstable neurons of
random questions). Prints, per set, the median and quartiles of ``batched / LP`` bounds and
of their difference (nodes that either closes are counted apart), and the CPU seconds per
node of each, the batched one at B = 32, 128, 512. ``cuts``: the batched bounds get the
ideal cuts of the questions' root LPs (:func:`exactcomp.bab.relu.root_cuts`).
"""

from __future__ import annotations

import json
import pickle
import sys
import time

import numpy as np


def main(argv: list[str]) -> None:
    from exactcomp.api import load, read_vnnlib
    from exactcomp.bab import relu as relu_bab
    from exactcomp.bab import relu_tree
    from exactcomp.bab.beta import BetaModel
    from exactcomp.bab.beta_tree import CUTS_PER_NEURON, STEPS
    from exactcomp.bab.relu import root_cuts
    from exactcomp.bab.relu_lp import SplitLP
    from exactcomp.bounds.linear import finite_prefix_bounds
    from exactcomp.tolerances import DEFAULT as tol

    calls = pickle.load(open(argv[0], "rb"))
    layer = int(argv[1])
    count = int(argv[2]) if len(argv) > 2 else 300
    rng = np.random.default_rng(int(argv[3]) if len(argv) > 3 else 0)
    net = load(calls[0]["args"][0])
    box = read_vnnlib(calls[0]["args"][1], net.input_size).boxes[0]
    q = next(c["q"] for c in calls if c["q"]["k"] == layer)
    k = q["k"]
    pre = finite_prefix_bounds(net, box, k, q["known"], tol)
    signs = {0: (1, -1), 1: (1,), -1: (-1,)}
    qs = [
        (int(j), s)
        for j, sd in zip(q["neurons"], q["sides"], strict=True)
        for s in signs[int(np.sign(sd))]
    ]
    slp = SplitLP(net, box, k, pre, tol, cuts=relu_bab.CUTS)
    model = BetaModel(net, box, k, pre)
    if len(argv) > 4 and argv[4] == "cuts":
        c0 = time.process_time()
        qn = np.asarray(q["neurons"])
        found = root_cuts(net, box, k, q["known"], qn, np.asarray(q["sides"]), tol, CUTS_PER_NEURON)
        model.with_cuts(found)
        print(f"{model.ncuts} cuts in {time.process_time() - c0:.1f} s of CPU", flush=True)
    # the LP's split index of each entry of the batched engine's split vector
    lp_at = {}
    at = 0
    for r in slp.lp.relus:
        for n in r.neurons:
            lp_at[(int(r.layer), int(n))] = at
            at += 1
    mine = [(i, int(n)) for i, la in enumerate(model.layers) for n in la.idx]
    perm = np.array([lp_at[w] for w in mine])
    nodes = [(i, np.zeros(model.size, np.int8)) for i in range(len(qs))]
    for _ in range(count):
        split = np.zeros(model.size, np.int8)
        pick = rng.choice(model.size, size=int(rng.integers(1, 7)), replace=False)
        split[pick] = rng.choice([-1, 1], size=pick.size)
        nodes.append((int(rng.integers(len(qs))), split))
    lp_top, c0 = [], time.process_time()
    trees = {}
    for i, split in nodes:
        j, s = qs[i]
        if i not in trees:  # the question's root first: its ideal cuts, as in the tree
            t = relu_tree.Tree(net, slp, k, j, s, 0, tol)
            slp.restore(t.cuts)
            t._solve(t.pending[0], 10, None)
            trees[i] = (t, slp.drop_cuts())
        t, cuts = trees[i]
        slp.restore(cuts)
        lsplit = np.zeros(slp.size, np.int8)
        lsplit[perm] = split
        lo, hi = slp.nb.clip(lsplit, slp.nb.box_lo, slp.nb.box_hi)
        got = t._solve(relu_tree.Child(lsplit, lo, hi, k), 1, None)
        trees[i] = (t, slp.drop_cuts())
        lp_top.append(-np.inf if got is True else (np.nan if got is None else got.top))
    lp_cpu = (time.process_time() - c0) / len(nodes)
    lp_top = np.array(lp_top)
    rows = np.array([qs[i][0] for i, _ in nodes])
    sg = np.array([qs[i][1] for i, _ in nodes], float)
    sp = np.stack([s for _, s in nodes])
    out = {"layer": k, "questions": len(qs), "nodes": len(nodes), "lp_cpu_ms": 1e3 * lp_cpu}
    for steps in (STEPS, 50):
        tops = []
        for b0 in range(0, len(nodes), 512):
            sl = slice(b0, b0 + 512)
            al = np.tile(model.init_alpha, (len(rows[sl]), 1))
            be = np.zeros((len(rows[sl]), model.nbeta))
            al, be = model.optimise(rows[sl], sg[sl], sp[sl], al, be, steps)
            tops.append(model.evaluate(rows[sl], sg[sl], sp[sl], al, be, tol)[0])
        top = np.concatenate(tops)
        for name, sel in (("roots", slice(0, len(qs))), ("nodes", slice(len(qs), None))):
            a, b = top[sel], lp_top[sel]
            both = np.isfinite(b) & (b > 0) & (a > 0)
            out[f"{name}_{steps}"] = {
                "ratio_q25_50_75": np.round(
                    np.quantile(a[both] / b[both], [0.25, 0.5, 0.75]), 3
                ).tolist(),
                "diff_median": round(float(np.median(a[both] - b[both])), 4),
                "lp_closed": int(((b <= 0) | np.isneginf(b)).sum()),
                "batched_closed": int((a <= 0).sum()),
                "compared": int(both.sum()),
            }
    for bsz in (32, 128, 512):
        sl = slice(0, min(bsz, len(nodes)))
        n = len(rows[sl])
        c0 = time.process_time()
        al, be = model.optimise(
            rows[sl],
            sg[sl],
            sp[sl],
            np.tile(model.init_alpha, (n, 1)),
            np.zeros((n, model.nbeta)),
            STEPS,
        )
        model.evaluate(rows[sl], sg[sl], sp[sl], al, be, tol)
        out[f"nodes_per_cpu_s_B{bsz}"] = round(n / (time.process_time() - c0))
    out["lp_nodes_per_cpu_s"] = round(1.0 / lp_cpu)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
