"""The ONNX reader and writer: real networks, graph quirks, round trips and clear errors.

"Matches onnxruntime" means ``|IR(x) - ort(x)| <= 1e-6 * S(x)`` on every output, where
``S(x)`` is the size of the largest partial sum the network forms at ``x``
(:func:`exactcomp.io.onnx_io.partial_sum_size`): float32 rounding scales with it, and
``1e-6`` is about 16 float32 units of roundoff.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from exactcomp.domain import Box
from exactcomp.errors import (
    InputFileError,
    InvalidNetworkError,
    UnsupportedModelError,
    VerificationError,
)
from exactcomp.io import onnx_io
from exactcomp.io.onnx_io import load_onnx, partial_sum_size, save_onnx
from exactcomp.io.vnnlib import read_vnnlib
from exactcomp.network import Layer, Network

REAL = Path(__file__).resolve().parents[1] / "models" / "real"
# the convolutional networks (models/real/conv) are tested in tests/test_conv_structure.py
ONNX_FILES = sorted(
    str(p.relative_to(REAL)) for p in REAL.rglob("*.onnx") if p.parent.name != "conv"
)
PROPERTIES = {
    "acasxu/ACASXU_run2a_1_1_batch_2000.onnx": [f"acasxu/prop_{i}.vnnlib" for i in range(1, 5)],
    **{
        f"acasxu/ACASXU_run2a_{ij}_batch_2000.onnx": [f"acasxu/prop_{i}.vnnlib" for i in (1, 3)]
        for ij in ("1_2", "2_1", "3_3")
    },
    "acasxu_eran_format/ACASXU_run2a_1_1_batch_2000.onnx": ["acasxu/prop_1.vnnlib"],
    "eran/mnist_relu_9_200.onnx": ["eran/mnist_spec_idx_1013_eps_0.01500.vnnlib"],
    "mnistfc/mnist-net_256x2.onnx": ["mnistfc/prop_0_0.03.vnnlib", "mnistfc/prop_1_0.05.vnnlib"],
    "mnistfc/mnist-net_256x4.onnx": ["mnistfc/prop_0_0.03.vnnlib"],
    "mnistfc/mnist-net_256x6.onnx": ["mnistfc/prop_0_0.03.vnnlib"],
    "small/cartpole.onnx": ["small/cartpole_case_safe_14.vnnlib"],
    "small/vdp.onnx": ["small/vdp_0.vnnlib"],
    "small/tll_n2_N8_0_0.onnx": ["small/tll_property_N8_0.vnnlib"],
}
ARCHITECTURES = {
    "acasxu/ACASXU_run2a_1_1_batch_2000.onnx": "5-50r-50r-50r-50r-50r-50r-5",
    **{
        f"acasxu/ACASXU_run2a_{ij}_batch_2000.onnx": "5-50r-50r-50r-50r-50r-50r-5"
        for ij in ("1_2", "2_1", "3_3")
    },
    "acasxu_eran_format/ACASXU_run2a_1_1_batch_2000.onnx": "5-50r-50r-50r-50r-50r-50r-5",
    "eran/mnist_relu_9_200.onnx": "784" + "-200r" * 8 + "-10r",
    "mnistfc/mnist-net_256x2.onnx": "784-256r-256r-10",
    "mnistfc/mnist-net_256x4.onnx": "784-256r-256r-256r-256r-10",
    "mnistfc/mnist-net_256x6.onnx": "784-256r-256r-256r-256r-256r-256r-10",
    "small/cartpole.onnx": "4-64r-64r-2",
    "small/marabou_fc1.onnx": "2-25r-25r-25r-2",
    "small/test_small.onnx": "1-2r-2r-1",
    "small/test_tiny.onnx": "1-1r-1",
    "small/vdp.onnx": "3-32r-32r-3",
    "small/tll_n2_N8_0_0.onnx": "2-128r-64r-32r-16r-8r-4r-1",
}


def _session(path_or_bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, opts, providers=["CPUExecutionProvider"])


def _run_ort(path, x: np.ndarray, name: str, shape) -> np.ndarray:
    """onnxruntime on each row of ``x`` (one sample per call, batch dims set to 1)."""
    sess = _session(str(path))
    feed_shape = [d if isinstance(d, int) else 1 for d in shape]
    xs = x.astype(np.float32)
    rows = [sess.run(None, {name: r.reshape(feed_shape)})[0].reshape(-1) for r in xs]
    return np.asarray(rows, dtype=np.float64)


def _boxes(name: str, n: int) -> list[Box]:
    return [read_vnnlib(REAL / v, n_inputs=n).box for v in PROPERTIES.get(name, [])] or [
        Box.uniform(-1.0, 1.0, n)
    ]


def _assert_matches(net: Network, got: np.ndarray, x: np.ndarray) -> None:
    allowed = 1e-6 * partial_sum_size(net, x)[:, None]
    worst = float(np.max(np.abs(got - net.forward(x)) / allowed))
    assert worst <= 1.0, f"differs from onnxruntime by {worst:.2f}x the allowance"


# ----------------------------------------------------------------------------- real networks
def test_every_network_is_listed():
    assert set(ONNX_FILES) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", ONNX_FILES)
def test_real_network_matches_onnxruntime_in_its_boxes(name):
    net = load_onnx(REAL / name)
    assert net.describe() == ARCHITECTURES[name]
    assert net.dtype == "float32"
    assert net.meta["format"] == "onnx" and net.meta["opset"] >= 8
    for box in _boxes(name, net.input_size):
        x = box.sample(40, np.random.default_rng(1)).astype(np.float32).astype(np.float64)
        got = _run_ort(REAL / name, x, net.meta["input_name"], net.meta["input_shape"])
        _assert_matches(net, got, x)


def test_meta_records_names_and_shapes():
    acas = load_onnx(REAL / "acasxu/ACASXU_run2a_1_1_batch_2000.onnx").meta
    assert (acas["input_name"], acas["input_shape"]) == ("input", [1, 1, 1, 5])
    assert (acas["output_name"], acas["output_shape"]) == ("linear_7_Add", [1, 5])
    fc1 = load_onnx(REAL / "small/marabou_fc1.onnx").meta
    assert fc1["input_shape"] == ["unk__10", 2] and fc1["output_name"] == "y_out:0"
    mnist = load_onnx(REAL / "mnistfc/mnist-net_256x2.onnx").meta
    assert mnist["input_shape"] == [1, 784, 1] and mnist["opset"] == 9


def test_eran_format_equals_vnncomp_acasxu():
    a = load_onnx(REAL / "acasxu/ACASXU_run2a_1_1_batch_2000.onnx")
    b = load_onnx(REAL / "acasxu_eran_format/ACASXU_run2a_1_1_batch_2000.onnx")
    x = Box.uniform(-0.5, 0.5, 5).sample(500, np.random.default_rng(0))
    np.testing.assert_allclose(a.forward(x), b.forward(x), rtol=0, atol=1e-5)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_allclose(la.weight, lb.weight, atol=1e-6)


@pytest.mark.parametrize("name", ONNX_FILES)
def test_save_keeps_names_shapes_and_function(tmp_path, name):
    net = load_onnx(REAL / name)
    out = tmp_path / "small.onnx"
    save_onnx(net, out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    # (a mostly-zero matrix, as the TLL network's selection rows, is a sparse ``Constant``)
    assert {n.op_type for n in model.graph.node} <= {"Gemm", "Relu", "Reshape", "Constant"}
    back = load_onnx(out)
    for key in ("input_name", "input_shape", "output_name", "output_shape"):
        assert back.meta[key] == net.meta[key]
    box = _boxes(name, net.input_size)[0]
    x = box.sample(30, np.random.default_rng(2)).astype(np.float32).astype(np.float64)
    _assert_matches(net, _run_ort(out, x, net.meta["input_name"], net.meta["input_shape"]), x)
    # same feed works on the original and the copy (drop-in replacement); the TLL network's
    # two affine layers are merged on reading, in float64, so its copy holds that product
    # rounded to float32 (3e-8 on its outputs)
    atol = 1e-6 if name == "small/tll_n2_N8_0_0.onnx" else 1e-12
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=0, atol=atol)


# ----------------------------------------------------------------------------- synthetic graphs
def _model(nodes, inits, in_shape, out_shape, opset=13, in_name="x", out_name="y"):
    tensors = [
        numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
        for k, v in inits.items()
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=tensors,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _load(tmp_path, model, **kw) -> Network:
    p = tmp_path / "m.onnx"
    onnx.save(model, str(p))
    return load_onnx(p, **kw)  # load_onnx checks against onnxruntime itself


RNG = np.random.default_rng(7)


def _w(*shape):
    return RNG.normal(size=shape)


def test_normalisation_is_folded_into_the_first_layer(tmp_path):
    n = helper.make_node
    nodes = [
        n("Sub", ["x", "mean"], ["a"]),
        n("Div", ["a", "std"], ["b"]),
        n("Mul", ["b", "two"], ["c"]),
        n("Add", ["c", "shift"], ["d"]),
        n("MatMul", ["d", "W0"], ["e"]),
        n("Add", ["e", "b0"], ["f"]),
        n("Relu", ["f"], ["g"]),
        n("MatMul", ["g", "W1"], ["y"]),
    ]
    inits = {
        "mean": _w(1, 3),
        "std": np.abs(_w(3)) + 0.5,
        "two": np.array(2.0),
        "shift": _w(3),
        "W0": _w(3, 4),
        "b0": _w(4),
        "W1": _w(4, 2),
    }
    net = _load(tmp_path, _model(nodes, inits, [1, 3], [1, 2]))
    assert net.describe() == "3-4r-2"


def test_gemm_attributes_and_weight_first_layouts(tmp_path):
    n = helper.make_node
    nodes = [
        # z = 2 * W0^T @ x^T + 0.5 * C: weight first, transposed, output column [4, 1]
        n("Gemm", ["W0", "x", "C"], ["z"], transA=1, transB=1, alpha=2.0, beta=0.5),
        n("Relu", ["z"], ["h"]),
        n("Flatten", ["h"], ["hf"], axis=0),
        n("Gemm", ["hf", "W1", "b1"], ["y"]),  # no transB: weight stored [in, out]
    ]
    inits = {"W0": _w(3, 4), "C": _w(4, 1), "W1": _w(4, 2), "b1": _w(2)}
    net = _load(tmp_path, _model(nodes, inits, [1, 3], [1, 2]))
    assert net.describe() == "3-4r-2"


def test_constant_subgraph_and_one_dimensional_input(tmp_path):
    """Marabou-style Constant -> Reshape -> Transpose weight, MatMul(W, x) on a 1-D input."""
    n = helper.make_node
    w = _w(5, 2)
    nodes = [
        n(
            "Constant",
            [],
            ["wflat"],
            value=numpy_helper.from_array(w.T.reshape(-1).astype(np.float32)),
        ),
        n("Constant", [], ["shape"], value_ints=[2, 5]),
        n("Reshape", ["wflat", "shape"], ["wT"]),
        n("Transpose", ["wT"], ["W"], perm=[1, 0]),
        n("MatMul", ["W", "x"], ["z"]),
        n("Relu", ["z"], ["h"]),
        n("MatMul", ["V", "h"], ["y"]),
    ]
    net = _load(tmp_path, _model(nodes, {"V": _w(3, 5)}, [2], [3]))
    assert net.describe() == "2-5r-3"
    assert net.meta["input_shape"] == [2]


def test_consecutive_affine_layers_merge_and_relu_after_output(tmp_path):
    n = helper.make_node
    nodes = [
        n("Gemm", ["x", "W0", "b0"], ["a"], transB=1),
        n("Gemm", ["a", "W1", "b1"], ["b"], transB=1),  # no ReLU in between: merged
        n("Relu", ["b"], ["c"]),
        n("Relu", ["c"], ["c2"]),  # idempotent: no extra layer
        n("Gemm", ["c2", "W2", "b2"], ["d"], transB=1),
        n("Relu", ["d"], ["e"]),
        n("Identity", ["e"], ["y"]),
    ]
    inits = {"W0": _w(6, 3), "b0": _w(6), "W1": _w(4, 6), "b1": _w(4), "W2": _w(2, 4), "b2": _w(2)}
    net = _load(tmp_path, _model(nodes, inits, ["N", 3], ["N", 2]))
    assert net.describe() == "3-4r-2r"
    assert net.layers[-1].relu


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_cast_and_dynamic_batch(tmp_path, opset):
    n = helper.make_node
    if opset >= 13:
        sq = [
            n("Unsqueeze", ["x", "ax"], ["u"]),
            n("Squeeze", ["u", "ax"], ["s"]),
        ]
        inits = {"ax": np.array([2], np.int64)}
    else:
        sq = [n("Unsqueeze", ["x"], ["u"], axes=[2]), n("Squeeze", ["u"], ["s"], axes=[2])]
        inits = {}
    nodes = [
        *sq,
        n("Cast", ["s"], ["c"], to=TensorProto.FLOAT),
        n("Dropout", ["c"], ["d"]),
        n("MatMul", ["d", "W"], ["m"]),
        n("BatchNormalization", ["m", "g", "beta", "mu", "var"], ["bn"], epsilon=1e-3),
        n("Relu", ["bn"], ["r"]),
        n("Gemm", ["r", "V"], ["y"]),
    ]
    inits |= {
        "W": _w(3, 4),
        "g": _w(4),
        "beta": _w(4),
        "mu": _w(4),
        "var": np.abs(_w(4)) + 0.1,
        "V": _w(4, 2),
    }
    net = _load(tmp_path, _model(nodes, inits, ["batch", 3], ["batch", 2], opset=opset))
    assert net.describe() == "3-4r-2"


def test_shape_gather_concat_flatten_idiom(tmp_path):
    """PyTorch's old flatten export: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["sh"]),
        n("Gather", ["sh", "zero"], ["bs"], axis=0),
        n("Unsqueeze", ["bs", "ax0"], ["bs1"]),
        n("Concat", ["bs1", "minus1"], ["target"], axis=0),
        n("Reshape", ["x", "target"], ["flat"]),
        n("Gemm", ["flat", "W", "b"], ["z"], transB=1),
        n("Relu", ["z"], ["y"]),
    ]
    inits = {
        "zero": np.array(0, np.int64),
        "ax0": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
        "W": _w(3, 6),
        "b": _w(3),
    }
    net = _load(tmp_path, _model(nodes, inits, [1, 2, 3], [1, 3]))
    assert net.describe() == "6-3r"


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("op", ["Elu", "MaxPool", "Softplus"])  # Sigmoid, Tanh: heads
def test_unsupported_operator_is_named(tmp_path, op):
    n = helper.make_node
    nodes = [n("Gemm", ["x", "W", "b"], ["z"], name="fc1", transB=1)]
    if op == "MaxPool":  # on a [1, 1, 4] view of the 4 features
        nodes.append(n("Reshape", ["z", "s"], ["z3"]))
        nodes.append(n(op, ["z3"], ["y"], name="the_bad_one", kernel_shape=[2], strides=[2]))
        out_shape = [1, 1, 2]
    else:
        nodes.append(n(op, ["z"], ["y"], name="the_bad_one"))
        out_shape = [1, 4]
    inits = {"W": _w(4, 3), "b": _w(4), "s": np.array([1, 1, 4], np.int64)}
    with pytest.raises(UnsupportedModelError, match=rf"'the_bad_one' \({op}\).*not supported"):
        _load(tmp_path, _model(nodes, inits, [1, 3], out_shape))


def test_dropout_mask_output_is_refused(tmp_path):
    n = helper.make_node
    nodes = [n("Dropout", ["x"], ["d", "mask"], name="drop"), n("Cast", ["mask"], ["y"], to=1)]
    with pytest.raises(UnsupportedModelError, match="'drop'.*output #1"):
        _load(tmp_path, _model(nodes, {}, [1, 3], [1, 3]))


def test_dynamic_batch_with_a_hard_coded_reshape(tmp_path):
    """onnxruntime then refuses batches of several rows; the check falls back to one row."""
    n = helper.make_node
    nodes = [n("Reshape", ["x", "s"], ["r"]), n("Gemm", ["r", "W"], ["y"])]
    inits = {"s": np.array([1, 3], np.int64), "W": _w(3, 2)}
    assert _load(tmp_path, _model(nodes, inits, ["N", 3], [1, 2])).describe() == "3-2"


def test_unused_unsupported_node_is_ignored(tmp_path):
    n = helper.make_node
    model = _model(
        [n("Gemm", ["x", "W"], ["y"]), n("Sigmoid", ["x"], ["unused"])],
        {"W": _w(3, 2)},
        [1, 3],
        [1, 2],
    )
    assert _load(tmp_path, model).describe() == "3-2"


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([("Mul", ["x", "x"], ["y"])], "not affine"),
        ([("Div", ["W", "x"], ["y"])], "not affine"),
        ([("MatMul", ["x", "W"], ["a"]), ("Div", ["a", "zero"], ["y"])], "zero"),
        ([("Identity", ["W"], ["y"])], "does not depend on the input"),
        ([("Cast", ["x"], ["y"], {"to": TensorProto.INT32})], "Cast to INT32 rounds"),
    ],
)
def test_non_affine_graphs_are_refused(tmp_path, nodes, match):
    built = [helper.make_node(op, i, o, **(a[0] if a else {})) for op, i, o, *a in nodes]
    inits = {"W": np.eye(3), "zero": np.zeros(3)}
    with pytest.raises(UnsupportedModelError, match=match):
        _load(tmp_path, _model(built, inits, [1, 3], [1, 3]))


def test_custom_domain_and_two_inputs_are_refused(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], domain="com.example")
    model = _model([node], {}, [1, 3], [1, 3])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    p = tmp_path / "c.onnx"
    onnx.save(model, str(p))
    with pytest.raises((UnsupportedModelError, InputFileError), match="com.example"):
        load_onnx(p)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"])],
        "two",
        [helper.make_tensor_value_info(v, TensorProto.FLOAT, [1, 3]) for v in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    two = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    two.ir_version = 8
    with pytest.raises(UnsupportedModelError, match="exactly one input"):
        _load(tmp_path, two)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all \x00\xff", b"\x08\x07\x12"])
def test_malformed_files(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(InputFileError):
        load_onnx(p)


def test_graph_that_fails_the_checker(tmp_path):
    model = _model([helper.make_node("Relu", ["nowhere"], ["y"])], {}, [1, 3], [1, 3])
    p = tmp_path / "bad.onnx"
    onnx.save(model, str(p))
    with pytest.raises(InputFileError, match="not a valid ONNX model"):
        load_onnx(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_misread_network_is_caught_by_onnxruntime(tmp_path, monkeypatch):
    """If lowering were wrong, the onnxruntime check must refuse the network."""
    real = onnx_io.lower_graph

    def wrong(model):
        out = real(model)
        first = out.layers[0]
        bad = Layer(first.weight * (1 + 1e-3), first.bias, first.relu)
        return type(out)(**{**out.__dict__, "layers": (bad, *out.layers[1:])})

    monkeypatch.setattr(onnx_io, "lower_graph", wrong)
    with pytest.raises(InvalidNetworkError, match="differs from onnxruntime"):
        load_onnx(REAL / "small/cartpole.onnx")


# ----------------------------------------------------------------------------- writing
def test_save_defaults_for_networks_without_meta(tmp_path):
    net = Network.from_arrays([_w(4, 3), _w(2, 4)], [_w(4), _w(2)], relu_last=True, dtype="float64")
    out = tmp_path / "t.onnx"
    save_onnx(net, out)
    back = load_onnx(out)
    assert back.meta["input_name"] == "input" and back.meta["output_name"] == "output"
    assert back.meta["input_shape"] == ["batch", 3] and back.dtype == "float64"
    x = RNG.normal(size=(20, 3))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


def test_save_mirrors_another_file(tmp_path):
    net = Network.from_arrays([_w(50, 5), _w(5, 50)], [_w(50), _w(5)])
    out = tmp_path / "t.onnx"
    save_onnx(net, out, like=REAL / "acasxu_eran_format/ACASXU_run2a_1_1_batch_2000.onnx")
    meta = load_onnx(out).meta
    assert (meta["input_name"], meta["input_shape"]) == ("X", [5])
    assert (meta["output_name"], meta["output_shape"]) == ("y_out", [5])


def test_save_ignores_meta_of_the_wrong_size(tmp_path):
    net = Network(
        (Layer(_w(3, 4), _w(3), True), Layer(_w(1, 3), _w(1), False)),
        meta={
            "input_name": "a",
            "input_shape": [1, 784, 1],
            "output_name": "b",
            "output_shape": [1, 10],
        },
    )
    out = tmp_path / "t.onnx"
    save_onnx(net, out)
    meta = load_onnx(out).meta
    assert meta["input_shape"] == ["batch", 4] and meta["output_shape"] == ["batch", 1]


def test_save_zero_width_layer_writes_the_constant(tmp_path):
    net = Network(
        (
            Layer(np.zeros((0, 3)), np.zeros(0), True),
            Layer(np.zeros((2, 0)), np.array([1.5, -2]), False),
        ),
        dtype="float64",
    )
    out = tmp_path / "t.onnx"
    save_onnx(net, out)
    x = RNG.normal(size=(5, 3))
    np.testing.assert_array_equal(load_onnx(out).forward(x), np.tile([1.5, -2.0], (5, 1)))


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    net = Network.from_arrays([_w(4, 3), _w(2, 4)], [_w(4), _w(2)])
    real = onnx_io.build_model

    def wrong(n, like=None):
        return real(
            n.replace_layers((n.layers[0], Layer(-n.layers[1].weight, n.layers[1].bias, False))),
            like,
        )

    monkeypatch.setattr(onnx_io, "build_model", wrong)
    out = tmp_path / "t.onnx"
    with pytest.raises(VerificationError, match="nothing was written"):
        save_onnx(net, out)
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=15, derandomize=True, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    relu_last=st.booleans(),
    dtype=st.sampled_from(["float32", "float64"]),
    seed=st.integers(0, 2**16),
)
def test_roundtrip_property(tmp_path_factory, widths, relu_last, dtype, seed):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    bs = [rng.normal(size=w.shape[0]) for w in ws]
    net = Network.from_arrays(ws, bs, relu_last=relu_last, dtype=dtype)
    out = tmp_path_factory.mktemp("rt") / "n.onnx"
    save_onnx(net, out)
    back = load_onnx(out)
    assert back.describe() == net.describe() and back.dtype == dtype
    for a, b in zip(net.layers, back.layers, strict=True):
        np.testing.assert_array_equal(b.weight, a.weight.astype(dtype).astype(np.float64))


# ----------------------------------------------------------------------------- torch round trips
def test_torch_to_onnx_to_ir(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, 5),
        nn.BatchNorm1d(5),
        nn.ReLU(),
        nn.Linear(5, 4),
        nn.ReLU(),
        nn.Linear(4, 3),
        nn.ReLU(),
    )
    with torch.no_grad():
        module[2].running_mean.normal_()
        module[2].running_var.uniform_(0.5, 2.0)
    module.eval()
    out = tmp_path / "torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            module,
            (torch.zeros(1, 2, 3),),
            str(out),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    net = load_onnx(out)
    assert net.describe() == "6-5r-4r-3r"
    x = torch.randn(50, 2, 3)
    with torch.no_grad():
        want = module(x).double().numpy()
    got = net.forward(x.reshape(50, 6).double().numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["small/marabou_fc1.onnx", "mnistfc/mnist-net_256x2.onnx"])
def test_onnx_to_torch(name):
    torch = pytest.importorskip("torch")
    torch_io = pytest.importorskip("exactcomp.io.torch_io")
    net = load_onnx(REAL / name)
    module = torch_io.to_torch_module(net)
    x = np.random.default_rng(3).uniform(0, 1, size=(20, net.input_size)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).double().numpy()
    want = _run_ort(
        REAL / name, x.astype(np.float64), net.meta["input_name"], net.meta["input_shape"]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert torch_io.load_torch(module).describe() == net.describe()


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_initializer_is_refused_by_name(tmp_path, bad):
    """A weight of inf or NaN made numpy warn while the graph was lowered (three lines of
    RuntimeWarning before the CLI's one-line error); now the initializer is named, no warning."""
    w = _w(3, 4)
    w[0, 0] = bad
    n = helper.make_node
    nodes = [n("MatMul", ["x", "W"], ["h"]), n("Relu", ["h"], ["y"])]
    model = _model(nodes, {"W": w}, [1, 3], [1, 4])
    with pytest.raises(InvalidNetworkError, match="initializer 'W' holds NaN or inf"):
        _load(tmp_path, model)


def test_a_layer_of_width_zero_is_written_with_the_same_numbers(tmp_path):
    """Layer 0 emptied (every neuron removed): layer 1 outputs relu(its bias), and the file
    holds that bias and the layers after it as they are, so it reads back as the same
    function exactly; the output constant, a float64 sum of float32 products, would be
    rounded to float32 (3.8e-9 off in the conv-compress soak, seed 94011)."""
    rng = np.random.default_rng(0)
    w2 = rng.normal(size=(2, 3)).astype(np.float32).astype(np.float64)
    net = Network(
        (
            Layer(np.zeros((0, 4)), np.zeros(0), relu=True),
            Layer(np.zeros((3, 0)), np.array([0.212, -0.5, 1.3], dtype=np.float32), relu=True),
            Layer(w2, np.array([0.1, -0.7], dtype=np.float32), relu=False),
        ),
        dtype="float32",
    )
    const = net.forward(np.zeros(4))
    assert not np.array_equal(const.astype(np.float32).astype(np.float64), const)  # rounds
    save_onnx(net, tmp_path / "g.onnx")
    back = load_onnx(tmp_path / "g.onnx")
    x = rng.uniform(-1, 1, size=(5, 4))
    assert np.array_equal(back.forward(x), net.forward(x))


def test_zero_and_pruned_weights_are_stored_sparsely_in_float16_too(tmp_path):
    """A float16 network's mostly-zero ``Gemm`` weights (a pruned layer; the zero weights of
    the layer after an emptied one) are stored as a sparse float16 constant where that saves
    bytes, as in float32; the file reads back as the same function."""
    rng = np.random.default_rng(2)
    w0 = np.zeros((300, 200))
    w0[rng.integers(0, 300, 40), rng.integers(0, 200, 40)] = rng.normal(size=40)
    w0 = w0.astype(np.float16).astype(np.float64)
    w1 = rng.normal(size=(3, 300)).astype(np.float16).astype(np.float64)
    net = Network(
        (Layer(w0, np.zeros(300), relu=True), Layer(w1, np.zeros(3), relu=False)),
        dtype="float16",
    )
    save_onnx(net, tmp_path / "p.onnx")
    assert (tmp_path / "p.onnx").stat().st_size < 300 * 200 * 2 // 4
    back = load_onnx(tmp_path / "p.onnx")
    x = rng.uniform(-1, 1, size=(5, 200))
    assert np.array_equal(back.forward(x), net.forward(x))

    empty = Network(
        (
            Layer(np.zeros((0, 200)), np.zeros(0), relu=True),
            Layer(np.zeros((300, 0)), np.full(300, 0.5), relu=True),
            Layer(w1, np.zeros(3), relu=False),
        ),
        dtype="float16",
    )
    save_onnx(empty, tmp_path / "e.onnx")
    assert (tmp_path / "e.onnx").stat().st_size < 300 * 200 * 2 // 4
    back = load_onnx(tmp_path / "e.onnx")
    assert np.array_equal(back.forward(x), empty.forward(x))
