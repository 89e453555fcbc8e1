"""A channels-last (NHWC) export read as a convolution: ``Transpose(0, 3, 1, 2)`` into ``Conv``.

TensorFlow exports (tf2onnx) take ``[1, H, W, C]`` input and transpose it before the first
``Conv``. The tiny graph below::

    x [1, 4, 4, 3] -> Transpose(0,3,1,2) -> Conv(3->4, 3x3, pad 1) -> Relu -> Flatten -> Gemm(64->2)

must give a first layer carrying a :class:`~exactcomp.conv.ConvSpec` with ``in_axes`` whose
matrix is entry for entry the one torch's ``conv2d`` of the transposed input gives (an
independent oracle), written back as ``Transpose`` + ``Conv`` (ONNX) and ``Permute`` +
``Conv2d`` (.pt) with the same function, and never larger after ``compress``/``quantize``; the
same when the input is a flat vector reshaped to NHWC first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp import api, cli
from exactcomp.conv import ConvSpec
from exactcomp.io import to_torch_module
from exactcomp.io.onnx_io import load_onnx, save_onnx

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(5)
H, W, C, M = 4, 4, 3, 4


def _nhwc_model(flat: bool = False) -> onnx.ModelProto:
    """The graph above; ``flat``: its input a vector ``[1, H*W*C]``, reshaped to NHWC first."""
    k = RNG.normal(size=(M, C, 3, 3)).astype(np.float32)
    b = RNG.normal(size=M).astype(np.float32) * 0.1
    g = RNG.normal(size=(M * H * W, 2)).astype(np.float32)
    reshape = [helper.make_node("Reshape", ["x", "s"], ["xs"])] if flat else []
    nodes = [
        *reshape,
        helper.make_node("Transpose", ["xs" if flat else "x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "k", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "g"], ["y"]),
    ]
    inits = {"k": k, "b": b, "g": g, **({"s": np.array([1, H, W, C])} if flat else {})}
    graph = helper.make_graph(
        nodes,
        "nhwc",
        [
            helper.make_tensor_value_info(
                "x", TensorProto.FLOAT, [1, H * W * C] if flat else [1, H, W, C]
            )
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(v, n) for n, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.fixture
def nhwc(tmp_path: Path) -> tuple[Path, onnx.ModelProto]:
    model = _nhwc_model()
    path = tmp_path / "nhwc.onnx"
    onnx.save(model, str(path))
    return path, model


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    out = [sess.run(None, {inp.name: row.reshape(inp.shape).astype(np.float32)})[0] for row in x]
    return np.concatenate([o.reshape(1, -1) for o in out])


def test_the_first_layer_is_a_convolution_of_the_transposed_input(nhwc):
    path, model = nhwc
    net = load_onnx(path)
    spec = net.layers[0].structure
    assert isinstance(spec, ConvSpec) and spec.in_axes == (2, 0, 1)
    assert spec.in_shape == (C, H, W) and spec.source_shape == (H, W, C)
    kernel = numpy_helper.to_array(model.graph.initializer[0]).astype(np.float64)
    # oracle: torch conv2d of each NHWC one-hot input, transposed to NCHW
    eye = torch.eye(H * W * C, dtype=torch.float64).reshape(-1, H, W, C).permute(0, 3, 1, 2)
    cols = torch.nn.functional.conv2d(eye, torch.from_numpy(kernel), padding=1)
    oracle = cols.reshape(H * W * C, -1).T.numpy()
    assert np.array_equal(net.layers[0].weight, oracle)
    assert np.array_equal(spec.dense(), oracle)
    x = RNG.uniform(0, 1, size=(16, H * W * C))
    # evaluated as a convolution (conv_eval): the same sums, in another order
    np.testing.assert_allclose(net.layers[0].apply(x), x @ oracle.T, rtol=0, atol=1e-12)
    assert net.num_parameters < net.layers[0].weight.size


def test_written_back_as_transpose_and_conv_with_the_same_function(nhwc, tmp_path: Path):
    path, _ = nhwc
    net = load_onnx(path)
    out = tmp_path / "back.onnx"
    save_onnx(net, out)
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops[:2] == ["Transpose", "Conv"]
    again = load_onnx(out)  # checked against onnxruntime on reading, too
    assert isinstance(again.layers[0].structure, ConvSpec)
    assert again.layers[0].structure.in_axes == (2, 0, 1)
    x = RNG.uniform(0, 1, size=(32, H * W * C))
    np.testing.assert_allclose(_ort(out, x), net.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_ort(path, x), net.forward(x), rtol=1e-5, atol=1e-5)


def test_pt_round_trip_permute_and_conv2d(nhwc, tmp_path: Path):
    path, _ = nhwc
    net = load_onnx(path)
    out = tmp_path / "back.pt"
    api.save(net, out)
    sd = torch.load(out, weights_only=True)
    assert [v.dim() for k, v in sd.items() if k.endswith("weight")] == [4, 2]
    back = api.load(out)
    spec = back.layers[0].structure
    assert isinstance(spec, ConvSpec) and spec.in_axes == (2, 0, 1)
    assert np.array_equal(back.layers[0].weight, net.layers[0].weight.astype(np.float32))
    module = to_torch_module(back)
    assert "Permute" in [type(m).__name__ for m in module]
    x = RNG.uniform(0, 1, size=(32, H * W * C))
    with torch.no_grad():
        got = module(torch.from_numpy(x).to(torch.float32)).double().numpy()
    np.testing.assert_allclose(got, net.forward(x), rtol=1e-5, atol=1e-5)


def test_a_flat_input_reshaped_to_nhwc_is_read_and_written_as_a_convolution(tmp_path: Path):
    """``x [1, 48] -> Reshape [1, 4, 4, 3] -> Transpose -> Conv``: the ``Reshape`` keeps the
    order, so the matrix is the channels-last one above; read with ``in_axes``, written back
    as ``Reshape`` + ``Transpose`` + ``Conv``, the same function by onnxruntime."""
    model = _nhwc_model(flat=True)
    path = tmp_path / "flat.onnx"
    onnx.save(model, str(path))
    net = load_onnx(path)
    spec = net.layers[0].structure
    assert isinstance(spec, ConvSpec) and spec.in_axes == (2, 0, 1)
    assert spec.source_shape == (H, W, C)
    assert np.array_equal(spec.dense(), net.layers[0].weight)
    out = tmp_path / "back.onnx"
    save_onnx(net, out)
    assert [n.op_type for n in onnx.load(str(out)).graph.node][:3] == [
        "Reshape",
        "Transpose",
        "Conv",
    ]
    x = RNG.uniform(0, 1, size=(32, H * W * C))
    np.testing.assert_allclose(_ort(out, x), net.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_ort(path, x), net.forward(x), rtol=1e-5, atol=1e-5)


def test_a_permute_elsewhere_is_refused_by_name():
    from exactcomp.errors import UnsupportedModelError
    from exactcomp.io.torch_conv import permute_module
    from exactcomp.io.torch_io import module_to_network

    nn = torch.nn
    module = nn.Sequential(nn.Unflatten(1, (4, 4, 3)), permute_module([0, 3, 1, 2]), nn.ReLU())
    with pytest.raises(UnsupportedModelError, match="a Permute"):
        module_to_network(module)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("command", [["compress"], ["quantize", "--bits", "8"]])
def test_compress_and_quantize_are_never_larger(nhwc, tmp_path: Path, command, suffix, capsys):
    path, _ = nhwc
    out = tmp_path / f"small{suffix}"
    args = [*command, str(path), "--box", "0,1", "-o", str(out), "--quiet"]
    assert cli.main(args) == 0
    if suffix == ".onnx":
        assert out.stat().st_size <= path.stat().st_size, (out.stat(), path.stat().st_size)
        assert "larger than the input" not in capsys.readouterr().out
    else:  # a zip's own overhead outweighs 242 parameters: compare what it holds
        sd = torch.load(out, weights_only=True)
        assert sum(v.numel() for v in sd.values()) <= load_onnx(path).num_parameters
        assert [v.dim() for k, v in sd.items() if k.endswith("weight")][0] == 4
    x = RNG.uniform(0, 1, size=(16, H * W * C))
    back = api.load(out)
    tol = 1e-5 if command == ["compress"] else 0.5
    np.testing.assert_allclose(back.forward(x), load_onnx(path).forward(x), atol=tol, rtol=0)
