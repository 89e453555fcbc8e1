"""The re-check on sample points, timed: the function of `781ed04` (four passes a point,
copied below) beside `exactcomp.api.sampling.sample_check` (two), on a shipped sparse conv
network and the network `compress` makes of it (RESULTS.md "budget17", table 1).

Usage: `OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python scripts/recheck_cost.py NAME PROP POINTS`,
e.g. `Convnet_avgpool Convnet_avgpool_prop_0_0.02 10000` (models/real/conv/NAME.onnx, PROP.vnnlib).
"""

import resource
import sys
import time

import numpy as np

from exactcomp import api
from exactcomp.api.sampling import CHECK_ENTRIES, check_points, same_values, sample_check, stored
from exactcomp.errors import VerificationError
from exactcomp.io.binding import load
from exactcomp.io.vnnlib import read_vnnlib
from exactcomp.tolerances import DEFAULT

name, prop, pts = sys.argv[1], sys.argv[2], int(sys.argv[3])
f = load(f"models/real/conv/{name}.onnx")
boxes = read_vnnlib(f"models/real/conv/{prop}.vnnlib", f.input_size).boxes
res = api.compress(f, boxes, check=1, jobs=1)
g = res.network
print("same_values(g, stored(g))", same_values(g, stored(g)), g.describe())


def old_check(original, compressed, boxes, *, points, tol, seed=0):
    rng = np.random.default_rng(seed)
    dim = max(boxes[0].dim, *(la.out_features for la in original.layers), 1)
    if points * dim <= CHECK_ENTRIES:
        sizes = [points]
    else:
        per = max(1, CHECK_ENTRIES // dim)
        sizes = [per] * (points // per) + ([points % per] if points % per else [])
    kept = stored(compressed)
    total, worst, deviation = 0, 0.0, 0.0
    for size in sizes:
        x = check_points(boxes, size, rng)
        fx = original.forward(x)
        diff = np.abs(fx - compressed.forward(x))
        allowed = (
            tol.check_abs
            + tol.check_rel * np.maximum(1.0, np.abs(fx))
            + tol.check_scale * original.term_scale(x)
        )
        bad = np.argwhere(diff > allowed)
        if bad.size:
            raise VerificationError("x")
        worst = max(worst, float(diff.max(initial=0.0)))
        deviation = max(deviation, float(np.abs(fx - kept.forward(x)).max(initial=0.0)))
        total += len(x)
    return total, worst, deviation


def t(label, fn):
    a = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    r = fn()
    b = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{label}: user {b.ru_utime - a.ru_utime:.2f} sys {b.ru_stime - a.ru_stime:.2f} wall {time.perf_counter() - w0:.2f} -> {r}",
        flush=True,
    )


t("old", lambda: old_check(f, g, boxes, points=pts, tol=DEFAULT, seed=1))
t("new", lambda: sample_check(f, g, boxes, points=pts, tol=DEFAULT, seed=1))
t(
    "new auto 10s",
    lambda: sample_check(f, g, boxes, points=100_000, tol=DEFAULT, seed=1, seconds=10.0),
)
