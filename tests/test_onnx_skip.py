"""Residual ``Add`` and ``Concat`` of branches (DAGs) read exactly by carrying tensors.

Each graph is built with ``onnx.helper`` in float64 and compared with onnxruntime on the
box's corners, face points and random points (:func:`~exactcomp.io.onnx_check.probe_points`)
to ``1e-12``; the float32 copy must load (its own check uses the documented tolerance).
The carry maths is in :mod:`exactcomp.io.onnx_skip`.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp.domain import Box
from exactcomp.errors import UnsupportedModelError
from exactcomp.io.onnx_check import probe_points
from exactcomp.io.onnx_io import load_onnx

RNG = np.random.default_rng(19)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).round(3)


def _model(nodes, inits, in_shape, out_shape, elem=TensorProto.DOUBLE):
    dt = np.float64 if elem == TensorProto.DOUBLE else np.float32
    graph = helper.make_graph(
        [helper.make_node(op, i, o, **(a[0] if a else {})) for op, i, o, *a in nodes],
        "skip",
        [helper.make_tensor_value_info("x", elem, in_shape)],
        [helper.make_tensor_value_info("y", elem, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v, dt), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _check(tmp_path, nodes, inits, in_shape, out_shape, lo=-1.0, hi=1.0, double=True):
    """Load the float32 graph (its load checks it within the documented tolerance) and,
    with ``double``, the float64 one, which must equal onnxruntime to 1e-12 (onnxruntime
    has no float64 ``Conv``: conv nets are compared in float32, to 1e-5 of the scale)."""
    p = tmp_path / "m.onnx"
    box = Box.uniform(lo, hi, int(np.prod(in_shape)))
    onnx.save(_model(nodes, inits, in_shape, out_shape, TensorProto.FLOAT), str(p))
    net = load_onnx(p, check_box=box)
    if double:
        onnx.save(_model(nodes, inits, in_shape, out_shape), str(p))
        net = load_onnx(p, check_box=box)
    x = probe_points(box, 200, np.random.default_rng(0))
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    dt = np.float64 if double else np.float32
    want = np.stack(
        [sess.run(None, {"x": r.reshape(in_shape).astype(dt)})[0].reshape(-1) for r in x]
    )
    tol = (1e-12 if double else 1e-5) * max(1.0, float(abs(want).max()))
    np.testing.assert_allclose(net.forward(x.astype(dt)), want, rtol=0, atol=tol)
    return net


# --------------------------------------------------------------------------- MLPs
#   x --Gemm--> relu = h --Gemm--> relu --Gemm--> (+) --> relu --Gemm--> y
#                      |_____________________________^
ONE_BLOCK = [
    ("Gemm", ["x", "W0", "b0"], ["a0"]),
    ("Relu", ["a0"], ["h"]),
    ("Gemm", ["h", "W1", "b1"], ["a1"]),
    ("Relu", ["a1"], ["r1"]),
    ("Gemm", ["r1", "W2"], ["a2"]),
    ("Add", ["a2", "h"], ["s"]),
    ("Relu", ["s"], ["o"]),
    ("Gemm", ["o", "W3"], ["y"]),
]
ONE_INITS = {"W0": _w(3, 4), "b0": _w(4), "W1": _w(4, 5), "b1": _w(5), "W2": _w(5, 4),
             "W3": _w(4, 2)}  # fmt: skip


def test_one_residual_block(tmp_path):
    net = _check(tmp_path, ONE_BLOCK, ONE_INITS, [1, 3], [1, 2])
    # h (4 entries, a ReLU output) crosses one ReLU layer: one carry neuron per entry
    assert net.describe() == "3-4r-9r-4r-2"
    assert net.meta["carried"] == [0, 4, 0, 0]


def test_two_residual_blocks(tmp_path):
    nodes = [*ONE_BLOCK[:-1]]
    nodes += [
        ("Gemm", ["o", "V1", "c1"], ["e1"]),
        ("Relu", ["e1"], ["q1"]),
        ("Gemm", ["q1", "V2"], ["e2"]),
        ("Add", ["o", "e2"], ["t"]),  # the skip as the first operand this time
        ("Relu", ["t"], ["u"]),
        ("Gemm", ["u", "W3"], ["y"]),
    ]
    inits = {**ONE_INITS, "V1": _w(4, 3), "c1": _w(3), "V2": _w(3, 4)}
    net = _check(tmp_path, nodes, inits, [1, 3], [1, 2])
    assert net.meta["carried"] == [0, 4, 0, 4, 0, 0]


def test_skip_across_two_relus(tmp_path):
    nodes = [
        ("Gemm", ["x", "W0", "b0"], ["a0"]),
        ("Relu", ["a0"], ["h"]),
        ("Gemm", ["h", "W1", "b1"], ["a1"]),
        ("Relu", ["a1"], ["r1"]),
        ("Gemm", ["r1", "W2", "b2"], ["a2"]),
        ("Relu", ["a2"], ["r2"]),
        ("Gemm", ["r2", "W3"], ["a3"]),
        ("Sub", ["a3", "h"], ["y"]),
    ]
    inits = {"W0": _w(3, 4), "b0": _w(4), "W1": _w(4, 5), "b1": _w(5), "W2": _w(5, 3),
             "b2": _w(3), "W3": _w(3, 4)}  # fmt: skip
    net = _check(tmp_path, nodes, inits, [1, 3], [1, 4])
    assert net.meta["carried"] == [0, 4, 4, 0]


def test_skip_from_the_input_needs_two_carry_neurons(tmp_path):
    """``x`` is not known to be >= 0: ``x = relu(x) - relu(-x)``, two neurons per entry."""
    nodes = [
        ("Gemm", ["x", "W0", "b0"], ["a0"]),
        ("Relu", ["a0"], ["h"]),
        ("Gemm", ["h", "W1"], ["a1"]),
        ("Add", ["x", "a1"], ["y"]),
    ]
    inits = {"W0": _w(3, 5), "b0": _w(5), "W1": _w(5, 3)}
    net = _check(tmp_path, nodes, inits, [1, 3], [1, 3], lo=-2.0, hi=1.0)
    assert net.meta["carried"] == [6, 0]
    assert net.describe() == "3-11r-3"


def test_concat_of_two_branches(tmp_path):
    #   h = relu(x W0); a = relu(h W1); b = relu(h W2); y = [a, b, h] W3
    nodes = [
        ("Gemm", ["x", "W0", "b0"], ["a0"]),
        ("Relu", ["a0"], ["h"]),
        ("Gemm", ["h", "W1", "b1"], ["p"]),
        ("Relu", ["p"], ["a"]),
        ("Gemm", ["h", "W2", "b2"], ["q"]),
        ("Relu", ["q"], ["b"]),
        ("Concat", ["a", "b", "h"], ["c"], {"axis": 1}),
        ("Gemm", ["c", "W3"], ["y"]),
    ]
    inits = {"W0": _w(3, 4), "b0": _w(4), "W1": _w(4, 3), "b1": _w(3), "W2": _w(4, 2),
             "b2": _w(2), "W3": _w(9, 2)}  # fmt: skip
    _check(tmp_path, nodes, inits, [1, 3], [1, 2])


# --------------------------------------------------------------------------- conv nets
def _conv_inits(c_in: int, c: int) -> dict:
    return {"K0": _w(c, c_in, 3, 3), "k0": _w(c), "K1": _w(c, c, 3, 3), "k1": _w(c),
            "K2": _w(c, c, 3, 3), "k2": _w(c), "Wd": _w(c, 2), "bd": _w(2)}  # fmt: skip


PAD1 = {"pads": [1, 1, 1, 1]}
CONV_BLOCK = [
    ("Conv", ["x", "K0", "k0"], ["a0"], PAD1),
    ("Relu", ["a0"], ["h"]),
    ("Conv", ["h", "K1", "k1"], ["a1"], PAD1),
    ("Relu", ["a1"], ["r1"]),
    ("Conv", ["r1", "K2", "k2"], ["a2"], PAD1),
    ("Add", ["a2", "h"], ["s"]),
    ("Relu", ["s"], ["o"]),
    ("GlobalAveragePool", ["o"], ["g"]),
    ("Flatten", ["g"], ["f"]),
    ("Gemm", ["f", "Wd", "bd"], ["y"]),
]


def test_conv_residual_block(tmp_path):
    net = _check(tmp_path, CONV_BLOCK, _conv_inits(2, 3), [1, 2, 4, 4], [1, 2], double=False)
    assert net.meta["carried"][1] == 3 * 16


def test_conv_concat_of_branches_and_avgpool_skip(tmp_path):
    nodes = [
        ("Conv", ["x", "K0", "k0"], ["a0"], PAD1),
        ("Relu", ["a0"], ["h"]),
        ("Conv", ["h", "K1", "k1"], ["a1"], PAD1),
        ("Relu", ["a1"], ["r1"]),
        ("AveragePool", ["h"], ["p"], {"kernel_shape": [1, 1]}),
        ("Concat", ["r1", "p"], ["c"], {"axis": 1}),
        ("Conv", ["c", "K2", "k2"], ["y"], PAD1),
    ]
    inits = _conv_inits(1, 3)
    inits["K2"] = _w(2, 6, 3, 3)
    inits["k2"] = _w(2)
    del inits["Wd"], inits["bd"]
    net = _check(tmp_path, nodes, inits, [1, 1, 3, 3], [1, 2, 3, 3], double=False)
    assert net.meta["carried"][1] == 3 * 9  # h >= 0: one neuron per entry


def test_maxpool_crossed_by_a_skip_is_refused_by_name(tmp_path):
    nodes = [
        ("Conv", ["x", "K0", "k0"], ["a0"], PAD1),
        ("Relu", ["a0"], ["h"]),
        (
            "MaxPool",
            ["h"],
            ["m"],
            {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 1, 1]},
        ),  # fmt: skip
        ("Add", ["m", "h"], ["y"]),
    ]
    p = tmp_path / "m.onnx"
    onnx.save(
        _model(nodes, _conv_inits(1, 2), [1, 1, 3, 3], [1, 2, 3, 3], TensorProto.FLOAT), str(p)
    )
    with pytest.raises(UnsupportedModelError, match=r"MaxPool.*skip connection"):
        load_onnx(p)


# --------------------------------------------------------------------------- analysis
def test_carry_neurons_are_proven_stable_and_compress_keeps_the_function(tmp_path):
    """A carry neuron of a ReLU output reads ``h_j >= 0`` with weight 1 and bias 0, so the
    interval bound proves it exactly (:func:`~exactcomp.bounds.interval.nonneg_rows`):
    ACTIVE, or INACTIVE where ``h_j`` is proven 0; never left UNDECIDED for a tie at 0."""
    from exactcomp import api
    from exactcomp.verdicts import Verdict

    p = tmp_path / "r.onnx"
    onnx.save(_model(ONE_BLOCK, ONE_INITS, [1, 3], [1, 2]), str(p))
    box = Box.uniform(-1.0, 1.0, 3)
    net = load_onnx(p, check_box=box)
    result = api.compress(net, box)
    carries = result.stability.layers[1].verdict[5:]
    assert set(carries.tolist()) <= {Verdict.ACTIVE, Verdict.INACTIVE}
    assert result.network.num_neurons <= net.num_neurons
    x = probe_points(box, 200, np.random.default_rng(1))
    np.testing.assert_allclose(result.network.forward(x), net.forward(x), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- writing
def _params(path) -> int:
    m = onnx.load(str(path))
    return sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type == 1)


@pytest.mark.parametrize("conv", [False, True])
def test_compress_writes_a_dag_no_larger_and_equal(tmp_path, conv):
    """The chain pays for its carry neurons, the graph does not: when the chain rewrite is
    not smaller, the source graph is written unchanged (``report["structure"]`` says so)."""
    from exactcomp import cli

    if conv:
        # 3 x 3 positions: the pool's 1/9 is not a float32, the file is still written as is
        nodes, inits, shape, out = CONV_BLOCK, _conv_inits(2, 3), [1, 2, 3, 3], [1, 2]
    else:
        nodes, inits, shape, out = ONE_BLOCK, ONE_INITS, [1, 3], [1, 2]
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(_model(nodes, inits, shape, out, TensorProto.FLOAT), str(src))
    args = ["compress", str(src), "-o", str(dst), "--box", "-1,1", "--jobs", "1", "--quiet"]
    assert cli.main([*args, "--verify"]) == 0
    assert dst.stat().st_size <= src.stat().st_size
    assert _params(dst) <= _params(src)
    box = Box.uniform(-1.0, 1.0, int(np.prod(shape)))
    x = probe_points(box, 50, np.random.default_rng(2)).astype(np.float32)
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dst)]
    for r in x:
        a, b = (s.run(None, {s.get_inputs()[0].name: r.reshape(shape)})[0] for s in runs)
        np.testing.assert_allclose(a.reshape(-1), b.reshape(-1), rtol=0, atol=1e-5)


def test_a_dead_residual_block_is_written_as_a_smaller_chain(tmp_path):
    """A block whose ReLUs are all off on the box: ``o = relu(h)``, so the chain rewrite
    (the carry neurons folded into one affine map) has fewer parameters than the graph."""
    from exactcomp import api

    inits = {**ONE_INITS, "W1": _w(4, 40), "b1": np.full(40, -100.0), "W2": _w(40, 4)}
    src = tmp_path / "in.onnx"
    onnx.save(_model(ONE_BLOCK, inits, [1, 3], [1, 2], TensorProto.FLOAT), str(src))
    box = Box.uniform(-1.0, 1.0, 3)
    result = api.compress(str(src), box, jobs=1)
    assert result.report["structure"]["written"] == "dense"
    assert result.network.num_parameters < _params(src)
    dst = tmp_path / "out.onnx"
    api.save(result.network, dst)
    assert dst.stat().st_size < src.stat().st_size


def test_large_carry_layers_are_built_sparse(tmp_path, monkeypatch):
    """Above ``SPARSE_ABOVE`` entries a layer with carries is CSR (its carry rows are
    selections); the network read is the same function."""
    from exactcomp.io import onnx_skip

    monkeypatch.setattr(onnx_skip, "SPARSE_ABOVE", 100)
    net = _check(tmp_path, CONV_BLOCK, _conv_inits(2, 3), [1, 2, 4, 4], [1, 2], double=False)
    carried = [k for k, n in enumerate(net.meta["carried"]) if n]
    assert carried and all(net.layers[k].sparse for k in carried)
