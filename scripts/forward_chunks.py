"""`Network.forward` CPU seconds per 100,000 points by `FORWARD_CHUNK` (RESULTS.md "budget17",
table 2). Usage: `OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python scripts/forward_chunks.py`."""

import resource
import time

import numpy as np

import exactcomp.network as N
from exactcomp.io.binding import load

rng = np.random.default_rng(0)
nets = {
    n: load(p)
    for n, p in [
        ("avg", "models/real/conv/Convnet_avgpool.onnx"),
        ("max", "models/real/conv/Convnet_maxpool.onnx"),
        ("cifar", "models/real/conv/cifar_base_kw.onnx"),
        ("digits", "models/digits_64-100-100-10_l1-0e+00_s0.pt"),
    ]
}
for name, net in nets.items():
    n = {"avg": 2048, "max": 1024, "cifar": 1024, "digits": 100000}[name]
    x = rng.random((n, net.input_size))
    for e in [19, 20, 21, 22]:
        N.FORWARD_CHUNK = 1 << e
        a = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.perf_counter()
        net.forward(x)
        b = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
        print(
            f"{name} 2^{e}: cpu/100k pts {cpu * 100000 / n:.2f} (sys {(b.ru_stime - a.ru_stime) * 100000 / n:.2f}) wall {time.perf_counter() - w0:.2f}",
            flush=True,
        )
