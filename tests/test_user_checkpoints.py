"""Checkpoints written the way users write them (``scripts/user_checkpoints.py`` found these).

Each test builds a tiny checkpoint in ``tmp_path`` and checks either that it is read exactly
(against torch / onnxruntime in float64 on random points) or that it is refused in one line,
by name, with exit code 2 and no output file.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from exactcomp.errors import UnsupportedModelError  # noqa: E402
from exactcomp.io import load  # noqa: E402


def _torch_agrees(module, net, n_in: int) -> float:
    x = np.random.default_rng(0).random((30, n_in))
    with torch.no_grad():
        y = module.double()(torch.tensor(x)).numpy().reshape(30, -1)
    return float(np.abs(net.forward(x) - y).max())


@pytest.mark.parametrize(("hw", "size"), [(6, 1), (6, (2, 3)), (4, (None, 2)), (4, 4)], ids=str)
def test_adaptive_avg_pool_that_divides_is_read_exactly(hw, size) -> None:
    """Conv -> ReLU -> AdaptiveAvgPool2d(size) -> Flatten -> Linear, the classifier head
    people write; its windows are AvgPool2d(H / oh) windows when oh divides H."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Unflatten(1, (2, hw, hw)),
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(size),
        nn.Flatten(),
        nn.Linear(3 * _cells(hw, size), 2),
    ).eval()
    net = load(m)
    assert _torch_agrees(m, net, 2 * hw * hw) < 1e-12


def _cells(hw: int, size) -> int:
    size = (size, size) if isinstance(size, int) else size
    return int(np.prod([hw if s is None else s for s in size]))


def test_adaptive_avg_pool_that_does_not_divide_is_refused_by_name() -> None:
    """6x6 -> 4x4: torch's windows overlap and differ in size; refused, not approximated."""
    m = nn.Sequential(
        nn.Unflatten(1, (1, 6, 6)),
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(32, 2),
    ).eval()
    with pytest.raises(UnsupportedModelError, match="AdaptiveAvgPool2d '3' maps 6x6 to 4x4"):
        load(m)


# ----------------------------------------------------------------------------- softmax heads
def _onnx_mlp(
    path, op: str | None, opset: int, axis: int | None = None, identity: bool = False
) -> None:
    """x[N, 4] -> Gemm -> Relu -> Gemm -> (op over axis) -> (Identity) -> p[N, 3], as
    exporters write it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {k: rng.normal(size=s).astype(np.float32) for k, s in
         (("W1", (8, 4)), ("b1", (8,)), ("W2", (3, 8)), ("b2", (3,)))}  # fmt: skip
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y" if op else "p"], transB=1),
    ]
    if op:
        attrs = {} if axis is None else {"axis": axis}
        nodes.append(helper.make_node(op, ["y"], ["q" if identity else "p"], **attrs))
    if identity:
        nodes.append(helper.make_node("Identity", ["q"], ["p"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _ort(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize(
    ("op", "opset", "axis", "head"),
    [("Softmax", 13, None, "softmax"), ("Softmax", 11, None, "softmax"),
     ("Softmax", 9, 1, "softmax"), ("LogSoftmax", 13, -1, "log_softmax")],
)  # fmt: skip
def test_onnx_softmax_head_is_kept_and_written_back(tmp_path, capsys, op, opset, axis, head):
    """An exported classifier ending in Softmax: read as logits + head (as the torch readers
    do), compressed to .onnx and .pt files that compute the same probabilities. Before, the
    ONNX reader refused it, and a torch model's head was dropped from a written .onnx."""
    from exactcomp.cli import main
    from exactcomp.io import to_torch_module

    src = tmp_path / "m.onnx"
    _onnx_mlp(src, op, opset, axis)
    net = load(src)
    assert net.meta["head"] == head
    assert net.output_size == 3
    x = np.random.default_rng(1).uniform(-1, 1, (40, 4)).astype(np.float32)
    want = _ort(src, x)
    for suffix in (".onnx", ".pt"):
        out = tmp_path / f"c{suffix}"
        assert main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"]) == 0
        assert load(out).meta["head"] == head
        if suffix == ".onnx":
            got = _ort(out, x)
        else:
            got = to_torch_module(load(out))(torch.tensor(x)).detach().numpy()
        assert np.abs(got - want).max() < 1e-5, suffix
    assert main(["verify", str(src), str(tmp_path / "c.onnx"), "--box=-1,1", "--quiet"]) == 0
    capsys.readouterr()


def test_torch_softmax_head_reaches_a_written_onnx(tmp_path, capsys) -> None:
    """nn.Sequential(..., nn.Softmax(dim=1)) compressed to .onnx: the file ends in Softmax."""
    from exactcomp.cli import main

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1)).eval()
    src, out = tmp_path / "m.pt", tmp_path / "c.onnx"
    torch.save(m, src)
    argv = ["compress", str(src), "--trust-pickle", "--box=-1,1", "-o", str(out), "--quiet"]
    assert main(argv) == 0
    x = np.random.default_rng(1).uniform(-1, 1, (40, 4))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    assert np.abs(_ort(out, x) - want).max() < 1e-5
    capsys.readouterr()


def test_head_named_through_an_identity_is_kept(tmp_path) -> None:
    """Gemm -> Relu -> Gemm -> Softmax -> Identity -> p (a graph that names its output with
    an Identity, found by the ``readers`` soak, seed 0): before, the head was looked for only
    at the output, so the Softmax was met inside the graph and refused as "not affine"."""
    src = tmp_path / "m.onnx"
    _onnx_mlp(src, "Softmax", 13, identity=True)
    net = load(src)
    assert net.meta["head"] == "softmax"
    x = np.random.default_rng(1).uniform(-1, 1, (40, 4)).astype(np.float32)
    z = net.forward(x.astype(np.float64))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    assert np.abs(p / p.sum(axis=1, keepdims=True) - _ort(src, x)).max() < 1e-6


def test_softmax_over_the_batch_axis_is_refused_by_name(tmp_path) -> None:
    """Softmax(axis=0) mixes the samples of a batch: no network of one sample computes it."""
    src = tmp_path / "m.onnx"
    _onnx_mlp(src, "Softmax", 13, 0)
    with pytest.raises(UnsupportedModelError, match="Softmax over axis 0"):
        load(src)


def test_head_cannot_be_written_to_nnet(tmp_path, capsys) -> None:
    """A .nnet file has no head: writing one would compute the logits; refused, no file."""
    from exactcomp.cli import main

    src, out = tmp_path / "m.onnx", tmp_path / "c.nnet"
    _onnx_mlp(src, "Softmax", 13)
    code = main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and "softmax head, which .nnet cannot hold" in err[0]
    assert not out.exists()


def test_state_dict_with_batchnorm_says_how_to_save_the_architecture(tmp_path, capsys) -> None:
    """model.state_dict() of Linear -> BatchNorm1d -> ReLU -> Linear: the file has no layers,
    only tensors; the one-line refusal names the entry and the forms that carry layers."""
    from exactcomp.cli import main

    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    src, out = tmp_path / "m.pt", tmp_path / "c.onnx"
    torch.save(m.state_dict(), src)
    code = main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1, err
    assert "'1.running_mean'" in err[0] and "--trust-pickle" in err[0] and ".pt2" in err[0]
    assert not out.exists()
    torch.save(m, src)  # the whole module: BatchNorm1d folded into the Linear before it
    assert main(["compress", str(src), "--trust-pickle", "--box=-1,1", "-o", str(out)]) == 0
    x = np.random.default_rng(0).uniform(-1, 1, (30, 4))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    assert np.abs(_ort(out, x) - want).max() < 1e-5
    capsys.readouterr()


# ----------------------------------------------------------------------------- TorchScript
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated
@pytest.mark.parametrize("seed", ["0", "1"])
def test_torchscript_from_a_session_that_scripted_other_models_is_read(tmp_path, seed) -> None:
    """A training script that scripts a few models saves archives whose classes are mangled
    (``activation/___torch_mangle_N.py``), grouped into files and with constants ordered
    differently from what a fresh process writes (the order follows the hash seed). Before,
    a fresh ``exactcomp`` process refused such archives as "not what torch writes"; the same
    archive read in the process that wrote it passed."""
    import os
    import subprocess
    import sys

    torch.manual_seed(0)
    for dim in (0, 1):  # earlier work in the session: other ReLU and Softmax variants
        torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Softmax(dim)))
    m = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(inplace=True), nn.Dropout(0.1),
        nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1),
    ).eval()  # fmt: skip
    src, out = tmp_path / "m.pt", tmp_path / "c.onnx"
    torch.jit.save(torch.jit.script(m), src)
    env = {**os.environ, "PYTHONHASHSEED": seed}
    argv = [sys.executable, "-m", "exactcomp", "compress", str(src), "--box=-1,1", "-o", str(out)]
    run = subprocess.run([*argv, "--quiet"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    x = np.random.default_rng(0).uniform(-1, 1, (30, 4))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    assert np.abs(_ort(out, x) - want).max() < 1e-5


def test_float16_checkpoint_compressed_to_onnx_is_read_back(tmp_path, capsys) -> None:
    """A float16 state_dict compressed to .onnx: before, the file computed in FLOAT16 and
    exactcomp refused to read its own output ("computes in FLOAT16, which rounds"). Now the
    weights are stored as FLOAT16 and cast to FLOAT: the same size class, read back exactly."""
    import onnx

    from exactcomp.cli import main

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).half()
    src, out = tmp_path / "m.pt", tmp_path / "c.onnx"
    torch.save(m.state_dict(), src)
    assert main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"]) == 0
    stored = {t.data_type for t in onnx.load(str(out)).graph.initializer}
    assert stored == {onnx.TensorProto.FLOAT16}
    x = np.random.default_rng(0).uniform(-1, 1, (30, 4))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    # float64 both sides, summed in BLAS's order or torch's: a few ulps apart (5.6e-17 seen),
    # where a file computing in FLOAT16 is ~1e-3 off
    assert np.abs(load(out).forward(x) - want).max() < 1e-12
    assert np.abs(_ort(out, x) - want).max() < 1e-5
    capsys.readouterr()


# ----------------------------------------------------------------------------- sigmoid, tanh
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated
@pytest.mark.parametrize("form", ["pickle", "script"])
@pytest.mark.parametrize("head", ["Sigmoid", "Tanh"])
def test_torch_sigmoid_tanh_head_is_kept_and_written_back(tmp_path, capsys, head, form):
    """nn.Sequential(..., nn.Sigmoid()) / nn.Tanh(): read as logits + head (before: refused
    by name), compressed to .onnx and .pt files that compute what torch computes."""
    from exactcomp.cli import main
    from exactcomp.io import to_torch_module

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), getattr(nn, head)()).eval()
    src = tmp_path / "m.pt"
    torch.save(m, src) if form == "pickle" else torch.jit.save(torch.jit.script(m), src)
    net = load(src, trust_pickle=True)
    assert net.meta["head"] == head.lower() and net.output_size == 3
    x = np.random.default_rng(1).uniform(-1, 1, (40, 4))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    for suffix in (".onnx", ".pt"):
        out = tmp_path / f"c{suffix}"
        argv = ["compress", str(src), "--trust-pickle", "--box=-1,1", "-o", str(out), "--quiet"]
        assert main(argv) == 0
        back = load(out)
        assert back.meta["head"] == head.lower()
        if suffix == ".onnx":
            got = _ort(out, x)
        else:
            got = to_torch_module(back)(torch.tensor(x, dtype=torch.float32)).detach().numpy()
        assert np.abs(got - want).max() < 1e-6, suffix
    capsys.readouterr()


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_onnx_sigmoid_tanh_head_is_kept_and_written_back(tmp_path, capsys, op) -> None:
    """An ONNX graph ending in Sigmoid / Tanh (through an Identity or not): the head is kept
    and the compressed .onnx computes what onnxruntime computes on the source file."""
    from exactcomp.cli import main

    x = np.random.default_rng(1).uniform(-1, 1, (40, 4)).astype(np.float32)
    for identity in (False, True):
        src, out = tmp_path / "m.onnx", tmp_path / "c.onnx"
        _onnx_mlp(src, op, 13, identity=identity)
        assert load(src).meta["head"] == op.lower()
        assert main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"]) == 0
        assert np.abs(_ort(out, x) - _ort(src, x)).max() < 1e-6
    capsys.readouterr()


def test_sigmoid_before_the_last_layer_is_refused_by_name() -> None:
    """A Sigmoid inside the network is not a head: refused, naming the layer after it."""
    m = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 3)).eval()
    with pytest.raises(UnsupportedModelError, match="Linear '2' follows the Sigmoid '1'"):
        load(m)


def test_tolerance_with_a_sigmoid_head_bounds_the_probabilities(tmp_path, capsys) -> None:
    """``compress --tol t`` bounds the logits' difference by ``t``; through a sigmoid
    (1/4-Lipschitz) the probabilities differ by at most ``t / 4`` (exactcomp.io.heads)."""
    from exactcomp.cli import main

    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2), nn.Sigmoid()).eval()
    src, out, tol = tmp_path / "m.pt", tmp_path / "c.onnx", 0.2
    torch.save(m, src)
    argv = ["compress", str(src), "--trust-pickle", "--box=-1,1", "--tol", str(tol)]
    assert main([*argv, "-o", str(out), "--quiet"]) == 0
    x = np.random.default_rng(0).uniform(-1, 1, (2000, 2))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
        logits = m[:-1].double()(torch.tensor(x)).numpy()
    small = load(out)
    assert small.meta["head"] == "sigmoid"
    assert np.abs(small.forward(x) - logits).max() <= tol
    assert np.abs(_ort(out, x) - want).max() <= tol / 4 + 1e-6
    capsys.readouterr()


# ----------------------------------------------------------------------------- TorchScript conv
def _conv_nets() -> dict:
    def bn2(k: int) -> nn.Module:
        b = nn.BatchNorm2d(k)
        b.running_mean.uniform_(-0.5, 0.5)
        b.running_var.uniform_(0.5, 2.0)
        return b

    torch.manual_seed(0)
    u = nn.Unflatten(1, (1, 6, 6))
    return {
        "same_maxpool": nn.Sequential(u, nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3)),
        "groups_dilation": nn.Sequential(u, nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(4, 4, 3, groups=2, dilation=2), nn.ReLU(),
                                         nn.Flatten(), nn.Linear(16, 3)),
        "adaptive_softmax": nn.Sequential(u, nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                          nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1)),
        "pad_bn2d_avg_tanh": nn.Sequential(u, nn.ZeroPad2d(1), nn.Conv2d(1, 4, 3, bias=False),
                                           bn2(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                                           nn.Linear(36, 3), nn.Tanh()),
    }  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated
@pytest.mark.parametrize("form", ["script", "trace"])
@pytest.mark.parametrize("name", list(_conv_nets()))
def test_torchscript_conv_sequential_is_read_exactly(tmp_path, capsys, name, form) -> None:
    """A scripted nn.Sequential of Unflatten, Conv2d (padding 'same', groups, dilation), pads,
    BatchNorm2d, pools, AdaptiveAvgPool2d and a head: before, refused by name ("Conv2d is not
    supported in a scripted nn.Sequential") though the same module pickled was read. Now read
    as the pickled module is, and compressed to an .onnx that computes what torch computes.
    Traced, it was refused (a traced layer keeps no hyper-parameters); now read from its
    graph (``exactcomp.io.torch_graph``)."""
    from exactcomp.cli import main

    m = _conv_nets()[name].eval()
    src, out = tmp_path / "m.pt", tmp_path / "c.onnx"
    ts = torch.jit.script(m) if form == "script" else torch.jit.trace(m, torch.zeros(2, 36))
    torch.jit.save(ts, src)
    net = load(src)
    from exactcomp.io.heads import apply_head

    x = np.random.default_rng(0).random((40, 36))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    assert np.abs(apply_head(net.forward(x), net.meta.get("head")) - want).max() < 1e-12
    assert main(["compress", str(src), "--box=0,1", "-o", str(out), "--quiet"]) == 0
    assert np.abs(_ort(out, x) - want).max() < 1e-5
    capsys.readouterr()


def test_float16_fold_rounded_for_writing_is_said(tmp_path, capsys) -> None:
    """A float16 checkpoint whose active neurons are folded: the folded weights are rounded
    to float16 for writing (``--dtype input``), so the file differs from the checkpoint by
    float16 rounding (found by the readers soak, seed 1206: 7.7e-5 on outputs of 0.28) while
    the console said "max |diff| 0". Now the line says how far the stored network moved."""
    from exactcomp.cli import main

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3)).half().eval()
    with torch.no_grad():
        m[0].weight.abs_()
        m[0].bias.fill_(1.0)  # every hidden neuron active on [0.5, 1]^2: all folded
    src, out = tmp_path / "m.pt", tmp_path / "c.onnx"
    torch.save(m.state_dict(), src)
    assert main(["compress", str(src), "--box=0.5,1", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "as stored in float16" in said and "4 -> 0 neurons" in said
    x = np.random.default_rng(0).uniform(0.5, 1, (50, 2))
    with torch.no_grad():
        want = m.double()(torch.tensor(x)).numpy()
    assert 0 < np.abs(load(out).forward(x) - want).max() < 1e-2
