"""Conv (+BatchNorm) lowered to dense affine layers (the stretch goal), and what stays refused.

Every ``load_onnx`` below also checks the lowered network against onnxruntime on random
inputs, so a wrong padding, stride, dilation or group would fail the load itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from exactcomp.errors import UnsupportedModelError
from exactcomp.io import onnx_conv
from exactcomp.io.onnx_io import load_onnx

RNG = np.random.default_rng(11)


def _model(nodes, inits, in_shape, out_shape):
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _load(tmp_path, model):
    p = tmp_path / "c.onnx"
    onnx.save(model, str(p))
    return load_onnx(p)


def test_torch_conv_batchnorm_net(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, groups=2, dilation=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()
    with torch.no_grad():
        module[1].running_mean.normal_()
        module[1].running_var.uniform_(0.5, 2.0)
    out = tmp_path / "conv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            module,
            (torch.zeros(1, 2, 11, 11),),
            str(out),
            dynamo=False,
            do_constant_folding=False,  # keep the BatchNormalization node
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(out)).graph.node}
    net = load_onnx(out)
    assert net.describe() == "242-144r-16r-3"
    x = torch.randn(20, 2, 11, 11)
    with torch.no_grad():
        want = module(x).double().numpy()
    np.testing.assert_allclose(net.forward(x.reshape(20, -1).double().numpy()), want, atol=1e-5)


@pytest.mark.parametrize(
    ("attrs", "in_shape", "w_shape", "out_shape"),
    [
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [1, 1, 5, 5], (2, 1, 2, 2), [1, 2, 3, 3]),
        ({"auto_pad": "SAME_LOWER", "strides": [2, 1]}, [1, 1, 5, 4], (2, 1, 2, 3), [1, 2, 3, 4]),
        ({"pads": [1, 0, 0, 2], "dilations": [1, 2]}, [1, 2, 4, 4], (3, 2, 2, 2), [1, 3, 4, 4]),
        ({"auto_pad": "VALID", "group": 2}, [1, 2, 4, 4], (4, 1, 3, 3), [1, 4, 2, 2]),
        ({"pads": [1, 2], "strides": [2]}, [1, 2, 6], (3, 2, 3), [1, 3, 4]),
    ],
)
def test_conv_attributes(tmp_path, attrs, in_shape, w_shape, out_shape):
    nodes = [
        helper.make_node("Conv", ["x", "W", "b"], ["c"], **attrs),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    inits = {"W": RNG.normal(size=w_shape), "b": RNG.normal(size=w_shape[0])}
    net = _load(tmp_path, _model(nodes, inits, in_shape, out_shape))
    assert net.input_size == int(np.prod(in_shape)) and net.output_size == int(np.prod(out_shape))
    assert net.layers[-1].relu


def test_dilated_maxpool_is_refused_by_name(tmp_path):
    """Conv -> Relu -> MaxPool is read exactly (tests/test_conv_structure.py); a dilated
    max-pool is not, and the refusal names the node and the attribute."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node(
            "MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], dilations=[2, 2]
        ),
    ]
    model = _model(nodes, {"W": RNG.normal(size=(2, 1, 3, 3))}, [1, 1, 6, 6], [1, 2, 2, 2])
    with pytest.raises(UnsupportedModelError, match=r"'pool' \(MaxPool\).*dilations"):
        _load(tmp_path, model)


def test_too_large_conv_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_conv, "MAX_DENSE_ENTRIES", 100)
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="big")]
    model = _model(nodes, {"W": RNG.normal(size=(2, 1, 3, 3))}, [1, 1, 6, 6], [1, 2, 4, 4])
    with pytest.raises(UnsupportedModelError, match=r"'big'.*too large"):
        _load(tmp_path, model)


def test_input_dependent_weights_are_refused(tmp_path):
    nodes = [helper.make_node("Conv", ["W", "x"], ["y"], name="odd")]
    model = _model(nodes, {"W": RNG.normal(size=(1, 1, 3, 3))}, [1, 1, 3, 3], [1, 1, 1, 1])
    with pytest.raises(UnsupportedModelError, match="'odd'.*input-dependent weights"):
        _load(tmp_path, model)


@pytest.mark.parametrize("opset", [13, 17])
def test_exported_unflatten_with_a_dynamic_batch_is_read(tmp_path, opset) -> None:
    """``torch.onnx.export`` of ``nn.Unflatten`` with a dynamic batch writes its target shape
    as ``Shape -> Slice``, ``Mod``, ``Add``, ``Concat`` on constants (found by the readers
    soak: refused before, "operator 'Mod' is not supported"). Read, exact against torch."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(8, 2)).eval()  # fmt: skip
    p = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, torch.zeros(1, 16), p, opset_version=opset, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "b"}})  # fmt: skip
    assert {"Mod", "Slice"} <= {n.op_type for n in onnx.load(str(p)).graph.node}
    x = RNG.random((30, 16))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    assert np.abs(load_onnx(p).forward(x) - want).max() < 1e-12


@settings(max_examples=200, deadline=None)
@given(
    dim=st.integers(1, 6),
    start=st.integers(-9, 9) | st.sampled_from([-(2**62), 2**62]),
    end=st.integers(-9, 9) | st.sampled_from([-(2**62), 2**62]),
    step=st.integers(-4, 4).filter(bool),
)
def test_slice_of_a_constant_is_the_specification(dim, start, end, step) -> None:
    """``Slice`` on constants (negative steps included: read since the readers stop found them
    refused) against onnxruntime, for starts and ends beyond the axis. (onnx's
    ``ReferenceEvaluator`` differs from the specification and onnxruntime where both ends lie
    before the axis with a negative step: it returns nothing, they return index 0.)"""
    import onnxruntime as ort

    from exactcomp.io.onnx_consts import slice_

    data = np.arange(dim * 2, dtype=np.int64).reshape(dim, 2)
    args = [np.array([v], np.int64) for v in (start, end, 0, step)]
    n = helper.make_node
    graph = helper.make_graph(
        [n("Slice", ["d", "b", "e", "a", "k"], ["y"]), n("Identity", ["x"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(v, k) for k, v in zip("dbeak", [data, *args], strict=True)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = session.run(["y"], {"x": np.zeros(1, np.float32)})
    (got,) = slice_(None, {}, [data, *args])
    assert got.shape == want.shape and np.array_equal(got, want)


def test_float_mod_of_constants_is_fmod_and_fmod_0_is_refused() -> None:
    from exactcomp.io.onnx_consts import mod

    a, b = np.array([5.5, -5.5, 3.0]), np.array([2.0, 2.0, -2.0])
    assert np.array_equal(mod(None, {"fmod": 1}, [a, b])[0], np.fmod(a, b))
    with pytest.raises(UnsupportedModelError, match="fmod=0"):
        mod(None, {}, [a, b])
