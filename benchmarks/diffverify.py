"""Differential verification of float16-rounded copies (NeuroDiff's ACAS Xu benchmark).

Each ACAS Xu network ``f`` is compared with ``g``, the same network with every weight and bias
rounded to float16 and back (in float64), over ACAS Xu property 1's input region, on output 0,
at each ``--tol``: ``max |f_0 - g_0| <= tol``? The VNN-COMP ONNX files compute in the ``.nnet``
files' normalised units (inputs and outputs; their ``Sub`` subtracts zeros and there is no
output scaling: property 1's own comment converts 1500 to 3.99 in these units), which is where
NeuroDiff measures too. Each row is one :func:`exactcomp.verify_equivalence` call (the whole
pipeline: sampling, input splitting, then the older phases if splitting does not finish)::

    python -m benchmarks.diffverify --dir /work/shared/networks/acasxu --tol 0.05 0.01

Prints one line per pair and tolerance (status, seconds, boxes bounded by input splitting, the
proven upper and the observed lower bound); ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exactcomp.api import load
from exactcomp.io.vnnlib import read_vnnlib
from exactcomp.network import Layer, Network
from exactcomp.verify import verify_equivalence

HERE = Path(__file__).resolve().parents[1] / "models" / "real" / "acasxu"


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


def run(
    paths: Sequence[Path], prop: Path, tols: Sequence[float], time_limit: float, outputs
) -> list[dict]:
    rows = []
    for path in paths:
        f = load(path)
        g = float16_copy(f)
        box = read_vnnlib(prop, f.input_size).boxes[0]
        for tol in tols:
            t0 = time.perf_counter()
            res = verify_equivalence(f, g, box, tol=tol, time_limit=time_limit, outputs=outputs)
            row = {
                "network": path.stem.replace("ACASXU_run2a_", "").replace("_batch_2000", ""),
                "tol": tol,
                "status": res.status.name,
                "seconds": round(time.perf_counter() - t0, 3),
                "boxes": res.boxes,
                "upper": res.upper_bound,
                "lower": res.lower_bound,
                "reason": res.reason,
            }
            rows.append(row)
            print(
                f"{row['network']:>5} tol {tol:<6g} {row['status']:<14} {row['seconds']:8.2f} s "
                f"{row['boxes']:>8} boxes  max|f0-g0| in [{row['lower']:.3g}, {row['upper']:.3g}]",
                flush=True,
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.diffverify", description=__doc__)
    p.add_argument("--dir", type=Path, default=HERE, help="folder of ACASXU_*.onnx files")
    p.add_argument("--prop", type=Path, default=None, help="VNN-LIB (default DIR/prop_1.vnnlib)")
    p.add_argument("--tol", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--outputs", type=int, nargs="+", default=[0])
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    paths = sorted(args.dir.glob("ACASXU_*.onnx"))
    if not paths:
        print(f"no ACASXU_*.onnx in {args.dir}", file=sys.stderr)
        return 2
    prop = args.prop or args.dir / "prop_1.vnnlib"
    rows = run(paths, prop, args.tol, args.time_limit, args.outputs)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
