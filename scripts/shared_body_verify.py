"""``verify`` on pairs that differ in their last layer alone (issue 15; benchmarks/RESULTS.md
"head14"): the shipped networks against copies with their output layer quantised
(round-to-nearest, per channel), at tolerances of 2x and 1.25x the sampled difference, 60 s
each; one JSON line per run (verdict, bounds, wall and CPU seconds).

    PYTHONPATH=TREE OPENBLAS_NUM_THREADS=1 python scripts/shared_body_verify.py [FIRST]

``TREE`` is the checkout whose ``exactcomp`` runs (compare two with the same command);
``FIRST`` skips the first cases.
"""

import json
import sys
import time

import numpy as np

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.io.binding import bind_domain, load
from exactcomp.io.vnnlib import read_vnnlib
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.verify.charge import sampled_max_difference

MNIST = "models/real/mnistfc/"
CASES = [
    ("digits l1=0", "models/digits_64-100-100-10_l1-0e+00_s0.pt", None, 8),
    ("digits l1=0", "models/digits_64-100-100-10_l1-0e+00_s0.pt", None, 4),
    ("256x2 prop_0", MNIST + "mnist-net_256x2.onnx", MNIST + "prop_0_0.03.vnnlib", 8),
    ("256x2 prop_0", MNIST + "mnist-net_256x2.onnx", MNIST + "prop_0_0.03.vnnlib", 4),
    ("256x4 prop_0", MNIST + "mnist-net_256x4.onnx", MNIST + "prop_0_0.03.vnnlib", 4),
]

for name, path, prop, bits in CASES[int(sys.argv[1]) if len(sys.argv) > 1 else 0 :]:
    f = load(path)
    n = f.input_size
    domain = Box(np.zeros(n), np.ones(n)) if prop is None else list(read_vnnlib(prop, n).boxes)
    g = quantize_network(f, [None] * (len(f.layers) - 1) + [bits]).network
    sampled = sampled_max_difference(f, g, bind_domain(domain, f))
    for factor in (2.0, 1.25):
        c0, t0 = time.process_time(), time.perf_counter()
        r = api.verify_equivalence(f, g, domain, tol=factor * sampled, time_limit=60)
        row = {
            "case": name,
            "bits": bits,
            "sampled": sampled,
            "tol": factor * sampled,
            "status": r.status.name,
            "upper": r.upper_bound,
            "lower": r.lower_bound,
            "wall": round(time.perf_counter() - t0, 1),
            "cpu": round(time.process_time() - c0, 1),
        }
        print(json.dumps(row), flush=True)
