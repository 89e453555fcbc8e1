"""CPU seconds per (layer, phase) and undecided neurons per layer of one capped analysis.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/stability_trace.py NET.onnx PROP.vnnlib 300

wraps ``LayerRun._phase`` with ``time.process_time`` (this process; ``jobs=1`` so the MILPs
run here too) and prints one JSON line: per layer the CPU seconds of each phase and the open
neurons after it, the undecided neurons per layer at the end, wall and CPU seconds, stats.
"""

from __future__ import annotations

import json
import sys
import time

from exactcomp.api import load, read_vnnlib, stable_neurons
from exactcomp.stability import layer as stability_layer
from exactcomp.verdicts import Verdict


def main(argv: list[str]) -> None:
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
    rep = stable_neurons(net, box, jobs=1, deadline=None if cap is None else t0 + cap)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    undecided = [int((ls.verdict == Verdict.UNDECIDED).sum()) for ls in rep.layers]
    stats = {k: round(v, 1) if isinstance(v, float) else v for k, v in rep.stats.items()}
    out = {"args": argv, "wall": round(wall, 1), "cpu": round(cpu, 1)}
    out |= {"undecided": undecided, "trace": trace, "stats": stats}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
