"""A ``.pt`` file is run in torch before it is written, as an ONNX file is in onnxruntime.

The network: a convolution with stride 2 and zero padding, a max pool with padding (as
ReLUs), a dense head::

    x (1x5x5) -> Conv 3x3, stride 2, pads 1 (2x3x3) r -> MaxPool 2x2, stride 1, pads 0,0,1,1
      (2x3x3, as ReLU levels) -> Gemm 2

``exactcomp compress net.onnx -o small.pt`` writes a state_dict that computes the network on
the box; a writer that puts a wrong weight in the file is caught before the rename (nothing
written); a convolution held sparse is written as its Conv2d kernel, and a sparse layer
without a structure to write it as is refused by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exactcomp import api, cli
from exactcomp.conv import ConvSpec, PoolLevel, pool_layers
from exactcomp.domain import Box
from exactcomp.errors import ExactCompError, UnsupportedModelError, VerificationError
from exactcomp.io import torch_io
from exactcomp.network import Layer, Network
from exactcomp.testing.random_conv import as_sparse

pytest.importorskip("torch")


def _conv_net() -> Network:
    rng = np.random.default_rng(3)
    spec = ConvSpec((1, 5, 5), rng.normal(size=(2, 1, 3, 3)).round(3), (2, 2), (1, 1, 1, 1))
    bias = np.array([-0.5, 0.25])
    layers = [Layer(spec.dense(), np.repeat(bias, 9), True, spec)]
    tag = PoolLevel("max", (2, 3, 3), (2, 2), (1, 1), (0, 0, 1, 1), nonneg=True)
    mats = pool_layers(tag)
    levels = len(mats) - 1
    for level, (w, b) in enumerate(mats):
        t = PoolLevel("max", (2, 3, 3), (2, 2), (1, 1), (0, 0, 1, 1), level, levels, True)
        layers.append(Layer(w, b, level < levels, t))
    width = layers[-1].out_features
    layers.append(Layer(rng.normal(size=(2, width)).round(3), rng.normal(size=2), False))
    return Network(tuple(layers), dtype="float64")


def test_compress_of_a_conv_net_to_pt_computes_the_network(tmp_path: Path, capsys) -> None:
    net = _conv_net()
    src, out = tmp_path / "net.onnx", tmp_path / "small.pt"
    api.save(net, src)
    assert cli.main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"]) == 0
    x = Box.uniform(-1.0, 1.0, 25).sample(200, np.random.default_rng(0))
    written = api.load(out)
    assert np.abs(written.forward(x) - net.forward(x)).max() <= 1e-5  # float32 file


def test_a_wrong_weight_in_the_pt_file_is_caught(tmp_path: Path, monkeypatch) -> None:
    """The module the state_dict comes from has one bias moved: the file read back differs
    from the network, so nothing is written."""
    real = torch_io.to_torch_module

    def wrong(net: Network):
        import torch

        module = real(net)
        first = next(m for m in module if getattr(m, "bias", None) is not None)
        with torch.no_grad():
            first.bias[0] += 0.5
        return module

    monkeypatch.setattr(torch_io, "to_torch_module", wrong)
    out = tmp_path / "small.pt"
    with pytest.raises(VerificationError, match="nothing was written"):
        api.save(_conv_net(), out, domain=Box.uniform(-2.0, 2.0, 25))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_float32_rounding_of_the_weights_passes(tmp_path: Path) -> None:
    """A float32 file of float64 weights holds rounded weights: within the allowance."""
    net = _conv_net()
    layers = [Layer(la.weight * (1 + 1e-9), la.bias, la.relu) for la in net.layers]
    api.save(Network(tuple(layers), dtype="float32"), tmp_path / "f32.pt")
    assert (tmp_path / "f32.pt").is_file()


@pytest.fixture
def tiny_sparse_above(monkeypatch):
    """A dense nn.Linear of more than 0 entries is 'too large' (as 23,328 x 784 is)."""
    from exactcomp.io import torch_conv

    monkeypatch.setattr(torch_conv, "SPARSE_ABOVE", 0)


def _unstructured(net: Network) -> Network:
    """``net`` with its first layer held sparse and without its convolution: no Conv2d to
    write it as, and a dense nn.Linear is what SPARSE_ABOVE rules out."""
    first = as_sparse(net).layers[0]
    return net.replace_layers([Layer(first.weight, first.bias, first.relu), *net.layers[1:]])


def test_a_sparse_convolution_is_written_as_its_kernel(tmp_path: Path) -> None:
    """A convolution held sparse (too large to hold densely) is a Conv2d in the file."""
    import torch

    net = as_sparse(_conv_net())
    api.save(net, tmp_path / "small.pt", domain=Box.uniform(-2.0, 2.0, 25))
    sd = torch.load(tmp_path / "small.pt", weights_only=True)
    assert [tuple(v.shape) for k, v in sd.items() if k.endswith("weight")] == [
        (2, 1, 3, 3),
        (2, 18),
    ]
    x = Box.uniform(-2.0, 2.0, 25).sample(50, np.random.default_rng(1))
    np.testing.assert_allclose(api.load(tmp_path / "small.pt").forward(x), net.forward(x))


def test_a_sparse_layer_without_structure_is_refused_by_name(
    tmp_path: Path, tiny_sparse_above
) -> None:
    with pytest.raises(UnsupportedModelError, match=r"layer 0 \(18 x 25\).*write \.onnx") as e:
        api.save(_unstructured(_conv_net()), tmp_path / "small.pt")
    assert isinstance(e.value, ExactCompError) and "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_compress_to_pt_refuses_a_sparse_network_before_the_analysis(
    tmp_path: Path, monkeypatch, capsys, tiny_sparse_above
) -> None:
    src, out = tmp_path / "net.onnx", tmp_path / "small.pt"
    api.save(_conv_net(), src)
    monkeypatch.setattr(api, "load", lambda *a, **k: _unstructured(_conv_net()))
    monkeypatch.setattr(api, "compress_verified", lambda *a, **k: pytest.fail("analysed"))
    assert cli.main(["compress", str(src), "--box=-1,1", "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "layer 0 (18 x 25)" in err and "write .onnx" in err
    assert not out.exists()


def test_a_small_sparse_layer_without_structure_is_written_densely(tmp_path: Path) -> None:
    net = _unstructured(_conv_net())
    api.save(net, tmp_path / "small.pt")
    x = Box.uniform(-1.0, 1.0, 25).sample(50, np.random.default_rng(2))
    np.testing.assert_allclose(api.load(tmp_path / "small.pt").forward(x), net.forward(x))
