"""Convolutions and max-pools too large to hold densely: sparse layers, cone-by-cone analysis.

A tiny network is read twice, once as usual (dense matrices) and once with every structured
layer kept sparse (``SPARSE_ABOVE = 0``, as the reader does for Convnet_maxpool's 23,328 x 784
convolution and 18,432 x 23,328 max-pool level)::

    x (1 x 6 x 6) -> Conv 4 x (2x2) -> Relu -> MaxPool 2x2/2 -> Flatten -> Gemm 3

Ground truth: onnxruntime on the box's corners, face points and samples, and the dense
analysis (every verdict the cone analysis proves agrees with it and with sampled
pre-activations).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exactcomp import api
from exactcomp.conv import PoolLevel
from exactcomp.domain import Box
from exactcomp.io import onnx_handlers, onnx_pool
from exactcomp.io.onnx_check import probe_points
from exactcomp.io.onnx_io import load_onnx
from exactcomp.stability.cones import cone_network, prefix_cone, stable_by_cones
from exactcomp.verdicts import Verdict


def _model(
    seed: int, pads=(0, 0, 0, 0), pool=(2, 2), stride=(2, 2), kind="MaxPool", zero_pad=False
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(4, 1, 2, 2)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32) * 0.3
    bias[1] = -20.0  # channel 1 is inactive everywhere on the box: it can go
    conv_hw = 6 + pads[0] + pads[2] - 1
    out_hw = (conv_hw - pool[0]) // stride[0] + 1
    gemm = rng.normal(size=(3, 4 * out_hw * out_hw)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "K", "B"], ["c"], kernel_shape=[2, 2], pads=list(pads)),
        helper.make_node("Relu", ["c"], ["r0"]),
        helper.make_node("Pad", ["r0", "P"], ["r"])
        if zero_pad
        else helper.make_node("Identity", ["r0"], ["r"]),
        helper.make_node(kind, ["r"], ["p"], kernel_shape=list(pool), strides=list(stride)),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "g"], ["y"], transB=1),
    ]
    inits = {"K": kernel, "B": bias, "G": gemm, "g": np.zeros(3, np.float32)}
    if zero_pad:  # a Pad that pads nothing, as in VNN-COMP's Convnet_avgpool
        inits["P"] = np.zeros(8, np.int64)
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _sparse_load(path, monkeypatch):
    monkeypatch.setattr(onnx_handlers, "SPARSE_ABOVE", 0)
    monkeypatch.setattr(onnx_pool, "SPARSE_ABOVE", 0)
    return load_onnx(path)


BOX = Box(np.full(36, -0.5), np.full(36, 0.5))


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"pads": (1, 1, 0, 0)},
        {"pool": (3, 3), "stride": (2, 2)},
        {"kind": "AveragePool", "zero_pad": True},
        {"kind": "AveragePool", "pool": (3, 3), "stride": (1, 1)},
    ],
)
def test_sparse_layers_read_exactly(tmp_path, monkeypatch, shape):
    path = tmp_path / "m.onnx"
    onnx.save(_model(0, **shape), path)
    dense = load_onnx(path)
    net = _sparse_load(path, monkeypatch)
    assert any(la.sparse for la in net.layers)
    assert [la.sparse for la in net.layers] == [la.structure is not None for la in net.layers]
    assert [la.structure is not None for la in dense.layers] == [
        la.structure is not None for la in net.layers
    ]
    # the pool is a layer of its own (a zero Pad before it changes nothing), written as a pool
    assert sum(isinstance(la.structure, PoolLevel) for la in net.layers) >= 1
    for d, s in zip(dense.layers, net.layers, strict=True):
        w = s.weight.toarray() if s.sparse else s.weight
        assert np.array_equal(w, d.weight) and np.array_equal(s.bias, d.bias)
    x = probe_points(BOX, 64, np.random.default_rng(1))
    sess = ort.InferenceSession(str(path))
    want = np.concatenate(
        [sess.run(None, {"x": r.reshape(1, 1, 6, 6).astype(np.float32)})[0] for r in x]
    )
    assert np.abs(net.forward(x) - want).max() < 1e-5
    # the same entries summed in another order: equal up to float64 rounding
    assert np.allclose(net.forward(x), dense.forward(x), rtol=0, atol=1e-12)
    assert np.allclose(net.term_scale(x), dense.term_scale(x), rtol=0, atol=1e-12)


def test_cone_network_computes_the_same_preactivations(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    onnx.save(_model(1), path)
    net = _sparse_load(path, monkeypatch)
    from exactcomp.stability.cones import _pattern

    patterns = [_pattern(la) for la in net.layers]
    k = net.relu_layers[-1]
    sets = prefix_cone(patterns, k, np.array([0, 3]))
    sub = cone_network(net, sets)
    x = BOX.sample(50, np.random.default_rng(2))
    full = net.preactivations(x)
    part = sub.preactivations(x[:, sets[0]])
    for i in range(k + 1):
        assert np.allclose(part[i], full[i][:, sets[i + 1]], rtol=0, atol=1e-12)


def test_cone_verdicts_agree_with_dense_analysis_and_samples(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    onnx.save(_model(2), path)
    dense = load_onnx(path)
    net = _sparse_load(path, monkeypatch)
    want = api.stable_neurons(dense, BOX, jobs=1)
    got = api.stable_neurons(net, BOX, jobs=1)
    assert got.stats["cones"] >= 1
    x = np.vstack([probe_points(BOX, 400, np.random.default_rng(3)), got.witnesses])
    z = net.preactivations(x)
    decided = 0
    for a, b in zip(want.layers, got.layers, strict=True):
        assert a.layer == b.layer
        stable = (Verdict.ACTIVE, Verdict.INACTIVE)
        both = np.isin(a.verdict, stable) & np.isin(b.verdict, stable)
        assert np.array_equal(a.verdict[both], b.verdict[both])
        zk = z[b.layer]
        assert np.all(zk[:, b.verdict == Verdict.ACTIVE] >= 0)
        assert np.all(zk[:, b.verdict == Verdict.INACTIVE] <= 0)
        assert np.all(zk >= b.lower - 1e-9) and np.all(zk <= b.upper + 1e-9)
        for j in np.flatnonzero(b.verdict == Verdict.UNSTABLE):
            assert BOX.contains(got.witnesses[b.witness_pos[j]])
            assert z[b.layer][len(x) - len(got.witnesses) + b.witness_pos[j], j] > 0
            assert z[b.layer][len(x) - len(got.witnesses) + b.witness_neg[j], j] < 0
        decided += int(np.count_nonzero(b.verdict != Verdict.UNDECIDED))
    assert decided >= got.num_neurons - want.count(Verdict.UNDECIDED)


def test_compress_sparse_network_removes_the_dead_channel(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    onnx.save(_model(3), path)
    net = _sparse_load(path, monkeypatch)
    res = api.compress(net, BOX, jobs=1, check=2000)
    assert res.report["structure"]["written"] == "channels"
    assert res.report["structure"]["channels_removed"] == {"0": 1}
    assert all(la.structure is not None for la in res.network.layers[:-1])
    assert res.network.num_parameters < net.num_parameters
    out = tmp_path / "small.onnx"
    api.save(res.network, out, inputs=[path])
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert "Conv" in ops and "MaxPool" in ops and "Gemm" in ops
    x = probe_points(BOX, 64, np.random.default_rng(4)).astype(np.float32)
    a, b = ort.InferenceSession(str(path)), ort.InferenceSession(str(out))
    for r in x:
        feed = r.reshape(1, 1, 6, 6)
        ya = a.run(None, {"x": feed})[0]
        yb = b.run(None, {b.get_inputs()[0].name: feed})[0]
        assert np.abs(ya - yb).max() < 1e-5
    _ = stable_by_cones  # the API routes sparse networks there


def test_verify_of_sparse_networks_needs_certificates(tmp_path, monkeypatch, capsys):
    """Without certificates ``verify`` is refused in one line; ``compress --verify`` has them
    (its own report's claims, re-proven cone by cone) and proves the file EQUIVALENT."""
    from exactcomp import cli

    path = tmp_path / "m.onnx"
    onnx.save(_model(4), path)
    net = _sparse_load(path, monkeypatch)
    with pytest.raises(api.UnsupportedModelError, match="not supported for such networks"):
        api.verify_equivalence(net, net, BOX)
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lower": [-0.5] * 36, "upper": [0.5] * 36}))
    out, rep = tmp_path / "o.onnx", tmp_path / "r.json"
    dom = ["--box-file", str(box)]
    code = cli.main(["compress", str(path), *dom, "-o", str(out), "--verify", "--report", str(rep)])
    assert code == 0 and out.exists()
    assert "EQUIVALENT" in capsys.readouterr().out.replace("\n", " ")
    verify = ["verify", str(path), str(out), *dom, "--certificates", str(rep)]
    assert cli.main(verify) == 0 and "EQUIVALENT" in capsys.readouterr().out
    small = onnx.load(out)  # one weight of the Gemm changed: never EQUIVALENT
    gemm = next(t for t in small.graph.initializer if len(t.dims) == 2)
    arr = numpy_helper.to_array(gemm).copy()
    arr.flat[0] += 1.0
    gemm.CopyFrom(numpy_helper.from_array(arr, gemm.name))
    onnx.save(small, tmp_path / "bad.onnx")
    assert cli.main([*verify[:2], str(tmp_path / "bad.onnx"), *verify[3:]]) in (1, 3)
    assert "EQUIVALENT:" not in capsys.readouterr().out.replace("NOT_EQUIVALENT", "")
    assert cli.main(verify[:-2]) == 2
    assert "without certificates" in capsys.readouterr().err.replace("\n", " ")


def test_a_max_of_dead_units_is_settled_exactly(tmp_path, monkeypatch):
    """Channel 1 is dead on the box, so its max-pool units compute ``relu(0 - 0)``: a tie at 0
    that no bound with margin proves, settled by the exact constant rule."""
    path = tmp_path / "m.onnx"
    onnx.save(_model(5), path)
    net = _sparse_load(path, monkeypatch)
    rep = api.stable_neurons(net, BOX, jobs=1)
    assert rep.stats["constants"] > 0
    pool = rep.for_layer(1)  # the first max-pool level: 4 channels x 4 windows x 4 units
    per = pool.width // 4
    dead = pool.verdict[per : 2 * per]
    assert np.all(np.isin(dead, (Verdict.ACTIVE, Verdict.INACTIVE)))
    z = net.preactivations(probe_points(BOX, 200, np.random.default_rng(6)))[1][:, per : 2 * per]
    assert np.all(z[:, dead == Verdict.INACTIVE] <= 0) and np.all(z[:, dead == Verdict.ACTIVE] >= 0)


REAL = Path(__file__).resolve().parents[1] / "models" / "real" / "conv"


@pytest.mark.parametrize(
    ("name", "prop"),
    [
        ("Convnet_maxpool", "Convnet_maxpool_prop_0_0.004"),
        ("Convnet_avgpool", "Convnet_avgpool_prop_0_0.02"),
    ],
)
def test_verivital_nets_read_exactly(name, prop):
    """VNN-COMP 2021 verivital: Conv 32x2x2 -> Relu -> (Pad 0) -> Max/AveragePool 4x4 -> Gemm.
    Read with sparse conv and pool layers (23,328 ReLUs), equal to onnxruntime on the box's
    corners, faces and samples."""
    from exactcomp.io.vnnlib import read_vnnlib

    path = REAL / f"{name}.onnx"
    net = load_onnx(path)
    assert net.layers[0].sparse and net.layers[0].out_features == 23328
    assert net.num_parameters == 32 * 4 + 32 + 10 * 1152 + 10
    (box,) = read_vnnlib(REAL / f"{prop}.vnnlib", 784).boxes
    x = probe_points(box, 8, np.random.default_rng(7))[::25]
    sess = ort.InferenceSession(str(path))
    name_in = sess.get_inputs()[0].name
    want = np.concatenate(
        [sess.run(None, {name_in: r.reshape(1, 1, 28, 28).astype(np.float32)})[0] for r in x]
    )
    assert np.abs(net.forward(x) - want).max() < 1e-4


@pytest.mark.parametrize("seed", range(6))
def test_cone_analysis_of_random_conv_networks_is_sound(seed):
    """The soak's random conv networks (pools, strides, padding), held sparse: every cone
    verdict agrees with the dense analysis where both decide, and with sampled inputs."""
    from exactcomp.testing.random_conv import as_sparse, random_conv_case

    case = random_conv_case(seed)
    net = as_sparse(case.network)
    want = api.stable_neurons(case.network, case.box, jobs=1)
    got = api.stable_neurons(net, case.box, jobs=1)
    z = net.preactivations(probe_points(case.box, 200, np.random.default_rng(seed)))
    stable = (Verdict.ACTIVE, Verdict.INACTIVE)
    for a, b in zip(want.layers, got.layers, strict=True):
        both = np.isin(a.verdict, stable) & np.isin(b.verdict, stable)
        assert np.array_equal(a.verdict[both], b.verdict[both])
        assert not np.any(np.isin(a.verdict, stable) & (b.verdict == Verdict.UNSTABLE))
        assert not np.any(np.isin(b.verdict, stable) & (a.verdict == Verdict.UNSTABLE))
        zk = z[b.layer]
        assert np.all(zk[:, b.verdict == Verdict.ACTIVE] >= 0)
        assert np.all(zk[:, b.verdict == Verdict.INACTIVE] <= 0)


def test_a_sparse_layer_that_would_lose_its_structure_is_not_written_dense(tmp_path, monkeypatch):
    """Seed 6: the channel rewrite leaves a sparse pool level without its structure; that
    candidate cannot be written (a sparse layer as a dense Gemm), so another one is chosen and
    ``save`` writes a file equal to the input on samples (before: a traceback in the writer)."""
    from exactcomp.testing.random_conv import random_conv_case

    case = random_conv_case(6)
    path, out = tmp_path / "f.onnx", tmp_path / "small.onnx"
    api.save(case.network, path)
    net = _sparse_load(path, monkeypatch)
    assert any(la.sparse for la in net.layers)
    res = api.compress(net, case.box, jobs=1, check=500)
    api.save(res.network, out, inputs=[path])
    x = case.box.sample(50, np.random.default_rng(0))
    assert np.allclose(api.load(out).forward(x), net.forward(x), atol=1e-5)


@pytest.mark.parametrize("layer", [0, -1])  # the sparse convolution, the dense Gemm head
def test_the_default_recheck_catches_a_wrong_rewrite_of_a_sparse_network(
    tmp_path, monkeypatch, layer
):
    """A deliberately wrong rewrite (the largest weight of one layer of the compressed network
    times 1.01) is refused by ``compress``'s re-check at its default point count, through the
    public API: the savings of :mod:`exactcomp.api.sampling` keep it a safety net."""
    import dataclasses

    from exactcomp.api import compressing
    from exactcomp.errors import VerificationError
    from exactcomp.network import Layer

    path = tmp_path / "m.onnx"
    onnx.save(_model(3), path)
    net = _sparse_load(path, monkeypatch)
    real = compressing.choose_structured

    def wrong(*args, **kwargs):
        rewritten, structure = real(*args, **kwargs)
        g = rewritten.network
        la = g.layers[layer]
        w = la.weight.copy()
        values = w.data if la.sparse else w.reshape(-1)
        values[np.argmax(np.abs(values))] *= 1.01
        bad = Layer(w, la.bias, la.relu)
        layers = list(g.layers)
        layers[layer] = bad
        return dataclasses.replace(rewritten, network=g.replace_layers(layers)), structure

    assert net.layers[0].sparse and not net.layers[-1].sparse
    assert api.compress(net, BOX, jobs=1).check.points >= 2000  # the floor, at least
    monkeypatch.setattr(compressing, "choose_structured", wrong)
    with pytest.raises(VerificationError, match="this is a bug"):
        api.compress(net, BOX, jobs=1)
