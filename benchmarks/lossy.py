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

``--models`` also takes the shipped real networks of :data:`REAL` (``models/real/``), each over
the boxes of one VNN-LIB property: the same rows, with the tolerances scaled to the network's
output range (:data:`REAL_TOL_FRACTIONS`), and, as no labelled test set is shipped with them,
agreement of the predicted class on :data:`AGREEMENT_POINTS` seeded points of the boxes instead
of accuracy (empty). ACAS Xu's advisory is the *smallest* score, so its agreement is that of
the argmin. On few inputs (at most ``SPLIT_MAX_INPUTS``) every row's proof may also split the
input box (:data:`REAL_SPLIT_SECONDS`). A run of real networks only is written as
``lossy_real.{json,md,png}``.

Here: the cases, the rows and the report; the baselines are in :mod:`benchmarks.lossy_baselines`
and the soundness soak (``--soak N``) in :mod:`benchmarks.lossy_soak`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.network import Network

from .digits import test_set
from .lossy_baselines import magnitude_global, magnitude_neurons, round_to_nearest
from .lossy_soak import soak

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("digits_64-100-100-10_l1-0e+00_s0", "digits_64-100-100-10_l1-1e-04_s0",
          "digits_64-100-100-10_l1-5e-04_s0")  # fmt: skip
TOLS = (0.0, 1e-3, 1e-2, 5e-2, 1e-1, 1.0)
BITS = (8, 4, 2)
PROOF_LP_SECONDS = 30.0  # the joint LP per row (ours and baselines), after the symbolic bound


@dataclass(frozen=True)
class RealModel:
    """A shipped real network and the VNN-LIB property whose input boxes are its domain.

    ``advisory``: ``"argmax"`` (the predicted class) or ``"argmin"`` (ACAS Xu: the advisory
    is the output with the smallest score)."""

    onnx: str  # under models/real/
    vnnlib: str  # under models/real/
    advisory: str = "argmax"
    tol_fractions: tuple[float, ...] | None = None  # None: REAL_TOL_FRACTIONS


#: ``compress --tol`` on a real network: fractions of its sampled output span (the largest
#: minus the smallest output over :data:`AGREEMENT_POINTS` seeded points of the boxes), six
#: rows as for the digits. MNIST's outputs are logits (span ~1.03 on prop_0_0.03): 0.1 % to
#: 30 %, about the digits' absolute :data:`TOLS`. ACAS Xu's are normalised scores (span ~0.011 on prop_1)
#: and nothing is removed below 10 % of it (measured: 0 parameters at 1 % and 10 %, 3,446 at
#: 100 %, searches of 60 s): 10 % to 10 x.
REAL_TOL_FRACTIONS = (0.0, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
ACAS_TOL_FRACTIONS = (0.0, 1e-1, 3e-1, 1.0, 3.0, 10.0)
#: The real networks ``--models`` accepts (names are the network and its property).
REAL = {
    "acasxu_1_1_prop_1": RealModel(
        "acasxu/ACASXU_run2a_1_1_batch_2000.onnx",
        "acasxu/prop_1.vnnlib",
        "argmin",
        ACAS_TOL_FRACTIONS,
    ),
    "mnist-net_256x2_prop_0_0.03": RealModel(
        "mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_0_0.03.vnnlib"
    ),
}
AGREEMENT_POINTS = 4096  # seeded uniform points of the boxes (agreement and the span)
REAL_SPLIT_SECONDS = 10.0  # input splitting per row's proof, on at most SPLIT_MAX_INPUTS inputs


@dataclass(frozen=True)
class Case:
    """One model of the benchmark: the network, its domain, and the points its rows are
    scored on (``labels`` None: agreement only), with the tolerances of its rows."""

    name: str
    f: Network
    boxes: tuple[Box, ...]
    x: np.ndarray
    labels: np.ndarray | None
    advisory: str  # "argmax" or "argmin"
    tols: tuple[float, ...]
    split_seconds: float = 0.0


def box_points(boxes: Sequence[Box], n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded uniform points of the union of ``boxes`` (split evenly among them)."""
    rng = np.random.default_rng(seed)
    per = [n // len(boxes) + (i < n % len(boxes)) for i in range(len(boxes))]
    return np.concatenate(
        [
            b.lower + rng.random((k, b.dim)) * (b.upper - b.lower)
            for b, k in zip(boxes, per, strict=True)
        ]
    )


def output_span(f: Network, x: np.ndarray) -> float:
    """The largest minus the smallest output of ``f`` on the points ``x``."""
    y = f.forward(x)
    return float(y.max() - y.min())


def _fractions(spec: RealModel) -> tuple[float, ...]:
    return REAL_TOL_FRACTIONS if spec.tol_fractions is None else spec.tol_fractions


def real_case(name: str, root: Path = ROOT / "models" / "real", spec: RealModel | None = None):
    """The :class:`Case` of the real network ``name`` of :data:`REAL` (or ``spec``)."""
    spec = spec or REAL[name]
    f = api.load(root / spec.onnx)
    boxes = tuple(api.read_vnnlib(root / spec.vnnlib, f.input_size).boxes)
    x = box_points(boxes, AGREEMENT_POINTS)
    split = REAL_SPLIT_SECONDS if f.input_size <= api.SPLIT_MAX_INPUTS else 0.0
    tols = tuple(q * output_span(f, x) for q in _fractions(spec))
    return Case(name, f, boxes, x, None, spec.advisory, tols, split)


def digits_case(name: str, tols: Sequence[float] = TOLS) -> Case:
    """The :class:`Case` of the digits model ``name`` over ``[0, 1]^64``, on the test split."""
    x, y = test_set()
    f = api.load(ROOT / "models" / f"{name}.pt")
    return Case(name, f, (Box(np.zeros(64), np.ones(64)),), x, y, "argmax", tuple(tols))


def _nonzero(net: Network) -> int:
    return int(sum(np.count_nonzero(la.weight) + np.count_nonzero(la.bias) for la in net.layers))


def _pick(y: np.ndarray, advisory: str) -> np.ndarray:
    return y.argmin(1) if advisory == "argmin" else y.argmax(1)


def _row(case: Case, method, setting, g, charger, seconds, size_bytes=None, claim=None) -> dict:
    # ours and the baselines proven alike: the tighter of the symbolic bound and the joint LP
    # (and, on few inputs, input splitting); ``claim``: a network of another architecture
    # than f (after the exact pass) keeps its own claim, proven against f's exact compression
    f, x = case.f, case.x
    if claim is None:
        proven = charger.proven(g, lp_seconds=PROOF_LP_SECONDS, split_seconds=case.split_seconds)
    else:
        proven = claim
    picked = _pick(g.forward(x), case.advisory)
    return {
        "model": case.name,
        "method": method,
        "setting": setting,
        "parameters": _nonzero(g),
        "parameters_removed": _nonzero(f) - _nonzero(g),
        "bytes": size_bytes,
        "proven": proven,
        "sampled": api.sampled_max_difference(f, g, case.boxes),
        "accuracy": None if case.labels is None else float((picked == case.labels).mean()),
        "agreement": float((picked == _pick(f.forward(x), case.advisory)).mean()),
        "seconds": round(seconds, 2),
    }


def run(quick: bool, out: Path, stem: str = "", models: Sequence[str] = ()) -> list[dict]:
    """Every row of the benchmark; with ``stem``, ``out/<stem>.json`` is rewritten after each
    row, so that a run stopped early leaves the rows it finished."""
    rows = _Rows(out / f"{stem}.json" if stem else None)
    for name in models or (MODELS[:1] if quick else MODELS):
        case = real_case(name) if name in REAL else digits_case(name)
        run_case(case, rows, time_limit=20.0 if quick else 60.0)
    return list(rows)


def run_case(case: Case, rows: list, time_limit: float = 60.0) -> None:
    """Append the rows of one model: ``compress --tol`` at each of its tolerances with the
    pruning baselines at the same size, then ``quantize`` to :data:`BITS` (after its exact
    pass: its rows too keep their own claim where that changed the architecture) and
    round-to-nearest.

    ``compress --tol`` runs the exact passes first: its network has the architecture of their
    result (``res.reference``), which the baselines' charger of ``f`` cannot compare with, so
    its row reports its own claim (the joint LP of ``compress_lossy``, against the exact
    network, which equals ``f`` on the domain) unless the exact pass changed nothing."""
    f, boxes = case.f, case.boxes
    charger = api.Charger(f, boxes, tighten_seconds=api.TIGHTEN_SECONDS)
    for tol in case.tols:
        t = time.perf_counter()
        res = api.compress_lossy(f, boxes, tol, time_limit=time_limit)
        g = res.pruned  # the same function as res.network, in res.reference's architecture
        same = res.reference.describe() == f.describe()
        rows.append(_row(case, "ours: compress", tol, g, charger, time.perf_counter() - t,
                         claim=None if same else res.proven))  # fmt: skip
        removed = _nonzero(f) - _nonzero(g)
        base = magnitude_global(f, removed)
        rows.append(_row(case, "magnitude (global)", tol, base, charger, 0.0))
        share = 1 - res.network.num_neurons / f.num_neurons
        base = magnitude_neurons(f, share)
        rows.append(_row(case, "magnitude (neurons)", tol, base, charger, 0.0))
    for bits in BITS:
        t = time.perf_counter()
        res = api.quantize(f, boxes, bits=bits, split_seconds=0.0)
        g = res.pruned  # after the exact pass too (its architecture: its own claim, as above)
        same = g.describe() == f.describe()
        rows.append(_row(case, "ours: quantize", bits, g, charger, time.perf_counter() - t,
                         _grid_bytes(g, bits), claim=None if same else res.proven))  # fmt: skip
        base = round_to_nearest(f, bits)
        rows.append(_row(case, "round-to-nearest", bits, base, charger, 0.0, _grid_bytes(f, bits)))


def _grid_bytes(net: Network, bits: float) -> int:
    """The bytes of ``net``'s weights at ``bits`` each and its float32 biases."""
    return (
        4 * sum(la.bias.size for la in net.layers)
        + sum(la.weight.size for la in net.layers) * api.storage_bits(bits) // 8
    )


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
        ax.set_ylabel("max |f - g| on the domain (outputs)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def markdown(rows: Sequence[dict]) -> list[str]:
    """The rows as a Markdown table (an empty cell where a value is None)."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def notes(models: Sequence[str]) -> list[str]:
    """What the table's columns mean for the real networks among ``models`` (none: [])."""
    lines = []
    for name in models:
        if name in REAL:
            spec = REAL[name]
            case = real_case(name)
            span = output_span(case.f, case.x)
            pick = (
                "argmin (ACAS Xu's advisory is the smallest score)"
                if spec.advisory == "argmin"
                else "argmax"
            )
            lines.append(
                f"- `{name}`: `models/real/{spec.onnx}` over `{spec.vnnlib}`; `setting` of "
                f"compress = tol = {', '.join(f'{q:g}' for q in _fractions(spec))} x the "
                f"sampled output span {span:.4g}; accuracy empty (no labelled test set); "
                f"agreement of the {pick} with the original's on {AGREEMENT_POINTS} seeded "
                f"points of the box; proofs split the input for "
                f"{case.split_seconds:g} s per row."
            )
    return lines + ([""] if lines else [])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks lossy")
    p.add_argument("--quick", action="store_true", help="the l1 = 0 model only, 20 s per search")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--soak", type=int, default=0, metavar="N", help="only the soundness soak")
    p.add_argument("--models", nargs="*", default=(),
                   help="these of MODELS and REAL only (a subset)")  # fmt: skip
    args = p.parse_args(argv)
    if args.soak:
        print(json.dumps(soak(args.soak), indent=1))
        return 0
    unknown = [m for m in args.models if m not in MODELS and m not in REAL]
    if unknown:
        p.error(f"unknown models {', '.join(unknown)}; known: {', '.join([*MODELS, *REAL])}")
    out = args.out or (ROOT / ("out/benchmarks" if args.quick else "benchmarks/results"))
    real_only = bool(args.models) and all(m in REAL for m in args.models)
    stem = "lossy_quick" if args.quick else "lossy_real" if real_only else "lossy"
    rows = run(args.quick, out, stem, args.models)
    lines = [*notes(args.models), *markdown(rows)]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / f"{stem}.png")
    print("\n".join(lines))
    print(f"wrote {out / stem}.json, .md, .png")
    return 0
