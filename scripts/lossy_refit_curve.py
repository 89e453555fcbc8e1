"""Sampled curve (parameters removed vs sampled max |f - g|) and symbolic proof of the lossy
search's candidate order on the digits model with l1 = 0 over [0,1]^64, for three edit sets:
the old edits (neuron -> constant, weight -> 0), weights centred (the zeroed input's midpoint
moved into the bias), and centred weights with neurons removed with refit
(:mod:`exactcomp.rewrite.refit`).

Run: ``PYTHONPATH=. python scripts/lossy_refit_curve.py``. The symbolic bound (no LP
tightening: the search's own, seconds) is the proof column; the CLI adds LP proofs."""

from __future__ import annotations

import numpy as np

from exactcomp.domain import Box
from exactcomp.io.binding import load
from exactcomp.rewrite import edits, lossy, refit
from exactcomp.verify.charge import Charger, sampled_max_difference

MODEL = "models/digits_64-100-100-10_l1-0e+00_s0.pt"
SHARES = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)


def _nonzero(net) -> int:
    return sum(int(np.count_nonzero(la.weight) + np.count_nonzero(la.bias)) for la in net.layers)


def _order(f, box, charger, ranges, centre, use_refit):
    cands = edits.candidates(f, ranges, [box], centre=centre)
    factors = lossy._amplification(f, cands, ranges, charger)
    score = np.array([c.local * factors[lossy._layer(c)] / c.saved for c in cands])
    order = [cands[i] for i in np.argsort(score, kind="stable")]
    if use_refit:
        order = [edits.as_refit(c) for c in order]
    return order


def main() -> None:
    f = load(MODEL)
    box = Box(np.zeros(64), np.ones(64))
    charger = Charger(f, [box])
    ranges = edits.relu_ranges(f, charger)
    fit = refit.fit_data(f, [box])
    kinds = {"old": (False, False), "centred": (True, False), "centred + refit": (True, True)}
    orders = {k: _order(f, box, charger, ranges, *v) for k, v in kinds.items()}
    print(
        "| target share | " + " | ".join(f"{k}: removed, sampled / symbolic" for k in kinds) + " |"
    )
    print("|---" * (len(kinds) + 1) + "|")
    for share in SHARES:
        row = []
        for order in orders.values():
            got, n = 0, 0
            while n < len(order) and got < share * f.num_parameters:
                got, n = got + order[n].saved, n + 1
            g = edits.apply(f, order[:n], ranges, fit)
            removed = 1 - _nonzero(g) / _nonzero(f)
            sampled = sampled_max_difference(f, g, [box], seed=1)
            row.append(f"{removed:.1%}, {sampled:.3f} / {charger.proven(g):.3f}")
        print(f"| {share:.0%} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
