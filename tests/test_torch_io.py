"""PyTorch checkpoints <-> the IR: every accepted form, round trips, and every refusal."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import exactcomp.io as eio
from exactcomp.errors import (
    InputFileError,
    InvalidNetworkError,
    OutputPathError,
    UnsupportedModelError,
)
from exactcomp.io.torch_io import load_torch, save_torch, to_torch_module
from exactcomp.io.torch_state import STATE_DICT_NOTE
from exactcomp.network import Layer, Network


def _mlp(widths=(3, 5, 4, 2), dtype=torch.float32, seed=0) -> nn.Sequential:
    """Linear(3,5) ReLU Linear(5,4) ReLU Linear(4,2): keys 0, 2, 4."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i in range(len(widths) - 1):
        mods.append(nn.Linear(widths[i], widths[i + 1], dtype=dtype))
        if i < len(widths) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods).eval()


def _torch_out(module: nn.Module, x: np.ndarray) -> np.ndarray:
    dtype = next(module.parameters()).dtype
    with torch.no_grad():
        return module(torch.from_numpy(x).to(dtype)).to(torch.float64).numpy()


def _x(n_in: int, n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (n, n_in))


def _random_net(widths, dtype="float64", seed=0, relu_last=False) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    bs = [rng.normal(size=widths[i + 1]) for i in range(len(widths) - 1)]
    return Network.from_arrays(ws, bs, relu_last=relu_last, dtype=dtype)


# --------------------------------------------------------------------------- accepted forms
def test_state_dict_file_matches_the_module(tmp_path: Path) -> None:
    model = _mlp()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    net = load_torch(tmp_path / "m.pt")
    assert net.describe() == "3-5r-4r-2"
    assert net.dtype == "float32" and net.meta["format"] == "torch"
    assert net.meta["notes"] == (STATE_DICT_NOTE,)
    x = _x(3)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


def test_saved_key_order_is_kept_not_string_sorted(tmp_path: Path) -> None:
    """``layers.10`` sorts before ``layers.2`` as a string; the saved order must win."""
    rng = np.random.default_rng(0)
    w_first, w_second = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    sd = OrderedDict(
        [
            ("layers.2.weight", torch.tensor(w_first)),
            ("layers.2.bias", torch.zeros(4, dtype=torch.float64)),
            ("layers.10.weight", torch.tensor(w_second)),
            ("layers.10.bias", torch.ones(2, dtype=torch.float64)),
        ]
    )
    torch.save(sd, tmp_path / "m.pt")
    net = load_torch(tmp_path / "m.pt")
    np.testing.assert_array_equal(net.layers[0].weight, w_first)
    np.testing.assert_array_equal(net.layers[1].weight, w_second)
    assert [la.relu for la in net.layers] == [True, False]
    assert net.dtype == "float64"


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_checkpoint_wrappers(tmp_path: Path, key: str) -> None:
    model = _mlp()
    ckpt = {key: model.state_dict(), "epoch": 7, "optimizer_state_dict": {"lr": 0.1}}
    torch.save(ckpt, tmp_path / "ckpt.pth")
    net = eio.load(tmp_path / "ckpt.pth")
    x = _x(3)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), _mlp(), nn.Identity(), nn.Dropout(0.2))
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(InputFileError, match="--trust-pickle") as info:
        load_torch(tmp_path / "whole.pt")
    assert "pickled module" in str(info.value) and "\n" not in str(info.value)
    net = load_torch(tmp_path / "whole.pt", trust_pickle=True)
    x = _x(3)
    np.testing.assert_allclose(net.forward(x), _torch_out(model.eval(), x), rtol=1e-5, atol=1e-6)


def test_in_memory_module_nested_and_bias_free() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(inplace=True)),
        nn.Dropout(0.5),
        nn.Sequential(nn.Linear(4, 2)),
    ).eval()
    net = eio.load(model)
    assert net.describe() == "3-4r-2"
    np.testing.assert_array_equal(net.layers[0].bias, np.zeros(4))
    x = _x(3)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


def test_bias_free_state_dict(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    net = load_torch(tmp_path / "m.pt")
    assert all(not la.bias.any() for la in net.layers)


def test_module_dtype_is_remembered() -> None:
    assert load_torch(_mlp(dtype=torch.float64)).dtype == "float64"
    assert load_torch(_mlp(dtype=torch.float16)).dtype == "float16"


def test_mixed_dtypes_take_the_widest() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, dtype=torch.float64))
    assert load_torch(model).dtype == "float64"


# --------------------------------------------------------------------------- round trips
@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    dtype=st.sampled_from(["float32", "float64"]),
    relu_last=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_save_load_round_trip(tmp_path_factory, widths, dtype, relu_last, seed) -> None:
    net = _random_net(widths, dtype, seed, relu_last)
    path = tmp_path_factory.mktemp("rt") / "net.pt"
    eio.save(net, path)
    back = eio.load(path)
    assert back.dtype == dtype
    assert [la.relu for la in back.layers] == [la.relu for la in net.layers]
    x = _x(widths[0])
    rtol = 1e-12 if dtype == "float64" else 1e-5
    scale = 1 + np.abs(net.forward(x)).max()
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=rtol, atol=rtol * scale)
    for a, b in zip(net.layers, back.layers, strict=True):
        want = a.weight.astype(dtype).astype(np.float64)
        np.testing.assert_array_equal(b.weight, want)  # exactly the rounded weights


def test_to_torch_module_layout_and_function() -> None:
    net = _random_net((3, 5, 4, 2), "float64")
    module = to_torch_module(net)
    assert [type(m).__name__ for m in module] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert list(module.state_dict()) == [
        "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"
    ]  # fmt: skip
    assert module[0].weight.dtype == torch.float64
    x = _x(3)
    np.testing.assert_allclose(_torch_out(module, x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_trailing_relu_and_affine_pairs_survive_a_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    layers = (
        Layer(rng.normal(size=(4, 3)), rng.normal(size=4), relu=False),
        Layer(rng.normal(size=(4, 4)), rng.normal(size=4), relu=True),
        Layer(rng.normal(size=(2, 4)), rng.normal(size=2), relu=True),
    )
    net = Network(layers, dtype="float64")
    module = to_torch_module(net)
    assert [type(m).__name__ for m in module] == ["Linear", "Linear", "ReLU", "Linear", "ReLU"]
    eio.save(net, tmp_path / "n.pt")
    back = eio.load(tmp_path / "n.pt")
    assert [la.relu for la in back.layers] == [False, True, True]
    x = _x(3)
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_docstring_recipe_loads_into_a_plain_sequential(tmp_path: Path) -> None:
    net = _random_net((6, 7, 5, 3), "float32")
    save_torch(net, tmp_path / "small.pt")
    sd = torch.load(tmp_path / "small.pt", weights_only=True)
    weights = [v for k, v in sd.items() if k.endswith(".weight")]
    modules: list[nn.Module] = []
    for i, w in enumerate(weights):
        modules.append(nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype))
        if i < len(weights) - 1:
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules)
    model.load_state_dict(sd)
    x = _x(6)
    np.testing.assert_allclose(_torch_out(model, x), net.forward(x), rtol=1e-5, atol=1e-5)


def test_zero_width_layer_is_handled(tmp_path: Path) -> None:
    layers = (
        Layer(np.zeros((0, 3)), np.zeros(0), relu=True),
        Layer(np.zeros((2, 0)), np.array([1.5, -2.0]), relu=False),
    )
    net = Network(layers, dtype="float32")
    eio.save(net, tmp_path / "z.pt")
    back = eio.load(tmp_path / "z.pt")
    assert back.describe() == "3-0r-2"
    np.testing.assert_array_equal(back.forward(_x(3, 4)), np.tile([1.5, -2.0], (4, 1)))


# --------------------------------------------------------------------------- refusals
def test_unknown_layer_is_named() -> None:
    with pytest.raises(UnsupportedModelError, match="GELU"):
        load_torch(nn.Sequential(nn.Linear(3, 2), nn.GELU()))


def test_unknown_layer_in_a_pickled_module_is_named(tmp_path: Path) -> None:
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), tmp_path / "c.pt")
    with pytest.raises(UnsupportedModelError, match="Conv2d"):
        load_torch(tmp_path / "c.pt", trust_pickle=True)


def test_conv_state_dict_is_unsupported(tmp_path: Path) -> None:
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3)).state_dict(), tmp_path / "c.pt")
    with pytest.raises(UnsupportedModelError, match="'0'.*4-D"):
        load_torch(tmp_path / "c.pt")


def test_batchnorm_state_dict_is_unsupported(tmp_path: Path) -> None:
    sd = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).state_dict()
    torch.save(sd, tmp_path / "bn.pt")
    with pytest.raises(UnsupportedModelError, match="1"):
        load_torch(tmp_path / "bn.pt")


def test_custom_module_class_is_refused_with_advice() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 2))

        def forward(self, x):
            return torch.sigmoid(self.body(x))

    with pytest.raises(UnsupportedModelError, match=r"custom forward.*torch\.export"):
        load_torch(Net())


def test_sequential_subclass_with_its_own_forward_is_refused() -> None:
    class Scaled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(UnsupportedModelError, match="Scaled"):
        load_torch(nn.Sequential(Scaled(nn.Linear(3, 2))))


def test_relu_before_any_linear_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="ReLU"):
        load_torch(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights(tmp_path: Path, bad: float) -> None:
    sd = _mlp().state_dict()
    sd["2.bias"][1] = bad
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(InvalidNetworkError, match="NaN or inf"):
        load_torch(tmp_path / "nan.pt")


def test_layer_sizes_that_do_not_chain(tmp_path: Path) -> None:
    sd = _mlp().state_dict()
    sd["2.weight"] = torch.zeros(4, 7)
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(InvalidNetworkError, match="inputs"):
        load_torch(tmp_path / "m.pt")


def test_bias_of_the_wrong_length(tmp_path: Path) -> None:
    sd = _mlp().state_dict()
    sd["0.bias"] = torch.zeros(9)
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(InvalidNetworkError, match="bias"):
        load_torch(tmp_path / "m.pt")


@pytest.mark.parametrize(
    "content", [b"", b"hello, this is a text file\n", bytes(range(256)) * 8, b"PK\x03\x04junk"]
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match="not a PyTorch checkpoint") as info:
        load_torch(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("obj", [torch.zeros(3), {"epoch": 3}, [1, 2], {}, {"model": {"epoch": 1}}])
def test_checkpoint_without_a_model(tmp_path: Path, obj) -> None:
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(InputFileError, match="not a model"):
        load_torch(tmp_path / "x.pt")


def test_legacy_serialisation_is_read(tmp_path: Path) -> None:
    torch.save(_mlp().state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert load_torch(tmp_path / "old.pt").describe() == "3-5r-4r-2"


def test_torchscript_archive_of_a_sequential_is_read(tmp_path: Path) -> None:
    model = _mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(model), tmp_path / "ts.pt")
    net = load_torch(tmp_path / "ts.pt")
    assert net.describe() == "3-5r-4r-2" and "notes" not in net.meta
    x = _x(3)
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), rtol=1e-5, atol=1e-6)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        eio.load(tmp_path / "nope.pt")
    with pytest.raises(InputFileError, match="not a file"):
        load_torch(tmp_path)


# --------------------------------------------------------------------------- the dispatcher
def test_dispatch_errors(tmp_path: Path) -> None:
    net = _random_net((2, 3, 1))
    with pytest.raises(InputFileError, match="unknown file type"):
        eio.load(tmp_path / "model.h5")
    with pytest.raises(OutputPathError, match="unknown file type"):
        eio.save(net, tmp_path / "model.h5")
    with pytest.raises(OutputPathError, match="not supported"):
        eio.save(net, tmp_path / "model.pt2")
    with pytest.raises(InputFileError, match="cannot load"):
        eio.load(42)
    assert eio.load(net) is net
    assert not list(tmp_path.iterdir())


def test_save_never_overwrites_an_input(tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    torch.save(_mlp().state_dict(), src)
    before = src.read_bytes()
    net = eio.load(src)
    with pytest.raises(OutputPathError, match="input"):
        eio.save(net, src, inputs=(src,))
    assert src.read_bytes() == before


def test_failed_save_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    def explode(obj, f) -> None:
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_torch(_random_net((2, 3, 1)), tmp_path / "o.pt")
    assert not list(tmp_path.iterdir())


def test_dispatch_to_onnx_and_back(tmp_path: Path) -> None:
    pytest.importorskip("exactcomp.io.onnx_io")
    net = _random_net((4, 6, 3), "float32", seed=2)
    eio.save(net, tmp_path / "n.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["n.onnx"]
    back = eio.load(tmp_path / "n.onnx")
    x = _x(4)
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-5, atol=1e-5)
