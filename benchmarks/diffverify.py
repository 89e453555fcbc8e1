"""``python -m benchmarks diffverify``: exactcomp against NeuroDiff on NeuroDiff's own benchmark.

NeuroDiff's ACAS Xu float16 benchmark compares each of the 45 ACAS Xu networks ``f`` with its
float16-rounded copy ``g`` (both shipped as ``.nnet`` files in ``models/real/neurodiff/``).
Both tools answer exactly NeuroDiff's question (:mod:`benchmarks.neurodiff` states it from the
artifact's C source)::

    for all x' in B':   | g_0(x') - f_0(x') |  <=  eps        (NeuroDiff: < eps, see below)

* ``f`` and ``g`` are read with ``load_nnet(path, units="normalised")``: normalised inputs to
  normalised outputs, before any output de-normalisation, as NeuroDiff evaluates them;
* ``B'`` is ACAS Xu property 1's raw box normalised in float32 with the file's means and ranges
  (:func:`benchmarks.neurodiff.acas_question`);
* only output 0 is compared (``target = 0``): ``verify_equivalence(f, g, B', tol=eps,
  outputs=[0], time_limit=timeout)``.

The MNIST 3x100 pair (NeuroDiff property 400, ``-x 15``) is asked the same way: its box holds
every pixel at ``float32(image / 255)`` except 15 free in ``[0, 1]``, compared output the
image's class (``models/real/neurodiff/mnist_400_x15.json``).

Not the same guarantee. NeuroDiff proves the strict ``< eps`` in float32 arithmetic without
directed rounding (sound up to float32 round-off, not against it), with ``eps`` read as a
float32 (``0.05 -> 0.0500000007``). exactcomp proves ``<= eps`` (float64 ``eps``, slightly
smaller) soundly: its bounds carry the float round-off of their own arithmetic.

Per pair and eps the two tools run one after the other on the same machine, each with the same
time limit (one thread each: ``OPENBLAS_NUM_THREADS=1``, NeuroDiff built without worker
threads). Without ``--neurodiff-source`` (or with ``--no-neurodiff``) NeuroDiff's rows are
taken from ``benchmarks/results/neurodiff_acasxu.json`` (marked ``stored`` in the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.network import Layer, Network

from . import neurodiff as nd

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "out" / "benchmarks" / "diffverify.json"  # git ignores /out/
GUARANTEES = (
    "exactcomp proves max|g_0 - f_0| <= eps soundly (float64 eps; bounds cover round-off); "
    "NeuroDiff proves < float32(eps) in float32 arithmetic without directed rounding "
    "(not sound against float round-off)"
)
VERDICT = {"EQUIVALENT": "proven", "NOT_EQUIVALENT": "failed", "UNKNOWN": "timeout"}


def float16_copy(net: Network) -> Network:
    """Every weight and bias rounded to float16 and back, in float64."""
    return net.replace_layers(
        [
            Layer(
                layer.weight.astype(np.float16).astype(np.float64),
                layer.bias.astype(np.float16).astype(np.float64),
                layer.relu,
            )
            for layer in net.layers
        ]
    )


@dataclasses.dataclass(frozen=True)
class Pair:
    """One NeuroDiff question: two ``.nnet`` files (gzipped paths), the normalised box, the
    compared output, and NeuroDiff's command-line property and options."""

    name: str
    original: Path
    copy: Path
    lower: np.ndarray
    upper: np.ndarray
    target: int
    nd_property: int
    nd_options: tuple[str, ...] = ()


def acas_pairs(names: Sequence[str] | None, unpack_to: Path) -> list[Pair]:
    """The ACAS Xu pairs (all 45 if ``names`` is None) with NeuroDiff's property 1 box."""
    shipped = nd.acas_pairs()
    unknown = [n for n in names or () if n not in shipped]
    if unknown:
        raise SystemExit(f"--pairs: unknown pair(s) {unknown}; use names such as 1_1,5_9")
    out = []
    for name in names or list(shipped):
        a, b = (nd.unpack(p, unpack_to) for p in shipped[name])
        q = nd.acas_question(a)
        out.append(Pair(name, a, b, q.lower, q.upper, q.target, 1))
    return out


def mnist_pair(unpack_to: Path) -> Pair:
    """NeuroDiff's MNIST 3x100 pair, property 400 ``-x 15``, box in pixel units ``/ 255``."""
    spec = json.loads((nd.NETWORKS / "mnist_400_x15.json").read_text())
    a, b = (nd.unpack(nd.NETWORKS / f, unpack_to) for f in spec["files"])
    x = (np.asarray(spec["image_0_255"], dtype=np.float32) / np.float32(255.0)).astype(np.float64)
    lo, hi = x.copy(), x.copy()
    lo[spec["free_pixels"]], hi[spec["free_pixels"]] = 0.0, 1.0
    return Pair(
        "mnist_relu_3_100",
        a,
        b,
        lo,
        hi,
        int(spec["target"]),
        int(spec["property"]),
        tuple(spec["options"]),
    )


def run_ours(pair: Pair, eps: float, timeout: float) -> dict:
    """exactcomp on ``pair`` at ``eps``: verdict, seconds (the verification; reading the files
    is ``load_seconds``, as NeuroDiff's own clock leaves its loading out), boxes, bounds."""
    t0 = time.perf_counter()
    f = api.load(pair.original, nnet_units="normalised")
    g = api.load(pair.copy, nnet_units="normalised")
    box = Box(pair.lower, pair.upper)
    t1 = time.perf_counter()
    res = api.verify_equivalence(f, g, box, tol=eps, time_limit=timeout, outputs=[pair.target])
    return {
        "verdict": VERDICT[res.status.name],
        "seconds": round(time.perf_counter() - t1, 3),
        "load_seconds": round(t1 - t0, 3),
        "boxes": res.boxes,
        "upper": res.upper_bound,
        "lower": res.lower_bound,
        "reason": res.reason,
    }


def run_neurodiff(binary: Path, pair: Pair, eps: float, timeout: float) -> dict:
    """NeuroDiff on ``pair`` at ``eps`` (SIGINT at ``timeout``), as :func:`neurodiff.run`."""
    res = nd.run(
        binary,
        pair.original,
        pair.copy,
        eps,
        property=pair.nd_property,
        timeout_s=timeout,
        extra=pair.nd_options,
        target=pair.target,
    )
    return {
        "verdict": res.verdict,
        "seconds": round(res.seconds, 3),
        "splits": res.splits,
        "source": "run",
    }


def stored_neurodiff(path: Path, pair: Pair, eps: float) -> dict | None:
    """NeuroDiff's row for ``pair`` at ``eps`` from an earlier run's JSON, if there is one."""
    if not path.is_file():
        return None
    for r in json.loads(path.read_text())["runs"]:
        if r["pair"] == pair.name and r["eps"] == eps and r["options"] == " ".join(pair.nd_options):
            return {
                "verdict": r["verdict"],
                "seconds": round(r["seconds"], 3),
                "splits": r.get("splits"),
                "source": f"stored ({r['date']}, {r['timeout_s']:g} s limit)",
            }
    return None


def _ratio(ours: dict, theirs: dict | None) -> float | None:
    if theirs is None or ours["verdict"] != "proven" or theirs["seconds"] <= 0:
        return None
    return round(ours["seconds"] / theirs["seconds"], 4)


def totals(rows: list[dict]) -> list[dict]:
    """Per eps: pairs, proven counts and total seconds of each tool."""
    out = []
    for eps in dict.fromkeys(r["eps"] for r in rows):
        rs = [r for r in rows if r["eps"] == eps]
        nd_rs = [r["neurodiff"] for r in rs if r["neurodiff"]]
        out.append(
            {
                "eps": eps,
                "pairs": len(rs),
                "ours_proven": sum(r["ours"]["verdict"] == "proven" for r in rs),
                "ours_seconds": round(sum(r["ours"]["seconds"] for r in rs), 2),
                "neurodiff_pairs": len(nd_rs),
                "neurodiff_proven": sum(r["verdict"] == "proven" for r in nd_rs),
                "neurodiff_seconds": round(sum(r["seconds"] for r in nd_rs), 2),
                "ours_faster": sum(
                    r["neurodiff"] is not None
                    and r["ours"]["verdict"] == "proven"
                    and r["ours"]["seconds"] < r["neurodiff"]["seconds"]
                    for r in rs
                ),
            }
        )
    return out


def format_row(r: dict) -> str:
    """One table line (under 80 columns)."""
    o, t = r["ours"], r["neurodiff"]
    theirs = "-" if t is None else f"{t['verdict']:<8}{t['seconds']:8.2f}"
    if t is not None and t["source"] != "run":
        theirs += " *"
    ratio = "" if r["ratio"] is None else f"{r['ratio']:7.3f}"
    return (
        f"{r['pair']:>16} {r['eps']:<6g} {o['verdict']:<8}{o['seconds']:8.2f} {o['boxes']:>7}"
        f"  {theirs:<19} {ratio}"
    )


HEADER = (
    f"{'pair':>16} {'eps':<6} {'ours':<8}{'s':>8} {'boxes':>7}  {'NeuroDiff':<8}{'s':>8}"
    f"    {'ours/ND':>7}"
)


def format_totals(tot: list[dict]) -> list[str]:
    return [
        f"eps {t['eps']:g}: ours {t['ours_proven']}/{t['pairs']} proven, {t['ours_seconds']:.1f} s; "
        f"NeuroDiff {t['neurodiff_proven']}/{t['neurodiff_pairs']} proven, "
        f"{t['neurodiff_seconds']:.1f} s; ours proven and faster on {t['ours_faster']}"
        for t in tot
    ]


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks diffverify", description=__doc__.split("\n")[0]
    )
    p.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--pairs", default="all", help="'all', 'table' (6 pairs) or names: 1_1,2_1")
    p.add_argument(
        "--eps-pairs",
        default="",
        help="eps=PAIRS;...: a smaller pair set for one eps, e.g. '0.01=table' or '0.01=1_1,2_1'",
    )
    p.add_argument("--mnist", action="store_true", help="also the MNIST 3x100 pair (each eps)")
    p.add_argument("--no-acas", action="store_true", help="skip the ACAS Xu pairs")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per pair, each tool")
    p.add_argument("--neurodiff-source", type=Path, default=None, help="NeuroDiff artifact")
    p.add_argument("--openblas", type=Path, default=None, help="scipy_openblas32 folder")
    p.add_argument("--work", type=Path, default=Path("/tmp/neurodiff-build"))
    p.add_argument("--no-neurodiff", action="store_true", help="use NeuroDiff's stored rows")
    p.add_argument("--stored", type=Path, default=nd.RESULTS, help="NeuroDiff's stored JSON")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON written")
    return p


def _names(text: str) -> list[str] | None:
    return {"all": None, "table": list(nd.TABLE_PAIRS)}.get(text, text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    binary = None
    if a.neurodiff_source is not None and not a.no_neurodiff:
        try:
            binary = nd.build(a.neurodiff_source, a.work, openblas_dir=a.openblas)
        except nd.NeuroDiffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    per_eps = dict(item.split("=", 1) for item in a.eps_pairs.split(";") if item)
    nets = a.work / "nets"
    doc = {
        "what": "NeuroDiff's ACAS Xu float16 benchmark (and MNIST 3x100 pair), NeuroDiff's question",
        "command": "python -m benchmarks diffverify " + " ".join(argv),
        "guarantees": GUARANTEES,
        "neurodiff": "run in this benchmark" if binary else f"stored rows of {a.stored.name}",
        "timeout_s": a.timeout,
        "threads": 1,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "utc_start": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": [],
    }
    print(HEADER, flush=True)
    for eps in a.eps:
        pairs = [] if a.no_acas else acas_pairs(_names(per_eps.get(f"{eps:g}", a.pairs)), nets)
        if a.mnist:
            pairs.append(mnist_pair(nets))
        for pair in pairs:
            ours = run_ours(pair, eps, a.timeout)
            if binary is not None:
                theirs = run_neurodiff(binary, pair, eps, a.timeout)
            else:
                theirs = stored_neurodiff(a.stored, pair, eps)
            row = {"pair": pair.name, "eps": eps, "ours": ours, "neurodiff": theirs}
            row["ratio"] = _ratio(ours, theirs)
            row["loadavg"] = os.getloadavg()[0]
            doc["rows"].append(row)
            doc["totals"] = totals(doc["rows"])
            _write(a.out, doc)
            print(format_row(row), flush=True)
    doc["loadavg_end"] = os.getloadavg()
    doc["utc_end"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    _write(a.out, doc)
    for line in format_totals(doc.get("totals", [])):
        print(line)
    if binary is None:
        print("* NeuroDiff: stored rows, not run now (" + doc["neurodiff"] + ")")
    print("note: " + GUARANTEES)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
