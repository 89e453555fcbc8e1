"""The parts of ``quantize --method corrected``, one at a time (issue 15, "quant7").

For a digits model over [0,1]^64 and each bit assignment: the symbolic proven bound (``f``'s
bounds LP-tightened 20 s; no joint LP, so seconds per row), the sampled max |f - g| (sampling +
gradient ascent, a lower bound) and the agreement on the digits test split, for:
``rtn``; bias correction alone with the centre of ``f``'s proven input ranges (linear
relaxation bounds, ``bias(box)``)
or the mean over domain points (``bias(mean)``); ``+search`` (the scale search, no rounding
moves); ``+round(all)`` (every weight may take its other neighbour, not only near ties);
``corrected`` (what ``quantize`` does).

Run: ``PYTHONPATH=. python scripts/quant_variants.py [MODEL] [--bits 8,8,8 4,4,8 ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import exactcomp.rewrite.quantize as quant
from benchmarks.digits import test_set
from exactcomp.bounds.linear import linear_bounds
from exactcomp.domain import Box
from exactcomp.io.binding import load
from exactcomp.rewrite.compensation import domain_compensation
from exactcomp.verify.charge import Charger, sampled_max_difference

MODEL = "models/digits_64-100-100-10_l1-0e+00_s0.pt"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?", default=MODEL)
    p.add_argument("--bits", nargs="*", default=["8,8,8", "4,4,4", "4,4,8", "8,4,8", "8,2,4"])
    a = p.parse_args()
    f = load(a.model)
    box = Box(np.zeros(64), np.ones(64))
    charger = Charger(f, [box], tighten_seconds=20.0)
    comp = domain_compensation(f, [box])
    roots = linear_bounds(f, box)  # f's proven pre-activation ranges (linear relaxation)
    box_centres = [(box.lower + box.upper) / 2] + [
        (np.maximum(lo, 0) + np.maximum(hi, 0)) / 2 for lo, hi in roots[:-1]
    ]
    bias_only = dataclasses.replace(comp, moment=None)
    variants = {
        "rtn": (None, {}),
        "bias(box)": (dataclasses.replace(bias_only, centre=tuple(box_centres)), {"search": 0}),
        "bias(mean)": (bias_only, {"search": 0}),
        "+search": (bias_only, {}),
        "+round(all)": (comp, {"band": 0.5}),
        "corrected": (comp, {}),
    }
    x, _ = test_set()
    print("| bits | variant | symbolic proven | sampled | agreement |")
    print("|---|---|---|---|---|")
    for text in a.bits:
        bits = [float(b) for b in text.split(",")]
        for name, (c, knobs) in variants.items():
            saved = quant.SEARCH_MAX_BITS, quant.ROUNDING_BAND
            quant.SEARCH_MAX_BITS = knobs.get("search", saved[0])
            quant.ROUNDING_BAND = knobs.get("band", saved[1])
            try:
                g = quant.quantize_network(f, bits, c).network
            finally:
                quant.SEARCH_MAX_BITS, quant.ROUNDING_BAND = saved
            agree = float((f.forward(x).argmax(1) == g.forward(x).argmax(1)).mean())
            print(f"| {text} | {name} | {charger.proven(g):.3f} | "
                  f"{sampled_max_difference(f, g, [box]):.3f} | {100 * agree:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
