"""``python -m benchmarks.cifar``: the CIFAR-10-sized convolutional network of issue 19.

A network of the shape of VNN-COMP's ``cifar_base_kw`` (oval21) with random weights, so that
the size target of issue 19 (analysis within 120 s, peak memory within 2 GB on 2 cores) is
measured by one command, not on a file nobody can regenerate::

    Conv 3->8 (4x4, stride 2, pad 1) -> Relu -> Conv 8->16 (4x4/2/1) -> Relu -> Flatten
    -> Gemm 1024->100 -> Relu -> Gemm 100->10

Weights are He-initialised (normal, variance ``2 / fan_in``), biases uniform in
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (PyTorch's default), all from ``--seed`` (float32, as a
trained network would be stored). The box has radius ``--eps`` (default 2/255) around a
uniformly random image, clipped to ``[0, 1]``. Random weights measure scale, not a trained
network's stability.

The command writes ``cifar_like.onnx`` and ``box.json`` to ``--out`` and then (unless
``--write-only``) runs :func:`exactcomp.api.stable_neurons` on them in this process, printing
the analysis seconds per phase, the verdict counts and the peak resident memory. The same
files go through the CLI as
``python -m exactcomp compress OUT/cifar_like.onnx --box-file OUT/box.json -o small.onnx``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = (3, 32, 32)
EPS = 2.0 / 255.0


def build_model(seed: int = 0):
    """The ONNX model (opset 13) of the module docstring, from ``seed``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def he(shape: tuple[int, ...], fan_in: int) -> tuple[np.ndarray, np.ndarray]:
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        bound = 1.0 / np.sqrt(fan_in)
        b = rng.uniform(-bound, bound, size=shape[0]).astype(np.float32)
        return w, b

    w1, b1 = he((8, 3, 4, 4), 3 * 16)
    w2, b2 = he((16, 8, 4, 4), 8 * 16)
    w3, b3 = he((100, 1024), 1024)
    w4, b4 = he((10, 100), 100)
    inits = [
        numpy_helper.from_array(a, name)
        for name, a in [
            ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2),
            ("w3", w3), ("b3", b3), ("w4", w4), ("b4", b4),
        ]
    ]  # fmt: skip
    inits.append(numpy_helper.from_array(np.array([1, 1024], dtype=np.int64), "flat"))
    conv = {"kernel_shape": [4, 4], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Reshape", ["r2", "flat"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["r3"]),
        helper.make_node("Gemm", ["r3", "w4", "b4"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cifar_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_box(seed: int = 0, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``: radius ``eps`` around a random image in ``[0, 1]``, clipped."""
    rng = np.random.default_rng(seed + 1)
    centre = rng.uniform(0.0, 1.0, size=int(np.prod(SHAPE)))
    return np.clip(centre - eps, 0.0, 1.0), np.clip(centre + eps, 0.0, 1.0)


def write(out: Path, seed: int = 0, eps: float = EPS) -> tuple[Path, Path]:
    """Write ``cifar_like.onnx`` and ``box.json`` to ``out``; return their paths."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    model_path, box_path = out / "cifar_like.onnx", out / "box.json"
    onnx.save(build_model(seed), str(model_path))
    lo, hi = build_box(seed, eps)
    box_path.write_text(json.dumps({"lower": lo.tolist(), "upper": hi.tolist()}))
    return model_path, box_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cifar", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("out/cifar"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=EPS)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--write-only", action="store_true", help="write the files, no analysis")
    args = parser.parse_args(argv)
    model_path, box_path = write(args.out, args.seed, args.eps)
    print(f"wrote {model_path} ({model_path.stat().st_size:,} bytes) and {box_path}")
    if args.write_only:
        return 0
    from exactcomp import api
    from exactcomp.domain import read_box_file
    from exactcomp.verdicts import Verdict

    t0 = time.perf_counter()
    report = api.stable_neurons(
        str(model_path), read_box_file(box_path), jobs=args.jobs, time_limit=args.time_limit
    )
    wall = time.perf_counter() - t0
    counts = {v.name.lower(): sum(ls.count(v) for ls in report.layers) for v in Verdict}
    total = sum(counts.values())
    stable = counts["active"] + counts["inactive"]
    print(f"analysis {wall:.1f} s wall; stable {stable:,} / {total:,}; {counts}")
    for key, value in sorted(report.stats.items()):
        if key.startswith("seconds"):
            print(f"  {key:24s} {value:8.1f}")
        else:
            print(f"  {key:24s} {value:8g}")
    print(f"peak memory {api.peak_memory_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
