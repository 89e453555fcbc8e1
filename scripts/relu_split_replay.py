"""Capture the ReLU-split phase's questions of one analysis, and replay them alone.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/relu_split_replay.py capture NET.onnx PROP.vnnlib OUT.pkl [CAP]
    PYTHONPATH=. python scripts/relu_split_replay.py replay OUT.pkl [LAYER ...] [--batched] [--fsb K] [--profile] [--jobs N]
    PYTHONPATH=. python scripts/relu_split_replay.py batched OUT.pkl [LAYER ...] [--fsb K]

``capture`` runs :mod:`scripts.stability_trace` (same JSON line) with the ReLU-split phase
wrapped so that each call's :class:`~exactcomp.stability.phases.PhaseInput` and its claims
are pickled to ``OUT.pkl``. ``replay`` asks each captured layer's questions again (no
deadline) with the current code and prints, per layer, CPU seconds, nodes, the claims
and the questions left open, beside the captured ones. The captured inputs are the engine's
bounds at that point, so a replay isolates the split trees from every earlier phase.
``--profile`` adds, per call, the CPU seconds of the batched trees and of the LP trees, and
per question (neuron, sign) the batched nodes and their share of the batched CPU (a batch's
CPU split over its nodes), and each batched tree of at least 2,000 nodes: its state, nodes,
best ``sign * z`` at its ``x*`` and its marks (:mod:`exactcomp.bab.outlook`). ``--jobs N``
grows the batched trees in N processes (``--spread-after M``:
:data:`~exactcomp.bab.beta_parts.SPREAD_AFTER`) (:mod:`exactcomp.bab.beta_parts`; the row adds
``wall``; a last line gives the total ``cpu``, ``wall`` and ``children_cpu``, the CPU
seconds of the worker processes). ``--no-stop``
switches :data:`exactcomp.bab.outlook.STOP_HOPELESS` off; ``--slack S`` sets
:data:`exactcomp.bab.outlook.SLACK`; ``--budget N T`` sets the batched trees' node budgets
(:data:`~exactcomp.bab.beta_tree.MAX_NODES_BETA` per question, ``T`` the call's
:data:`~exactcomp.bab.beta_tree.TOTAL_NODES_BETA`). ``--batched`` switches
:data:`exactcomp.bab.relu.BATCHED_FIRST` on for the replay; ``batched``
runs the batched engine alone (:func:`exactcomp.bab.beta.prove_signs_beta`). ``--fsb K`` sets
:data:`exactcomp.bab.branching.FSB` (candidates per node of the branching rule).
"""

from __future__ import annotations

import json
import pickle
import sys
import time

import numpy as np

sys.path.insert(0, "scripts")


def _counts(res, q) -> dict:
    idx = np.asarray(q.neurons)
    return {
        "asked": int(idx.size),
        "inactive": int(res.inactive[idx].sum()),
        "active": int(res.active[idx].sum()),
        "nodes": res.nodes,
    }


def capture(argv: list[str]) -> None:
    import stability_trace

    from exactcomp.stability import layer as stability_layer

    out: list[dict] = []
    real = stability_layer.relu_split_phase

    def wrapped(q):
        c0 = time.process_time()
        res = real(q)
        cpu = time.process_time() - c0
        qq = {"k": q.k, "known": q.known, "neurons": q.neurons, "sides": q.sides}
        out.append({"args": argv[:2], "q": qq, "cpu": cpu, **_counts(res, q)})
        with open(argv[2], "wb") as f:
            pickle.dump(out, f)
        return res

    stability_layer.relu_split_phase = wrapped
    stability_trace.main([argv[0], argv[1], *argv[3:]])


def replay(argv: list[str], search=None) -> None:
    from exactcomp.stability.phases import relu_split_phase

    search = search or relu_split_phase
    from exactcomp.bab import beta_parts, beta_tree, branching

    if "--fsb" in argv:
        at = argv.index("--fsb")
        branching.FSB = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    from exactcomp.bab import relu as relu_bab

    prof = _Profile() if "--profile" in argv else None
    argv = [a for a in argv if a != "--profile"]
    from exactcomp.bab import outlook

    if "--slack" in argv:
        at = argv.index("--slack")
        outlook.SLACK = beta_parts.SLACK_SPREAD = float(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    if "--budget" in argv:
        at = argv.index("--budget")
        beta_tree.MAX_NODES_BETA, beta_tree.TOTAL_NODES_BETA = map(int, argv[at + 1 : at + 3])
        beta_parts.MAX_NODES_SPREAD = beta_tree.MAX_NODES_BETA
        beta_parts.TOTAL_NODES_SPREAD = beta_tree.TOTAL_NODES_BETA
        argv = argv[:at] + argv[at + 3 :]
    if "--no-stop" in argv:
        outlook.STOP_HOPELESS = False
        argv = [a for a in argv if a != "--no-stop"]
    if "--batched" in argv:
        argv = [a for a in argv if a != "--batched"]
        relu_bab.BATCHED_FIRST = True
    jobs = 1
    if "--jobs" in argv:
        at = argv.index("--jobs")
        jobs = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    if "--spread-after" in argv:
        at = argv.index("--spread-after")
        beta_parts.SPREAD_AFTER = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    with open(argv[0], "rb") as f:
        calls = pickle.load(f)
    import resource

    from exactcomp.stability.milp_phase import Workers

    c0, t0 = time.process_time(), time.perf_counter()
    with Workers(jobs) as workers:
        _replay_calls(argv, calls, search, prof, workers)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = {"cpu": round(time.process_time() - c0, 1), "wall": round(time.perf_counter() - t0, 1)}
    total["children_cpu"] = round(kids.ru_utime + kids.ru_stime, 1)
    print(json.dumps({"total": total}), flush=True)


def _replay_calls(argv, calls, search, prof, workers) -> None:
    import resource

    from exactcomp.api import load, read_vnnlib
    from exactcomp.stability.phases import PhaseInput
    from exactcomp.tolerances import DEFAULT

    net = load(calls[0]["args"][0])
    box = read_vnnlib(calls[0]["args"][1], net.input_size).boxes[0]
    layers = {int(a) for a in argv[1:]}
    for call in calls:
        q = PhaseInput(net, box, tol=DEFAULT, **call["q"], spread=workers.spread())
        if layers and q.k not in layers:
            continue
        if prof is not None:
            prof.reset()
        c0, t0 = time.process_time(), time.perf_counter()
        k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = search(q)
        cpu = time.process_time() - c0
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        kids = k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime
        now = _counts(res, q)
        if prof is not None:
            now["profile"] = prof.report()
        was = {key: call[key] for key in ("asked", "inactive", "active", "nodes")}
        row = {"layer": q.k, "cpu": round(cpu, 1), "wall": round(time.perf_counter() - t0, 1)}
        row |= {"children_cpu": round(kids, 1), **now, "was_cpu": round(call["cpu"], 1)}
        row["was"] = was
        row["open"] = [
            int(j) for j in np.asarray(q.neurons) if not (res.inactive[j] or res.active[j])
        ]
        print(json.dumps(row), flush=True)


class _Profile:
    """CPU seconds of the batched and LP trees of each call, and the batched nodes and CPU
    per question (wraps ``beta_tree._bound``, ``prove_signs_beta`` and ``_prove_signs_lp``)."""

    def __init__(self):
        from exactcomp.bab import beta_tree
        from exactcomp.bab import relu as relu_bab

        self.reset()
        real_bound, real_beta, real_lp = (
            beta_tree._bound, beta_tree.prove_signs_beta, relu_bab._prove_signs_lp,
        )  # fmt: skip

        def bound(model, chunk, tol, steps):
            c0 = time.process_time()
            got = real_bound(model, chunk, tol, steps)
            share = (time.process_time() - c0) / len(chunk)
            for q, _ in chunk:
                key = f"{q.j}:{q.sign}"
                row = self.per_q.setdefault(key, [0, 0.0])
                row[0] += 1
                row[1] += share
            return got

        def timed(name, real):
            def run(*a, **kw):
                c0 = time.process_time()
                try:
                    return real(*a, **kw)
                finally:
                    self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0

            return run

        beta_tree._bound = bound

        def logged(*a, **kw):
            return real_beta(*a, log=self.trees, **kw)

        beta_tree.prove_signs_beta = timed("batched", logged)
        relu_bab._prove_signs_lp = timed("lp_trees", real_lp)

    def reset(self):
        self.cpu: dict[str, float] = {}
        self.per_q: dict[str, list] = {}
        self.trees: list = []

    def report(self) -> dict:
        top = sorted(self.per_q.items(), key=lambda kv: -kv[1][1])[:6]
        return {
            "cpu": {k: round(v, 1) for k, v in self.cpu.items()},
            "top_questions": {k: [n, round(c, 1)] for k, (n, c) in top},
            "trees": [
                [j, s, state, n, round(best, 4), [[m, round(b, 4)] for m, b in marks]]
                for j, s, state, n, best, marks in self.trees
                if n >= 2000
            ],
        }


def batched(argv: list[str]) -> None:
    from exactcomp.bab.beta_tree import prove_signs_beta
    from exactcomp.stability import phases

    def search(q):
        phases_search = phases._split_phase
        return phases_search(q, prove_signs_beta)

    replay(argv, search)


if __name__ == "__main__":
    {"capture": capture, "replay": replay, "batched": batched}[sys.argv[1]](sys.argv[2:])
