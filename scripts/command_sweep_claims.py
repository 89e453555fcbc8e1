"""Check every claim of a ``scripts/command_sweep.py`` run against samples of the domain.

    PYTHONPATH=. python scripts/command_sweep_claims.py OUT_DIR [--points 20000]

For each network: ``N`` uniform points of each box of its domain plus 256 of its corners
(a vertex is where a bound is most often reached), then, per claim, what would make it false:

- ``compress`` / ``compress --verify`` (``c.*``, ``cv.*``): a stably active (inactive) neuron
  whose sampled pre-activation is negative (positive); a written network further from the
  original than the verdict's proven ``upper_bound`` (``--verify``) or than ``1e-3`` (plain
  compress, which claims the same function up to rounding to the stored dtype);
- ``verify`` (its printed ``[lower, upper]``, or ``--report``): a sampled difference above
  the proven upper bound; EQUIVALENT with a sampled difference above ``tol``;
- ``quantize`` / ``compress --tol`` (``q.onnx``, ``t.*``): a sampled difference above
  ``proven_max_abs_diff``;
- ``regions``: more distinct activation patterns sampled than the upper bound (or than an
  exact count).

Prints one line per claim; ``FALSE`` marks a claim the samples refute.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import exactcomp  # noqa: E402
from exactcomp.api import read_vnnlib  # noqa: E402
from exactcomp.domain import Box  # noqa: E402

SUMMARY = re.compile(
    r"(EQUIVALENT|NOT_EQUIVALENT|UNKNOWN): max \|f - g\| in \[([^,]+), ([^\]]+)\] \(tol ([^)]+)\)"
)


def boxes_of(argv: list[str], n: int) -> list[Box]:
    for i, a in enumerate(argv):
        if a.startswith("--box="):
            lo, hi = (float(v) for v in a.split("=", 1)[1].split(","))
            return [Box.uniform(lo, hi, n)]
        if a == "--box":
            lo, hi = (float(v) for v in argv[i + 1].split(","))
            return [Box.uniform(lo, hi, n)]
        if a == "--vnnlib":
            return list(read_vnnlib(argv[i + 1], n).boxes)
        if a == "--box-file":
            d = json.loads(Path(argv[i + 1]).read_text())
            return [Box(np.array(d["lower"], float), np.array(d["upper"], float))]
    raise ValueError(argv)


def points(boxes: list[Box], n: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for b in boxes:
        k = max(n // len(boxes), 64)
        out.append(b.lower + (b.upper - b.lower) * rng.random((k, b.dim)))
        corners = rng.integers(0, 2, (256, b.dim)).astype(bool)
        out.append(np.where(corners, b.upper, b.lower))
    return np.vstack(out)


def check_network(folder: Path, rows: list[dict], n: int) -> list[str]:
    first = rows[0]
    model = first["argv"][1]
    f = exactcomp.load(model)
    x = points(boxes_of(first["argv"], f.input_size), n, np.random.default_rng(0))
    fx = f.forward(x)
    lines = []

    def diff(name: str) -> float | None:
        path = folder / name
        if not path.is_file():
            return None
        return float(np.abs(exactcomp.load(path).forward(x) - fx).max())

    def say(label: str, ok: bool, text: str) -> None:
        lines.append(f"{folder.name:34s} {label:16s} {'ok   ' if ok else 'FALSE'} {text}")

    by = {r["command"]: r for r in rows}
    ext = Path(model).suffix
    for key, stem in (("compress", "c"), ("compress-verify", "cv")):
        if key not in by or by[key]["rc"] != 0 or not (folder / f"{stem}.json").is_file():
            continue
        rep = json.loads((folder / f"{stem}.json").read_text())
        if f.layers and not any(la.sparse or la.conv for la in f.layers):
            pre = f.preactivations(x)
            bad = 0
            for row in rep["layers"]:
                z = pre[row["layer"]]
                v = np.array(row["verdicts"])
                bad += int(((v == "active") & (z.min(axis=0) < -1e-9)).sum())
                bad += int(((v == "inactive") & (z.max(axis=0) > 1e-9)).sum())
            say(key + " verdicts", bad == 0, f"{bad} stable claims contradicted by samples")
        d = diff(f"{stem}{ext}")
        if d is None:
            continue
        ver = rep.get("verification")
        if ver and ver.get("status") == "EQUIVALENT":
            ub = ver["upper_bound"]
            say(
                key,
                d <= max(ub, 0) + 1e-9,
                f"sampled {d:.3g} vs proven <= {ub:.3g} (tol {ver['tol']:.3g})",
            )
        else:
            say(
                key,
                d <= 1e-3,
                f"sampled {d:.3g} (exact compression, stored {rep['check']['stored_dtype']})",
            )
    for key, stem in (("verify", "v"), ("verify-pair", "vp")):
        r = by.get(key)
        if r is None:
            continue
        other = Path(r["argv"][2])
        other = other if other.is_absolute() else folder / other
        if not other.is_file():  # compress wrote nothing (timed out): nothing was claimed
            say(key, True, f"rc {r['rc']}: {other.name} not written, nothing compared")
            continue
        g = exactcomp.load(other)
        d = float(np.abs(g.forward(x) - fx).max())
        report = folder / f"{stem}.json"
        if "--report" in r["argv"] and report.is_file():  # the exact figures, and more claims
            doc = json.loads(report.read_text())
            status, lo, tol = doc["verdict"], doc["lower_bound"], doc["tol"]
            ub = float("inf") if doc["upper_bound"] is None else doc["upper_bound"]
            ce = doc["counterexample"]
            ok = (ce is not None) == (status == "NOT_EQUIVALENT") and lo <= ub
            if ce is not None:  # the counterexample re-evaluated here
                xc = np.array(ce["x"], dtype=float)
                dc = float(np.abs(g.forward(xc[None]) - f.forward(xc[None])).max())
                ok = ok and dc > tol and abs(dc - ce["difference"]) <= 1e-9 * max(1.0, dc)
            slack = 1e-9
        else:
            m = SUMMARY.search(" ".join(" ".join(r["stdout_tail"]).split()))
            if not m:
                say(key, True, f"rc {r['rc']}: no verdict line")
                continue
            status, lo, ub, tol = m.group(1), *(float(m.group(i)) for i in (2, 3, 4))
            ok, slack = True, 1e-3 * ub + 1e-9  # printed with 3 digits
        ok = ok and d <= ub + slack and not (status == "EQUIVALENT" and d > tol)
        say(key, ok, f"{status}: sampled {d:.3g} in [{lo:.3g}, {ub:.3g}] (tol {tol:.3g})")
    for key, stem, out in (("quantize", "q", "q.onnx"), ("tol", "t", f"t{ext}")):
        if key not in by or by[key]["rc"] != 0:
            continue
        rep = json.loads((folder / f"{stem}.json").read_text())
        d = diff(out)
        proven = rep.get("proven_max_abs_diff")
        if d is None or proven is None:
            say(key, True, f"no file or no proven bound ({proven})")
            continue
        say(
            key,
            d <= proven + 1e-9,
            f"sampled {d:.3g} (report {rep['sampled_max_abs_diff']:.3g}) vs proven {proven:.4g}",
        )
    r = by.get("regions")
    if (
        r
        and r["rc"] == 0
        and (folder / "r.json").is_file()
        and not any(la.conv or la.sparse for la in f.layers)
    ):
        rep = json.loads((folder / "r.json").read_text())
        pre = f.preactivations(x)
        pats = np.hstack([(pre[k] > 0) for k in f.relu_layers])
        seen = len({p.tobytes() for p in np.packbits(pats, axis=1)})
        cap = rep["regions"] if rep["exact"] else rep["upper_bound"]
        say(
            "regions",
            seen <= cap,
            f"{seen} patterns sampled vs {'exact' if rep['exact'] else 'upper'} {cap:,}",
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    rows: dict[str, list[dict]] = {}
    for line in (args.out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["net"], []).append(row)
    for net, rs in rows.items():
        if args.only and net not in args.only.split(","):
            continue
        try:
            for line in check_network(args.out / net, rs, args.points):
                print(line, flush=True)
        except Exception as exc:  # a checker failure is reported, not a claim
            print(f"{net:34s} checker error: {exc!r}", flush=True)


if __name__ == "__main__":
    main()
