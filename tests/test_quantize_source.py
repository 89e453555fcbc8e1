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

import dataclasses
from pathlib import Path

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


def _save(path, nodes, shapes, in_shape, out_shape, opset: int, seed: int = 24) -> str:
    """The graph ``nodes`` with normal weights drawn from ``seed``: the same network whatever
    ran before (a module-wide generator made a test's network depend on the tests before it)."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(size=s).astype(np.float32), k) for k, s in shapes.items()
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


def quantised(res):
    """``res`` written as the quantised file itself: ``save`` writes the float network the
    command started from instead where that file is smaller, as it is for these few weights
    (tests/test_float_candidate.py; checked in the first test below)."""
    return dataclasses.replace(res, alternative=None)


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
    quantised(res).save(out)
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DequantizeLinear" if bits != 16 else "Cast") == len(res.source.names)
    res.save(tmp_path / "written.onnx")  # what the command writes: never a larger file
    size = min(out.stat().st_size, Path(src).stat().st_size)
    assert (tmp_path / "written.onnx").stat().st_size <= size
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


def _ort_max_difference(src: str, out: str, in_shape, box: Box, points: int = 4000) -> float:
    """The largest ``|f - g|`` over ``points`` of ``box`` (its corners among them) with both
    files run in onnxruntime (float32)."""
    rng = np.random.default_rng(7)
    x = rng.uniform(box.lower, box.upper, size=(points, box.dim))
    corners = ((np.arange(2**box.dim)[:, None] >> np.arange(box.dim)) & 1).astype(bool)
    x = np.vstack([np.where(corners, box.upper, box.lower), x]).astype(np.float32)
    runs = []
    for path in (src, out):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        runs.append(np.stack([sess.run(None, {"x": r.reshape(in_shape)})[0][0] for r in x]))
    return float(np.abs(runs[0].astype(np.float64) - runs[1]).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_tol_picks_widths_per_tensor_in_its_own_graph(tmp_path, case) -> None:
    nodes, shapes, in_shape, out_shape, opset = CASES[case]
    src = _save(tmp_path / "f.onnx", nodes, shapes, in_shape, out_shape, opset)
    f = load(src)
    box = Box.uniform(-1.0, 1.0, f.input_size)
    opts = {"time_limit": 60.0, "tighten_seconds": 0.0, "split_seconds": 0.0}
    eight, four = (quantize(src, box, bits=b, **opts).proven for b in (8, 4))
    assert eight < four
    tol = (eight + four) / 2  # 8 bits everywhere fits, 4 not: some tensors narrower than 8
    res = quantize(src, box, tol=tol, **opts)
    assert res.source is not None and res.grids is None
    assert res.proven <= tol
    rows = res.report["layers"]
    assert sorted(r["tensor"] for r in rows) == sorted(weight_axes(onnx.load(src)))
    assert {r["bits"] for r in rows} <= {32, 16, 8, 4, 2}
    assert min(r["bits"] for r in rows) < 8 <= max(r["bits"] for r in rows)  # per tensor
    out = tmp_path / "g.onnx"
    quantised(res).save(out)
    g = load(out)  # the file holds the network proven
    for a, b in zip(g.layers, res.network.layers, strict=True):
        np.testing.assert_array_equal(a.bias, b.bias)
    assert max_output_difference(f, res.network, box).value <= res.proven + 1e-9
    # dense sampling of both files in onnxruntime (float32: its rounding allowed)
    assert _ort_max_difference(src, str(out), in_shape, box) <= res.proven + 1e-4


def test_tol_nothing_proves_writes_the_input_itself(tmp_path) -> None:
    src = _save(tmp_path / "f.onnx", MLP, MLP_INITS, [1, 2], [1, 2], 11)
    box = Box.uniform(-1.0, 1.0, 2)
    res = quantize(src, box, tol=1e-9, time_limit=30.0, tighten_seconds=0.0, split_seconds=0.0)
    assert res.source is None and res.proven == 0.0
    assert {r["action"] for r in res.report["layers"]} == {"float32"}
    out = tmp_path / "g.onnx"
    res.save(out)
    assert out.read_bytes() == (tmp_path / "f.onnx").read_bytes()  # the input itself


@pytest.mark.parametrize("case", sorted(CASES))
def test_bias_corrected_file_is_within_its_proven_bound(tmp_path, case) -> None:
    nodes, shapes, in_shape, out_shape, opset = CASES[case]
    src = _save(tmp_path / "f.onnx", nodes, shapes, in_shape, out_shape, opset)
    f = load(src)
    box = Box.uniform(0.0, 1.0, f.input_size)  # off-centre: the mean errors do not cancel
    opts = {"bits": 4, "time_limit": 30.0, "tighten_seconds": 0.0, "split_seconds": 0.0}
    rtn = quantize(src, box, method="rtn", **opts)
    cor = quantize(src, box, method="corrected", **opts)
    assert rtn.report["method"] == "rtn" and cor.report["method"] == "corrected"
    assert cor.source.corrected  # some node's bias took its mean error
    assert any(not np.array_equal(a.bias, b.bias)
               for a, b in zip(rtn.network.layers, cor.network.layers, strict=True))  # fmt: skip
    out = tmp_path / "g.onnx"
    quantised(cor).save(out)
    g = load(out)
    for a, b in zip(g.layers, cor.network.layers, strict=True):
        np.testing.assert_array_equal(a.bias, b.bias)
    assert max_output_difference(f, cor.network, box).value <= cor.proven + 1e-9


#: Two branches of one input, concatenated (as nn4sys' pensieve networks, opset 12), with
#: enough weights (1,744) that a file of them stored in 8 bits is smaller than the input's:
#: x[0, 0, :] --Gemm--> relu --\
#:                              Concat --Gemm--> relu --Gemm--> y
#: x[0, 1, :] --Gemm--> relu --/
BRANCHES = [
    ("Constant", [], ["st"], {"value": numpy_helper.from_array(np.array([0], np.int64))}),
    ("Constant", [], ["en"], {"value": numpy_helper.from_array(np.array([1], np.int64))}),
    ("Constant", [], ["ax"], {"value": numpy_helper.from_array(np.array([1], np.int64))}),
    ("Slice", ["x", "st", "en", "ax"], ["s0"], {}),
    ("Constant", [], ["sh"], {"value": numpy_helper.from_array(np.array([1, 2], np.int64))}),
    ("Reshape", ["s0", "sh"], ["v0"], {}),
    ("Gemm", ["v0", "A", "a"], ["p0"], {"transB": 1}),
    ("Relu", ["p0"], ["r0"], {}),
    ("Constant", [], ["one"], {"value": numpy_helper.from_array(np.array(1, np.int64))}),
    ("Gather", ["x", "one"], ["v1"], {"axis": 1}),
    ("Gemm", ["v1", "B", "b"], ["p1"], {"transB": 1}),
    ("Relu", ["p1"], ["r1"], {}),
    ("Concat", ["r0", "r1"], ["c"], {"axis": 1}),
    ("Gemm", ["c", "C", "cb"], ["p2"], {"transB": 1}),
    ("Relu", ["p2"], ["r2"], {}),
    ("Gemm", ["r2", "D", "db"], ["y"], {"transB": 1}),
]
BRANCH_INITS = {"A": (24, 2), "a": (24,), "B": (24, 2), "b": (24,), "C": (32, 48), "cb": (32,),
                "D": (2, 32), "db": (2,)}  # fmt: skip


def test_a_branch_merged_graph_is_quantised_into_a_smaller_file(tmp_path) -> None:
    src = _save(tmp_path / "f.onnx", BRANCHES, BRANCH_INITS, [1, 2, 2], [1, 2], 12)
    f = load(src)
    assert f.meta.get("carried")  # the branches are read as one chain with carried units
    box = Box.uniform(-1.0, 1.0, f.input_size)
    res = quantize(src, box, bits=8, time_limit=30.0, tighten_seconds=0.0, split_seconds=0.0)
    assert res.source is not None  # its own graph: opset 12 raised, every op reads the same
    out = tmp_path / "g.onnx"
    res.save(out)
    assert out.stat().st_size < (tmp_path / "f.onnx").stat().st_size
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Concat") == 1 and ops.count("Slice") == 1 and ops.count("Gather") == 1
    # dense sampling (80 ReLUs: too many regions to enumerate): exactcomp's float64 and
    # onnxruntime's float32 evaluation of the file read back
    x = np.random.default_rng(3).uniform(-1.0, 1.0, size=(20000, 4))
    assert np.abs(f.forward(x) - load(out).forward(x)).max() <= res.proven
    assert _ort_max_difference(src, str(out), [1, 2, 2], box, points=2000) <= res.proven + 1e-4


class _Plan:
    """A stand-in :class:`~exactcomp.source_quantization.SourcePlan`: two tensors, a build
    that costs no time and returns its widths."""

    sizes = {"big": 100, "small": 10}
    seconds = 0.0

    def build(self, widths):
        return type("Built", (), {"network": dict(widths)})()


class _Charger:
    """Each proof takes 10 s of the fake clock; the bound is the sum of per-width errors."""

    ERR = {None: 0.0, 16: 0.01, 8: 0.1, 4: 0.3, 2: 1.0, 1.5: 2.0, 3: 0.5}

    def __init__(self, clock):
        self.clock, self.seconds, self.asked = clock, 10.0, []

    def proven(self, widths, end=None, **_):
        self.asked.append(dict(widths))
        self.clock.advance(10.0)
        return sum(self.ERR[w] for w in widths.values())


@pytest.mark.parametrize("seconds", [1000.0, 25.0, 5.0])
def test_the_search_takes_the_uniform_ladder_then_the_largest_tensors_within_its_end(
    monkeypatch, seconds
) -> None:
    from exactcomp.source_quantization import choose_source_bits
    from exactcomp.testing.clock import FakeClock

    clock = FakeClock().install(monkeypatch)
    charger, end = _Charger(clock), clock.now + seconds
    widths, src, bound = choose_source_bits(_Plan(), charger, 0.5, [1.5, 2, 3, 4, 8, 16], end)
    assert clock.now <= end  # no proof started that would end past it
    if seconds == 5.0:  # no proof fits: nothing quantised (the input itself)
        assert charger.asked == [] and src is None and set(widths.values()) == {None}
    elif seconds == 25.0:  # uniform 8 proven (0.2), uniform 4 not (0.6): two proofs
        assert widths == {"big": 8, "small": 8} and src.network == widths and bound == 0.2
    else:  # then the big tensor to 4 bits (0.4); nothing else stays within 0.5
        assert charger.asked[:3] == [{"big": 8, "small": 8}, {"big": 4, "small": 4},
                                     {"big": 4, "small": 8}]  # fmt: skip
        assert widths == {"big": 4, "small": 8} and bound == pytest.approx(0.4)


@pytest.mark.parametrize("op", ["Conv", "Gemm"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_corrected_bias_cancels_the_mean_error_on_the_domain(op, with_bias) -> None:
    """One ``Conv`` (padded, strided) or ``Gemm`` (untransposed) whose weight is off by ``E``:
    with the bias from :func:`corrected_errors` the output error's mean over the same domain
    points (and a channel's positions) is 0, in onnxruntime."""
    from exactcomp.io import onnx_means

    rng = np.random.default_rng(5)
    if op == "Conv":
        shape, in_shape, attrs = (
            (3, 2, 3, 3),
            [1, 2, 5, 5],
            {"pads": [1, 0, 1, 1], "strides": [2, 1]},
        )
    else:
        shape, in_shape, attrs = (6, 3), [1, 6], {}
    w = rng.normal(size=shape).astype(np.float32)
    bias = rng.normal(size=shape[0] if op == "Conv" else shape[1]).astype(np.float32)
    box = Box(
        np.linspace(0.0, 1.0, int(np.prod(in_shape))), np.linspace(0.5, 3.0, int(np.prod(in_shape)))
    )

    def model(weight, b):
        inits = [numpy_helper.from_array(weight, "W")] + (
            [] if b is None else [numpy_helper.from_array(b, "B")]
        )
        node = helper.make_node(op, ["x", "W"] + ([] if b is None else ["B"]), ["y"], **attrs)
        graph = helper.make_graph(
            [node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits,
        )  # fmt: skip
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    b = bias if with_bias else None
    f = model(w, b)
    means = onnx_means.input_means(f, ["W"], [box], in_shape)
    error = (0.05 * rng.normal(size=shape)).astype(np.float32)
    g = model(w + error, b)
    fixed = onnx_means.corrected_errors(g, {"W": error.astype(np.float64)}, means)  # its layout
    assert fixed == ("W",)
    runs = []
    x = box.lower + (box.upper - box.lower) * np.random.default_rng(0).random(
        (onnx_means.MEAN_POINTS, box.dim)
    )
    for m in (f, g):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        runs.append(
            np.stack(
                [sess.run(None, {"x": r.reshape(in_shape).astype(np.float32)})[0][0] for r in x]
            )
        )
    diff = runs[1].astype(np.float64) - runs[0]
    per_channel = diff.reshape(len(x), diff.shape[1], -1).mean(axis=(0, 2))
    raw = np.abs(diff).mean()
    assert raw > 1e-2  # the error is there, point by point
    np.testing.assert_allclose(per_channel, 0.0, atol=1e-4)
