"""How far past its deadline ``stable_neurons`` returns on mnist-net_256x6 prop_0_0.03.

Two ways to place the deadline (from the repository root)::

    PYTHONPATH=. python scripts/deadline_overshoot.py api 60      # perf_counter() + 60 at the start
    PYTHONPATH=. python scripts/deadline_overshoot.py inside 3 5  # 5 s after layer 3's LP begins

``inside`` puts the deadline where a phase that did not look at it used to run (the LP phase
of layer 3, 245 open neurons): no deadline until that phase begins, then one ``LEAD``
seconds later, set on the analysis' shared options (a measurement hook, not an API; MILPs
get 2 s each so that layer 2 is passed sooner). Prints one JSON line: wall seconds past the
deadline, CPU seconds (process and children), undecided neurons, the engine's stats.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from exactcomp.api import load, read_vnnlib, stable_neurons
from exactcomp.stability import layer as stability_layer
from exactcomp.verdicts import Verdict

NET = "models/real/mnistfc/mnist-net_256x6.onnx"
PROP = "models/real/mnistfc/prop_0_0.03.vnnlib"


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str]) -> None:
    net = load(NET)
    box = read_vnnlib(PROP, net.input_size).boxes[0]
    mark: dict[str, float] = {}
    c0, t0 = _cpu(), time.perf_counter()
    if argv[0] == "api":
        mark["deadline"] = t0 + float(argv[1])
        rep = stable_neurons(net, box, jobs=1, deadline=mark["deadline"])
    else:
        k, lead = int(argv[1]), float(argv[2])
        real = stability_layer.LayerRun._lp

        def lp(run) -> None:
            if run.k == k and "deadline" not in mark:
                mark["deadline"] = time.perf_counter() + lead
                object.__setattr__(run.opts, "deadline", mark["deadline"])  # the hook
            real(run)

        stability_layer.LayerRun._lp = lp
        rep = stable_neurons(net, box, jobs=1, time_limit=2.0)
    end = time.perf_counter()
    undecided = sum(int((ls.verdict == Verdict.UNDECIDED).sum()) for ls in rep.layers)
    stats = {key: round(v, 1) if isinstance(v, float) else v for key, v in rep.stats.items()}
    print(
        json.dumps(
            {
                "mode": argv,
                "wall": round(end - t0, 1),
                "deadline_at": round(mark["deadline"] - t0, 1),
                "past_deadline": round(end - mark["deadline"], 1),
                "cpu": round(_cpu() - c0, 1),
                "undecided": undecided,
                "stats": stats,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
