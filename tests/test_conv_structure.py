"""Convolutional networks stay convolutional: read with structure, written as Conv/pools,
compressed channel by channel, never into a bigger file; each op exact or refused by name.

Ground truth is onnxruntime on the original file at the box's corners, face points and
samples (:func:`~exactcomp.io.onnx_check.probe_points`).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp import api, cli
from exactcomp.conv import ConvSpec, PoolLevel, pool_matrices
from exactcomp.domain import Box
from exactcomp.errors import UnsupportedModelError
from exactcomp.io.onnx_check import probe_points
from exactcomp.io.onnx_io import load_onnx

RNG = np.random.default_rng(5)


def _model(nodes, inits, in_shape, out_shape, opset=13):
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 9
    return model


def _f32(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def _cnn(dead_bias: float | None = None):
    """x[1,2,6,6] -> Pad 1 -> Conv 4x(3x3) s1 -> BN -> Relu -> MaxPool 2x2 s2 -> Conv 3x(2x2)
    -> Relu -> AveragePool 2x2 s1 pads 0,0,1,1 -> Flatten -> Gemm 3.

    ``dead_bias``: channel 1 of the first conv gets this bias, and channel 2 an all-zero
    kernel with bias -1 (dead everywhere)."""
    w1, b1 = _f32(4, 2, 3, 3), _f32(4)
    w1[2] = 0.0
    b1[2] = -1.0
    if dead_bias is not None:
        b1[1] = dead_bias
    n = helper.make_node
    nodes = [
        n("Pad", ["x", "pads"], ["xp"], name="pad", mode="constant"),
        n("Conv", ["xp", "W1", "B1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        n("BatchNormalization", ["c1", "s", "bb", "mu", "var"], ["bn"], name="bn"),
        n("Relu", ["bn"], ["r1"]),
        n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "W2", "B2"], ["c2"], name="conv2", kernel_shape=[2, 2]),
        n("Relu", ["c2"], ["r2"]),
        n("AveragePool", ["r2"], ["a2"], name="avg", kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
        n("Flatten", ["a2"], ["f"]),
        n("Gemm", ["f", "W3", "B3"], ["y"], transB=1),
    ]
    inits = {
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "W1": w1,
        "B1": b1,
        "s": np.abs(_f32(4)) + 0.5,
        "bb": _f32(4) - np.array([0, 0, 5, 0], np.float32),  # BN keeps channel 2 dead
        "mu": _f32(4),
        "var": np.abs(_f32(4)) + 0.5,
        "W2": _f32(3, 4, 2, 2),
        "B2": _f32(3),
        "W3": _f32(3, 12),
        "B3": _f32(3),
    }
    return _model(nodes, inits, [1, 2, 6, 6], [1, 3])


def _run(path, x, shape):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x.reshape(-1, *shape).astype(np.float32)})[0].reshape(len(x), -1)


def _agree(a, b, x, shape):
    ya = np.concatenate([_run(a, row[None], shape) for row in x])
    yb = np.concatenate([_run(b, row[None], shape) for row in x])
    np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-5)


def test_cnn_is_read_with_its_structure_and_written_as_conv(tmp_path):
    src = tmp_path / "cnn.onnx"
    onnx.save(_cnn(), str(src))
    box = Box.uniform(0.0, 1.0, 72)
    net = load_onnx(src, check_box=box)
    kinds = [type(la.structure).__name__ for la in net.layers]
    assert kinds[0] == "ConvSpec" and net.layers[0].structure.pads == (1, 1, 1, 1)
    assert "PoolLevel" in kinds and kinds.count("ConvSpec") == 2
    out = tmp_path / "out.onnx"
    api.save(net, out)
    ops = [nd.op_type for nd in onnx.load(str(out)).graph.node]
    assert ops.count("Conv") == 2 and "MaxPool" in ops and "AveragePool" in ops
    assert "Gemm" in ops and ops.count("Gemm") == 1
    _agree(src, out, probe_points(box, 16, RNG), (2, 6, 6))


def test_channel_removal_is_exact_and_the_file_shrinks(tmp_path):
    src = tmp_path / "cnn.onnx"
    onnx.save(_cnn(dead_bias=-50.0), str(src))  # channel 1 inactive on [0, 1]^72
    box = Box.uniform(0.0, 1.0, 72)
    net = load_onnx(src, check_box=box)
    result = api.compress(net, box, time_limit=5.0, jobs=1, check=2000)
    doc = result.report["structure"]
    assert doc["written"] == "channels"
    assert doc["channels_removed"]["0"] == 2  # the inactive and the dead channel
    assert doc["channels"][0]["inactive"][1] == 36
    assert result.network.num_parameters < net.num_parameters
    assert isinstance(result.network.layers[0].structure, ConvSpec)
    assert result.network.layers[0].structure.out_shape[0] == 2
    out = tmp_path / "small.onnx"
    api.save(api.stored(result.network), out)
    ops = [nd.op_type for nd in onnx.load(str(out)).graph.node]
    assert ops.count("Conv") == 2 and "MaxPool" in ops
    assert out.stat().st_size < src.stat().st_size
    _agree(src, out, probe_points(box, 32, RNG), (2, 6, 6))


def test_nothing_to_gain_writes_the_original_bytes(tmp_path):
    w = _f32(2, 1, 2, 2)
    b = np.abs(_f32(2)) + 10.0  # every position active on [0, 1]: no channel goes
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[2, 2]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    src = tmp_path / "c.onnx"
    onnx.save(_model(nodes, {"W": w, "B": b}, [1, 1, 3, 3], [1, 2, 2, 2]), str(src))
    box = Box.uniform(0.0, 1.0, 9)
    net = load_onnx(src, check_box=box)
    result = api.compress(net, box, time_limit=5.0, jobs=1, check=500)
    assert result.report["structure"]["written"] == "original"
    out = tmp_path / "o.onnx"
    api.save(api.stored(result.network), out)
    assert out.stat().st_size <= src.stat().st_size
    _agree(src, out, probe_points(box, 8, RNG), (1, 3, 3))


@pytest.mark.parametrize("nonneg", [True, False])
@pytest.mark.parametrize(
    ("kernel", "strides", "pads"),
    [
        ((2, 2), (2, 2), (0, 0, 0, 0)),
        ((3, 2), (1, 2), (1, 0, 1, 1)),
        ((3, 3), (2, 1), (1, 1, 1, 1)),
    ],
)
def test_maxpool_as_relus_is_exact(nonneg, kernel, strides, pads):
    """max(a, b) = b + relu(a - b), b = relu(b) - relu(-b): brute force on corners/samples."""
    pool = PoolLevel("max", (1, 4, 5), kernel, strides, pads, nonneg=nonneg)
    lo = 0.0 if nonneg else -1.0
    x = probe_points(Box.uniform(lo, 1.0, 20), 200, RNG)
    h = x
    mats = pool_matrices(pool)
    for m, b in mats[:-1]:
        z = h @ m.T + b
        if nonneg:  # the carried units, relu(b + 1) with b >= 0, are strictly active (half+)
            assert 2 * np.sum(z.min(axis=0) >= 1.0) >= z.shape[1]
        h = np.maximum(z, 0.0)
    got = h @ mats[-1][0].T + mats[-1][1]
    padded = np.full((len(x), 4 + pads[0] + pads[2], 5 + pads[1] + pads[3]), -np.inf)
    padded[:, pads[0] : pads[0] + 4, pads[1] : pads[1] + 5] = x.reshape(-1, 4, 5)
    oh, ow = pool.out_hw
    want = np.stack(
        [
            padded[
                :,
                i * strides[0] : i * strides[0] + kernel[0],
                j * strides[1] : j * strides[1] + kernel[1],
            ].max(axis=(1, 2))
            for i in range(oh)
            for j in range(ow)
        ],  # fmt: skip
        axis=1,
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("node", "inits", "needle", "out"),
    [
        (
            helper.make_node("Pad", ["x", "p"], ["y"], name="refl", mode="reflect"),
            {"p": np.zeros(8, np.int64)},
            r"'refl' \(Pad\).*reflect",
            [1, 1, 5, 5],
        ),
        (
            helper.make_node("Pad", ["x", "p"], ["y"], name="crop"),
            {"p": np.array([0, 0, -1, 0, 0, 0, 0, 0], np.int64)},
            r"'crop' \(Pad\).*negative",
            [1, 1, 4, 5],
        ),
        (
            helper.make_node(
                "MaxPool",
                ["x"],
                ["y"],
                name="ceil",
                kernel_shape=[2, 2],
                strides=[2, 2],
                ceil_mode=1,
            ),
            {},
            r"'ceil' \(MaxPool\).*ceil_mode",
            [1, 1, 3, 3],
        ),
        (
            helper.make_node(
                "AveragePool", ["x"], ["y"], name="dil", kernel_shape=[2, 2], dilations=[2, 2]
            ),
            {},
            r"'dil' \(AveragePool\).*dilations",
            [1, 1, 3, 3],
        ),
    ],  # fmt: skip
)
def test_refused_ops_name_node_and_op(tmp_path, node, inits, needle, out):
    src = tmp_path / "bad.onnx"
    onnx.save(_model([node], inits, [1, 1, 5, 5], out, opset=19), str(src))
    with pytest.raises(UnsupportedModelError, match=needle):
        load_onnx(src)


def test_refused_op_through_the_cli_is_one_line_exit_2(tmp_path, capsys):
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="refl", mode="edge")
    src = tmp_path / "bad.onnx"
    onnx.save(_model([node], {"p": np.zeros(8, np.int64)}, [1, 1, 5, 5], [1, 1, 5, 5]), str(src))
    code = cli.main(["compress", str(src), "--box", "0,1", "-o", str(tmp_path / "o.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    assert "'refl' (Pad)" in err and "edge" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.onnx").exists()


def test_average_and_global_pools_read_exactly(tmp_path):
    """Pad with a non-zero constant, AveragePool without/with count_include_pad, GAP."""
    n = helper.make_node
    nodes = [
        n("Pad", ["x", "p", "v"], ["xp"], name="pad"),
        n("Conv", ["xp", "W", "B"], ["c"], kernel_shape=[2, 2], strides=[2, 1]),
        n("Relu", ["c"], ["r"]),
        n("AveragePool", ["r"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
        n(
            "AveragePool",
            ["a"],
            ["a2"],
            kernel_shape=[2, 2],
            pads=[1, 0, 0, 1],
            count_include_pad=1,
        ),  # fmt: skip
        n("GlobalAveragePool", ["a2"], ["y"]),
    ]
    inits = {
        "p": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64),
        "v": np.array(0.5, np.float32),
        "W": _f32(3, 2, 2, 2),
        "B": _f32(3),
    }
    src = tmp_path / "avg.onnx"
    onnx.save(_model(nodes, inits, [1, 2, 4, 4], [1, 3, 1, 1]), str(src))
    box = Box.uniform(-1.0, 1.0, 32)
    net = load_onnx(src, check_box=box)  # checked against onnxruntime on the box's probes
    out = tmp_path / "w.onnx"
    api.save(net, out)
    _agree(src, out, probe_points(box, 16, RNG), (2, 4, 4))


@pytest.mark.parametrize("seed", [4, 6, 7])
def test_random_conv_cases_compress_exactly(seed):
    """The soak's convolutional generator: channels removed, the function kept at the box's
    corners, faces and samples (compress also re-checks on its own sample points)."""
    from exactcomp.testing.random_conv import random_conv_case

    case = random_conv_case(seed)
    result = api.compress(case.network, case.box, time_limit=2.0, jobs=1, check=300)
    assert result.report["structure"]["written"] == "channels"
    assert result.network.num_parameters < case.network.num_parameters
    x = probe_points(case.box, 64, RNG)
    np.testing.assert_allclose(
        result.network.forward(x), case.network.forward(x), rtol=1e-9, atol=1e-9
    )


def test_dense_layers_after_convolutions_still_lose_inactive_neurons():
    """x[1,3,3] -> Conv 2x(2x2) -> Relu -> dense 3 (unit 1 inactive) -> Relu -> dense 1:
    the conv stays whole (no channel is stable), the dense inactive unit goes."""
    from exactcomp.network import Layer, Network

    spec = ConvSpec((1, 3, 3), np.array([[[[1.0, -1.0], [0.5, 2.0]]], [[[-1.0, 1.0], [1.0, 1.0]]]]))
    conv = Layer(spec.dense(), np.repeat([0.0, -0.5], 4), True, spec)
    w = RNG.normal(size=(3, 8))
    dense = Layer(w, np.array([0.1, -100.0, 0.2]), True)
    net = Network((conv, dense, Layer(RNG.normal(size=(1, 3)), [0.0], False)), dtype="float64")
    box = Box.uniform(-1.0, 1.0, 9)
    result = api.compress(net, box, time_limit=2.0, jobs=1, check=300)
    assert result.report["structure"]["written"] == "channels"
    assert isinstance(result.network.layers[0].structure, ConvSpec)
    assert result.network.layers[1].out_features == 2
    x = probe_points(box, 64, RNG)
    np.testing.assert_allclose(result.network.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_recognize_conv_round_trip_and_refuses_a_perturbed_matrix(seed, tmp_path):
    """A random conv (strides, dilations, pads, groups) is recognised from its own matrix,
    written as Conv (save_onnx checks it in onnxruntime), and one changed entry, or a bias
    that differs at one position, makes the matrix dense again."""
    from exactcomp.io.conv_recognition import recognize_conv
    from exactcomp.network import Layer, Network

    rng = np.random.default_rng(seed)
    g = int(rng.choice([1, 1, 2]))
    c, m = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    spec = ConvSpec(
        (c, 7, 6),
        rng.normal(size=(m, c // g, *k)),
        tuple(int(v) for v in rng.integers(1, 3, 2)),
        tuple(int(v) for v in rng.integers(0, 2, 4)),
        tuple(int(v) for v in rng.integers(1, 3, 2)),
        g,
    )
    w = spec.dense()
    b = np.repeat(rng.normal(size=m), spec.out_features // m)
    args = (spec.in_shape, spec.out_shape, k, spec.strides, spec.dilations, g)
    found = recognize_conv(w, b, *args)
    assert found is not None and np.array_equal(found.dense(), w)
    for dtype, convs in (("float32", 1), ("float64", 0)):  # onnxruntime: no float64 Conv
        net = api.stored(Network((Layer(w, b, True, found),), dtype=dtype))
        out = tmp_path / f"c_{dtype}.onnx"
        api.save(net, out)
        assert [nd.op_type for nd in onnx.load(str(out)).graph.node].count("Conv") == convs
    w2 = w.copy()
    i, j = np.argwhere(w2 != 0)[int(rng.integers(0, np.count_nonzero(w2)))]
    w2[i, j] += 1.0
    assert recognize_conv(w2, b, *args) is None
    b2 = b.copy()
    b2[-1] += 1e-12
    assert recognize_conv(w, b2, *args) is None


def test_shipped_marabou_conv_net_is_written_as_conv_and_maxpool(tmp_path):
    """models/real/conv/marabou_conv_mp1.onnx: Conv (pads 1) -> Relu -> MaxPool -> MatMul...;
    written back with its Conv and MaxPool, equal under onnxruntime on its box's probes."""
    from pathlib import Path

    conv_dir = Path(__file__).resolve().parents[1] / "models" / "real" / "conv"
    src = conv_dir / "marabou_conv_mp1.onnx"
    box = Box.uniform(0.48, 0.52, 192)
    net = load_onnx(src, check_box=box)
    assert isinstance(net.layers[0].structure, ConvSpec)
    assert net.num_parameters == 4517 and net.describe() == "192-512r-512r-256r-128-32r-5"
    out = tmp_path / "m.onnx"
    api.save(net, out)
    ops = [nd.op_type for nd in onnx.load(str(out)).graph.node]
    assert ops[:3] == ["Conv", "Relu", "MaxPool"]
    _agree(src, out, probe_points(box, 8, RNG), (3, 8, 8))


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 1, 1, 1)])
def test_constant_channel_folds_into_the_next_bias_when_it_stays_a_conv(pads):
    """x[1,4,4] -> Conv 2x(2x2) (channel 1: zero kernel, bias 0.7) -> Relu -> Conv 1x(2x2)
    with ``pads`` -> Relu -> dense 1. Without padding the next conv sees 0.7 everywhere and
    the channel folds into its bias; with padding the border positions see less, so it stays."""
    from exactcomp.network import Layer, Network

    k1 = np.stack([RNG.normal(size=(1, 2, 2)), np.zeros((1, 2, 2))])
    s1 = ConvSpec((1, 4, 4), k1)
    l1 = Layer(s1.dense(), np.repeat([0.1, 0.7], 9), True, s1)
    s2 = ConvSpec((2, 3, 3), RNG.normal(size=(1, 2, 2, 2)), pads=pads)
    l2 = Layer(s2.dense(), np.full(s2.out_features, 0.2), True, s2)
    net = Network((l1, l2, Layer(RNG.normal(size=(1, s2.out_features)), [0.0], False)), "float64")
    box = Box.uniform(-1.0, 1.0, 16)
    result = api.compress(net, box, time_limit=2.0, jobs=1, check=300)
    folded = pads == (0, 0, 0, 0)
    first = result.network.layers[0].structure
    assert isinstance(first, ConvSpec) and first.out_shape[0] == (1 if folded else 2)
    assert np.array_equal(first.kernel[0], k1[0])
    x = probe_points(box, 64, RNG)
    np.testing.assert_allclose(result.network.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


def _residual(across_relu: bool):
    """conv1 -> relu1 -> conv2 [-> relu2 -> conv3] -> Add(., relu1) -> relu: a skip that
    stays within one ReLU level is affine (read exactly); one across a ReLU is carried."""
    n = helper.make_node
    pad = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        n("Conv", ["x", "W1"], ["c1"], name="conv1", **pad),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("Conv", ["r1", "W2"], ["c2"], name="conv2", **pad),
    ]
    last = "c2"
    if across_relu:
        nodes += [
            n("Relu", ["c2"], ["r2"], name="relu2"),
            n("Conv", ["r2", "W2"], ["c3"], name="conv3", **pad),
        ]
        last = "c3"
    nodes += [n("Add", [last, "r1"], ["s"], name="skip"), n("Relu", ["s"], ["y"], name="out")]
    inits = {"W1": _f32(2, 2, 3, 3), "W2": _f32(2, 2, 3, 3)}
    return _model(nodes, inits, [1, 2, 4, 4], [1, 2, 4, 4])


def test_residual_add_within_one_relu_level_is_exact(tmp_path):
    src = tmp_path / "res.onnx"
    onnx.save(_residual(across_relu=False), str(src))
    box = Box.uniform(-1.0, 1.0, 32)
    net = load_onnx(src, check_box=box)  # conv2(h1) + h1: one layer, checked by onnxruntime
    assert net.describe() == "32-32r-32r"
    out = tmp_path / "w.onnx"
    api.save(net, out)
    _agree(src, out, probe_points(box, 16, RNG), (2, 4, 4))


def test_residual_add_across_a_relu_is_carried_and_written_no_larger(tmp_path):
    """The skip crosses relu2: carried through it (io.onnx_skip), and the file written is
    the source graph (the chain is larger), equal under onnxruntime."""
    src, out = tmp_path / "res2.onnx", tmp_path / "o.onnx"
    onnx.save(_residual(across_relu=True), str(src))
    code = cli.main(["compress", str(src), "--box", "0,1", "-o", str(out), "--quiet"])
    assert code == 0 and out.stat().st_size <= src.stat().st_size
    _agree(src, out, probe_points(Box.uniform(0.0, 1.0, 32), 16, RNG), (2, 4, 4))


@pytest.mark.parametrize("seed", [1, 2, 6, 7])
def test_torch_conv_module_computes_the_network(seed):
    """Conv2d/MaxPool2d/AvgPool2d modules (asymmetric pads through explicit padding) compute
    the network at the box's corners, faces and samples, with fewer parameters."""
    import torch

    from exactcomp.io.torch_conv import to_torch_conv_module
    from exactcomp.testing.random_conv import random_conv_case

    case = random_conv_case(seed)
    module = to_torch_conv_module(case.network)
    assert any(isinstance(m, torch.nn.Conv2d) for m in module)
    x = probe_points(case.box, 32, RNG)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, case.network.forward(x), rtol=1e-10, atol=1e-10)
    params = sum(p.numel() for p in module.parameters())
    assert params == case.network.num_parameters


def test_sample_check_in_chunks_checks_every_point_and_still_catches_a_change(monkeypatch):
    """Wide inputs are re-checked chunk by chunk (api.CHECK_ENTRIES); same count, same rule."""
    from exactcomp.errors import VerificationError
    from exactcomp.network import Layer, Network
    from exactcomp.tolerances import DEFAULT

    monkeypatch.setattr(api.sampling, "CHECK_ENTRIES", 40)  # 4 points of 9 inputs per chunk
    f = Network((Layer(RNG.normal(size=(2, 9)), [0.0, 1.0], True),), dtype="float64")
    box = Box.uniform(0.0, 1.0, 9)
    sc = api.sample_check(f, f, [box], points=30, tol=DEFAULT)
    assert sc.points >= 30 and sc.max_abs_diff == 0.0  # each chunk adds the box centre
    g = Network((Layer(f.layers[0].weight, [0.0, 1.5], True),), dtype="float64")
    with pytest.raises(VerificationError):
        api.sample_check(f, g, [box], points=30, tol=DEFAULT)
