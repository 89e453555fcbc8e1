"""Every CLI command on every shipped network, with short budgets (issue 18-style review).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python scripts/command_sweep.py OUT_DIR [--workers 2]
        [--only NAME,...] [--commands compress,verify,...]

Each run is ``/usr/bin/time nice -n 19 timeout 120 python -m exactcomp ...`` in
``OUT_DIR/<network>/``; one JSON line per run goes to ``OUT_DIR/results.jsonl``: exit code,
wall and CPU seconds (user + system, children included), whether stderr holds a traceback,
the widest line printed (ANSI codes stripped), and each file written with its size next to
the model's. ``scripts/command_sweep_claims.py OUT_DIR`` then checks every claim the reports
make against sampled differences. The ``.nnet`` networks of ``models/real/neurodiff`` are
gzipped: a sample of them (ACAS Xu 1_1 and the MNIST 3x100, each with its float16 copy) is
decompressed into ``OUT_DIR/nnet``. ``quantize`` and ``compress --tol`` are left out on the
convolutional networks (another engineer's work in progress).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "models" / "real"
PY = sys.executable
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
TIMEOUT_S = 120
COMMANDS = (
    "compress",
    "verify",
    "compress-verify",
    "stability",
    "regions",
    "verify-pair",
    "quantize",
    "tol",
)


def networks(out: Path) -> list[dict]:
    """(name, model, domain options, conv?, a second network to verify against)."""
    nets = [
        dict(name=p.stem, model=p, domain=["--box", "0,1"])
        for p in sorted((ROOT / "models").glob("digits_*.pt"))
    ]
    nets.append(
        dict(name="moons", model=ROOT / "models/moons_2-16-16-1.pt", domain=["--box=-1.5,2.5"])
    )
    small = REAL / "small"
    for stem in ("marabou_fc1", "test_small", "test_tiny"):
        nets.append(dict(name=stem, model=small / f"{stem}.onnx", domain=["--box=-1,1"]))
    nets.append(
        dict(name="vdp", model=small / "vdp.onnx", domain=["--vnnlib", str(small / "vdp_0.vnnlib")])
    )
    nets.append(
        dict(
            name="cartpole",
            model=small / "cartpole.onnx",
            domain=["--vnnlib", str(small / "cartpole_case_safe_14.vnnlib")],
        )
    )
    for ij, prop in (("1_1", 1), ("1_2", 2), ("2_1", 3), ("3_3", 4)):
        nets.append(
            dict(
                name=f"acas_{ij}",
                model=REAL / f"acasxu/ACASXU_run2a_{ij}_batch_2000.onnx",
                domain=["--vnnlib", str(REAL / f"acasxu/prop_{prop}.vnnlib")],
            )
        )
    nets.append(
        dict(
            name="acas_1_1_eran_format",
            model=REAL / "acasxu_eran_format/ACASXU_run2a_1_1_batch_2000.onnx",
            domain=["--vnnlib", str(REAL / "acasxu/prop_1.vnnlib")],
        )
    )
    for depth, prop in (("2", "prop_0_0.03"), ("4", "prop_1_0.05"), ("6", "prop_0_0.03")):
        nets.append(
            dict(
                name=f"mnist_256x{depth}",
                model=REAL / f"mnistfc/mnist-net_256x{depth}.onnx",
                domain=["--vnnlib", str(REAL / f"mnistfc/{prop}.vnnlib")],
            )
        )
    nets.append(
        dict(
            name="eran_9x200",
            model=REAL / "eran/mnist_relu_9_200.onnx",
            domain=["--vnnlib", str(REAL / "eran/mnist_spec_idx_186_eps_0.01500.vnnlib")],
        )
    )
    conv = REAL / "conv"
    for stem, prop in (
        ("marabou_conv_mp1", "marabou_conv_mp1_box_0.02"),
        ("Convnet_maxpool", "Convnet_maxpool_prop_0_0.004"),
        ("Convnet_avgpool", "Convnet_avgpool_prop_0_0.02"),
        ("cifar_base_kw", "cifar_base_kw-img4549-eps0.00392156862745098"),
    ):
        nets.append(
            dict(
                name=stem,
                model=conv / f"{stem}.onnx",
                domain=["--vnnlib", str(conv / f"{prop}.vnnlib")],
                conv=True,
            )
        )
    unpacked = out / "nnet"
    unpacked.mkdir(parents=True, exist_ok=True)
    acas_box = unpacked / "acas_limits.json"  # the file's own input limits (raw units)
    acas_box.write_text(
        json.dumps(
            {
                "lower": [0.0, -3.141593, -3.141593, 100.0, 0.0],
                "upper": [60760.0, 3.141593, 3.141593, 1200.0, 1200.0],
            }
        )
    )
    for stem, domain in (
        ("ACASXU_run2a_1_1_batch_2000", ["--box-file", str(acas_box)]),
        ("mnist_relu_3_100", ["--box", "0,1"]),
    ):
        pair = []
        for folder, name in (("nnet", stem), ("compressed_nnets", f"{stem}_16bit")):
            dest = unpacked / f"{name}.nnet"
            dest.write_bytes(
                gzip.decompress((REAL / "neurodiff" / folder / f"{name}.nnet.gz").read_bytes())
            )
            pair.append(dest)
        nets.append(dict(name=f"nd_{stem}", model=pair[0], domain=domain, other=pair[1]))
        nets.append(dict(name=f"nd_{stem}_16bit", model=pair[1], domain=domain))
    return nets


def runs(net: dict) -> list[tuple[str, list[str]]]:
    """The commands run on one network, in order (``verify`` compares the compress output)."""
    model, dom = str(net["model"]), list(net["domain"])
    ext = ".nnet" if model.endswith(".nnet") else Path(model).suffix
    cmds = [
        (
            "compress",
            ["compress", model, *dom, "-o", f"c{ext}", "--time-limit", "1", "--report", "c.json"],
        ),
        ("verify", ["verify", model, f"c{ext}", *dom, "--time-limit", "10", "--report", "v.json"]),
        (
            "compress-verify",
            [
                "compress",
                model,
                *dom,
                "-o",
                f"cv{ext}",
                "--time-limit",
                "1",
                "--verify",
                "--report",
                "cv.json",
            ],
        ),
        (
            "stability",
            ["stability", model, *dom, "--time-limit", "1", "--budget", "10", "--report", "s.json"],
        ),
        (
            "regions",
            ["regions", model, *dom, "--time-limit", "1", "--limit", "2000", "--report", "r.json"],
        ),
    ]
    if net.get("other"):
        cmds.append(
            (
                "verify-pair",
                [
                    "verify",
                    model,
                    str(net["other"]),
                    *dom,
                    "--time-limit",
                    "10",
                    "--report",
                    "vp.json",
                ],
            )
        )
    if not net.get("conv"):
        cmds.append(
            (
                "quantize",
                ["quantize", model, *dom, "--bits", "8", "-o", "q.onnx", "--report", "q.json"],
            )
        )
        cmds.append(
            (
                "tol",
                ["compress", model, *dom, "--tol", "0.1", "-o", f"t{ext}", "--report", "t.json"],
            )
        )
    return cmds


def run_one(net: dict, label: str, argv: list[str], folder: Path) -> dict:
    timing = folder / f".{label}.time"
    cmd = ["/usr/bin/time", "-o", str(timing), "-f", "%e %U %S", "nice", "-n", "19"]
    cmd += ["timeout", str(TIMEOUT_S), PY, "-m", "exactcomp", *argv]
    before = {p.name: p.stat().st_mtime for p in folder.iterdir()}
    t0 = time.time()
    proc = subprocess.run(
        cmd, cwd=folder, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    wall = time.time() - t0
    try:
        e, u, s = timing.read_text().split()[-3:]
        wall, cpu = float(e), float(u) + float(s)
    except (OSError, ValueError):
        cpu = float("nan")
    out, err = ANSI.sub("", proc.stdout), ANSI.sub("", proc.stderr)
    lines = [ln for ln in (out + "\n" + err).splitlines()]
    widest = max((len(ln) for ln in lines), default=0)
    size_in = Path(net["model"]).stat().st_size
    written = {
        p.name: p.stat().st_size
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and (p.name not in before or p.stat().st_mtime != before[p.name])
    }
    return dict(
        net=net["name"],
        command=label,
        argv=argv,
        rc=proc.returncode,
        wall_s=round(wall, 2),
        cpu_s=round(cpu, 2),
        traceback="Traceback" in err,
        widest=widest,
        wide_lines=[ln for ln in lines if len(ln) > 80][:5],
        input_bytes=size_in,
        written=written,
        larger=[k for k, v in written.items() if not k.endswith((".json", ".png")) and v > size_in],
        stdout_tail=out.strip().splitlines()[-6:],
        stderr_tail=err.strip().splitlines()[-6:],
    )


def sweep_network(net: dict, out: Path, commands: set[str], log) -> None:
    folder = out / net["name"]
    folder.mkdir(parents=True, exist_ok=True)
    for label, argv in runs(net):
        if label not in commands:
            continue
        row = run_one(net, label, argv, folder)
        log(row)


def _result(folder: Path, row: dict) -> str:
    """A few words on what a run claimed, from its report (or its last printed line)."""
    rc, cmd = row["rc"], row["command"]
    if rc == 124:
        return "timeout"
    if rc == 2:
        return "error: " + " ".join(row["stderr_tail"][-1:])[18:70]
    name = {"compress": "c", "compress-verify": "cv", "stability": "s", "regions": "r"}.get(cmd)
    name = name or {"verify": "v", "verify-pair": "vp", "quantize": "q", "tol": "t"}[cmd]
    try:
        doc = json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return "(no report)"
    if cmd in ("compress", "compress-verify"):
        und = sum(r["undecided"] for r in doc["layers"])
        text = f"{doc['neurons_before']}->{doc['neurons_after']}, {und} und."
        ver = doc.get("verification")
        return text + (f", {ver['status'][:5]} <={ver['upper_bound']:.2g}" if ver else "")
    if cmd == "stability":
        return f"{sum(r['undecided'] for r in doc['layers'])} undecided"
    if cmd == "regions":
        return f"{doc['regions']:,}" + (" exact" if doc["exact"] else f" ({doc['stopped']})")
    if cmd.startswith("verify"):
        ub = doc["upper_bound"]
        return f"{doc['verdict'][:5]} [{doc['lower_bound']:.2g}, {'inf' if ub is None else f'{ub:.2g}'}]"
    return f"proven {doc['proven_max_abs_diff']:.3g}, sampled {doc['sampled_max_abs_diff']:.3g}"


def table(out: Path) -> str:
    """The sweep as markdown: one row per network, per command ``exit code, wall / CPU s,
    result`` (the last run of each)."""
    rows: dict[str, dict[str, dict]] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["net"], {})[row["command"]] = row
    lines = ["| network | " + " | ".join(COMMANDS) + " |", "|---" * (len(COMMANDS) + 1) + "|"]
    for net, by in rows.items():
        cells = []
        for cmd in COMMANDS:
            r = by.get(cmd)
            cells.append(
                ""
                if r is None
                else f"{r['rc']}, {r['wall_s']:.0f}/{r['cpu_s']:.0f} s, {_result(out / net, r)}"
            )
        lines.append(f"| {net} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--table", action="store_true", help="print the markdown table of OUT")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=None, help="network names, comma-separated")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    nets = networks(args.out)
    if args.only:
        keep = set(args.only.split(","))
        nets = [n for n in nets if n["name"] in keep]
    commands = set(args.commands.split(","))
    results = args.out / "results.jsonl"

    def log(row: dict) -> None:
        with results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(
            f"{row['net']:32s} {row['command']:16s} rc={row['rc']:<4d} {row['wall_s']:7.1f}s",
            flush=True,
        )

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda n: sweep_network(n, args.out, commands, log), nets))


if __name__ == "__main__":
    main()
