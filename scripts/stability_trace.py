"""CPU seconds per (layer, phase) and undecided neurons per layer of one capped analysis.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/stability_trace.py NET.onnx PROP.vnnlib 300 [--jobs N]
        [--spread-budget MAX TOTAL SLACK]

wraps ``LayerRun._phase`` with ``time.process_time`` (this process; ``jobs=1`` by default,
so the MILPs run here too) and prints one JSON line: per layer the CPU seconds of each phase
(of this process) and the open neurons after it, the undecided neurons per layer at the end,
wall and CPU seconds, stats. ``--jobs N``: the engine's ``jobs`` (its MILPs and batched
ReLU-split trees in N processes); ``cpu`` then adds ``children_cpu``, the CPU seconds of the
worker processes. ``--spread-budget``: :data:`~exactcomp.bab.beta_parts.MAX_NODES_SPREAD`,
:data:`~exactcomp.bab.beta_parts.TOTAL_NODES_SPREAD` and
:data:`~exactcomp.bab.beta_parts.SLACK_SPREAD` (the budgets of a call spread over processes).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from exactcomp.api import load, read_vnnlib, stable_neurons
from exactcomp.stability import layer as stability_layer
from exactcomp.verdicts import Verdict


def main(argv: list[str]) -> None:
    jobs = 1
    if "--jobs" in argv:
        at = argv.index("--jobs")
        jobs = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    if "--spread-budget" in argv:
        from exactcomp.bab import beta_parts

        at = argv.index("--spread-budget")
        n, t, s = argv[at + 1 : at + 4]
        beta_parts.MAX_NODES_SPREAD, beta_parts.TOTAL_NODES_SPREAD = int(n), int(t)
        beta_parts.SLACK_SPREAD = float(s)
        argv = argv[:at] + argv[at + 4 :]
    net = load(argv[0])
    box = read_vnnlib(argv[1], net.input_size).boxes[0]
    cap = float(argv[2]) if len(argv) > 2 else None
    trace: dict[str, list] = {}
    real_phase, real_milp = stability_layer.LayerRun._phase, stability_layer.LayerRun._milp_phase

    def phase(run, name, info, step) -> None:
        c0 = time.process_time()
        real_phase(run, name, info, step)
        trace.setdefault(str(run.k), []).append(
            [info or name, round(time.process_time() - c0, 1), int(run.open_neurons().size)]
        )

    def milp(run) -> None:
        c0 = time.process_time()
        real_milp(run)
        trace.setdefault(str(run.k), []).append(
            ["milp", round(time.process_time() - c0, 1), int(run.open_neurons().size)]
        )

    stability_layer.LayerRun._phase = phase
    stability_layer.LayerRun._milp_phase = milp
    c0, t0 = time.process_time(), time.perf_counter()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rep = stable_neurons(net, box, jobs=jobs, deadline=None if cap is None else t0 + cap)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime
    undecided = [int((ls.verdict == Verdict.UNDECIDED).sum()) for ls in rep.layers]
    stats = {k: round(v, 1) if isinstance(v, float) else v for k, v in rep.stats.items()}
    out = {"args": argv, "jobs": jobs, "wall": round(wall, 1), "cpu": round(cpu + kids, 1)}
    out |= {"children_cpu": round(kids, 1)}
    out |= {"undecided": undecided, "trace": trace, "stats": stats}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
