"""Pruned ``Gemm`` weights written sparsely (:mod:`exactcomp.io.onnx_sparse`) and read back.

Network (``compress --tol`` zeroes most of a head like this one's)::

    x (8) -> 30r -> 5        the 5 x 30 head 80 % zeros (float32), or none

Ground truth: onnxruntime on the written file, and the weights as given.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from exactcomp import api
from exactcomp.errors import UnsupportedModelError
from exactcomp.io.onnx_io import build_model, load_onnx
from exactcomp.io.onnx_sparse import dense_of_sparse
from exactcomp.network import Layer, Network


def _net(zeros: float, dtype: str = "float32") -> Network:
    rng = np.random.default_rng(5)
    dt = np.dtype(dtype)
    w1 = rng.normal(size=(30, 8)).astype(dt).astype(np.float64)
    w2 = rng.normal(size=(5, 30)).astype(dt).astype(np.float64)
    w2[rng.random(w2.shape) < zeros] = 0.0
    b1, b2 = rng.normal(size=30).astype(dt), rng.normal(size=5).astype(dt)
    return Network((Layer(w1, b1, True), Layer(w2, b2, False)), dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_pruned_head_is_written_sparsely_and_read_back_exactly(tmp_path, dtype):
    net = _net(0.8, dtype)
    path = tmp_path / "pruned.onnx"
    api.save(net, path)
    model = onnx.load(path)
    assert [n.op_type for n in model.graph.node][0] == "Constant"
    assert model.ByteSize() < build_model(net).ByteSize()  # it saves bytes
    back = load_onnx(path)
    for a, b in zip(net.layers, back.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    x = np.random.default_rng(1).uniform(-1, 1, size=(200, 8))
    sess = ort.InferenceSession(str(path))
    got = sess.run(None, {sess.get_inputs()[0].name: x.astype(dtype)})[0]
    want = net.forward(x)
    assert np.abs(got - want).max() <= (1e-5 if dtype == "float32" else 1e-12) * (
        1 + np.abs(want).max()
    )


def test_a_dense_head_stays_dense(tmp_path):
    net = _net(0.0)
    api.save(net, tmp_path / "dense.onnx")
    assert "Constant" not in [n.op_type for n in onnx.load(tmp_path / "dense.onnx").graph.node]


def _sparse(values, indices, dims) -> onnx.SparseTensorProto:
    return helper.make_sparse_tensor(
        numpy_helper.from_array(np.asarray(values, np.float32), "v"),
        numpy_helper.from_array(np.asarray(indices), "i"),
        dims,
    )


def test_sparse_constants_are_read_exactly_or_refused():
    want = np.zeros((2, 3), np.float32)
    want[0, 1], want[1, 2] = 1.5, -2.0
    linear = dense_of_sparse(_sparse([1.5, -2.0], np.array([1, 5], np.int64), [2, 3]))
    coords = dense_of_sparse(_sparse([1.5, -2.0], np.array([[0, 1], [1, 2]], np.int64), [2, 3]))
    assert np.array_equal(linear, want) and np.array_equal(coords, want)
    for bad in ([5, 1], [1, 1], [1, 6], [-1, 1]):  # unsorted, duplicate, out of range
        with pytest.raises(UnsupportedModelError, match="sparse constant"):
            dense_of_sparse(_sparse([1.5, -2.0], np.array(bad, np.int64), [2, 3]))
    with pytest.raises(UnsupportedModelError, match="int64"):
        dense_of_sparse(_sparse([1.5, -2.0], np.array([1, 5], np.int32), [2, 3]))
