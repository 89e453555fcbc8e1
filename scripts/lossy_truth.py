"""Lower bounds of the *true* max |f - g| for the issue-15 digits targets (truth15).

``f`` = the digits 64-100-100-10 model with l1 = 0 over [0,1]^64; ``g`` one of its lossy
copies: (a) the 8-bit copy ``quantize --bits 8`` writes (``corrected``) and plain
round-to-nearest; (b) every per-layer bit assignment whose ONNX file is at least 6x smaller
than the float32 file (73,857 B); (c) 20 % of the parameters removed by each candidate family
of ``compress --tol`` (global magnitude pruning, low rank, neurons -> constants in the
search's order, with refit, the searched network itself).

Per pair, stage by stage (each a float64 lower bound, re-checked at the end in exact
rational arithmetic at the best point):

1. ``sampled``: :func:`exactcomp.verify.charge.sampled_max_difference` (what reports give;
   its point, :func:`~exactcomp.verify.charge.sampled_worst`, starts every side below);
2. ``ascent``: per output and sign, projected sign-gradient ascent
   (:func:`exactcomp.verify.falsify.ascend`) from ``--starts`` random corners and as many
   uniform points, plus the side's best sampled points;
3. ``coordinate``: the climb of :func:`exactcomp.verify.local_search.local_search` (greedy
   coordinate moves to 0, 1/2 or 1) from the ``--keep`` best ascent points of each side;
4. ``kicks``: :func:`~exactcomp.verify.local_search.local_search` with ``--kicks`` kicks from the
   best point of each side (a random 1/8 of its coordinates re-drawn in {0, 1/2, 1}, then
   the climb again, the better point kept);
5. ``region``: per side, from its best point, an exact local search over activation regions:
   on the joint activation region of ``f`` and ``g`` at the point, ``s (f_o - g_o)`` is
   affine, so its maximum over region and box is one LP (:class:`exactcomp.highs.lp.Lp`);
   from the LP's optimum, each neuron of ``f`` or ``g`` whose pre-activation is ~0 there
   (the region's tight walls, at most ``--walls``) is flipped and the neighbouring region's
   LP solved; the search moves to the best improving neighbour, ``--region-lps`` LPs per side;
6. ``milp``: with ``--milp S``, the exact joint MILP of :mod:`exactcomp.verify.diffmilp`
   asked, on the best ``--milp-sides`` sides, whether the side stays within the best value
   found so far (S seconds each): any incumbent it finds beyond it is re-evaluated in float64.

The points with ``|f - g| > tol`` (exact arithmetic; tol 0.5 for 8 bits, 2.0 for 6x, 1.0 for
20 % removed) are saved under ``--save`` as ``truth15_<group>.npy``, one row per such pair in
the table's order (``--suffix`` appended to the name).

Run: ``PYTHONPATH=. python scripts/lossy_truth.py --pairs 8bit [6x] [prune] [--milp 60]``;
the runs of benchmarks/RESULTS.md "truth15": ``--pairs 8bit --starts 200 --kicks 100
--region-lps 100 --milp 60``; ``--pairs 6x --stop`` (stop a pair's stages once past its tol);
``--pairs 6x --bits 4,4,4 4,4,8 ... --region-lps 40 --suffix _hardest``; ``--pairs prune
--region-lps 40 --models c3.pt c5.pt`` (networks written by ``compress --tol 3`` and ``5``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from exactcomp.domain import Box
from exactcomp.io.binding import load
from exactcomp.io.onnx_quant import save_quantized_onnx
from exactcomp.lossy_result import nonzero_parameters
from exactcomp.network import Network
from exactcomp.rewrite import edits, lossy, lowrank, refit
from exactcomp.rewrite.compensation import domain_compensation
from exactcomp.rewrite.magnitude import magnitude_order
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.rewrite.structural import drop_unused_grids
from exactcomp.verify import falsify, local_search
from exactcomp.verify.charge import Charger, sampled_worst

MODEL = "models/digits_64-100-100-10_l1-0e+00_s0.pt"
FLOAT32_BYTES = 73_857
BOX = Box(np.zeros(64), np.ones(64))
WIDTHS = (1.5, 2, 3, 4, 8, 16, None)  # None: float32
SHARE = 0.20  # compress --tol 1.0's target share of the parameters


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def strong_search(
    f: Network, g: Network, box: Box, a, rng: np.random.Generator, stop: float = np.inf
) -> dict:
    """The stages of the module docstring; per stage the best value, CPU and wall seconds.
    Stages after the first whose value passes ``stop`` are skipped."""
    m, d = f.output_size, box.dim
    sides = [(i, s) for i in range(m) for s in (1.0, -1.0)]
    out: dict = {}
    w, c = _clock()
    v0, x0 = sampled_worst(f, g, [box])
    out["sampled"] = (v0, *np.subtract(_clock(), (w, c)))
    outs, sgn = np.array([i for i, _ in sides]), np.array([s for _, s in sides])
    best_x = np.repeat(x0[None, :], len(sides), axis=0)  # every side starts at sampled's point
    best_v = local_search.side_values(f, g, best_x, outs, sgn)
    if v0 > stop:
        return _finish(out, sides, best_x, best_v)
    w, c = _clock()
    probe = falsify.candidate_points(box, 4096, rng)
    diff = f.forward(probe) - g.forward(probe)
    pools = []
    for n, (i, s) in enumerate(sides):
        seeds = probe[np.argsort(-s * diff[:, i])[: a.keep]]
        corners = (rng.random((a.starts, d)) < 0.5).astype(float)
        starts = np.concatenate([seeds, box.clip(corners), box.sample(a.starts, rng)])
        y = falsify.ascend(f, g, box, starts, falsify.linf_coefficients(m, i, s), steps=a.steps)
        v = local_search.side_values(f, g, y, np.full(len(y), i), np.full(len(y), s))
        top = np.argsort(-v)[: a.keep]
        pools.append(y[top])
        if v[top[0]] > best_v[n]:
            best_x[n], best_v[n] = y[top[0]], v[top[0]]
    out["ascent"] = (float(best_v.max()), *np.subtract(_clock(), (w, c)))
    if best_v.max() > stop:
        return _finish(out, sides, best_x, best_v)
    w, c = _clock()
    xs = np.concatenate(pools)
    y, v = local_search.local_search(
        f, g, box, xs, np.repeat(outs, a.keep), np.repeat(sgn, a.keep), rng, kicks=0
    )
    for n in range(len(sides)):
        part = slice(n * a.keep, (n + 1) * a.keep)
        k = int(np.argmax(v[part]))
        if v[part][k] > best_v[n]:
            best_x[n], best_v[n] = y[part][k], v[part][k]
    out["coordinate"] = (float(best_v.max()), *np.subtract(_clock(), (w, c)))
    if best_v.max() > stop:
        return _finish(out, sides, best_x, best_v)
    w, c = _clock()
    best_x, best_v = local_search.local_search(f, g, box, best_x, outs, sgn, rng, kicks=a.kicks)
    out["kicks"] = (float(best_v.max()), *np.subtract(_clock(), (w, c)))
    if a.region_lps > 0:
        w, c = _clock()
        for n, (i, s) in enumerate(sides):
            best_x[n], best_v[n] = region_ascent(f, g, box, best_x[n], i, s, a)
        out["region"] = (float(best_v.max()), *np.subtract(_clock(), (w, c)))
    if a.milp > 0:
        w, c = _clock()
        best_x, best_v = _milp_incumbents(f, g, box, sides, best_x, best_v, a)
        out["milp"] = (float(best_v.max()), *np.subtract(_clock(), (w, c)))
    return _finish(out, sides, best_x, best_v)


def _finish(out: dict, sides, best_x, best_v) -> dict:
    n = int(np.argmax(best_v))
    out["best"] = (best_x[n], sides[n])
    return out


def _patterns(net: Network, x: np.ndarray) -> list[np.ndarray]:
    return [z[0] > 0.0 for z in net.preactivations(x[None])[:-1]]


def _region(net: Network, on: list[np.ndarray]):
    """``net``'s output ``A x + d`` on the activation region ``on`` (the ReLU layers' phases)
    and the region's rows ``G x <= r``, with the pre-activations ``(Z, z)`` of every neuron."""
    a, d = np.eye(net.input_size), np.zeros(net.input_size)
    rows, rhs = [], []
    for k, layer in enumerate(net.layers):
        za, zd = layer.weight @ a, layer.weight @ d + layer.bias
        if k == len(net.layers) - 1:
            return za, zd, np.vstack(rows), np.concatenate(rhs)
        sign = np.where(on[k], -1.0, 1.0)  # on: -z <= 0; off: z <= 0
        rows.append(sign[:, None] * za)
        rhs.append(-sign * zd)
        a, d = za * on[k][:, None], zd * on[k]
    raise AssertionError("unreachable")


def _region_lp(f, g, box, on_f, on_g, i, s):
    """The maximum of ``s (f_i - g_i)`` over the joint region and the box: (value, x) or None."""
    from exactcomp.highs.lp import Lp

    af, _, rf, bf = _region(f, on_f)
    ag, _, rg, bg = _region(g, on_g)
    rows, rhs = np.vstack([rf, rg]), np.concatenate([bf, bg])
    lp = Lp.from_columns(box.lower, box.upper, maximize=True)
    n = box.dim
    lp.add_rows(np.full(len(rows), -np.inf), rhs, np.arange(len(rows)) * n,
                np.tile(np.arange(n), len(rows)), rows.reshape(-1))  # fmt: skip
    lp.set_cost(s * (af[i] - ag[i]))
    values = lp.solve().values
    if values is None:
        return None
    y = box.clip(np.asarray(values[:n]))
    return float(local_search.side_values(f, g, y[None], [i], [s])[0]), y


def region_ascent(f, g, box, x, i, s, a):
    """The ``region`` stage of the module docstring from ``x``: (best point, its value)."""
    best_v = float(local_search.side_values(f, g, x[None], [i], [s])[0])
    best_x = x
    on_f, on_g = _patterns(f, x), _patterns(g, x)
    got = _region_lp(f, g, box, on_f, on_g, i, s)
    lps = 1
    while got is not None and lps < a.region_lps:
        v, y = got
        if v > best_v:
            best_x, best_v = y, v
        walls = []
        for net in (f, g):
            zs = net.preactivations(y[None])[:-1]
            for k, z in enumerate(zs):
                for j in np.flatnonzero(np.abs(z[0]) < 1e-6):
                    walls.append((net is g, k, int(j), abs(float(z[0, j]))))
        walls.sort(key=lambda w: w[3])
        step = None
        for which, k, j, _ in walls[: a.walls]:
            nf, ng = [o.copy() for o in on_f], [o.copy() for o in on_g]
            target = ng if which else nf
            target[k][j] = not target[k][j]
            nxt = _region_lp(f, g, box, nf, ng, i, s)
            lps += 1
            if nxt is not None and nxt[0] > best_v + 1e-9 and (step is None or nxt[0] > step[0][0]):
                step = (nxt, nf, ng)
            if lps >= a.region_lps:
                break
        if step is None:
            break
        got, on_f, on_g = step
    return best_x, best_v


def _milp_incumbents(f, g, box, sides, best_x, best_v, a):
    """Ask the exact joint MILP whether each of the best ``a.milp_sides`` sides stays within
    the best value found (``decide``'s sign is that of ``g - f``): an incumbent beyond it is
    a better point (re-evaluated in float64 by ``decide``)."""
    from exactcomp.verify.diffmilp import JointMilp, Verdict
    from exactcomp.verify.pairs import Pair
    from exactcomp.verify.tighten import tightened_pair

    pair = tightened_pair(Pair.prepare(f, f, box, range(f.output_size)), box, a.tighten)
    milp = JointMilp(dataclasses.replace(pair, g=g), box)
    for n in np.argsort(-best_v)[: a.milp_sides]:
        i, s = sides[n]
        got = milp.decide(i, -s, float(best_v[n]), a.milp)
        print(f"  milp side ({i}, {s:+g}): {got.verdict.value}, seen {got.seen:.4f} against "
              f"{best_v[n]:.4f}, {got.status}, {got.seconds:.1f} s wall", flush=True)  # fmt: skip
        if got.verdict is Verdict.COUNTEREXAMPLE and got.seen > best_v[n]:
            best_x[n], best_v[n] = got.x, got.seen
    return best_x, best_v


def onnx_bytes(f: Network, bits, comp) -> int:
    qn = quantize_network(f, list(bits), comp)
    small, grids = drop_unused_grids(qn.network, qn.weights)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.onnx"
        save_quantized_onnx(small, grids, path)
        return path.stat().st_size


def quant_pairs(f: Network, which: str, only=()):
    comp = domain_compensation(f, [BOX])
    if which == "8bit":
        yield "8-bit corrected", quantize_network(f, [8, 8, 8], comp).network, 0.5
        yield "8-bit rtn", quantize_network(f, [8, 8, 8], None).network, 0.5
        return
    for bits in only or itertools.product(WIDTHS, repeat=len(f.layers)):
        size = onnx_bytes(f, bits, comp)
        if FLOAT32_BYTES / size < 6.0:
            continue
        name = "/".join("fp32" if b is None else "fp16" if b == 16 else f"{b:g}" for b in bits)
        for method, cm in (("corrected", comp), ("rtn", None)):
            g = quantize_network(f, list(bits), cm).network
            yield f"{name} {method} ({size:,} B, {FLOAT32_BYTES / size:.2f}x)", g, 2.0


def _prefix(f: Network, order, ranges, fit=None) -> int:
    """The fewest leading edits of ``order`` that remove ``SHARE`` of the nonzero parameters
    (edits overlap: a weight of a removed neuron saves nothing twice), by bisection."""
    total = nonzero_parameters(f)
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        kept = nonzero_parameters(edits.apply(f, order[:mid], ranges, fit))
        lo, hi = (mid + 1, hi) if kept > (1 - SHARE) * total else (lo, mid)
    return lo


def _removed(f: Network, g: Network) -> str:
    return f"{1 - nonzero_parameters(g) / nonzero_parameters(f):.1%} removed"


def prune_pairs(f: Network, models=()):
    """20 % of the parameters removed by each candidate family (module docstring), then the
    networks of ``models`` (files ``compress --tol`` wrote)."""
    for path in models:
        g = load(path)
        yield f"{path} ({_removed(f, g)})", g, 1.0
    charger = Charger(f, [BOX])
    ranges = edits.relu_ranges(f, charger)
    for centre in (False, True):
        order = magnitude_order(f, edits.candidates(f, ranges, [BOX], centre=centre))
        name = "magnitude, global" + (", centred" if centre else "")
        g = edits.apply(f, order[: _prefix(f, order, ranges)], ranges)
        yield f"{name} ({_removed(f, g)})", g, 1.0
    fit = refit.fit_data(f, [BOX])
    cands = edits.candidates(f, ranges, [BOX], centre=True)
    factors = lossy._amplification(f, cands, ranges, charger)
    score = np.array([c.local * factors[lossy._layer(c)] / c.saved for c in cands])
    order = [cands[i] for i in np.argsort(score, kind="stable")]
    g = edits.apply(f, order[: _prefix(f, order, ranges)], ranges)
    yield f"search order: constants, centred weights ({_removed(f, g)})", g, 1.0
    refits = [edits.as_refit(c) for c in order]
    g = edits.apply(f, refits[: _prefix(f, refits, ranges, fit)], ranges, fit)
    yield f"search order, neurons refitted ({_removed(f, g)})", g, 1.0
    for k, rank in ((1, 32), (0, 17)):
        lo, hi = lowrank.input_range([BOX], ranges, k)
        fa = lowrank.factorize(f, k, rank, lo, hi, np.float32)
        saved = f.layers[k].weight.size - rank * sum(f.layers[k].weight.shape)
        name = f"low rank: layer {k} rank {rank} ({saved / nonzero_parameters(f):.1%} removed)"
        yield name, lowrank.with_factors(f, [fa]), 1.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", nargs="+", default=["8bit"], choices=("8bit", "6x", "prune"))
    p.add_argument("--starts", type=int, default=100, help="corners and uniform starts per side")
    p.add_argument("--keep", type=int, default=8, help="points per side kept between stages")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--kicks", type=int, default=20)
    p.add_argument("--region-lps", type=int, default=0, help="LPs per side (0: off)")
    p.add_argument("--walls", type=int, default=16, help="neighbour regions tried per step")
    p.add_argument("--milp", type=float, default=0.0, help="seconds per MILP side (0: off)")
    p.add_argument("--milp-sides", type=int, default=2)
    p.add_argument("--tighten", type=float, default=20.0)
    p.add_argument("--bits", nargs="*", default=(), help="6x: only these, such as 4,4,8")
    p.add_argument("--models", nargs="*", default=(), help="prune: also these networks")
    p.add_argument("--stop", action="store_true", help="stop a pair's stages past its tol")
    p.add_argument("--suffix", default="", help="of the saved file names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="benchmarks/results")
    a = p.parse_args()
    f = load(MODEL)
    stages = ["sampled", "ascent", "coordinate", "kicks"]
    stages += (["region"] if a.region_lps > 0 else []) + (["milp"] if a.milp > 0 else [])
    print("| pair | tol | " + " | ".join(stages) + " | best side | exact at best | saved |")
    print("|---" * (len(stages) + 5) + "|")
    for which in a.pairs:
        only = [tuple(None if b == "32" else float(b) for b in x.split(",")) for x in a.bits]
        pairs = prune_pairs(f, a.models) if which == "prune" else quant_pairs(f, which, only)
        lowest = (np.inf, "")
        found: list[np.ndarray] = []
        path = Path(a.save) / f"truth15_{which}{a.suffix}.npy"
        for name, g, tol in pairs:
            rng = np.random.default_rng(a.seed)
            got = strong_search(f, g, BOX, a, rng, tol if a.stop else np.inf)
            x, (i, s) = got.pop("best")
            exact = float(falsify.exact_difference(f, g, x, "linf"))
            saved = ""
            if exact > tol:
                saved = f"row {len(found)} of `{path}`"
                found.append(x)
            lowest = min(lowest, (exact, name))
            cells = [f"{got[k][0]:.4f} ({got[k][2]:.1f} s)" if k in got else "-" for k in stages]
            print(f"| {name} | {tol:g} | " + " | ".join(cells) +
                  f" | ({i}, {s:+g}) | {exact:.4f} | {saved} |", flush=True)  # fmt: skip
        if found:
            np.save(path, np.array(found))
        print(f"\n{which}: {len(found)} pairs above their tol; the smallest lower bound "
              f"{lowest[0]:.4f} ({lowest[1]})\n", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
