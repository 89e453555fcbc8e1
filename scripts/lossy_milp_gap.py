"""The exact joint MILP on the digits model at 8 bits (issue 15, lossy6): per output and sign,
the time to a verdict of "max s (g_j - f_j) <= tol" at each tol, and HiGHS' dual bound of the
maximum after a fixed time without a cut-off (a figure, not a claim).

``f`` = the digits 64-100-100-10 model with l1 = 0 over [0,1]^64 with its bounds tightened as
a lossy run does (LP, then ideal cuts; ``--tighten`` seconds), ``g`` its 8-bit per-channel
copy. Also the joint LP's bound of each side (weak duality), for comparison.

Run: ``PYTHONPATH=. python scripts/lossy_milp_gap.py [--outputs 0 1 ...] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import numpy as np

from exactcomp.domain import Box
from exactcomp.highs.lp import Lp
from exactcomp.io.binding import load
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.verify.difflp import side_bound
from exactcomp.verify.diffmilp import JointMilp
from exactcomp.verify.pairs import Pair
from exactcomp.verify.tighten import tightened_pair

MODEL = "models/digits_64-100-100-10_l1-0e+00_s0.pt"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--outputs", type=int, nargs="*", default=list(range(10)))
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--tols", type=float, nargs="*", default=[1.0, 0.5])
    p.add_argument("--tighten", type=float, default=20.0)
    p.add_argument("--dual", action="store_true", help="also the dual bound without a cut-off")
    a = p.parse_args()
    f = load(MODEL)
    box = Box(np.zeros(64), np.ones(64))
    g = quantize_network(f, [8, 8, 8]).network
    pair = tightened_pair(Pair.prepare(f, f, box, range(10)), box, a.tighten)
    pair = dataclasses.replace(pair, g=g)
    t0, c0 = time.perf_counter(), _cpu()
    milp = JointMilp(pair, box)
    phases = sum(len(c.phases) for c in milp.cols)
    print(
        f"built in {time.perf_counter() - t0:.1f} s wall / {_cpu() - c0:.1f} s CPU; "
        f"{milp.lp.matrix.shape[0]} rows, {milp.lp.matrix.shape[1]} columns, {phases} binaries"
    )
    h = Lp.from_model(milp.lp)
    hdr = "| output, sign | joint LP | " + " | ".join(
        f"tol {t}: verdict, wall / CPU s" for t in a.tols
    )
    print(hdr + (" | dual bound after the time (wall / CPU s) |" if a.dual else " |"))
    for j in a.outputs:
        for sign in (1.0, -1.0):
            got = side_bound(h, milp.lp, pair, milp.cols[-1].hf, milp.cols[-1].hg, j, -sign, None)
            cells = [f"{j}, {'+' if sign > 0 else '-'}", f"{got[0]:.3f}" if got else "-"]
            for tau in a.tols:
                t, c = time.perf_counter(), _cpu()
                ans = milp.decide(j, sign, tau, a.seconds)
                cells.append(
                    f"{ans.verdict.value} (seen {ans.seen:.3f}; {ans.status}), "
                    f"{time.perf_counter() - t:.1f} / {_cpu() - c:.1f}"
                )
            if a.dual:
                t, c = time.perf_counter(), _cpu()
                bound, text = milp.dual_bound(j, sign, a.seconds)
                cells.append(
                    f"{bound:.3f} ({text}), {time.perf_counter() - t:.1f} / {_cpu() - c:.1f}"
                )
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
