"""Per-layer bit widths against the 6x target of ``quantize --tol 2.0`` (issue 15, lossy6).

The digits 64-100-100-10 model with l1 = 0 over [0,1]^64: for each assignment, the bytes of
the ONNX file :func:`exactcomp.io.onnx_quant.save_quantized_onnx` writes (INT8, INT4 for 3-
and 4-bit grids, INT2 for 2-bit and ternary; read back and compared), the ratio to the
float32 file (73,857 B), the sampled max |f - g| (sampling + gradient ascent, a lower bound)
and, with ``--proven``, the proven bound (``f``'s bounds tightened, then the joint LP).
``--method``: the quantiser, ``corrected`` (the default of ``quantize``) or ``rtn``;
``--bits 4,4,8 ...``: these assignments only.

Run: ``PYTHONPATH=. python scripts/lossy_bits_size.py [--proven] [--method rtn]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from exactcomp.domain import Box
from exactcomp.io.binding import load
from exactcomp.io.onnx_quant import save_quantized_onnx
from exactcomp.rewrite.compensation import domain_compensation
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.rewrite.structural import drop_unused_grids
from exactcomp.verify.charge import Charger, sampled_max_difference

MODEL = "models/digits_64-100-100-10_l1-0e+00_s0.pt"
FLOAT32_BYTES = 73_857
ASSIGNMENTS = [
    (16, 8, 8), (8, 8, 8), (8, 4, 8), (8, 4, 4), (4, 8, 8), (4, 4, 8), (4, 4, 4),
    (8, 3, 8), (8, 2, 8), (8, 1.5, 8), (8, 4, 2), (8, 2, 4), (4, 2, 8),
]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--proven", action="store_true", help="also the proven bound (slow)")
    p.add_argument("--method", choices=("corrected", "rtn"), default="corrected")
    p.add_argument("--bits", nargs="*", default=(), help="assignments such as 4,4,8")
    a = p.parse_args()
    f = load(MODEL)
    box = Box(np.zeros(64), np.ones(64))
    comp = domain_compensation(f, [box]) if a.method == "corrected" else None
    todo = [tuple(float(b) for b in s.split(",")) for s in a.bits] or ASSIGNMENTS
    charger = Charger(f, [box], tighten_seconds=20.0) if a.proven else None
    print("| bits per layer | bytes | vs float32 | sampled | proven |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for bits in todo:
            qn = quantize_network(f, list(bits), comp)
            small, grids = drop_unused_grids(qn.network, qn.weights)
            path = Path(tmp) / "q.onnx"
            save_quantized_onnx(small, grids, path)  # checked in onnxruntime first
            back = load(path)
            assert all(
                np.array_equal(x.weight, y.weight)
                for x, y in zip(back.layers, small.layers, strict=True)
            )
            size = path.stat().st_size
            sampled = sampled_max_difference(f, qn.network, [box])
            proven = charger.proven(qn.network, lp_seconds=30.0) if charger else float("nan")
            name = ", ".join("fp16" if b == 16 else f"{b:g}" for b in bits)
            print(f"| {name} | {size:,} | {FLOAT32_BYTES / size:.2f}x | {sampled:.3f} | "
                  f"{proven:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
