"""Structures met in VNN-COMP networks exported by other tools (audit22), each on a tiny copy.

* nn4sys ``normal_100`` (``MatMul(W, x)`` on a 1-D input, one layer of 60,100 ReLUs): the
  product of the identity on a wide layer with the next weight must cost the weight, not an
  ``n x n`` temporary (it was a 29 GB ``MemoryError`` and a traceback).

Each network is checked against onnxruntime by the reader itself (``load_onnx``) and here
against a plain numpy forward pass.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

#: Wide enough that an ``n x n`` float64 identity (4.6 GB) cannot fit under ``_LIMIT``.
WIDE = 24_000
_LIMIT = 3_000_000_000  # bytes of address space for the reading process

_READ = """
import resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from exactcomp.io.onnx_io import load_onnx
net = load_onnx(sys.argv[1])
x = np.load(sys.argv[2])
print(net.describe())
np.save(sys.argv[3], net.forward(x))
"""


def _save(tmp_path, nodes, inits, in_shape, out_shape):
    graph = helper.make_graph(
        nodes,
        "audit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def _read_limited(tmp_path, path, x):
    """Read ``path`` in a process of at most ``_LIMIT`` bytes of address space; its
    architecture and its outputs at ``x``."""
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _READ.format(limit=_LIMIT),
            str(path),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1], np.load(tmp_path / "y.npy")


def _forward(ws, bs, x):
    h = x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = w.astype(np.float32).astype(np.float64) @ h + b.astype(np.float32).astype(np.float64)
        if i < len(ws) - 1:
            h = np.maximum(h, 0.0)
    return h


needs_rlimit = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS bounds memory on Linux"
)


@needs_rlimit
def test_weight_first_matmul_after_a_wide_relu_costs_no_square_temporary(tmp_path):
    """nn4sys' layout: x (1-D) -> W0 @ x + b0 -> ReLU (wide) -> W1 @ h + b1 -> ReLU -> W2 @ h.

    ::

        x[2] --W0--> (+b0) relu[24000] --W1--> (+b1) relu[4] --W2--> y[1]

    The identity on the 24,000 ReLUs as a dense matrix is 4.6 GB; the weights are 0.8 MB.
    """
    rng = np.random.default_rng(0)
    wide = WIDE
    ws = [rng.normal(size=(wide, 2)), rng.normal(size=(4, wide)) / 50, rng.normal(size=(1, 4))]
    bs = [rng.normal(size=wide), rng.normal(size=4), rng.normal(size=1)]
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["W0", "x"], ["m0"]),
        mk("Add", ["m0", "B0"], ["a0"]),
        mk("Relu", ["a0"], ["r0"]),
        mk("MatMul", ["W1", "r0"], ["m1"]),
        mk("Add", ["m1", "B1"], ["a1"]),
        mk("Relu", ["a1"], ["r1"]),
        mk("MatMul", ["W2", "r1"], ["m2"]),
        mk("Add", ["m2", "B2"], ["y"]),
    ]
    inits = {f"W{i}": w for i, w in enumerate(ws)} | {f"B{i}": b for i, b in enumerate(bs)}
    path = _save(tmp_path, nodes, inits, [2], [1])
    x = rng.uniform(-1, 1, size=(50, 2))
    arch, got = _read_limited(tmp_path, path, x)
    assert arch == f"2-{wide}r-4r-1"
    want = np.array([_forward(ws, bs, xi) for xi in x])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@needs_rlimit
def test_gemm_on_a_batch_row_after_a_wide_relu_costs_no_square_temporary(tmp_path):
    """The same through ``Gemm`` on a ``[1, n]`` row (PyTorch's export), with ``transB``: the
    shortcut for an identity on a batch row gives the same network.

    ::

        x[1,2] --Gemm(W0)--> relu[1,24000] --Flatten--> Gemm(W1)--> y[1,3]
    """
    rng = np.random.default_rng(1)
    wide = WIDE
    w0, b0 = rng.normal(size=(wide, 2)), rng.normal(size=wide)
    w1, b1 = rng.normal(size=(3, wide)) / 50, rng.normal(size=3)
    mk = helper.make_node
    nodes = [
        mk("Gemm", ["x", "W0", "B0"], ["a0"], transB=1),
        mk("Relu", ["a0"], ["r0"]),
        mk("Flatten", ["r0"], ["f0"], axis=1),
        mk("Gemm", ["f0", "W1", "B1"], ["y"], transB=1),
    ]
    path = _save(tmp_path, nodes, {"W0": w0, "B0": b0, "W1": w1, "B1": b1}, [1, 2], [1, 3])
    x = rng.uniform(-1, 1, size=(50, 2))
    arch, got = _read_limited(tmp_path, path, x)
    assert arch == f"2-{wide}r-3"
    want = np.array([_forward([w0, w1], [b0, b1], xi) for xi in x])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
