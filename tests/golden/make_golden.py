"""Regenerate the golden stability results of the shipped digits models.

    python tests/golden/make_golden.py [--method naive] [--models 5e-04 1e-04 0e+00]

Each JSON lists, per ReLU layer, the verdict of every neuron as found by the *naive* method
(one MILP per neuron and sign, solved to optimality, interval big-M): the exhaustive reference
the fast engine must agree with (tests/test_golden.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from exactcomp.api import stable_neurons
from exactcomp.domain import Box
from exactcomp.io import load
from exactcomp.verdicts import Verdict

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="naive")
    parser.add_argument("--models", nargs="+", default=["5e-04"])
    parser.add_argument("--time-limit", type=float, default=600.0)
    args = parser.parse_args()
    for l1 in args.models:
        name = f"digits_64-100-100-10_l1-{l1}_s0"
        net = load(ROOT / "models" / f"{name}.pt")
        t0 = time.perf_counter()
        rep = stable_neurons(
            net, Box.uniform(0.0, 1.0, 64), method=args.method, time_limit=args.time_limit, jobs=1
        )
        seconds = time.perf_counter() - t0
        doc = {
            "model": f"models/{name}.pt",
            "box": "[0,1]^64",
            "method": args.method,
            "seconds": round(seconds, 1),
            "milps": int(rep.stats.get("milps", 0)),
            "command": f"python tests/golden/make_golden.py --method {args.method} --models {l1}",
            "layers": [[Verdict(int(v)).name.lower() for v in ls.verdict] for ls in rep.layers],
        }
        out = HERE / f"{name}.{args.method}.json"
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(
            f"{out.name}: {seconds:.1f} s, {doc['milps']} MILPs, undecided {rep.count(Verdict.UNDECIDED)}"
        )


if __name__ == "__main__":
    main()
