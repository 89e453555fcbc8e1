"""The batched ReLU-split trees dealt to parts, against the exact oracle, on many random cases.

A measurement script, not an API (from the repository root)::

    PYTHONPATH=. python scripts/soak_beta_parts.py CASES [SEED] [--pool]

For each random depth-3-5 network (:func:`exactcomp.testing.random_networks.random_case`) and
each layer, asks :func:`~exactcomp.bab.beta_tree.prove_signs_beta` every neuron's both signs
in one process and dealt to 2 parts after the first round
(:class:`~exactcomp.bab.beta_parts.Spread`, ``after=2``; ``--pool``: the second part in a
spawn worker process, else here), and counts: claims of each, claims that differ, claims
the exact oracle refutes (unsound), tree bounds that miss the exact range, and calls dealt.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import Future

import numpy as np

from exactcomp.bab.beta_parts import Spread
from exactcomp.bab.beta_tree import prove_signs_beta
from exactcomp.bounds import linear_bounds
from exactcomp.stability.milp_phase import Workers
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case


def _here(fn, *args):
    fut: Future = Future()
    fut.set_result(fn(*args))
    return fut


def main(argv: list[str]) -> None:
    if not argv or "--help" in argv or "-h" in argv:
        print(__doc__)
        return
    pool = "--pool" in argv
    argv = [a for a in argv if a != "--pool"]
    cases, seed = int(argv[0]), int(argv[1]) if len(argv) > 1 else 0
    seen = dict.fromkeys(
        ("cases", "layers", "one", "two", "differ", "unsound", "loose", "dealt"), 0
    )
    real = Spread.resume

    def counting(self, *args):
        seen["dealt"] += 1
        return real(self, *args)

    Spread.resume = counting
    with Workers(2) as workers:
        submit = workers.spread().submit if pool else _here
        for c in range(cases):
            case = random_case(seed + c, depth=(3, 5), width=(3, 6), inputs=(2, 5), max_neurons=20)
            net, box = case.network, case.box
            exact = exact_preactivation_ranges(net, box)
            pre = linear_bounds(net, box)
            seen["cases"] += 1
            for k in range(1, len(net.layers)):
                n = net.layers[k].out_features
                ask = (net, box, k, pre, np.arange(n), np.zeros(n, int))
                one = prove_signs_beta(*ask, batch=4)
                two = prove_signs_beta(*ask, batch=4, spread=Spread(2, submit, after=2))
                lo, hi = exact[k]
                seen["layers"] += 1
                seen["one"] += int(one.inactive.sum() + one.active.sum())
                seen["two"] += int(two.inactive.sum() + two.active.sum())
                seen["differ"] += int((one.inactive != two.inactive).sum())
                seen["differ"] += int((one.active != two.active).sum())
                seen["unsound"] += int((hi[two.inactive] > 1e-9).sum())
                seen["unsound"] += int((lo[two.active] < -1e-9).sum())
                seen["loose"] += int((lo < two.lower - 1e-9).sum() + (hi > two.upper + 1e-9).sum())
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1:])
