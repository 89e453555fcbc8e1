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

from exactcomp.io.onnx_io import load_onnx

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


def _save(tmp_path, nodes, inits, in_shape, out_shape, out_name="y"):
    graph = helper.make_graph(
        nodes,
        "audit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
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


# ----------------------------------------------------------------------------- Conv after a ReLU
def _conv_net(tmp_path, rng, c, hw, m, conv_attrs):
    """x[1,c,h,w] --Conv 3x3--> relu --Conv(conv_attrs)--> relu --Flatten--> Gemm --> y[1,2]

    The second ``Conv`` reads the first ReLU's output: the identity on those units."""
    mk = helper.make_node
    k2 = conv_attrs.pop("kernel", (2, 3))
    groups = conv_attrs.get("group", 1)
    w0, b0 = rng.normal(size=(c, c, 3, 3)), rng.normal(size=c)
    w1, b1 = rng.normal(size=(m, c // groups, *k2)), rng.normal(size=m)
    nodes = [
        mk("Conv", ["x", "W0", "B0"], ["z0"], pads=[1, 1, 1, 1]),
        mk("Relu", ["z0"], ["r0"]),
        mk("Conv", ["r0", "W1", "B1"], ["z1"], **conv_attrs),
        mk("Relu", ["z1"], ["r1"]),
        mk("Flatten", ["r1"], ["f1"], axis=1),
    ]
    inits = {"W0": w0, "B0": b0, "W1": w1, "B1": b1}
    # the width of the flattened layer, from a trial read without the final Gemm
    trial = _save(tmp_path, nodes, inits, [1, c, *hw], [1, None], out_name="f1")
    width = load_onnx(trial).layers[-1].weight.shape[0]
    nodes.append(mk("Gemm", ["f1", "W2", "B2"], ["y"], transB=1))
    inits |= {"W2": rng.normal(size=(2, width)), "B2": rng.normal(size=2)}
    return _save(tmp_path, nodes, inits, [1, c, *hw], [1, 2])


CONVS = [
    {},
    {"strides": [2, 1], "pads": [1, 0, 0, 2]},
    {"dilations": [2, 1], "pads": [2, 1, 2, 1], "kernel": (3, 2)},
    {"group": 2, "strides": [1, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER", "kernel": (2, 2)},
    {"auto_pad": "VALID", "dilations": [1, 2]},
]


@pytest.mark.parametrize("attrs", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_conv_of_a_relu_layer_is_the_same_matrix_as_the_convolved_identity(
    tmp_path, monkeypatch, attrs
):
    """The reader builds a ``Conv`` on the previous ReLU layer from the kernel's taps (which
    read cifar_biasfield's ``cifar_base`` in 24 s instead of 105 s); it must give exactly the
    matrix that convolving the identity gives, and the same recognised structure."""
    from exactcomp.io import onnx_conv

    rng = np.random.default_rng(len(str(attrs)))
    path = _conv_net(tmp_path, rng, c=4, hw=(5, 6), m=6, conv_attrs=dict(attrs))
    built = []
    taps = onnx_conv._identity_conv
    monkeypatch.setattr(onnx_conv, "_identity_conv", lambda *a: built.append(taps(*a)) or built[-1])
    fast = load_onnx(path)
    assert sum(lin is not None for lin in built) == 2  # both Convs (the first reads x itself)
    monkeypatch.setattr(onnx_conv, "_identity_conv", lambda *args: None)
    slow = load_onnx(path)
    assert fast.describe() == slow.describe()
    for a, b in zip(fast.layers, slow.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert type(a.structure) is type(b.structure)
    assert type(fast.layers[1].structure).__name__ == "ConvSpec"
