"""Where the exact joint MILP pays (issue 15, lossy6): random networks d-w-w-4 on [-1, 1]^d,
their 8-bit per-channel copies; per size, the joint LP's bound (max over outputs), the
sampled max |f - g| and the MILP's verdicts at tau = the midpoint between the two (proven,
counterexample or unknown at ``--seconds`` per side) and the time to them.

Run: ``PYTHONPATH=. python scripts/lossy_milp_scale.py [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.verify.charge import sampled_max_difference
from exactcomp.verify.difflp import lp_difference_bounds
from exactcomp.verify.diffmilp import JointMilp, Verdict
from exactcomp.verify.pairs import Pair

SIZES = [(4, 10), (8, 20), (8, 40), (16, 60), (32, 100)]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30.0)
    a = p.parse_args()
    print("| d-w-w-4 | binaries | sampled | joint LP | tau | verdicts (sides) | wall / CPU s |")
    print("|---|---|---|---|---|---|---|")
    for d, w in SIZES:
        rng = np.random.default_rng(d * 1000 + w)
        ws = [rng.normal(size=(w, d)) / np.sqrt(d), rng.normal(size=(w, w)) / np.sqrt(w),
              rng.normal(size=(4, w)) / np.sqrt(w)]  # fmt: skip
        bs = [rng.normal(size=w) * 0.3, rng.normal(size=w) * 0.3, np.zeros(4)]
        f = Network.from_arrays(ws, bs)
        g = quantize_network(f, [8, 8, 8]).network
        box = Box(-np.ones(d), np.ones(d))
        pair = Pair.prepare(f, g, box, range(4))
        lp = float(lp_difference_bounds(pair, box, 60.0).max())
        sampled = sampled_max_difference(f, g, [box])
        tau = 0.5 * (lp + sampled)
        t, c = time.perf_counter(), _cpu()
        milp = JointMilp(pair, box)
        n_bin = sum(len(col.phases) for col in milp.cols)
        got = [milp.decide(j, s, tau, a.seconds) for j in range(4) for s in (1.0, -1.0)]
        counts = {v: sum(x.verdict is v for x in got) for v in Verdict}
        words = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
        print(f"| {d}-{w}-{w}-4 | {n_bin} | {sampled:.4f} | {lp:.4f} | {tau:.4f} | {words} | "
              f"{time.perf_counter() - t:.1f} / {_cpu() - c:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
