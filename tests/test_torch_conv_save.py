"""A convolutional network written as ``.pt`` holds ``Conv2d`` kernels, and reads back exactly.

The network, as the ``nn.Sequential`` a user would train (input ``[0, 1]^64``)::

    x (1x8x8) -> Conv2d 1->3, 3x3, stride 2, padding 1 (3x4x4) -> ReLU
      -> AvgPool2d 2, stride 1 (3x3x3) -> Conv2d 3->4, 2x2 (4x2x2) -> ReLU
      -> MaxPool2d 2 (4x1x1) -> Flatten -> Linear 4->2

Channel 2 of the first convolution and channel 1 of the second have kernels ``<= 0`` and
bias ``-0.1``: on the box they are never active, so compression removes them whole (and the
analysis proves a second channel of the second convolution inactive). The compressed network
written as ``.pt`` keeps 4-D kernels, is smaller than the same network written densely, and
computes the network in torch (float64) at the box's corners, faces and samples; reading the
file rebuilds the module (``to_torch_module(load(...))``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exactcomp import api, cli
from exactcomp.domain import Box
from exactcomp.errors import ExactCompError, InputFileError, UnsupportedModelError
from exactcomp.io import larger_than_input, to_torch_module
from exactcomp.io.onnx_check import probe_points
from exactcomp.io.torch_io import module_to_network
from exactcomp.network import Layer

torch = pytest.importorskip("torch")
nn = torch.nn

BOX = Box.uniform(0.0, 1.0, 64)
RNG = np.random.default_rng(0)


def _module() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2, stride=1),
        nn.Conv2d(3, 4, 2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).double()
    with torch.no_grad():
        for conv, channel in ((m[1], 2), (m[4], 1)):
            conv.weight[channel] = -conv.weight[channel].abs()
            conv.bias[channel] = -0.1
    return m.eval()


def _run(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.double()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def compressed():
    net = module_to_network(_module())
    return net, api.compress(net, BOX)


def test_the_module_is_read_with_its_structure():
    net = module_to_network(_module())
    kinds = [type(la.structure).__name__ for la in net.layers]
    assert kinds == ["ConvSpec", "PoolLevel", "ConvSpec", *["PoolLevel"] * 3, "NoneType"]
    x = probe_points(BOX, 32, RNG)
    np.testing.assert_allclose(net.forward(x), _run(_module(), x), rtol=1e-12, atol=1e-12)


def test_compressed_conv_net_is_written_as_conv2d_and_smaller(tmp_path: Path, compressed):
    net, result = compressed
    assert result.report["structure"]["written"] == "channels"
    small = result.network
    out, dense = tmp_path / "small.pt", tmp_path / "dense.pt"
    api.save(small, out, domain=BOX)
    flat = small.replace_layers([Layer(la.weight, la.bias, la.relu) for la in small.layers])
    api.save(flat, dense, domain=BOX)
    sd = torch.load(out, weights_only=True)
    shapes = [tuple(v.shape) for k, v in sd.items() if k.endswith("weight")]
    assert shapes == [(2, 1, 3, 3), (2, 2, 2, 2), (2, 2)]  # channels 3 -> 2 and 4 -> 2
    assert out.stat().st_size < dense.stat().st_size
    assert sum(v.numel() for v in sd.values()) == small.num_parameters < net.num_parameters
    # read back: the module is rebuilt, in torch and as a network, equal on the box
    module = to_torch_module(api.load(out))
    assert sum(isinstance(m, nn.Conv2d) for m in module) == 2
    x = probe_points(BOX, 64, RNG)
    want = net.forward(x)
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(api.load(out).forward(x), want, rtol=1e-10, atol=1e-10)


def test_the_docstring_recipe_rebuilds_the_module(tmp_path: Path, compressed):
    """The recipe of ``save_torch``'s docstring, run as written."""
    _, result = compressed
    api.save(result.network, tmp_path / "small.pt")
    sd = torch.load(tmp_path / "small.pt", weights_only=True)
    modules = []
    for spec in sd._metadata["exactcomp"]["modules"]:
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "kind"}
        modules.append(getattr(nn, spec["kind"])(**args))
    model = nn.Sequential(*modules).to(next(iter(sd.values())).dtype)
    model.load_state_dict(sd)
    x = probe_points(BOX, 16, RNG)
    np.testing.assert_allclose(_run(model, x), result.network.forward(x), rtol=1e-10, atol=1e-12)


def test_a_pt_without_the_record_is_still_read_as_an_mlp(tmp_path: Path):
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    torch.save(mlp.state_dict(), tmp_path / "mlp.pt")
    assert api.load(tmp_path / "mlp.pt").describe() == "3-4r-2"


def test_a_damaged_record_is_refused_in_one_line(tmp_path: Path, compressed):
    _, result = compressed
    api.save(result.network, tmp_path / "small.pt")
    sd = torch.load(tmp_path / "small.pt", weights_only=True)
    sd._metadata["exactcomp"]["modules"][1]["kind"] = "Conv3d"
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(InputFileError, match="module 1 of the exactcomp module record") as e:
        api.load(tmp_path / "bad.pt")
    assert "\n" not in str(e.value)
    sd._metadata["exactcomp"]["modules"][1]["kind"] = "Conv2d"
    sd[next(iter(sd))] = torch.zeros(5, 1, 3, 3, dtype=torch.float64)
    torch.save(sd, tmp_path / "bad2.pt")
    with pytest.raises(InputFileError, match="do not fit its exactcomp module record"):
        api.load(tmp_path / "bad2.pt")


def test_compress_cli_from_conv_onnx_to_pt(tmp_path: Path, capsys):
    """``exactcomp compress net.onnx -o small.pt``: Conv2d kernels in the file, and the file
    computes the ONNX network (onnxruntime) at the corners and samples of the box."""
    import onnx
    import onnxruntime as ort

    src, out = tmp_path / "net.onnx", tmp_path / "small.pt"
    api.save(module_to_network(_module().float()), src)  # float32: ONNX Conv nodes
    assert "Conv" in {n.op_type for n in onnx.load(str(src)).graph.node}
    args = ["compress", str(src), "--box", "0,1", "-o", str(out), "--quiet"]
    assert cli.main(args) == 0
    sd = torch.load(out, weights_only=True)
    assert [v.dim() for k, v in sd.items() if k.endswith("weight")] == [4, 4, 2]
    x = probe_points(BOX, 64, RNG)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    feed = x.astype(np.float32).reshape(len(x), *sess.get_inputs()[0].shape[1:])
    want = sess.run(None, {sess.get_inputs()[0].name: feed})[0].reshape(len(x), -1)
    got = _run(to_torch_module(api.load(out)), x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert "warning" not in capsys.readouterr().out


def test_a_pt_compressed_from_a_pt_is_never_larger(tmp_path: Path, capsys):
    """Input and output of the same structure: the output is no larger; an input stored more
    compactly (float16, written back in float64) is said to be larger, in the report too."""
    src, out, report = tmp_path / "net.pt", tmp_path / "small.pt", tmp_path / "r.json"
    api.save(module_to_network(_module().float()), src)
    assert cli.main(["compress", str(src), "--box", "0,1", "-o", str(out), "--quiet"]) == 0
    assert out.stat().st_size <= src.stat().st_size
    assert larger_than_input(out, src) is None and "warning" not in capsys.readouterr().out
    net16 = module_to_network(_module().half())  # a float16 checkpoint
    assert net16.dtype == "float16"
    api.save(net16, src)
    args = ["compress", str(src), "--box", "0,1", "-o", str(out), "--dtype", "float64"]
    assert cli.main([*args, "--report", str(report), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "warning: the file written" in text and "larger than the input net.pt" in text
    assert "larger than the input" in report.read_text()


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ([nn.Conv2d(1, 2, 3)], r"Conv2d '0' acts on a flat tensor.*nn.Unflatten"),
        ([nn.Unflatten(1, (1, 4, 4)), nn.ZeroPad2d(1), nn.ReLU()], r"'1' \(a pad\) is followed"),
        (
            [nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 1, 2, padding_mode="reflect", padding=1)],
            "padding_mode='reflect'",
        ),  # fmt: skip
        ([nn.Unflatten(1, (1, 5, 5)), nn.MaxPool2d(2, ceil_mode=True)], "partial window"),
        ([nn.Unflatten(1, (1, 4, 4)), nn.Linear(4, 2)], r"add nn.Flatten\(\) before it"),
        (
            [nn.Unflatten(1, (1, 4, 4)), nn.ConstantPad2d(1, 0.5), nn.Conv2d(1, 1, 2)],
            "pads with 0.5",
        ),
        ([nn.Unflatten(1, (1, 4, 4)), nn.Conv1d(1, 1, 2)], r"unsupported layer '1' \(Conv1d\)"),
    ],
)
def test_spatial_layers_outside_the_reader_are_refused_by_name(layers, match):
    with pytest.raises(UnsupportedModelError, match=match) as e:
        module_to_network(nn.Sequential(*layers))
    assert isinstance(e.value, ExactCompError) and "\n" not in str(e.value)


def test_pads_batchnorm_and_same_padding_are_read_exactly():
    """Asymmetric ZeroPad2d into a conv, BatchNorm2d folded, a -inf pad into a max pool,
    'same' padding, an average pool not counting its padding, ReLU after a pool."""
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Unflatten(1, (2, 7, 6)),
        nn.ZeroPad2d((1, 0, 2, 1)),
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ConstantPad2d((0, 1, 1, 0), float("-inf")),
        nn.MaxPool2d(2, 1),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding="same", dilation=2, groups=1),
        nn.ReLU(),
        nn.AvgPool2d(2, 2, padding=1, count_include_pad=False),
        nn.Flatten(),
        nn.Linear(27, 2),
    ).double()
    with torch.no_grad():
        m[3].running_mean.normal_()
        m[3].running_var.uniform_(0.5, 2.0)
    m.eval()
    net = module_to_network(m)
    box = Box.uniform(-1.0, 1.0, 84)
    x = probe_points(box, 32, RNG)
    np.testing.assert_allclose(net.forward(x), _run(m, x), rtol=1e-10, atol=1e-12)
    back = module_to_network(to_torch_module(net))  # written and read: the same layers
    assert [la.structure for la in back.layers][-2:] == [la.structure for la in net.layers][-2:]
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_a_channel_goes_through_a_max_pool_then_an_average_pool(tmp_path: Path):
    """``Conv -> ReLU -> MaxPool2d -> AvgPool2d -> Linear``: channel 2 is never active on
    the box, so its units go from the conv and from both pools, which stay pools (before,
    the average pool after a max pool lost its structure and the rewrite was not chosen)."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Unflatten(1, (1, 6, 6)),
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3, 2),
    ).double()
    with torch.no_grad():
        m[1].weight[2] = -m[1].weight[2].abs()
        m[1].bias[2] = -0.1
    net, box = module_to_network(m.eval()), Box.uniform(0.0, 1.0, 36)
    result = api.compress(net, box)
    assert result.report["structure"]["written"] == "channels"
    small = result.network
    assert all(la.structure is not None for la in small.layers[:-1])
    api.save(small, tmp_path / "small.pt", domain=box)
    module = to_torch_module(api.load(tmp_path / "small.pt"))
    assert [type(x).__name__ for x in module][1:5] == ["Conv2d", "ReLU", "MaxPool2d", "AvgPool2d"]
    x = probe_points(box, 64, RNG)
    np.testing.assert_allclose(_run(module, x), net.forward(x), rtol=1e-10, atol=1e-12)
