"""TorchScript read from its graph (`exactcomp/io/torch_graph.py`): traced modules and scripted
modules with their own ``forward``, read exactly (against torch on random inputs) or refused
by the op's name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from strategies import trained_batchnorm
from torch import nn

import exactcomp.io as eio
from exactcomp.errors import UnsupportedModelError
from exactcomp.io.heads import apply_head


def _save(model: nn.Module, path: Path, n_in: int, *, trace: bool = True) -> Path:
    dtype = next(model.parameters()).dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; tracer warnings
        ts = torch.jit.trace(model, torch.rand(2, n_in, dtype=dtype)) if trace else None
        torch.jit.save(ts if trace else torch.jit.script(model), path)
    return path


def _check(model: nn.Module, path: Path, n_in: int, rtol: float = 1e-9) -> None:
    net = eio.load(path)
    x = np.random.default_rng(3).uniform(-1, 2, (50, n_in))
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        want = model(torch.from_numpy(x).to(dtype)).double().numpy()
    got = apply_head(net.forward(x), net.meta.get("head"))  # the IR holds the logits
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


class _View(nn.Module):
    """A custom forward: reshapes by ``view`` with the traced batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=torch.float64)
        self.fc = nn.Linear(27, 4, dtype=torch.float64)

    def forward(self, x):
        h = torch.relu(self.conv(x.view(x.size(0), 2, 6, 6)))
        return self.fc(h.reshape(h.shape[0], -1)).log_softmax(dim=1)


def _models() -> dict[str, tuple[nn.Module, int]]:
    torch.manual_seed(0)
    d = torch.float64
    conv = nn.Sequential(
        nn.Unflatten(1, (2, 6, 6)),
        nn.ZeroPad2d((1, 0, 1, 0)),
        nn.Conv2d(2, 4, 3, stride=(1, 2), dilation=1, dtype=d),
        trained_batchnorm(nn.BatchNorm2d(4, dtype=d)),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 5, dtype=d),
        nn.ReLU(),
        nn.Linear(5, 3, dtype=d),
        nn.Softmax(dim=1),
    )
    pools = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 2, 3, padding=1, groups=1, dtype=d),
        nn.ReLU(),
        nn.AvgPool2d(2, count_include_pad=False),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 2, dtype=d),
        nn.Tanh(),
    )
    mlp = nn.Sequential(
        nn.Linear(5, 7, dtype=d),
        trained_batchnorm(nn.BatchNorm1d(7, dtype=d)),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(7, 3, bias=False, dtype=d),
        nn.ReLU(),
        nn.Linear(3, 2, dtype=d),
        nn.Sigmoid(),
    )
    half = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).to(torch.float16)
    return {
        "conv": (conv.eval(), 72),
        "pools": (pools.eval(), 64),
        "mlp": (mlp.eval(), 5),
        "custom view": (_View().eval(), 72),
        "float16": (half.eval(), 4),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_traced_module_is_read_exactly(name: str, tmp_path: Path) -> None:
    model, n_in = _models()[name]
    rtol = 2e-3 if name == "float16" else 1e-9  # torch computes float16 in float16
    _check(model, _save(model, tmp_path / "m.pt", n_in), n_in, rtol)


def test_scripted_custom_forward_is_read_exactly(tmp_path: Path) -> None:
    model, n_in = _models()["custom view"]
    _check(model, _save(model, tmp_path / "m.pt", n_in, trace=False), n_in)


def test_traced_conv_keeps_its_geometry(tmp_path: Path) -> None:
    """The stride, padding and pools come from the graph's constants (a traced Conv2d has no
    attributes): the read network has the same width as torch's output per layer."""
    model, n_in = _models()["conv"]
    net = eio.load(_save(model, tmp_path / "m.pt", n_in))
    assert net.layers[0].weight.shape[1] == 72
    assert net.layers[0].weight.shape[0] == 4 * 5 * 3  # (7 - 3) / 1 + 1 by (7 - 3) / 2 + 1


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) + x)


class _Branch(nn.Module):
    """An ``if`` on the input's values (a branch on a known flag is read:
    ``tests/test_torch_graph_if.py``)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        if bool(x.max() > 0):
            return self.a(x)
        return torch.relu(self.a(x))


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return nn.functional.linear(x, self.a.weight * 2, self.a.bias)


class _LeakyCustom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return nn.functional.leaky_relu(self.a(x))


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(torch.cat([x, x], 1)[:, :3])


class _Image(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.relu(self.c(x)).flatten(1)


@pytest.mark.parametrize(
    ("model", "trace", "match"),
    [
        (_Residual(), True, "earlier activation"),
        (_Concat(), True, "concatenation"),
        (nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.ReflectionPad1d(1)), True, "reflect"),
        (_Branch(), False, "aten::max"),
        (_Scaled(), True, "on weights"),
        (nn.Sequential(nn.Linear(3, 2), nn.LeakyReLU()), True, "LeakyReLU"),
        (_LeakyCustom(), True, "aten::leaky_relu"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)), True, "BatchNorm"),
    ],
    ids=[
        "residual",
        "concat",
        "reflection pad",
        "control flow",
        "weight computed",
        "leaky relu",
        "leaky custom",
        "bn relu",
    ],
)
def test_graphs_outside_the_chain_are_refused_by_name(model, trace, match, tmp_path) -> None:
    path = _save(model.eval(), tmp_path / "m.pt", 3, trace=trace)
    with pytest.raises(UnsupportedModelError, match=match):
        eio.load(path)


def test_traced_image_input_is_refused_with_advice(tmp_path: Path) -> None:
    model = _Image().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.rand(2, 1, 5, 5)), tmp_path / "m.pt")
    with pytest.raises(UnsupportedModelError, match="Unflatten"):
        eio.load(tmp_path / "m.pt")


def test_training_mode_batchnorm_trace_is_refused(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())  # left in train()
    path = _save(model, tmp_path / "m.pt", 3)
    with pytest.raises(UnsupportedModelError, match="training mode"):
        eio.load(path)
