"""``python -m benchmarks acas``: ``exactcomp compress --verify`` on the 45 ACAS Xu networks.

Issue 14's target: over VNN-COMP's ACAS Xu properties 1-4, each of the 45 networks compresses
with 0 undecided neurons in at most 30 s, and ``--verify`` says EQUIVALENT. Every run is the
CLI a user would type, one at a time, in a child process (``nice -n 5``, one BLAS thread)::

    exactcomp compress NET.nnet --nnet-units normalised --box-file BOX.json \\
        -o OUT.onnx --report R.json --verify --quiet

Units. The networks are NeuroDiff's copies of the ``.nnet`` files (``models/real/neurodiff``);
VNN-COMP's ``prop_{1..4}.vnnlib`` state their boxes in *normalised* input units, those of the
VNN-COMP ONNX files (whose weights are these ``.nnet`` weights in float32, with no input
normalisation). So the ``.nnet`` is read with ``--nnet-units normalised`` (the default ``raw``
would read the box as raw feet and radians, and is refused: input 3's box leaves the file's
limits). The box is the VNN-LIB box intersected with the file's input limits: the ``.nnet``
clips its inputs to ``[min, max]``, which exactcomp refuses to model, and prop 1's upper bound
of input 0 (``0.679857769``) is ``2.9e-10`` above the file's maximum in normalised units. On
the box so intersected the ``.nnet`` network is the unclipped one, so the run is exact.

A run *meets* the target when the command exits 0, no neuron is undecided, the verification
is EQUIVALENT and the whole command (reading, analysis, rewrite, re-check, verification,
writing) takes at most ``TARGET_S`` seconds of wall time. CPU seconds (user + system of the
child and the processes it waited for) stand beside the wall seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import neurodiff as nd

REPO_ROOT = Path(__file__).resolve().parent.parent
PROPS_DIR = REPO_ROOT / "models" / "real" / "acasxu"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "acas.json"
QUICK_OUT = REPO_ROOT / "out" / "benchmarks" / "acas_quick.json"  # git ignores /out/
TARGET_S = 30.0
NETWORKS = tuple(f"{a}_{b}" for a in range(1, 6) for b in range(1, 10))
QUICK = (("1_1", 1), ("4_5", 3))
HEADER = f"{'net':<4} {'prop':>4} {'undec':>5} {'neurons':>9} {'wall s':>7} {'CPU s':>7} "
HEADER += f"{'nodes':>6} {'verify':<10} {'meets':<5} load"


def nnet_path(name: str) -> Path:
    """The shipped (gzipped) ``.nnet`` of network ``name`` (``"1_1"``)."""
    return nd.NETWORKS / "nnet" / f"ACASXU_run2a_{name}_batch_2000.nnet.gz"


def box_within_limits(nnet: Path, prop: Path) -> tuple[list[float], list[float]]:
    """The property's input box (normalised units) intersected with the file's input limits.

    Raises ``ValueError`` when the property has more than one box or the intersection is empty.
    """
    from exactcomp.api import load, read_vnnlib

    meta = load(nnet, nnet_units="normalised").meta  # the limits in the units read
    limits_lo, limits_hi = np.asarray(meta["input_min"]), np.asarray(meta["input_max"])
    boxes = read_vnnlib(prop, limits_lo.size).boxes
    if len(boxes) != 1:
        raise ValueError(f"{prop.name}: {len(boxes)} boxes, expected one")
    lo = np.maximum(boxes[0].lower, limits_lo)
    hi = np.minimum(boxes[0].upper, limits_hi)
    if np.any(lo > hi):
        raise ValueError(f"{prop.name}: the box lies outside {nnet.name}'s input limits")
    return lo.tolist(), hi.tolist()


def _cpu_children() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def compress_command(nnet: Path, box: Path, out: Path, report: Path) -> list[str]:
    """The measured command line (without the ``nice`` prefix)."""
    return [
        *(sys.executable, "-m", "exactcomp", "compress", str(nnet)),
        *("--nnet-units", "normalised", "--box-file", str(box)),
        *("-o", str(out), "--report", str(report), "--verify", "--quiet"),
    ]


def run_one(name: str, prop: int, work: Path, timeout: float, nice: int) -> dict:
    """One network and property: run the CLI, read its report, return the row."""
    nnet = nd.unpack(nnet_path(name), work)
    box = work / f"box_{name}_{prop}.json"
    lo, hi = box_within_limits(nnet, PROPS_DIR / f"prop_{prop}.vnnlib")
    box.write_text(json.dumps({"lower": lo, "upper": hi}))
    report = work / f"report_{name}_{prop}.json"
    report.unlink(missing_ok=True)
    cmd = ["nice", "-n", str(nice), *compress_command(nnet, box, work / "out.onnx", report)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    cpu0, t0 = _cpu_children(), time.perf_counter()
    child = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        text, _ = child.communicate(timeout=timeout)
        status = "ok" if child.returncode == 0 else f"exit {child.returncode}"
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)  # the CLI's own Ctrl-C handling first, then kill
        try:
            text, _ = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            text, _ = child.communicate()
        status = "timeout"
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    row = {"network": name, "prop": prop, "status": status, "wall_s": wall, "cpu_s": cpu}
    row["load"] = os.getloadavg()[0]
    row.update(_from_report(report) if status == "ok" else _nothing())
    if status != "ok":
        row["note"] = (text or "").strip().splitlines()[-1][:200] if text else ""
    row["meets"] = bool(
        status == "ok" and row["undecided"] == 0 and row["verdict"] == "EQUIVALENT"
    ) and (wall <= TARGET_S)
    return row


def _nothing() -> dict:
    return {
        "undecided": -1,
        "neurons_before": -1,
        "neurons_after": -1,
        "parameters_after": -1,
        "compress_s": math.nan,
        "analysis_s": math.nan,
        "bab_nodes": -1,
        "milps": -1,
        "verdict": "-",
        "verify_s": math.nan,
        "recheck_s": math.nan,
    }


def _from_report(path: Path) -> dict:
    doc = json.loads(path.read_text())
    stats = doc.get("stability_stats", {})
    verification = doc.get("verification") or {}
    return {
        "undecided": sum(int(layer["undecided"]) for layer in doc["layers"]),
        "neurons_before": int(doc["neurons_before"]),
        "neurons_after": int(doc["neurons_after"]),
        "parameters_after": int(doc["parameters_after"]),
        "compress_s": float(doc["seconds"]),
        "analysis_s": float(stats.get("seconds", math.nan)),
        "bab_nodes": int(stats.get("bab_nodes", 0)),
        "milps": int(stats.get("milps", 0)),
        "verdict": str(verification.get("status", "-")),
        "verify_s": float((verification.get("seconds") or {}).get("total", math.nan)),
        "recheck_s": float((doc.get("certificates") or {}).get("seconds", math.nan)),
    }


def format_row(r: dict) -> str:
    """One console line (at most 80 columns)."""
    neurons = f"{r['neurons_before']}>{r['neurons_after']}" if r["neurons_before"] >= 0 else "-"
    verdict = r["verdict"] if r["status"] == "ok" else r["status"]
    return (
        f"{r['network']:<4} {r['prop']:>4} {r['undecided']:>5} {neurons:>9} {r['wall_s']:>7.1f} "
        f"{r['cpu_s']:>7.1f} {r['bab_nodes']:>6} {verdict[:10]:<10} "
        f"{'yes' if r['meets'] else 'NO':<5} {r['load']:.1f}"
    )


def summary(rows: Sequence[dict]) -> dict:
    """Runs done and meeting the target, and the slowest runs by wall time."""
    slowest = sorted(rows, key=lambda r: -r["wall_s"])[:5]
    return {
        "runs": len(rows),
        "meeting": sum(r["meets"] for r in rows),
        "undecided_runs": sum(r["undecided"] != 0 for r in rows),
        "not_equivalent": sum(r["verdict"] != "EQUIVALENT" for r in rows),
        "over_target_s": sum(r["wall_s"] > TARGET_S for r in rows),
        "max_wall_s": max((r["wall_s"] for r in rows), default=math.nan),
        "max_cpu_s": max((r["cpu_s"] for r in rows), default=math.nan),
        "total_wall_s": sum(r["wall_s"] for r in rows),
        "slowest": [f"{r['network']} prop_{r['prop']} {r['wall_s']:.1f} s" for r in slowest],
    }


def markdown(rows: Sequence[dict]) -> str:
    """The full table, one line per run."""
    head = (
        "| network | prop | undecided | neurons (of) | parameters after | wall s | CPU s "
        "| compress s | BaB nodes | MILPs | verify | meets | load |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        verdict = r["verdict"] if r["status"] == "ok" else r["status"]
        lines.append(
            f"| {r['network']} | {r['prop']} | {r['undecided']} | {r['neurons_after']} "
            f"({r['neurons_before']}) | {r['parameters_after']} | {r['wall_s']:.1f} | "
            f"{r['cpu_s']:.1f} | {r['compress_s']:.1f} | {r['bab_nodes']} | {r['milps']} | "
            f"{verdict} | {'yes' if r['meets'] else '**no**'} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def selected(a: argparse.Namespace) -> list[tuple[str, int]]:
    """The (network, property) runs asked for, in order."""
    if a.quick:
        return list(QUICK)
    nets = a.nets.split(",") if a.nets else list(NETWORKS[a.offset :: a.every])
    unknown = [n for n in nets if n not in NETWORKS]
    if unknown:
        raise SystemExit(f"--nets: unknown network(s) {unknown}; names are 1_1 ... 5_9")
    props = [int(p) for p in a.props.split(",")]
    return [(n, p) for n in nets for p in props]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks acas", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help=f"two runs: {QUICK}")
    p.add_argument("--nets", default="", help="comma-separated networks (default: all 45)")
    p.add_argument("--every", type=int, default=1, help="every N-th network (a spread sample)")
    p.add_argument("--offset", type=int, default=0, help="with --every: the first network's index")
    p.add_argument("--props", default="1,2,3,4", help="comma-separated property numbers")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per run (then stopped)")
    p.add_argument("--nice", type=int, default=5, help="niceness of each run")
    p.add_argument("--resume", action="store_true", help="keep the rows already in --out")
    p.add_argument("--out", type=Path, default=None, help=f"JSON (default {DEFAULT_OUT})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    out = a.out or (QUICK_OUT if a.quick else DEFAULT_OUT)
    old = json.loads(out.read_text())["rows"] if a.resume and out.is_file() else []
    done = {(r["network"], r["prop"]) for r in old}
    todo = [run for run in selected(a) if run not in done]
    doc = {
        "what": "exactcomp compress --verify, ACAS Xu networks x VNN-COMP properties 1-4",
        "command": "python -m benchmarks acas " + " ".join(argv),
        "measured": " ".join(compress_command(Path("NET.nnet"), Path("BOX"), Path("O"), Path("R"))),
        "timeout_s": a.timeout,
        "target_s": TARGET_S,
        "cpus": os.cpu_count(),
        "git_commit": _commit(),
        "utc_start": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": list(old),
    }
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="acas_") as tmp:
        for name, prop in todo:
            row = run_one(name, prop, Path(tmp), a.timeout, a.nice)
            doc["rows"].append(row)
            doc["summary"] = summary(doc["rows"])
            _write(out, doc)
            print(format_row(row), flush=True)
    doc["utc_end"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["summary"] = summary(doc["rows"])
    _write(out, doc)
    s = doc["summary"]
    print(f"{s['meeting']}/{s['runs']} runs meet the target; max wall {s['max_wall_s']:.1f} s")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _commit() -> str:
    cmd = ["git", "describe", "--always", "--dirty"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")
    os.replace(tmp, path)
    path.with_suffix(".md").write_text(markdown(doc["rows"]) + "\n")


if __name__ == "__main__":
    sys.exit(main())
