"""Where the lossy proof loses: bounds of max |f - g| on the digits model with l1 = 0 over
[0,1]^64 for the 8-bit per-channel copy and the refit pruning of 18 % (issue 15, lossy5).

For each pair: the symbolic bound, the symbolic bound with the layer-1 differences
back-substituted (``DIFF_FROM = 1``), the joint LP without and with phase columns, each on
``f``'s root bounds, on LP-tightened bounds, and on *sampled* layer-1 ranges of ``f`` (narrower
than the exact ones, so an optimistic limit of what exact MILP bounds could buy; not sound);
then the joint LP with the layer-1 difference ranges replaced by their sampled + gradient
ascent ranges (again optimistic). Also f's layer-1 widths and the layer-1 difference widths,
proven vs sampled + ascent.

Run: ``PYTHONPATH=. python scripts/lossy_proof_gap.py`` (about 5 min CPU).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from exactcomp.domain import Box
from exactcomp.highs.lp import Lp
from exactcomp.io.binding import load
from exactcomp.rewrite import edits, lossy, refit
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.verify import symbolic
from exactcomp.verify.box_bounds import symbolic_bound
from exactcomp.verify.charge import Charger
from exactcomp.verify.difflp import joint_lp, layer_differences, side_bound
from exactcomp.verify.pairs import Pair
from exactcomp.verify.tighten import tightened_pair

MODEL = "models/digits_64-100-100-10_l1-0e+00_s0.pt"


def _refit_pair(f, box):
    """The search's candidate order with centred weights and refits, up to 20 % of the
    parameters (18.1 % removed): the network of RESULTS.md "lossy4" at 20 %."""
    charger = Charger(f, [box])
    ranges = edits.relu_ranges(f, charger)
    fit = refit.fit_data(f, [box])
    cands = edits.candidates(f, ranges, [box], centre=True)
    factors = lossy._amplification(f, cands, ranges, charger)
    score = np.array([c.local * factors[lossy._layer(c)] / c.saved for c in cands])
    order = [edits.as_refit(cands[i]) for i in np.argsort(score, kind="stable")]
    got, n = 0, 0
    while n < len(order) and got < 0.20 * f.num_parameters:
        got, n = got + order[n].saved, n + 1
    return edits.apply(f, order[:n], ranges, fit)


def _ascend(fun, grad, x0, sign, steps=150, rate=0.02):
    """Projected sign-gradient ascent of ``sign * fun`` per neuron from starts ``x0`` (n, s, d)."""
    x = x0.copy()
    for _ in range(steps):
        x = np.clip(x + rate * np.sign(sign * grad(x)), 0.0, 1.0)
    val = fun(x)
    return val.max(axis=1) if sign > 0 else val.min(axis=1)


def _layer1_ranges(nets, points):
    """Sampled + ascent range of layer 1's pre-activation of ``nets[0]`` (one net) or of the
    difference ``nets[1] - nets[0]`` (two nets)."""
    signs = [-1.0, 1.0] if len(nets) == 2 else [1.0]

    def fun(x):  # (..., d) -> (..., n); with x of shape (n, s, d), neuron n's own starts
        out = 0.0
        for c, net in zip(signs, nets, strict=True):
            a, b = net.layers[0], net.layers[1]
            h = np.maximum(x @ a.weight.T + a.bias, 0.0)
            if x.ndim == 2:
                out = out + c * (h @ b.weight.T + b.bias)
            else:
                out = out + c * (np.einsum("nsj,nj->ns", h, b.weight) + b.bias[:, None])
        return out

    def grad(x):
        out = 0.0
        for c, net in zip(signs, nets, strict=True):
            a, b = net.layers[0], net.layers[1]
            on = (x @ a.weight.T + a.bias > 0).astype(float)
            out = out + c * np.einsum("nsj,nj,jd->nsd", on, b.weight, a.weight)
        return out

    z = fun(points)  # (P, n)
    lo, hi = z.min(axis=0), z.max(axis=0)
    for sign in (1.0, -1.0):
        starts = points[np.argsort(-sign * z, axis=0)[:8]].transpose(1, 0, 2).copy()
        got = _ascend(fun, grad, starts, sign)
        lo, hi = (lo, np.maximum(hi, got)) if sign > 0 else (np.minimum(lo, got), hi)
    return lo, hi


def _joint(pair, box, diffs, phases):
    lp, cols = joint_lp(pair, box, diffs, phases=phases)
    h = Lp.from_model(lp)
    worst = 0.0
    for i in pair.outputs:
        for s in (1.0, -1.0):
            got = side_bound(h, lp, pair, cols[-1].hf, cols[-1].hg, i, s, None)
            worst = max(worst, got[0] if got is not None else np.inf)
    return worst


def main() -> None:
    f = load(MODEL)
    box = Box(np.zeros(64), np.ones(64))
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.random((20000, 64)), (rng.random((20000, 64)) < 0.5) * 1.0])
    root = Pair.prepare(f, f, box, range(10))
    tight = tightened_pair(root, box, 60.0, cuts=False)
    cut = tightened_pair(root, box, 60.0)  # the LP, then ideal cuts (the default since lossy5)
    f_lo, f_hi = _layer1_ranges([f], points)
    print(
        f"f layer 1 mean width: root {np.mean(root.root[1][1] - root.root[1][0]):.2f}, "
        f"LP {np.mean(tight.root[1][1] - tight.root[1][0]):.2f}, "
        f"sampled + ascent {np.mean(f_hi - f_lo):.2f}"
    )
    sampled = dataclasses.replace(root, root=(root.root[0], (f_lo, f_hi), root.root[2]))
    pairs = {"8-bit": quantize_network(f, [8, 8, 8]).network, "refit 18 %": _refit_pair(f, box)}
    for name, g in pairs.items():
        d_lo, d_hi = _layer1_ranges([f, g], points)
        print(
            f"\n{name}: sampled max |f - g| {np.abs(g.forward(points) - f.forward(points)).max():.3f}"
        )
        print("| f's layer-1 bounds | symbolic | + d1 back-subst. | joint LP | + phases |")
        print("|---|---|---|---|---|")
        rows = (("root", root), ("LP", tight), ("LP + ideal cuts", cut), ("sampled", sampled))
        for label, p in rows:
            pg = dataclasses.replace(p, g=g)
            s1 = symbolic_bound(p, g, box).max()
            symbolic.DIFF_FROM = 1
            s2 = symbolic_bound(p, g, box).max()
            symbolic.DIFF_FROM = 2
            diffs = layer_differences(pg, box)
            j1, j2 = _joint(pg, box, diffs, False), _joint(pg, box, diffs, True)
            print(f"| {label} | {s1:.3f} | {s2:.3f} | {j1:.3f} | {j2:.3f} |")
        pg = dataclasses.replace(tight, g=g)
        diffs = layer_differences(pg, box)
        print(
            f"d1 mean width: proven {np.mean(diffs[1][1] - diffs[1][0]):.3f}, "
            f"sampled + ascent {np.mean(d_hi - d_lo):.3f}"
        )
        opt = _joint(pg, box, [diffs[0], (d_lo, d_hi)], True)
        print(f"joint LP (LP bounds, phases) with d1 := sampled + ascent (optimistic): {opt:.3f}")


if __name__ == "__main__":
    main()
