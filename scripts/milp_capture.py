"""Capture the MILP phase's questions of one analysis, and replay them alone.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/milp_capture.py capture NET.onnx PROP.vnnlib OUT.pkl [CAP_S]
    PYTHONPATH=. python scripts/milp_capture.py replay OUT.pkl [TIME_LIMIT] [LAYER[:NEURON]...]

``capture`` runs the ``fast`` analysis (``jobs=1``, so every MILP runs in this process),
and at each layer's MILP phase pickles what the phase gets: the network, the box, the layer,
the bounds and verdicts of earlier layers, the layer's own bounds, the tolerances and the
ordered question list (after the moot ones are dropped). The MILPs then run as usual; each
answer is recorded with its CPU seconds (``time.process_time``) and printed as one JSON line.

``replay`` answers the captured questions again with the current code (``TIME_LIMIT`` CPU
seconds each, as the engine now poses them), one at a time, each on its own (no witness sharing between questions: a question is asked whatever the others
answered), and prints per question the verdict (``proven`` / ``open``), the status and the
CPU and wall seconds, as JSON lines.
"""

from __future__ import annotations

import json
import pickle
import sys
import time

import numpy as np

from exactcomp.api import load, read_vnnlib, stable_neurons
from exactcomp.milp.highs import solve_question
from exactcomp.stability import layer as stability_layer
from exactcomp.stability import milp_questions


def capture(argv: list[str]) -> None:
    net = load(argv[0])
    box = read_vnnlib(argv[1], net.input_size).boxes[0]
    out_path = argv[2]
    cap = float(argv[3]) if len(argv) > 3 else None
    captured: list[dict] = []
    real_milp = stability_layer.LayerRun._milp_phase
    real_run = milp_questions.run_questions

    def milp(run) -> None:
        tasks = [t for t in milp_questions.MilpQuestions(run)._tasks() if not run.moot(t)]
        if tasks:
            captured.append(
                {
                    "layers": list(run.net.layers),
                    "dtype": run.net.dtype,
                    "box": run.box,
                    "k": run.k,
                    "bounds": [(np.array(lo), np.array(hi)) for lo, hi in run.bounds[: run.k]],
                    "verdicts": [None if v is None else np.array(v) for v in run.verdicts],
                    "lower": run.lower.copy(),
                    "upper": run.upper.copy(),
                    "magnitude": run.magnitude.copy(),
                    "tol": run.opts.tol,
                    "time_limit": run.opts.time_limit,
                    "tasks": [(t.neuron, t.sign) for t in tasks],
                    "answers": [],
                }
            )
            with open(out_path, "wb") as f:
                pickle.dump(captured, f)
        c0 = time.process_time()
        real_milp(run)
        print(json.dumps({"layer": run.k, "milp_cpu": round(time.process_time() - c0, 2)}))

    def run_questions(milp_, tasks, **kw):
        solve = kw.pop("solve", solve_question)

        def timed(m, q):
            c0, t0 = time.process_time(), time.perf_counter()
            a = solve(m, q)
            rec = {
                "neuron": q.neuron,
                "sign": q.sign,
                "proven": bool(a.proven),
                "status": a.status,
                "cpu": round(time.process_time() - c0, 2),
                "wall": round(time.perf_counter() - t0, 2),
            }
            if captured:
                captured[-1]["answers"].append(rec)
            print(json.dumps(rec), flush=True)
            return a

        return real_run(milp_, tasks, solve=timed, **kw)

    stability_layer.LayerRun._milp_phase = milp
    milp_questions.run_questions = run_questions
    c0, t0 = time.process_time(), time.perf_counter()
    rep = stable_neurons(net, box, jobs=1, deadline=None if cap is None else t0 + cap)
    und = [int((ls.verdict == 0).sum()) for ls in rep.layers]
    with open(out_path, "wb") as f:
        pickle.dump(captured, f)
    summary = {
        "wall": round(time.perf_counter() - t0, 1),
        "cpu": round(time.process_time() - c0, 1),
    }
    print(json.dumps(summary | {"undecided_per_layer": und, "layers": len(captured)}))


def load_captured(path: str) -> list[dict]:
    """The captured layers, each with its ``net`` rebuilt (a Network's ``meta`` does not
    pickle, so only its layers and dtype were kept)."""
    from exactcomp.network import Network

    with open(path, "rb") as f:
        captured = pickle.load(f)
    for cap in captured:
        cap["net"] = Network(tuple(cap["layers"]), cap["dtype"])
    return captured


def replay(argv: list[str]) -> None:
    from exactcomp.milp.highs import solve_question
    from exactcomp.milp.layer import WALL_PER_CPU, layer_milp

    captured = load_captured(argv[0])
    limit = float(argv[1]) if len(argv) > 1 else 10.0
    only = argv[2:]
    for cap in captured:
        k = cap["k"]
        c0 = time.process_time()
        layer = layer_milp(
            cap["net"], cap["box"], k, cap["bounds"], cap["magnitude"], cap["verdicts"]
        )
        print(json.dumps({"layer": k, "build_cpu": round(time.process_time() - c0, 2)}))
        for j, s in cap["tasks"]:
            if only and str(k) not in only and f"{k}:{j}" not in only:
                continue
            q = layer.question(cap["tol"], j, s, WALL_PER_CPU * limit, cpu_limit=limit)
            c0, t0 = time.process_time(), time.perf_counter()
            a = solve_question(layer.milp, q)
            rec = {"layer": k, "neuron": j, "sign": s, "proven": bool(a.proven)}
            rec |= {"status": a.status, "cpu": round(time.process_time() - c0, 2)}
            print(json.dumps(rec | {"wall": round(time.perf_counter() - t0, 2)}), flush=True)


if __name__ == "__main__":
    {"capture": capture, "replay": replay}[sys.argv[1]](sys.argv[2:])
