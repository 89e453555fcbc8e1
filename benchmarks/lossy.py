"""``python -m benchmarks lossy [--quick]``: certified lossy compression against baselines.

For each shipped digits model over ``[0, 1]^64``: ``compress --tol EPS`` for EPS in
:data:`TOLS`, ``quantize`` to 8, 4 and 2 bits, and at the same size the baselines: global
unstructured magnitude pruning (``torch.nn.utils.prune.global_unstructured``, L1), per-neuron
magnitude pruning (``prune.ln_structured`` on the hidden layers' rows, same share of
neurons) and plain per-tensor round-to-nearest quantisation. Every network, ours or a
baseline's, gets its sampled max error (sampling + gradient ascent, a lower bound) and its
error *proven by our verifier* (the differential bounds against the original), its test
accuracy and its agreement with the original on the digits test split. Writes
``lossy[_quick].json`` / ``.md`` and a Pareto plot ``lossy[_quick].png`` (proven error
against nonzero parameters).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.network import Layer, Network

from .digits import test_set

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("digits_64-100-100-10_l1-0e+00_s0", "digits_64-100-100-10_l1-1e-04_s0",
          "digits_64-100-100-10_l1-5e-04_s0")  # fmt: skip
TOLS = (0.0, 1e-3, 1e-2, 5e-2, 1e-1, 1.0)
BITS = (8, 4, 2)
PROOF_LP_SECONDS = 30.0  # the joint LP per row (ours and baselines), after the symbolic bound


def _nonzero(net: Network) -> int:
    return int(sum(np.count_nonzero(la.weight) + np.count_nonzero(la.bias) for la in net.layers))


def _torch(net: Network):
    import torch

    mods = []
    for la in net.layers:
        lin = torch.nn.Linear(la.in_features, la.out_features)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(la.weight))
            lin.bias.copy_(torch.tensor(la.bias))
        mods += [lin] + ([torch.nn.ReLU()] if la.relu else [])
    return torch.nn.Sequential(*mods)


def _from_torch(seq, like: Network) -> Network:
    lins = [m for m in seq if hasattr(m, "weight")]
    layers = [
        Layer(m.weight.detach().double().numpy(), m.bias.detach().double().numpy(), la.relu)
        for m, la in zip(lins, like.layers, strict=True)
    ]
    return Network(tuple(layers), dtype="float32")


def magnitude_global(f: Network, zeros: int) -> Network:
    """Global unstructured L1 pruning of ``zeros`` weights (torch.nn.utils.prune)."""
    from torch.nn.utils import prune

    seq = _torch(f)
    lins = [(m, "weight") for m in seq if hasattr(m, "weight")]
    if zeros > 0:
        prune.global_unstructured(lins, pruning_method=prune.L1Unstructured, amount=int(zeros))
        for m, name in lins:
            prune.remove(m, name)
    return _from_torch(seq, f)


def magnitude_neurons(f: Network, share: float) -> Network:
    """Per-neuron L2 pruning of ``share`` of each hidden layer's rows (prune.ln_structured)."""
    from torch.nn.utils import prune

    seq = _torch(f)
    lins = [m for m in seq if hasattr(m, "weight")]
    for m in lins[:-1]:
        if share > 0:
            prune.ln_structured(m, "weight", amount=share, n=2, dim=0)
            prune.remove(m, "weight")
            with torch_no_grad():
                m.bias[~m.weight.detach().any(dim=1)] = 0.0
    return _from_torch(seq, f)


def torch_no_grad():
    import torch

    return torch.no_grad()


def round_to_nearest(f: Network, bits: int) -> Network:
    """Plain per-tensor symmetric round-to-nearest quantisation of every weight matrix."""
    layers = []
    for la in f.layers:
        top = 2 ** (bits - 1) - 1
        s = np.abs(la.weight).max() / top
        layers.append(Layer(np.rint(la.weight / s) * s, la.bias, la.relu))
    return Network(tuple(layers), dtype="float32")


def _row(name, method, setting, f, g, box, charger, x, y, seconds, size_bytes=None) -> dict:
    # ours and the baselines proven alike: the tighter of the symbolic bound and the joint LP
    proven = charger.proven(g, lp_seconds=PROOF_LP_SECONDS)
    return {
        "model": name,
        "method": method,
        "setting": setting,
        "parameters": _nonzero(g),
        "parameters_removed": _nonzero(f) - _nonzero(g),
        "bytes": size_bytes,
        "proven": proven,
        "sampled": api.sampled_max_difference(f, g, [box]),
        "accuracy": float((g.forward(x).argmax(1) == y).mean()),
        "agreement": float((g.forward(x).argmax(1) == f.forward(x).argmax(1)).mean()),
        "seconds": round(seconds, 2),
    }


def run(quick: bool, out: Path, stem: str = "", models: Sequence[str] = ()) -> list[dict]:
    """Every row of the benchmark; with ``stem``, ``out/<stem>.json`` is rewritten after each
    row, so that a run stopped early leaves the rows it finished."""
    x, y = test_set()
    rows = _Rows(out / f"{stem}.json" if stem else None)
    for name in models or (MODELS[:1] if quick else MODELS):
        f = api.load(ROOT / "models" / f"{name}.pt")
        box = Box(np.zeros(64), np.ones(64))
        charger = api.Charger(f, [box], tighten_seconds=api.TIGHTEN_SECONDS)
        for tol in TOLS:
            t = time.perf_counter()
            res = api.compress_lossy(f, box, tol, time_limit=20.0 if quick else 60.0)
            g = res.pruned  # the same function as res.network, in f's architecture
            rows.append(_row(name, "ours: compress", tol, f, g, box, charger, x, y,
                             time.perf_counter() - t))  # fmt: skip
            removed = _nonzero(f) - _nonzero(g)
            base = magnitude_global(f, removed)
            rows.append(_row(name, "magnitude (global)", tol, f, base, box, charger, x, y, 0.0))
            share = 1 - res.network.num_neurons / f.num_neurons
            base = magnitude_neurons(f, share)
            rows.append(_row(name, "magnitude (neurons)", tol, f, base, box, charger, x, y, 0.0))
        for bits in BITS:
            t = time.perf_counter()
            res = api.quantize(f, box, bits=bits, split_seconds=0.0)
            size = (
                4 * sum(la.bias.size for la in f.layers)
                + sum(la.weight.size for la in f.layers) * api.storage_bits(bits) // 8
            )
            rows.append(_row(name, "ours: quantize", bits, f, res.pruned, box, charger, x, y,
                             time.perf_counter() - t, size))  # fmt: skip
            base = round_to_nearest(f, bits)
            rows.append(_row(name, "round-to-nearest", bits, f, base, box, charger, x, y, 0.0,
                             size))  # fmt: skip
    return list(rows)


class _Rows(list):
    """The rows so far, written to ``path`` (when given) after each one."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path

    def append(self, row: dict) -> None:
        super().append(row)
        print(json.dumps(row), flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(list(self), indent=1))


def plot(rows: Sequence[dict], path: Path) -> None:
    """Proven (solid) and sampled (faint) error against nonzero parameters, one panel per
    model, ours and the pruning baselines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(6.5 * len(models), 4.5))
    FigureCanvasAgg(fig)
    for n, model in enumerate(models):
        ax = fig.add_subplot(1, len(models), n + 1)
        for method, style in (
            ("ours: compress", "o-"),
            ("magnitude (global)", "s--"),
            ("magnitude (neurons)", "^--"),
        ):
            pts = sorted(
                (r["parameters"], r["proven"], r["sampled"])
                for r in rows
                if r["method"] == method and r["model"] == model
            )
            if pts:
                p, pr, sa = zip(*pts, strict=True)
                ax.plot(p, pr, style, label=f"{method}, proven")
                ax.plot(p, sa, style, alpha=0.35, label=f"{method}, sampled")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("nonzero parameters")
        ax.set_ylabel("max |f - g| on [0,1]^64 (logits)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def soak(n: int, seed: int = 0) -> dict:
    """Random tiny networks (2-3 inputs, two hidden layers of 3-7), each with one random lossy
    edit (quantisation to 8/4/3/2/ternary bits, plain or corrected, proven with or without LP-tightened bounds of
    ``f``, by the symbolic bound and the joint LP, branch and bound in it, the exact joint MILP
    asked at 0.99 or 1.01 x the exact value, or input splitting;
    or ``compress --tol``, whose search spends the LP's slack and whose claim is the tighter of
    the two, every other one with neurons removed with refit and centred weights): the exact ``max |f - g|``
    (:func:`exactcomp.testing.max_output_difference`) must never exceed the proven bound."""
    from exactcomp.testing import max_output_difference

    rng = np.random.default_rng(seed)
    worst_ratio, violations, cases = 0.0, [], 0
    for case in range(n):
        d = int(rng.integers(2, 4))
        widths = [d, int(rng.integers(3, 8)), int(rng.integers(3, 8)), int(rng.integers(1, 4))]
        ws = [rng.normal(size=(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        bs = [rng.normal(size=b) * 0.5 for b in widths[1:]]
        f = Network.from_arrays(ws, bs, dtype="float64")
        box = Box(-rng.random(d) - 0.1, rng.random(d) + 0.1)
        if case % 3 == 2:
            tol = float(rng.choice([0.01, 0.1, 0.5]))
            fitted = bool((case // 3) % 2)  # every other one with refits and centred weights
            res = api.compress_lossy(f, box, tol, time_limit=2.0, centre=fitted, refit=fitted)
            g, proven = res.network, res.proven
        else:
            bits = [float(rng.choice([8, 4, 3, 2, 1.5])) for _ in f.layers]
            comp = None  # every other one corrected (bias correction and scale search)
            if (case // 2) % 2:
                comp = api.domain_compensation(f, [box])
            g = api.quantize_network(f, bits, comp).network
            tighten = 1.0 if case % 2 else 0.0  # LP-tightened bounds of f on every other case
            charger = api.Charger(f, [box], tighten_seconds=tighten)
            if case % 8 == 1:  # branch and bound on f's phases in the joint LP
                proven = charger.proven(g, bab_seconds=2.0)
            elif case % 8 == 5:  # the exact joint MILP asked at a target near the exact value
                target = max_output_difference(f, g, box).value * float(rng.choice([0.99, 1.01]))
                proven = charger.proven(g, target=target, lp_seconds=2.0, milp_seconds=5.0)
            elif case % 4 < 2:  # the joint LP alone (no splitting to hide it behind)
                proven = charger.proven(g, lp_seconds=5.0)
            else:
                proven = charger.proven(g, split_seconds=1.0)
        exact = max_output_difference(f, g, box).value
        cases += 1
        if exact > proven + 1e-9:
            violations.append({"case": case, "exact": exact, "proven": proven})
        if exact > 0:
            worst_ratio = max(worst_ratio, exact / proven)
    return {"cases": cases, "violations": violations, "max_exact_over_proven": worst_ratio}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks lossy")
    p.add_argument("--quick", action="store_true", help="the l1 = 0 model only, 20 s per search")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--soak", type=int, default=0, metavar="N", help="only the soundness soak")
    p.add_argument("--models", nargs="*", default=(), help="these of MODELS only (a subset)")
    args = p.parse_args(argv)
    if args.soak:
        print(json.dumps(soak(args.soak), indent=1))
        return 0
    out = args.out or (ROOT / ("out/benchmarks" if args.quick else "benchmarks/results"))
    stem = "lossy_quick" if args.quick else "lossy"
    rows = run(args.quick, out, stem, args.models)
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()]
        lines.append("| " + " | ".join(cells) + " |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / f"{stem}.png")
    print("\n".join(lines))
    print(f"wrote {out / stem}.json, .md, .png")
    return 0
