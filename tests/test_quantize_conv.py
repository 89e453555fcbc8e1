"""The lossy commands on convolutional networks, dense and held sparse (issue 15, issue 19's rule).

Cases: small random conv networks (:func:`~exactcomp.testing.random_conv.random_conv_case`:
one or two convolutions, max or average pools, a dense head), each also held sparse
(:func:`~exactcomp.testing.random_conv.as_sparse`, as the reader holds Convnet_avgpool's
23,328 x 784 convolution), and a two-input convolution for a dense grid::

    x (1 x 1 x 2) -> Conv 3 x (1x1) -> Relu -> Flatten -> Gemm 2

Ground truth: the exact ``max |f - g|`` over the box (joint regions, one LP each:
:func:`~exactcomp.testing.oracle.max_output_difference`) must lie within the proven bound;
the written file, read back by our reader, is the proven network entry for entry, and
onnxruntime computes it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from exactcomp import api
from exactcomp.bounds.interval import interval_layer
from exactcomp.conv import ConvSpec
from exactcomp.domain import Box
from exactcomp.io import load
from exactcomp.io.vnnlib import read_vnnlib
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import grid_points, max_output_difference
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.verify.diffinterval import interval_difference


def _same_matrix(a, b) -> bool:
    a = a.toarray() if hasattr(a, "toarray") else a
    b = b.toarray() if hasattr(b, "toarray") else b
    return bool(np.array_equal(a, b))


def test_interval_layer_is_the_same_on_a_sparse_layer():
    from scipy import sparse

    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 5)) * (rng.random((6, 5)) < 0.5)
    b = rng.normal(size=6)
    lo, hi = -rng.random(5), rng.random(5)
    dense = interval_layer(Layer(w, b, True), lo, hi)
    held = interval_layer(Layer(sparse.csr_array(w), b, True), lo, hi)
    assert all(np.array_equal(x, y) for x, y in zip(dense, held, strict=True))


def test_interval_difference_contains_the_grid_maximum():
    """Random 2-input pairs: the differential interval bound holds on a 201 x 201 grid."""
    rng = np.random.default_rng(1)
    for _ in range(40):
        shapes = [(4, 2), (3, 4), (2, 3)]
        ws = [rng.normal(size=s) for s in shapes]
        bs = [rng.normal(size=s[0]) for s in shapes]
        f = Network.from_arrays(ws, bs)
        g = Network.from_arrays(
            [w + 0.1 * rng.normal(size=w.shape) for w in ws],
            [b + 0.1 * rng.normal(size=b.shape) for b in bs],
        )
        box = Box(-rng.random(2), rng.random(2))
        x = grid_points(box, 201)
        seen = np.abs(f(x) - g(x)).max(axis=0)
        assert np.all(seen <= interval_difference(f, g, box))


def _two_input_conv() -> Network:
    spec = ConvSpec((1, 1, 2), np.array([[[[0.7]]], [[[-1.3]]], [[[0.45]]]]))
    bias = np.repeat([0.1, 0.2, -0.05], 2)
    head = np.array([[0.3, -0.8, 1.1, 0.5, -0.2, 0.9], [-1.0, 0.25, 0.6, -0.4, 0.75, 0.1]])
    return Network((Layer(spec.dense(), bias, True, spec), Layer(head, [0.0, 0.1], False)))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bits", [8, 4, 2, 16])
def test_quantized_conv_keeps_its_kernel_structure_and_bound(bits, sparse):
    """Two inputs: the bound holds on the grid and the exact maximum; the quantised layer is
    a convolution of the kernel's grid (per output channel), held as the original was."""
    net = _two_input_conv()
    net = as_sparse(net) if sparse else net
    box = Box(np.array([-1.0, -0.5]), np.array([1.0, 1.5]))
    res = api.quantize(net, box, bits=bits)
    layer = res.network.layers[0]
    assert isinstance(layer.structure, ConvSpec) and layer.sparse == sparse
    grid = res.grids[0]
    assert grid.q.shape == (3, 1, 1, 1)
    assert np.array_equal(layer.structure.kernel, grid.dequantized)
    assert _same_matrix(layer.weight, layer.structure.dense())
    exact = max_output_difference(net, res.network, box).value
    x = grid_points(box, 201)
    assert np.abs(net(x) - res.network(x)).max() <= exact + 1e-12
    assert exact <= res.proven


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sparse", [False, True])
def test_quantize_random_conv_networks_within_the_exact_maximum(seed, sparse):
    case = random_conv_case(seed)
    net = as_sparse(case.network) if sparse else case.network
    bits = (8, 4, 2)[seed % 3]
    res = api.quantize(net, case.box, bits=bits, split_seconds=1.0)
    exact = max_output_difference(case.network, res.network, case.box).value
    assert exact <= res.proven + 1e-12
    assert res.sampled <= exact + 1e-12
    # the layers quantised are the exact compression's (seed 4: every channel of the first
    # convolution inactive, an empty layer; held sparse, not quantisable: f as it is)
    for old, new in zip(res.reference.layers, res.network.layers, strict=True):
        assert type(old.structure) is type(new.structure)  # noqa: E721 - kept: conv, pool, none
        assert old.sparse == new.sparse


@pytest.mark.parametrize("sparse", [False, True])
def test_quantize_tol_on_conv_networks(sparse):
    case = random_conv_case(2)
    net = as_sparse(case.network) if sparse else case.network
    res = api.quantize(net, case.box, tol=0.05, lp_seconds=2.0)
    assert res.proven <= 0.05
    assert max_output_difference(case.network, res.network, case.box).value <= res.proven
    assert {row["action"] for row in res.report["layers"]} >= {"pool"}


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_written_conv_file_is_the_proven_network(tmp_path, bits):
    """The .onnx holds integer kernels through DequantizeLinear into Conv; read back, it is
    the proven network entry for entry; onnxruntime computes it. (A file this tiny is not
    smaller: its scales and nodes outweigh the kernel bytes saved; see the shipped one.)"""
    case = random_conv_case(2)
    src = tmp_path / "in.onnx"
    api.save(Network(case.network.layers, dtype="float32"), src)  # float32: Conv, not Gemm
    net = load(src)
    res = api.quantize(net, case.box, bits=bits)
    out = tmp_path / "q.onnx"
    # the quantised file itself: the command writes the float network it started from
    # instead, smaller here (tests/test_float_candidate.py)
    dataclasses.replace(res, alternative=None).save(out, inputs=[src])
    res.save(tmp_path / "written.onnx", inputs=[src])
    assert (tmp_path / "written.onnx").stat().st_size <= out.stat().st_size
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert {"Conv", "DequantizeLinear"} <= set(ops) and {"MaxPool", "AveragePool"} & set(ops)
    back = load(out)
    for a, b in zip(back.layers, res.network.layers, strict=True):
        assert _same_matrix(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert type(a.structure) is type(b.structure)  # noqa: E721
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = case.box.lower + (case.box.upper - case.box.lower) * np.random.default_rng(0).random(
        (64, case.box.dim)
    )
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else -1 for d in inp.shape]
    y = sess.run(None, {inp.name: x.reshape([len(x), *shape[1:]]).astype(np.float32)})[0]
    want = res.network(x)
    assert np.allclose(y.reshape(len(x), -1), want, rtol=1e-4, atol=1e-4)


def test_shipped_conv_network_written_smaller_at_8_bits(tmp_path):
    """marabou_conv_mp1 (18,784 bytes) was written as 543,233 bytes of dense matrices."""
    src = "models/real/conv/marabou_conv_mp1.onnx"
    dom = "models/real/conv/marabou_conv_mp1_box_0.02.vnnlib"
    boxes = list(read_vnnlib(dom, 192).boxes)
    res = api.quantize(src, boxes, bits=8, tighten_seconds=0.0, lp_seconds=0.0)
    out = tmp_path / "q.onnx"
    res.save(out, inputs=[src])
    assert out.stat().st_size < 18784 / 2
    assert res.sampled <= res.proven
    back = load(out)
    for a, b in zip(back.layers, res.network.layers, strict=True):
        assert _same_matrix(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_written_conv_pt_holds_the_dequantised_kernels(tmp_path):
    import torch

    case = random_conv_case(1)
    res = api.quantize(case.network, case.box, bits=4)
    out = tmp_path / "q.pt"
    res.save(out)
    state = torch.load(str(out), weights_only=True)
    kernels = [v for v in state.values() if hasattr(v, "ndim") and v.ndim == 4]
    want = [la.structure.kernel for la in res.network.layers if isinstance(la.structure, ConvSpec)]
    assert len(kernels) == len(want)
    for k, w in zip(kernels, want, strict=True):
        assert np.array_equal(k.double().numpy(), w)
    back = load(out)
    for a, b in zip(back.layers, res.network.layers, strict=True):
        assert _same_matrix(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_sparse_network_quantize_through_the_cli(tmp_path, capsys):
    """The crash of issue 15 (a sparse conv layer in the interval bounds): a file read with
    its conv and pool held sparse, quantised end to end by the command line; and
    ``compress --tol`` on it, its claim at or above the exact max of the file it wrote."""
    from exactcomp import cli
    from exactcomp.io import onnx_handlers, onnx_pool

    case = random_conv_case(1)
    src = tmp_path / "in.onnx"
    api.save(Network(case.network.layers, dtype="float32"), src)
    box = tmp_path / "box.npy"
    np.save(box, np.stack([case.box.lower, case.box.upper]))
    mp = pytest.MonkeyPatch()
    mp.setattr(onnx_handlers, "SPARSE_ABOVE", 0)
    mp.setattr(onnx_pool, "SPARSE_ABOVE", 0)
    try:
        assert any(la.sparse for la in load(src).layers)
        for bits in ("8", "2"):
            out = tmp_path / f"q{bits}.onnx"
            rc = cli.main(["quantize", str(src), "--box-file", str(box), "--bits", bits,
                           "-o", str(out), "--quiet"])  # fmt: skip
            assert rc == 0 and out.exists()  # tiny: not smaller (see the shipped one)
        out = tmp_path / "c.onnx"  # compress --tol works too (issue 15: it refused)
        rc = cli.main(["compress", str(src), "--box-file", str(box), "--tol", "0.1",
                       "-o", str(out), "--report", str(tmp_path / "c.json"),
                       "--quiet"])  # fmt: skip
        assert rc == 0 and out.exists()
        proven = json.loads((tmp_path / "c.json").read_text())["proven_max_abs_diff"]
        back = load(out)
        assert any(la.sparse for la in back.layers)  # still held sparse as read
        exact = max_output_difference(load(src), back, case.box).value  # the float32 file
        assert proven <= 0.1 and exact <= proven + 1e-9
    finally:
        mp.undo()


def test_restore_structure_only_where_the_layer_is_still_exactly_a_convolution():
    from exactcomp.rewrite.kernels import restore_structure

    f = random_conv_case(3).network  # conv, 3 max-pool levels, dense head
    plain = f.replace_layers([Layer(la.weight, la.bias, la.relu) for la in f.layers])
    back = restore_structure(f, plain)
    assert [type(a.structure) for a in back.layers] == [type(a.structure) for a in f.layers]
    assert np.array_equal(back.layers[0].structure.kernel, f.layers[0].structure.kernel)
    w = np.array(f.layers[0].weight)
    w[0, np.flatnonzero(w[0])[0]] += 0.5  # one tap changed: no longer a convolution
    changed = plain.replace_layers([Layer(w, f.layers[0].bias, True), *plain.layers[1:]])
    assert restore_structure(f, changed).layers[0].structure is None
    res = api.compress_lossy(Network(f.layers, dtype="float32"), random_conv_case(3).box, 0.1,
                             time_limit=5.0)  # fmt: skip
    assert isinstance(res.network.layers[0].structure, ConvSpec)


def test_lossy_candidates_never_edit_a_convolution_or_what_feeds_one():
    """``compress --tol`` on marabou_conv_mp1 wrote 255,840 bytes from 18,784: magnitude
    pruning zeroed taps of the convolution's matrix, which was then written as a dense one.
    No candidate edits a layer with a structure, nor removes a neuron feeding one."""
    from exactcomp.bounds.interval import interval_bounds
    from exactcomp.rewrite.edits import candidates

    case = random_conv_case(3)
    f = case.network
    ranges = [(np.maximum(lo, 0.0), np.maximum(hi, 0.0)) for lo, hi in interval_bounds(f, case.box)]
    cands = candidates(f, ranges, [case.box])
    assert cands  # the dense head still has its edits
    for c in cands:
        k = c.index[0]
        assert f.layers[k].structure is None
        if c.kind == "neuron":
            assert f.layers[k + 1].structure is None


def test_compress_tol_on_a_shipped_conv_network_is_written_smaller(tmp_path):
    src = "models/real/conv/marabou_conv_mp1.onnx"
    box = read_vnnlib("models/real/conv/marabou_conv_mp1_box_0.02.vnnlib", 192).boxes[0]
    res = api.compress_lossy(src, [box], 0.01, time_limit=5.0)
    out = tmp_path / "c.onnx"
    res.save(out, inputs=[src])
    assert out.stat().st_size < 18784
    assert isinstance(load(out).layers[0].structure, ConvSpec)
    assert res.proven <= 0.01
    assert res.sampled <= res.proven
