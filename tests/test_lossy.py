"""Certified lossy compression and quantisation (issue 15).

The oracle :func:`exactcomp.testing.max_output_difference` computes the exact
``max |f - g|`` on tiny networks; a proven bound must never be below it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from strategies import gaussian_mlp

from exactcomp import api
from exactcomp.approx import compress_lossy
from exactcomp.cli import main
from exactcomp.domain import Box
from exactcomp.errors import InvalidOptionError, UnsupportedModelError
from exactcomp.network import Network
from exactcomp.quantization import quantize
from exactcomp.rewrite.quantize import quantize_network, quantize_weight
from exactcomp.rewrite.structural import drop_unused
from exactcomp.testing import max_output_difference
from exactcomp.verify.charge import Charger, sampled_max_difference


def _net(seed: int, widths=(2, 5, 4, 2)) -> Network:
    return gaussian_mlp(seed, widths)


BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


@pytest.mark.parametrize("bits", [16, 8, 4, 3, 2, 1.5])
def test_quantized_weights_are_exact_float32_and_on_the_grid(bits):
    w = np.random.default_rng(1).normal(size=(6, 9))
    qw = quantize_weight(w, bits)
    deq = qw.dequantized
    assert np.array_equal(deq.astype(np.float32).astype(np.float64), deq)
    if bits == 16:
        assert np.array_equal(deq, w.astype(np.float16).astype(np.float64))
        return
    top = 1 if bits == 1.5 else 2 ** (int(bits) - 1) - 1
    assert np.abs(qw.q).max() <= top
    if bits == 8:  # round to nearest: at most half a step (and the rounded-up scale)
        assert (np.abs(deq - w) <= qw.scale[:, None] / 2 + 1e-12).all()


def test_bits_outside_the_set_are_refused():
    with pytest.raises(InvalidOptionError, match="--bits must be one of"):
        quantize_weight(np.ones((2, 2)), 5)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bits", [4, 2, 1.5])
def test_proven_bound_of_quantisation_is_never_below_the_exact_max(seed, bits):
    f = _net(seed)
    g = quantize_network(f, [bits] * 3).network
    exact = max_output_difference(f, g, BOX).value
    charger = Charger(f, [BOX])
    proven = charger.proven(g)
    split = charger.proven(g, split_seconds=2.0, target=exact * 1.5)
    assert exact <= proven + 1e-9
    assert exact <= split + 1e-9
    assert sampled_max_difference(f, g, [BOX]) <= exact + 1e-9


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tol", [0.0, 0.05, 0.3])
def test_lossy_compress_is_proven_within_tol_and_never_below_the_exact_max(seed, tol):
    f = _net(seed, (2, 6, 6, 2))
    res = compress_lossy(f, BOX, tol, time_limit=20.0)
    assert res.proven <= tol + 1e-12
    exact = max_output_difference(f, res.network, BOX).value
    assert exact <= res.proven + 1e-9
    assert res.sampled <= exact + 1e-9
    assert res.report["parameters_after"] <= res.report["parameters_before"]
    if tol == 0.3:
        assert res.report["parameters_after"] < res.report["parameters_before"]


def test_drop_unused_is_exact():
    """``2-3r-1``: neuron 1 has a zero outgoing weight, neuron 2 a zero row and bias -1."""
    w0 = np.array([[1.0, -1.0], [2.0, 1.0], [0.0, 0.0]])
    b0 = np.array([0.1, 0.0, -1.0])
    f = Network.from_arrays([w0, np.array([[1.0, 0.0, 3.0]])], [b0, np.array([0.5])])
    g = drop_unused(f)
    assert g.hidden_widths == (1,)
    x = BOX.sample(200, np.random.default_rng(0))
    assert np.array_equal(f.forward(x), g.forward(x))


@pytest.mark.parametrize("bits", [8, 4, 3, 2, 1.5, 16])
def test_quantized_onnx_runs_and_reads_back_exactly(tmp_path, bits):
    f = _net(3)
    res = quantize(f, BOX, bits=bits)
    path = tmp_path / "q.onnx"
    res.save(path)  # checked against onnxruntime before the rename
    back = api.load(path)
    for a, b in zip(back.layers, res.network.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    kinds = {t.data_type for t in onnx.load(str(path)).graph.initializer}
    stored = {8: TensorProto.INT8, 4: TensorProto.INT4, 3: TensorProto.INT4}
    stored |= {2: TensorProto.INT2, 1.5: TensorProto.INT2, 16: TensorProto.FLOAT16}
    assert stored[bits] in kinds
    assert not ({TensorProto.INT8, TensorProto.INT4, TensorProto.INT2} - {stored[bits]}) & kinds


def test_quantized_onnx_takes_the_stored_bits_per_weight(tmp_path):
    """A 64-256-2 network: each halving of the stored bits (INT8 -> INT4 -> INT2) saves half of
    the integers' bytes in the file (17,154 weights and zero points: 8,577 then 4,289 bytes),
    and onnxruntime computes the network from each file (``save`` checks it)."""
    rng = np.random.default_rng(0)
    out = np.sign(rng.normal(size=(2, 256)))  # +-1: on every grid, so no neuron is dropped
    f = Network.from_arrays([rng.normal(size=(256, 64)), out], [np.zeros(256), np.zeros(2)])
    box = Box(-np.ones(64), np.ones(64))
    size = {}
    for bits in (8, 4, 2):
        path = tmp_path / f"q{bits}.onnx"
        res = quantize(f, box, bits=bits, split_seconds=0.0, lp_seconds=0.0, tighten_seconds=0.0)
        res.save(path)
        size[bits] = path.stat().st_size
    integers = 256 * 64 + 2 * 256 + 256 + 2  # the weights and the zero points
    assert size[8] - size[4] == pytest.approx(integers / 2, abs=16)
    assert size[4] - size[2] == pytest.approx(integers / 4, abs=16)


def test_dequantize_that_rounds_is_refused(tmp_path):
    """A scale of 1 + 2^-23 times q = 3 is not a float32: the reader refuses, by name."""
    q = numpy_helper.from_array(np.array([[3, 1], [1, 1]], np.int8), "q")
    s = numpy_helper.from_array(np.array([1 + 2**-23, 1.0], np.float32), "s")
    z = numpy_helper.from_array(np.zeros(2, np.int8), "z")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["W"], axis=0),
        helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[q, s, z, b],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(UnsupportedModelError, match="rounds"):
        api.load(path)


def test_quantize_with_tol_keeps_the_proven_bound(tmp_path):
    f = _net(5)
    res = quantize(f, BOX, tol=0.05)
    assert res.proven <= 0.05
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    path = tmp_path / "model.pt"
    torch.save(seq.state_dict(), path)
    return path


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["quantize", "--bits", "5"], "--bits must be one of"),
        (["quantize", "--bits", "8", "--tol", "0"], "--tol must be a finite number > 0"),
        (["quantize", "--tol", "x"], "--tol must be a number"),
        (["quantize", "--tol", "-1"], "--tol must be a finite number >= 0"),
        (["quantize"], "needs --bits, --tol or both"),
        (["compress", "--tol", "-0.5"], "--tol must be"),
    ],
)
def test_cli_bad_input_one_line_exit_2_no_file(tmp_path, model, capsys, extra, needle):
    out = tmp_path / "out.onnx"
    cmd, *rest = extra
    code = main([cmd, str(model), "--box", "0,1", "-o", str(out), *rest])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_cli_quantize_and_compress_write_reports(tmp_path, model, capsys):
    import json

    out, rep = tmp_path / "q.onnx", tmp_path / "q.json"
    argv = ["quantize", model, "--box", "0,1", "--bits", "4", "-o", out, "--report", rep]
    assert main([str(a) for a in argv]) == 0
    doc = json.loads(rep.read_text())
    for key in ("tol", "proven_max_abs_diff", "sampled_max_abs_diff", "bytes_before"):
        assert key in doc
    assert doc["bytes_after"] == out.stat().st_size
    assert doc["sampled_max_abs_diff"] <= doc["proven_max_abs_diff"]
    out2 = tmp_path / "c.pt"
    assert main(["compress", str(model), "--box", "0,1", "--tol", "0.05", "-o", str(out2)]) == 0
    assert out2.exists()


@pytest.mark.parametrize("seed", range(3))
def test_compress_then_quantize_is_proven_end_to_end(tmp_path, seed):
    f = _net(seed, (2, 6, 6, 2))
    pruned = compress_lossy(f, BOX, 0.2, time_limit=10.0)
    res = quantize(pruned, BOX, bits=4)
    assert res.network.num_neurons <= f.num_neurons
    exact = max_output_difference(f, res.network, BOX).value
    assert exact <= res.proven + 1e-9
    path = tmp_path / "q.onnx"
    res.save(path)
    back = api.load(path)
    for a, b in zip(back.layers, res.network.layers, strict=True):
        assert np.array_equal(a.weight, b.weight)


@pytest.mark.parametrize("seed", range(4))
def test_lp_tightened_bounds_are_sound_and_never_looser(seed):
    """``2-5r-5r-5r-2``: f's LP-tightened root bounds lie inside the back-substitution ones and
    enclose every sampled pre-activation; the tightened charger's bound of a 3-bit copy lies
    between the exact max (the oracle) and the untightened bound."""
    f = _net(seed, (2, 5, 5, 5, 2))
    g = quantize_network(f, [3] * 4).network
    plain, tight = Charger(f, [BOX]), Charger(f, [BOX], tighten_seconds=10.0)
    x = BOX.sample(4000, np.random.default_rng(seed))
    for k, z in enumerate(f.preactivations(x)[:-1]):
        (lo0, hi0), (lo1, hi1) = plain._pairs[0].root[k], tight._pairs[0].root[k]
        assert np.all(lo0 <= lo1) and np.all(hi1 <= hi0)
        assert np.all(lo1 <= z.min(axis=0)) and np.all(z.max(axis=0) <= hi1)
    exact = max_output_difference(f, g, BOX).value
    assert exact <= tight.proven(g) + 1e-9
    assert tight.proven(g) <= plain.proven(g) + 1e-9


def test_lp_tightening_can_make_the_difference_bound_strictly_tighter():
    """Over a few random ``2-6r-6r-6r-2`` networks, LP tightening of f's bounds lowers the
    proven bound of a 3-bit copy at least once (the untightened charger is the old one)."""
    gains = []
    for seed in range(8):
        f = _net(seed, (2, 6, 6, 6, 2))
        g = quantize_network(f, [3] * 4).network
        gains.append(
            Charger(f, [BOX]).proven(g) - Charger(f, [BOX], tighten_seconds=10.0).proven(g)
        )
    assert max(gains) > 1e-6


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bits", [4, 2])
def test_joint_lp_bound_is_never_below_the_exact_max_nor_above_the_symbolic(seed, bits):
    """``2-5r-4r-2``: the joint LP of f and its quantised copy
    (:mod:`exactcomp.verify.difflp`) bounds ``max |f - g|`` between the oracle's exact value
    and the symbolic bound."""
    f = _net(seed)
    g = quantize_network(f, [bits] * 3).network
    charger = Charger(f, [BOX], tighten_seconds=5.0)
    exact = max_output_difference(f, g, BOX).value
    lp = charger.proven(g, lp_seconds=30.0)
    assert exact <= lp + 1e-9
    assert lp <= charger.proven(g) + 1e-12


def test_joint_lp_is_strictly_tighter_on_a_quantised_copy():
    """Over a few ``2-6r-6r-6r-2`` networks at 3 bits, the joint LP lowers the proven bound
    of at least one (the symbolic bound alone is the old claim)."""
    gains = []
    for seed in range(4):
        f = _net(seed, (2, 6, 6, 6, 2))
        g = quantize_network(f, [3] * 4).network
        charger = Charger(f, [BOX])
        gains.append(charger.proven(g) - charger.proven(g, lp_seconds=30.0))
    assert min(gains) >= 0 and max(gains) > 1e-6


def _emptied() -> Network:
    """A compressed network whose first hidden layer was emptied: weights ``(0, 2)``, the
    next ``(2, 0)``; the constant ``relu(1) + 3 relu(-1) + 0.5 = 1.5``."""
    from exactcomp.network import Layer

    return Network(
        (
            Layer(np.zeros((0, 2)), np.zeros(0), relu=True),
            Layer(np.zeros((2, 0)), np.array([1.0, -1.0]), relu=True),
            Layer(np.array([[1.0, 3.0]]), np.array([0.5]), relu=False),
        ),
        dtype="float64",
    )


@pytest.mark.parametrize("bits", [8, 16])
def test_an_emptied_network_quantised_writes_its_constant(tmp_path, bits):
    """The quantised ONNX writer looked up ``ec_W1`` in the one-``Gemm`` graph that
    :func:`~exactcomp.io.onnx_io.build_model` writes for a network with a layer of width 0
    (a KeyError; degenerate soak seed 25). Now the file holds the constant 1.5."""
    f = _emptied()
    res = quantize(f, BOX, bits=bits)
    res.save(tmp_path / "q.onnx")  # checked against onnxruntime before the rename
    back = api.load(tmp_path / "q.onnx")
    assert np.array_equal(
        back.forward(BOX.sample(8, np.random.default_rng(0))), np.full((8, 1), 1.5)
    )
    assert max_output_difference(f, res.network, BOX).value <= res.proven


def test_float16_refuses_weights_beyond_its_range_and_the_ladder_skips_it():
    """``relu(1e5 x) * 1e-5`` on ``[0, 1]``: ``1e5`` is ``inf`` in float16 (65504 at most).
    ``--bits 16`` used to write inf and fail later with a traceback's warnings (degenerate
    soak seeds 7, 20); now it refuses by name, and ``--tol`` never proposes float16 for it
    (a finite, sound bound)."""
    f = Network.from_arrays([np.array([[1e5]]), np.array([[1e-5]])], [np.zeros(1), np.zeros(1)])
    box = Box(np.zeros(1), np.ones(1))
    with pytest.raises(InvalidOptionError, match="float16's range"):
        quantize(f, box, bits=16)
    res = quantize(f, box, tol=0.01)
    assert all(layer["action"] != "float16" for layer in res.report["layers"])
    assert np.all(np.isfinite(res.network.layers[0].weight))
    assert max_output_difference(f, res.network, box).value <= res.proven <= 0.01
