"""``quantize --bits`` of a DAG quantises the file's own weights (:mod:`exactcomp.io.onnx_requant`).

A residual graph is read as a chain of layers carrying its skip connections; written, that
chain is dense. Instead the file's own ``Gemm``/``Conv`` weights are stored as integers behind
``DequantizeLinear`` and the graph is kept. Checked on tiny residual graphs built here:

    x --Gemm--> relu = h --Gemm--> relu --Gemm--> (+) --> relu --Gemm--> y      (MLP)
                       |_____________________________^
    x --Conv 3x3--> relu = h --Conv 1x1--> relu --Conv 1x1--> (+) --> relu --Gemm--> y
                           |____________________________________^                (conv)

Ground truth: the written file in onnxruntime and as exactcomp reads it equals the result's
network, and the proven bound is at least the exact ``max |f - g|`` (region enumeration).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp import quantize
from exactcomp.domain import Box
from exactcomp.io import load
from exactcomp.io.onnx_requant import weight_axes
from exactcomp.testing import max_output_difference

RNG = np.random.default_rng(24)

MLP = [
    ("Gemm", ["x", "W0", "b0"], ["a0"], {}),
    ("Relu", ["a0"], ["h"], {}),
    ("Gemm", ["h", "W1", "b1"], ["a1"], {}),
    ("Relu", ["a1"], ["r1"], {}),
    ("Gemm", ["r1", "W2"], ["a2"], {"transB": 1}),
    ("Add", ["a2", "h"], ["s"], {}),
    ("Relu", ["s"], ["o"], {}),
    ("Gemm", ["o", "W3"], ["y"], {}),
]
MLP_INITS = {"W0": (2, 4), "b0": (4,), "W1": (4, 5), "b1": (5,), "W2": (4, 5), "W3": (4, 2)}
CONV = [
    ("Conv", ["x", "K0", "c0"], ["a0"], {"pads": [1, 1, 1, 1]}),
    ("Relu", ["a0"], ["h"], {}),
    ("Conv", ["h", "K1"], ["a1"], {}),
    ("Relu", ["a1"], ["r1"], {}),
    ("Conv", ["r1", "K2"], ["a2"], {}),
    ("Add", ["a2", "h"], ["s"], {}),
    ("Relu", ["s"], ["o"], {}),
    ("Flatten", ["o"], ["v"], {}),
    ("Gemm", ["v", "W2", "b2"], ["y"], {"transB": 1}),
]
CONV_INITS = {"K0": (1, 1, 3, 3), "c0": (1,), "K1": (1, 1, 1, 1), "K2": (1, 1, 1, 1),
              "W2": (2, 4), "b2": (2,)}  # fmt: skip


def _save(path, nodes, shapes, in_shape, out_shape, opset: int) -> str:
    inits = [
        numpy_helper.from_array(RNG.normal(size=s).astype(np.float32), k) for k, s in shapes.items()
    ]
    graph = helper.make_graph(
        [helper.make_node(op, i, o, **a) for op, i, o, a in nodes],
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return str(path)


CASES = {
    "mlp": (MLP, MLP_INITS, [1, 2], [1, 2], 11),
    "conv": (CONV, CONV_INITS, [1, 1, 2, 2], [1, 2], 13),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("bits", [8, 4, 16])
def test_a_dag_is_quantised_in_its_own_graph(tmp_path, case, bits) -> None:
    nodes, shapes, in_shape, out_shape, opset = CASES[case]
    src = _save(tmp_path / "f.onnx", nodes, shapes, in_shape, out_shape, opset)
    f = load(src)
    assert f.meta.get("carried")  # read as a chain that carries the skip connection
    box = Box.uniform(-1.0, 1.0, f.input_size)
    res = quantize(src, box, bits=bits, time_limit=30.0, tighten_seconds=0.0, split_seconds=0.0)
    assert res.source is not None and res.grids is None
    out = tmp_path / "g.onnx"
    res.save(out)
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DequantizeLinear" if bits != 16 else "Cast") == len(res.source.names)
    assert [n for n in ops if n not in ("DequantizeLinear", "Cast")] == [n[0] for n in nodes]
    stored = {t.name: t.data_type for t in model.graph.initializer}
    for name in res.source.names:
        if bits == 16:
            assert stored[f"{name}_h"] == TensorProto.FLOAT16
        else:
            assert stored[f"{name}_q"] == (TensorProto.INT8 if bits == 8 else TensorProto.INT4)
    # the file holds exactly the network proven: read back, and run in onnxruntime
    g = load(out)
    for a, b in zip(g.layers, res.network.layers, strict=True):
        np.testing.assert_array_equal(np.asarray(a.weight.todense() if hasattr(a.weight, "todense") else a.weight),
                                      np.asarray(b.weight.todense() if hasattr(b.weight, "todense") else b.weight))  # fmt: skip
        np.testing.assert_array_equal(a.bias, b.bias)
    x = RNG.uniform(-1, 1, size=(50, f.input_size))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.stack([sess.run(None, {"x": r.reshape(in_shape).astype(np.float32)})[0][0] for r in x])
    np.testing.assert_allclose(got, res.network.forward(x), rtol=1e-5, atol=1e-5)
    # the claim holds: at least the exact largest difference over the box
    assert max_output_difference(f, res.network, box).value <= res.proven + 1e-9
    assert res.report["bits_per_weight"] == (16 if bits == 16 else (8 if bits == 8 else 4))


def test_a_chain_is_quantised_as_before(tmp_path) -> None:
    chain = [n for n in MLP if n[0] != "Add"]
    chain[-2] = ("Relu", ["a2"], ["o"], {})
    src = _save(tmp_path / "f.onnx", chain, MLP_INITS, [1, 2], [1, 2], 13)
    res = quantize(src, Box.uniform(-1.0, 1.0, 2), bits=8, time_limit=30.0)
    assert res.source is None and res.grids is not None


def test_old_opsets_raised_only_where_every_op_reads_the_same(tmp_path) -> None:
    path = _save(tmp_path / "f.onnx", MLP, MLP_INITS, [1, 2], [1, 2], 11)
    model = onnx.load(path)
    assert weight_axes(model) == {"W0": 1, "W1": 1, "W2": 0, "W3": 1}  # Gemm: transB or not
    model.graph.node.append(helper.make_node("Pad", ["y"], ["z"], pads=[0, 0, 0, 0]))
    assert weight_axes(model) == {}  # Pad's inputs moved to tensors at opset 11
    model.opset_import[0].version = 13
    assert set(weight_axes(model)) == {"W0", "W1", "W2", "W3"}
