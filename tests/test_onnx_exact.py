"""The ONNX reader is exact or refuses by name (issue 18, item 3), checked against onnxruntime.

The issue's case: a ReLU that passes through ``Cast(FLOAT16)`` overflows to ``inf`` near a
corner of the box under onnxruntime, but the reader took the cast for the identity::

    x (2) -> MatMul W=[[a], [a]] -> Add b -> Relu -> Cast(FLOAT16) -> Cast(FLOAT) -> MatMul V -> y
             a = 1e7, b = -1.99e7: a (x1 + x2) + b = 1e5 > 65504 at the corner (1, 1): inf

Each handler class is also compared with onnxruntime on the corners and faces of a box (not
only random points), and the cross-check itself must catch a difference that lives only near
a corner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp import api
from exactcomp.cli import main
from exactcomp.domain import Box
from exactcomp.errors import InvalidNetworkError, UnsupportedModelError
from exactcomp.io import onnx_ops
from exactcomp.io.onnx_check import (
    check_boxes,
    check_on_domain,
    compare_with_onnxruntime,
    partial_sum_size,
    probe_points,
)
from exactcomp.io.onnx_io import load_onnx, save_onnx
from exactcomp.network import Layer, Network

n = helper.make_node
F, D, H = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16


def _model(nodes, inits, in_shape, out_shape, *, in_type=F, out_type=None, opset=13):
    """A graph whose initializers keep their numpy dtypes (float16, int64...)."""
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", in_type, in_shape)],
        [helper.make_tensor_value_info("y", out_type or in_type, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9 if opset >= 19 else 8
    return model


def _save(tmp_path: Path, model, name="m.onnx") -> Path:
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def _ort(path: Path, x: np.ndarray, dtype=np.float32) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x.astype(dtype)})[0], dtype=np.float64)


def _half_graph(a: float, b: float = 0.0, v: float = 1.0, name: str = "cast_3"):
    """The issue's graph (docstring): MatMul -> Add -> Relu -> Cast(FLOAT16) -> Cast(FLOAT)."""
    nodes = [
        n("MatMul", ["x", "W"], ["z"], name="matmul_0"),
        n("Add", ["z", "b"], ["zb"], name="add_1"),
        n("Relu", ["zb"], ["h"], name="relu_2"),
        n("Cast", ["h"], ["h16"], to=H, name=name),
        n("Cast", ["h16"], ["h32"], to=F, name="cast_4"),
        n("MatMul", ["h32", "V"], ["y"], name="matmul_5"),
    ]
    inits = {
        "W": np.full((2, 1), a, np.float32),
        "b": np.full(1, b, np.float32),
        "V": np.full((1, 1), v, np.float32),
    }
    return _model(nodes, inits, ["N", 2], ["N", 1])


# ----------------------------------------------------------------------------- the case
def test_float16_overflow_at_a_corner_is_refused_at_load(tmp_path):
    """``relu(1e7 (x1 + x2) - 1.99e7)`` is 1e5 at the corner (1, 1), inf in float16, and zero
    unless x1 + x2 > 1.99: 64 random points of [-1, 1]^2 miss it (the old reader loaded it)."""
    p = _save(tmp_path, _half_graph(1e7, b=-1.99e7))
    assert np.isinf(_ort(p, np.array([[1.0, 1.0]]))).all()
    assert np.isfinite(_ort(p, np.array([[0.99, 0.99]]))).all()
    with pytest.raises(UnsupportedModelError) as info:
        load_onnx(p)
    msg = str(info.value)
    assert "node 'cast_3' (Cast)" in msg and "Cast to FLOAT16 rounds and can overflow" in msg
    assert "\n" not in msg


def test_float16_rounding_without_overflow_is_refused(tmp_path):
    """``1000 relu(x1 + x2 - 2.5)`` through float16: zero on ``[-1, 1]^2`` (where the old
    load-time check looked), off by about 1 on ``[0, 3]^2`` (the 2^-10 rounding, times 1000)."""
    p = _save(tmp_path, _half_graph(1.0, b=-2.5, v=1000.0))
    x = np.array([[2.9, 2.9]], np.float32).astype(np.float64)
    real = 1000 * (np.float64(np.float32(2.9)) * 2 - 2.5)
    assert abs(_ort(p, x)[0, 0] - real) > 0.1  # far beyond float32 rounding
    with pytest.raises(UnsupportedModelError, match="Cast to FLOAT16 rounds"):
        load_onnx(p)


@pytest.mark.parametrize("command", ["stability", "verify"])
def test_float16_overflow_exits_2_from_the_cli_with_one_line(tmp_path, capsys, command):
    p = _save(tmp_path, _half_graph(1e7, b=-1.99e7))
    argv = [command, str(p)] + ([str(p)] if command == "verify" else []) + ["--box=-1,1"]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "cast_3" in lines[0] and "FLOAT16" in lines[0]


# ----------------------------------------------------------------------------- casts
def _cast_graph(to: int, in_type: int = F, opset: int = 13):
    np_in = helper.tensor_dtype_to_np_dtype(in_type)
    nodes = [
        n("MatMul", ["x", "W"], ["z"]),
        n("Cast", ["z"], ["c"], to=to, name="the_cast"),
        n("Cast", ["c"], ["y"], to=in_type),
    ]
    return _model(
        nodes, {"W": np.eye(3, dtype=np_in)}, [1, 3], [1, 3], in_type=in_type, opset=opset
    )


@pytest.mark.parametrize(
    ("to", "opset"),
    [
        (TensorProto.FLOAT16, 13),
        (TensorProto.BFLOAT16, 13),
        (TensorProto.FLOAT8E4M3FN, 19),
        (TensorProto.FLOAT8E5M2, 19),
        (TensorProto.INT8, 13),
        (TensorProto.UINT8, 13),
        (TensorProto.INT32, 13),
        (TensorProto.INT64, 13),
        (TensorProto.BOOL, 13),
    ],
)
def test_narrowing_and_integer_casts_of_the_input_are_refused(tmp_path, to, opset):
    name = TensorProto.DataType.Name(to)
    with pytest.raises(UnsupportedModelError, match=f"node 'the_cast' \\(Cast\\): Cast to {name}"):
        load_onnx(_save(tmp_path, _cast_graph(to, opset=opset)))


def test_double_to_float_cast_is_refused_in_a_double_graph(tmp_path):
    model = _cast_graph(F, in_type=D)
    with pytest.raises(UnsupportedModelError, match="Cast from DOUBLE to FLOAT rounds"):
        load_onnx(_save(tmp_path, model))


def test_exact_casts_are_read_and_match_onnxruntime_at_the_corners(tmp_path):
    """FLOAT -> DOUBLE -> (double weights) -> FLOAT in a FLOAT graph: the widening is exact and
    the narrowing is the graph's own FLOAT rounding; FLOAT -> FLOAT is the identity."""
    nodes = [
        n("Cast", ["x"], ["xd"], to=D),
        n("MatMul", ["xd", "Wd"], ["z"]),
        n("Relu", ["z"], ["h"]),
        n("Cast", ["h"], ["hf"], to=F),
        n("Cast", ["hf"], ["hf2"], to=F),
        n("MatMul", ["hf2", "V"], ["y"]),
    ]
    rng = np.random.default_rng(0)
    inits = {"Wd": rng.normal(size=(3, 4)), "V": rng.normal(size=(4, 2)).astype(np.float32)}
    p = _save(tmp_path, _model(nodes, inits, ["N", 3], ["N", 2]))
    box = Box(np.array([-3.0, 0.0, 1.0]), np.array([2.0, 0.5, 4.0]))
    net = load_onnx(p, check_box=box)
    assert net.describe() == "3-4r-2" and net.meta["compute_dtype"] == "float32"
    _assert_matches_at_corners(p, net, box)


def test_float16_input_widened_before_any_arithmetic_is_read(tmp_path):
    nodes = [n("Cast", ["x"], ["xf"], to=F), n("MatMul", ["xf", "W"], ["y"])]
    inits = {"W": np.arange(6, dtype=np.float32).reshape(3, 2)}
    p = _save(tmp_path, _model(nodes, inits, [1, 3], [1, 2], in_type=H, out_type=F))
    net = load_onnx(p)
    assert net.meta["input_dtype"] == "float16" and net.meta["compute_dtype"] == "float32"


def test_float16_arithmetic_on_the_input_is_refused(tmp_path):
    nodes = [n("MatMul", ["x", "W"], ["y"], name="mm")]
    inits = {"W": np.ones((3, 2), np.float16)}
    p = _save(tmp_path, _model(nodes, inits, [1, 3], [1, 2], in_type=H))
    with pytest.raises(UnsupportedModelError, match="'mm' \\(MatMul\\): computes in FLOAT16"):
        load_onnx(p)


def test_float16_weights_cast_to_float_are_read_exactly(tmp_path):
    """Reading float16 weights is exact (they embed in float64); arithmetic on them is not."""
    w16 = (np.arange(6).reshape(3, 2) / 3).astype(np.float16)
    nodes = [n("Cast", ["W16"], ["W"], to=F), n("MatMul", ["x", "W"], ["y"])]
    net = load_onnx(_save(tmp_path, _model(nodes, {"W16": w16}, [1, 3], [1, 2])))
    np.testing.assert_array_equal(net.layers[0].weight, w16.astype(np.float64).T)
    assert net.dtype == "float32"  # a saved copy computes in FLOAT, never in FLOAT16
    save_onnx(net, tmp_path / "copy.onnx")
    assert onnx.load(str(tmp_path / "copy.onnx")).graph.input[0].type.tensor_type.elem_type == F
    nodes = [
        n("Mul", ["W16", "W16"], ["W2"], name="sq"),
        n("Cast", ["W2"], ["W"], to=F),
        n("MatMul", ["x", "W"], ["y"]),
    ]
    with pytest.raises(UnsupportedModelError, match="'sq' \\(Mul\\): computes in FLOAT16"):
        load_onnx(_save(tmp_path, _model(nodes, {"W16": w16}, [1, 3], [1, 2])))


@pytest.mark.parametrize(
    ("init", "match"),
    [
        (np.ones(2, np.int64), "mixes FLOAT and INT64"),
        (np.ones(2, np.float16), "mixes FLOAT and FLOAT16"),
        (np.ones(2, np.float64), "mixes DOUBLE and FLOAT"),
    ],
)
def test_operands_of_another_type_are_refused(tmp_path, init, match):
    nodes = [n("MatMul", ["x", "W"], ["z"]), n("Add", ["z", "c"], ["y"], name="plus")]
    inits = {"W": np.ones((3, 2), np.float32), "c": init}
    with pytest.raises(UnsupportedModelError, match=f"'plus' \\(Add\\): {match}"):
        load_onnx(_save(tmp_path, _model(nodes, inits, [1, 3], [1, 2])))


@pytest.mark.parametrize(
    ("value", "to", "match"),
    [
        (np.array([1e6], np.float32), H, "overflows"),
        (np.array([3e9], np.float32), TensorProto.INT32, "outside the range"),
        (np.array([1.0], np.float32), TensorProto.BFLOAT16, "constant to BFLOAT16"),
    ],
)
def test_inexact_constant_casts_are_refused(tmp_path, value, to, match):
    with pytest.raises(UnsupportedModelError, match=f"'cc' \\(Cast\\).*{match}"):
        load_onnx(_cast_model(tmp_path, value, to))


def test_a_non_finite_constant_is_refused_before_any_cast(tmp_path):
    """NaN (or inf) in an initializer is refused by name when the file is read (user14), before
    the Cast that would have refused it as a non-finite cast."""
    with pytest.raises(InvalidNetworkError, match="initializer 'c' holds NaN or inf"):
        load_onnx(_cast_model(tmp_path, np.array([np.nan], np.float32), TensorProto.INT64))


def _cast_model(tmp_path, value, to):
    nodes = [
        n("Cast", ["c"], ["cc"], to=to, name="cc"),
        n("Cast", ["cc"], ["cf"], to=F),
        n("MatMul", ["x", "W"], ["z"]),
        n("Add", ["z", "cf"], ["y"]),
    ]
    inits = {"W": np.ones((3, 1), np.float32), "c": value}
    return _save(tmp_path, _model(nodes, inits, [1, 3], [1, 1]))


def test_integer_constant_arithmetic_matches_onnxruntime():
    """Integer Div truncates toward zero in ONNX (numpy's // floors); checked on boundary
    values (signs, exact quotients, the int64 extremes)."""
    a = np.array([7, -7, 7, -7, 6, -6, 0, 2**62, -(2**63), 1], np.int64)
    b = np.array([2, 2, -2, -2, 3, -3, 5, 3, 7, -1], np.int64)
    graph = helper.make_graph(
        [n("Div", ["a", "b"], ["y"])],
        "div",
        [helper.make_tensor_value_info(v, TensorProto.INT64, [10]) for v in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(onnx_ops.div(a, b), want)


def test_integer_constant_overflow_is_refused(tmp_path):
    nodes = [
        n("Shape", ["x"], ["s"]),
        n("Mul", ["s", "big"], ["s2"], name="bigmul"),
        n("Reshape", ["x", "s2"], ["y"]),
    ]
    inits = {"big": np.array([2**62, 2**62], np.int64)}
    with pytest.raises(UnsupportedModelError, match="'bigmul' \\(Mul\\): overflows int64"):
        load_onnx(_save(tmp_path, _model(nodes, inits, [1, 3], [1, 3])))


# ----------------------------------------------------------------------------- every handler
def _assert_matches_at_corners(path: Path, net: Network, box: Box) -> None:
    """|IR - onnxruntime| <= 1e-6 S(x) on every corner, face point and random point."""
    x = probe_points(box, 16, np.random.default_rng(3))
    xin = x.astype(np.float32).astype(np.float64)
    shape = [d if isinstance(d, int) else 1 for d in net.meta["input_shape"]]
    got = np.vstack([_ort(path, row.reshape(shape)).reshape(1, -1) for row in xin])
    allowed = 1e-6 * partial_sum_size(net, xin)[:, None] + 1e-12
    assert np.all(np.abs(got - net.forward(xin)) <= allowed)


def _handler_cases():
    rng = np.random.default_rng(11)

    def w(*shape):
        return rng.normal(size=shape).astype(np.float32)

    head = [n("Relu", ["z"], ["h"]), n("MatMul", ["h", "V"], ["y"])]
    v = {"V": w(4, 2)}
    return {
        "matmul_add_sub_mul_div_neg": (
            [
                n("MatMul", ["x", "W"], ["a"]),
                n("Add", ["a", "b"], ["c"]),
                n("Sub", ["c", "b2"], ["d"]),
                n("Mul", ["d", "s"], ["e"]),
                n("Div", ["e", "t"], ["f"]),
                n("Neg", ["f"], ["z"]),
                *head,
            ],
            {"W": w(3, 4), "b": w(4), "b2": w(4), "s": w(4), "t": np.full(4, 3.0, np.float32)} | v,
            [1, 3],
        ),
        "gemm_alpha_beta_trans": (
            [
                n("Gemm", ["x", "W", "C"], ["z"], transB=1, alpha=0.7, beta=1.3),
                *head,
            ],
            {"W": w(4, 3), "C": w(4)} | v,
            [1, 3],
        ),
        "weight_first_matmul": (
            [
                n("MatMul", ["W", "x"], ["z"]),
                n("Relu", ["z"], ["h"]),
                n("MatMul", ["Vt", "h"], ["y"]),
            ],
            {"W": w(4, 3), "Vt": w(2, 4)},
            [3],
        ),
        "batchnorm": (
            [
                n("MatMul", ["x", "W"], ["a"]),
                n("BatchNormalization", ["a", "g", "be", "mu", "var"], ["z"], epsilon=1e-3),
                *head,
            ],
            {
                "W": w(3, 4),
                "g": w(4),
                "be": w(4),
                "mu": w(4),
                "var": np.abs(w(4)) + 0.1,
            }
            | v,
            [1, 3],
        ),
        "conv": (
            [
                n("Conv", ["x", "K", "kb"], ["c"], pads=[1, 1], strides=[2]),
                n("Relu", ["c"], ["h"]),
                n("Flatten", ["h"], ["hf"]),
                n("MatMul", ["hf", "V"], ["y"]),
            ],
            {"K": w(2, 1, 3), "kb": w(2), "V": w(6, 2)},
            [1, 1, 5],
        ),
        "layout": (
            [
                n("Reshape", ["x", "shp"], ["r"]),
                n("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
                n("Unsqueeze", ["t", "ax"], ["u"]),
                n("Squeeze", ["u", "ax"], ["s"]),
                n("Flatten", ["s"], ["fl"]),
                n("Concat", ["fl", "pad"], ["cat"], axis=1),
                n("MatMul", ["cat", "W"], ["z"]),
                *head,
            ],
            {
                "shp": np.array([1, 2, 2], np.int64),
                "ax": np.array([3], np.int64),
                "pad": w(1, 2),
                "W": w(6, 4),
            }
            | v,
            [1, 4],
        ),
        "constant_shape_gather_identity_dropout": (
            [
                n("Constant", [], ["k"], value=numpy_helper.from_array(w(3, 4))),
                n("Shape", ["x"], ["sh"]),
                n("Gather", ["sh", "zero"], ["bs"], axis=0),
                n("Unsqueeze", ["bs", "ax0"], ["bs1"]),
                n("Concat", ["bs1", "m1"], ["tgt"], axis=0),
                n("Reshape", ["x", "tgt"], ["xr"]),
                n("Identity", ["xr"], ["xi"]),
                n("Dropout", ["xi"], ["xd"]),
                n("MatMul", ["xd", "k"], ["z"]),
                *head,
            ],
            {
                "zero": np.array(0, np.int64),
                "ax0": np.array([0], np.int64),
                "m1": np.array([-1], np.int64),
            }
            | v,
            [1, 3],
        ),
        "slice_gather_of_the_input": (  # nn4sys' pensieve networks slice their input
            [
                n("Slice", ["x", "s1", "e1", "a1", "k1"], ["s"]),
                n("Slice", ["x", "s2", "e2", "a2", "k2"], ["r"]),
                n("Gather", ["x", "gi"], ["g"], axis=1),
                n("Flatten", ["g"], ["gf"]),
                n("Gather", ["x", "g3"], ["g0"], axis=-1),
                n("Unsqueeze", ["g0", "ax1"], ["g0u"]),
                n("Concat", ["s", "r", "gf", "g0u"], ["cat"], axis=1),
                n("MatMul", ["cat", "W"], ["z"]),
                *head,
            ],
            {
                "s1": np.array([1], np.int64),
                "e1": np.array([7], np.int64),
                "a1": np.array([1], np.int64),
                "k1": np.array([2], np.int64),
                "s2": np.array([-1], np.int64),
                "e2": np.array([-100], np.int64),
                "a2": np.array([-1], np.int64),
                "k2": np.array([-3], np.int64),
                "gi": np.array([[-1, 0], [2, 2]], np.int64),
                "g3": np.array(3, np.int64),
                "ax1": np.array([1], np.int64),
                "W": w(11, 4),
            }
            | v,
            [1, 8],
        ),
        "slice_branches_each_with_a_relu": (
            [
                n("Slice", ["x", "z0", "e3", "a1"], ["xa"]),
                n("Slice", ["x", "e3", "e6", "a1"], ["xb"]),
                n("MatMul", ["xa", "Wa"], ["pa"]),
                n("Relu", ["pa"], ["ha"]),
                n("MatMul", ["xb", "Wb"], ["pb"]),
                n("Relu", ["pb"], ["hb"]),
                n("Concat", ["ha", "hb"], ["z"], axis=1),
                *head,
            ],
            {
                "z0": np.array([0], np.int64),
                "e3": np.array([3], np.int64),
                "e6": np.array([6], np.int64),
                "a1": np.array([1], np.int64),
                "Wa": w(3, 2),
                "Wb": w(3, 2),
            }
            | v,
            [1, 6],
        ),
    }


@pytest.mark.parametrize("case", sorted(_handler_cases()))
def test_each_handler_matches_onnxruntime_on_corners_and_faces(tmp_path, case):
    nodes, inits, in_shape = _handler_cases()[case]
    out_shape = [1, 2] if len(in_shape) > 1 else [2]
    p = _save(tmp_path, _model(nodes, inits, in_shape, out_shape))
    size = int(np.prod(in_shape))
    box = Box(np.linspace(-4.0, 0.5, size), np.linspace(-1.0, 3.0, size))
    net = load_onnx(p, check_box=box)
    _assert_matches_at_corners(p, net, box)


# ----------------------------------------------------------------------------- the cross-check
def test_probe_points_hold_every_corner_and_both_faces_of_each_coordinate():
    box = Box(np.array([-1.0, 2.0, 0.0]), np.array([1.0, 5.0, 0.0]))
    x = probe_points(box, 4, np.random.default_rng(0))
    corners = {tuple(r) for r in x if np.all((r == box.lower) | (r == box.upper))}
    assert len(corners) == 4  # 2^3 corners, two of each pair equal (a flat coordinate)
    for i in range(3):
        assert np.any(x[:, i] == box.lower[i]) and np.any(x[:, i] == box.upper[i])
    assert np.all(box.contains(x))
    big = Box.uniform(0.0, 1.0, 40)
    y = probe_points(big, 0, np.random.default_rng(0))
    assert np.all(big.contains(y))
    assert (y == 0.0).all(axis=1).any() and (y == 1.0).all(axis=1).any()


def _corner_spike(meta: dict) -> Network:
    """``y = relu(s) - relu(-s) + 1000 relu(s - 1.98)`` with ``s = x1 + x2``: the file's
    ``x1 + x2`` except where ``s > 1.98``, a corner holding 1/20000 of ``[-1, 1]^2``."""
    return Network(
        (
            Layer(np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, 1.0]]), [0.0, 0.0, -1.98], relu=True),
            Layer(np.array([[1.0, -1.0, 1000.0]]), np.array([0.0]), relu=False),
        ),
        meta=meta,
    )


def _sum_file(tmp_path: Path) -> Path:
    nodes = [n("MatMul", ["x", "W"], ["y"])]
    return _save(tmp_path, _model(nodes, {"W": np.ones((2, 1), np.float32)}, ["N", 2], ["N", 1]))


def test_cross_check_catches_a_difference_that_lives_only_at_a_corner(tmp_path):
    p = _sum_file(tmp_path)
    meta = {"input_name": "x", "input_shape": ["N", 2], "input_dtype": "float32"}
    wrong, box = _corner_spike(meta), Box.uniform(-1.0, 1.0, 2)
    rand = box.sample(64, np.random.default_rng(0))
    assert compare_with_onnxruntime(p, wrong, rand, "x", ("N", 2), "float32").excess <= 0
    assert check_boxes(p, wrong, [box]).excess > 0


def test_domain_check_reruns_the_file_on_the_bound_domain(tmp_path):
    """A file that changed behind a loaded network is caught once the domain is bound."""
    p = _sum_file(tmp_path)
    net = load_onnx(p)
    box = Box.uniform(-1.0, 1.0, 2)
    check_on_domain(net, [box])  # the same function: passes
    nodes = [n("MatMul", ["x", "W"], ["y"])]
    onnx.save(_model(nodes, {"W": np.full((2, 1), 1.001, np.float32)}, ["N", 2], ["N", 1]), p)
    with pytest.raises(InvalidNetworkError, match="on the domain"):
        check_on_domain(net, [box])
    with pytest.raises(InvalidNetworkError, match="on the domain"):
        api.stable_neurons(net, box)
    rewritten = net.replace_layers([Layer(np.full((1, 2), 1.001), np.zeros(1), relu=False)])
    check_on_domain(rewritten, [box])  # a rewrite is not compared with the source file


def test_the_domain_is_checked_once_per_command_and_again_for_another_network(
    tmp_path, monkeypatch
):
    """``compress --tol`` binds its boxes once: the exact pass and its stability analysis take
    them bound, and run onnxruntime on them no more; a network not among those checked (a copy,
    a rewrite, another model) is checked on them again, and refused if its file disagrees."""
    from exactcomp.io import binding

    p = _sum_file(tmp_path)
    net, box = load_onnx(p), Box.uniform(-1.0, 1.0, 2)
    seen: list[Network] = []

    def counting(n: Network, boxes) -> None:
        seen.append(n)
        check_on_domain(n, boxes)

    monkeypatch.setattr(binding, "check_source", counting)
    api.compress_lossy(net, box, 0.1, time_limit=5.0)
    assert sum(n is net for n in seen) == 1
    bound = binding.bind_domain(box, net)
    nodes = [n("MatMul", ["x", "W"], ["y"])]
    onnx.save(_model(nodes, {"W": np.full((2, 1), 1.001, np.float32)}, ["N", 2], ["N", 1]), p)
    assert binding.bind_domain(bound, net) == bound  # checked on these boxes already
    copy = Network(net.layers, net.dtype, dict(net.meta))
    with pytest.raises(InvalidNetworkError, match="on the domain"):
        binding.bind_domain(bound, copy)
    with pytest.raises(InvalidNetworkError, match="on the domain"):
        binding.bind_domain(tuple(bound), net)  # plain boxes: checked again
    import pickle

    assert type(pickle.loads(pickle.dumps(bound))) is tuple  # a worker checks again


@pytest.mark.parametrize(
    ("node", "inits", "match"),
    [
        (
            n("Gather", ["x", "i"], ["z"], axis=1, name="g_7"),
            {"i": np.array([3], np.int64)},
            "index",
        ),
        (
            n("Gather", ["x", "i"], ["z"], axis=2, name="g_7"),
            {"i": np.array([0], np.int64)},
            "axis 2",
        ),
        (
            n("Slice", ["x", "b", "e", "a"], ["z"], name="g_7"),
            {"b": np.array([0]), "e": np.array([2]), "a": np.array([3])},
            "axis 3",
        ),
        (
            n("Slice", ["x", "b", "e", "a"], ["z"], name="g_7"),
            {"b": np.array([0, 0]), "e": np.array([2, 1]), "a": np.array([1, -1])},
            "axis twice",
        ),
    ],
)
def test_an_out_of_range_gather_or_slice_of_the_input_is_refused_by_name(
    tmp_path, node, inits, match
):
    """Indices or axes outside the tensor, and a sliced axis named twice, are undefined in
    ONNX: refused, naming the node."""
    nodes = [node, n("MatMul", ["z", "W"], ["y"])]
    inits = inits | {"W": np.ones((1, 2), np.float32)}
    with pytest.raises(UnsupportedModelError, match=f"g_7.*{match}"):
        load_onnx(_save(tmp_path, _model(nodes, inits, [1, 3], [1, 2])))


@pytest.mark.parametrize(
    ("shape", "numbers"), [([3, 2], "all 6 numbers"), ([3, "n"], "all numbers")]
)
def test_a_fixed_first_axis_above_one_is_refused_as_a_batch_by_name(tmp_path, shape, numbers):
    """nn4sys' ``pensieve_small_parallel`` takes a ``[12, 8]`` input, all 96 numbers one
    sample: the refusal says the first axis is read as the batch, not that it is one."""
    nodes = [n("Flatten", ["x"], ["f"], axis=0), n("MatMul", ["f", "W"], ["y"])]
    model = _model(nodes, {"W": np.ones((6, 1), np.float32)}, shape, [1, 1])
    with pytest.raises(
        UnsupportedModelError, match=f"first axis \\(3\\) is read as the batch.*{numbers}"
    ):
        load_onnx(_save(tmp_path, model))
