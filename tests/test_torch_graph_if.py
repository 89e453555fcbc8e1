"""Scripted custom modules whose graphs branch on known flags (`exactcomp/io/torch_graph.py`,
`exactcomp/io/torch_graph_eval.py`): what users get from ``torch.jit.script(model.eval())``
(BatchNorm's ``if self.training:`` and dimension checks, ``F.dropout``'s flag, ``if self.flag``,
``if x.dim() == 2``), plain and ``torch.jit.freeze``d, saved with ``torch.jit.save``. Each is
read by its taken branches and compared with torch on random inputs; an ``if`` on the input's
values, a taken branch that raises, a loop and a module in training mode are refused by name.

No ``from __future__ import annotations`` here: TorchScript reads the modules' annotations
(``p: Optional[float]``), which it cannot resolve from strings.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from strategies import trained_batchnorm
from torch import nn

import exactcomp.io as eio
from exactcomp.errors import UnsupportedModelError
from exactcomp.io.heads import apply_head
from exactcomp.io.torch_graph import RANK_NOTE
from exactcomp.io.torch_graph_eval import evaluate, is_type

D = torch.float64


class ConvNet(nn.Module):
    """x -> view(b, 1, 6, 6) -> Conv2d -> BatchNorm2d -> relu -> MaxPool2d -> AdaptiveAvgPool2d
    (its check ``len(x.size()) > 2``) -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, dtype=D)
        self.bn1 = trained_batchnorm(nn.BatchNorm2d(4, dtype=D))
        self.pool, self.avg = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(3)
        self.fc = nn.Linear(36, 3, dtype=D)

    def forward(self, x):
        x = x.view(x.size(0), 1, 6, 6)
        x = self.avg(self.pool(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(x, 1))


class BnMlp(nn.Module):
    """Linear -> BatchNorm1d -> relu -> Dropout -> Linear -> log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(4, 8, dtype=D), trained_batchnorm(nn.BatchNorm1d(8, dtype=D))
        self.drop, self.fc2 = nn.Dropout(0.3), nn.Linear(8, 3, dtype=D)

    def forward(self, x):
        return F.log_softmax(self.fc2(self.drop(F.relu(self.bn1(self.fc1(x))))), dim=1)


class FunctionalDropout(nn.Module):
    """``F.dropout(h, 0.5, self.training)``: the root's own training flag (False)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8, dtype=D), nn.Linear(8, 3, dtype=D)

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, self.training))


class Flags(nn.Module):
    """``if self.use_relu:`` (bool), ``if self.depth > 1:`` (int), ``if self.p is not
    None:`` (Optional) and ``if self.mode == "plain":`` (str) on constant attributes."""

    p: float | None

    def __init__(self, use_relu: bool, depth: int, p: float | None, mode: str) -> None:
        super().__init__()
        self.use_relu, self.depth, self.p, self.mode = use_relu, depth, p, mode
        self.fc1, self.fc2 = nn.Linear(4, 8, dtype=D), nn.Linear(8, 3, dtype=D)

    def forward(self, x):
        h = self.fc1(x)
        if self.use_relu:
            h = F.relu(h)
        else:
            h = torch.tanh(h)
        p = self.p
        if p is not None and self.mode == "plain":
            h = F.dropout(h, p, self.training)
        if self.depth > 1:
            h = self.fc2(h)
        return h


class RankCheck(nn.Module):
    """``if x.dim() != 2: raise``; then ``if h.dim() == 2: view to an image`` (flat inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = (
            nn.Conv2d(1, 2, 3, dtype=D),
            trained_batchnorm(nn.BatchNorm2d(2, dtype=D)),
        )
        self.fc = nn.Linear(32, 2, dtype=D)

    def forward(self, x):
        if x.dim() != 2:
            raise ValueError("expected a batch of flat vectors")
        if x.dim() == 2:
            x = x.view(-1, 1, 6, 6)
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


class UnionInput(nn.Module):
    """``isinstance(x, torch.Tensor)`` on a ``Tensor | list[Tensor]`` input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 5, dtype=D), nn.Linear(5, 2, dtype=D)

    def forward(self, x: torch.Tensor | list[torch.Tensor]):
        if isinstance(x, torch.Tensor):
            return self.fc2(torch.relu(self.fc1(x)))
        return self.fc2(self.fc1(x[0]))


class Dropouts(nn.Module):
    """``Dropout2d`` (its ``dim() not in (3, 4)`` check), ``Dropout(inplace=True)``
    (``aten::dropout_``), ``AlphaDropout``, and ``F.softmax`` without ``dim`` (a warning,
    then the dim from the rank): the identity and a Softmax(dim=1) head in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.drop2d = nn.Conv2d(1, 2, 3, dtype=D), nn.Dropout2d(0.2)
        self.fc1, self.drop = nn.Linear(32, 4, dtype=D), nn.Dropout(0.3, inplace=True)
        self.alpha, self.fc2 = nn.AlphaDropout(0.1), nn.Linear(4, 2, dtype=D)

    def forward(self, x):
        h = self.drop2d(F.relu(self.conv(x.view(-1, 1, 6, 6))))
        h = self.drop(F.relu(self.fc1(h.flatten(1))))
        return F.softmax(self.fc2(self.alpha(h)))


def _models() -> dict[str, tuple[nn.Module, int]]:
    torch.manual_seed(0)
    return {
        "conv bn2d pool": (ConvNet(), 36),
        "mlp bn1d dropout": (BnMlp(), 4),
        "functional dropout": (FunctionalDropout(), 4),
        "flags on": (Flags(True, 2, 0.5, "plain"), 4),
        "flags off": (Flags(False, 1, None, "plain"), 4),
        "flags mode": (Flags(True, 2, 0.2, "other"), 4),
        "rank check": (RankCheck(), 36),
        "union input": (UnionInput(), 4),
        "dropouts, softmax without dim": (Dropouts(), 36),
        "sequential bn1d": (
            nn.Sequential(
                nn.Linear(4, 6, dtype=D),
                trained_batchnorm(nn.BatchNorm1d(6, dtype=D)),
                nn.ReLU(),
                nn.Dropout(),
                nn.Linear(6, 2, dtype=D),
            ),
            4,
        ),  # fmt: skip
    }


def _save(model: nn.Module, path: Path, freeze: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated
        ts = torch.jit.script(model)
        torch.jit.save(torch.jit.freeze(ts) if freeze else ts, path)
    return path


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")  # torch's reference run
@pytest.mark.parametrize("freeze", [False, True], ids=["script", "freeze"])
@pytest.mark.parametrize("name", list(_models()))
def test_scripted_module_with_known_ifs_is_read_exactly(name, freeze, tmp_path) -> None:
    model, n_in = _models()[name]
    net = eio.load(_save(model.eval(), tmp_path / "m.pt", freeze))
    x = np.random.default_rng(1).uniform(-1, 2, (60, n_in))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(
        apply_head(net.forward(x), net.meta.get("head")), want, rtol=1e-10, atol=1e-10
    )


def test_flags_read_the_branch_they_take(tmp_path) -> None:
    """``Flags(False, 1, ...)`` is one Linear then tanh (the head); ``Flags(True, 2, ...)``
    two Linear layers with a ReLU between."""
    models = _models()
    off = eio.load(_save(models["flags off"][0].eval(), tmp_path / "a.pt", False))
    on = eio.load(_save(models["flags on"][0].eval(), tmp_path / "b.pt", False))
    assert len(off.layers) == 1 and off.meta.get("head") == "tanh"
    assert len(on.layers) == 2 and on.layers[0].relu and on.meta.get("head") is None


def test_a_forward_testing_its_input_rank_says_how_it_is_read(tmp_path) -> None:
    net = eio.load(_save(_models()["rank check"][0].eval(), tmp_path / "m.pt", False))
    assert RANK_NOTE in net.meta["notes"]
    plain = eio.load(_save(_models()["mlp bn1d dropout"][0].eval(), tmp_path / "p.pt", False))
    assert RANK_NOTE not in plain.meta.get("notes", ())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated
def test_scripted_conv_bn_module_compresses_to_the_same_function(tmp_path, capsys) -> None:
    """The conv net with BatchNorm2d, scripted: compressed through the CLI to .pt, the file
    computes what torch computes."""
    from exactcomp.cli import main

    model, n_in = _models()["conv bn2d pool"]
    src, out = _save(model.eval(), tmp_path / "m.pt", False), tmp_path / "c.pt"
    assert main(["compress", str(src), "--box=0,1", "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    x = np.random.default_rng(2).random((40, n_in))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(eio.load(out).forward(x) - want).max() < 1e-5  # float64 stored as is


class ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if bool(x.sum() > 0):
            x = F.relu(x)
        return self.fc(x)


class BatchBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.size(0) > 1:
            x = F.relu(x)
        return self.fc(x)


class Strict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.strict = nn.Linear(4, 3), True

    def forward(self, x):
        if self.strict:
            raise RuntimeError("strict mode is for training only")
        return self.fc(x)


class BatchNorm1dOnImage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.c(x.view(-1, 1, 4, 4))).flatten(1)


class Loop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.n = nn.Linear(4, 4), 2

    def forward(self, x):
        for _ in range(self.n):
            x = F.relu(self.fc(x))
        return x


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (ValueBranch().eval(), "aten::sum"),
        (BatchBranch().eval(), "aten::gt is not supported on the batch size"),
        (Strict().eval(), "raises RuntimeError: strict mode is for training only"),
        (BatchNorm1dOnImage().eval(), r"raises ValueError: expected 2D or 3D input \(got 4D"),
        (Loop().eval(), "prim::Loop"),
        (BnMlp().train(), "module 'bn1' is in training mode"),
        (FunctionalDropout().train(), "module '<root>' is in training mode"),
    ],
    ids=["input value", "batch size", "raises", "bn1d on image", "loop", "train bn", "train drop"],
)
def test_branches_not_known_or_raising_are_refused_by_name(model, match, tmp_path) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        eio.load(_save(model, tmp_path / "m.pt", False))


def test_scalar_ops_are_evaluated_only_on_known_scalars() -> None:
    """Numbers, booleans and strings are evaluated with TorchScript's meaning; anything else
    (a list times an int, a comparison with None, an unknown op) is unknown."""
    from exactcomp.io.torch_graph_eval import TENSOR, UNKNOWN

    assert evaluate("aten::ne", [4, 2]) is True and evaluate("aten::eq", ["a", "a"]) is True
    assert evaluate("aten::lt", [0.5, 0.0]) is False and evaluate("aten::__not__", [False])
    assert evaluate("aten::Int", [2.7]) == 2 and evaluate("aten::Int", [-2.7]) == -2
    assert evaluate("aten::format", ["got {}D input", 4]) == "got 4D input"
    assert evaluate("aten::mul", [[1], 2]) is UNKNOWN
    assert evaluate("aten::lt", ["a", "b"]) is UNKNOWN
    assert evaluate("aten::eq", [None, 1]) is UNKNOWN
    assert evaluate("aten::__and__", [1, True]) is UNKNOWN
    assert evaluate("aten::__contains__", [[3, 4], 4]) is True
    assert evaluate("aten::__contains__", [[TENSOR], 4]) is UNKNOWN
    assert evaluate("aten::sum", [1, 2]) is UNKNOWN
    assert evaluate("aten::mul", [2**62, 2]) is UNKNOWN  # a 64-bit overflow in TorchScript
    assert is_type("Tensor", ["Tensor"]) is True and is_type("int", ["Tensor", "str"]) is False
    assert is_type("Tensor", ["List[Tensor]"]) is UNKNOWN and is_type(None, ["Tensor"]) is UNKNOWN
    assert evaluate("aten::__isnot__", [TENSOR, None]) is True
    assert evaluate("aten::__is__", [TENSOR, 1.0]) is UNKNOWN
    assert evaluate("prim::isinstance", [TENSOR], ["Tensor"]) is True
