"""PyTorch formats that carry the graph (torch.export ``.pt2``, TorchScript, whole modules), the
exact layers they may hold, and the note a bare state_dict now carries (#18 item 5).

The networks are tiny (3 inputs, 4 hidden, 2 outputs); ground truth is torch's own eval-mode
output in float64, which the IR must reproduce to float64 rounding::

    x(3) -> Linear(3,4) -> BatchNorm1d(4) -> ReLU -> Dropout -> Identity -> Linear(4,2) -> [Softmax]
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import exactcomp
import exactcomp.io as eio
from exactcomp import cli
from exactcomp.errors import InputFileError, InvalidNetworkError, UnsupportedModelError
from exactcomp.io.torch_io import load_torch, to_torch_module
from exactcomp.io.torch_state import STATE_DICT_NOTE


def _bn_model(dtype=torch.float64, head: nn.Module | None = None, seed: int = 0) -> nn.Sequential:
    """Flatten Linear(3,4) BatchNorm1d(4) ReLU Dropout Identity Linear(4,2) [head], eval mode,
    with non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = [
        nn.Flatten(),
        nn.Linear(3, 4, dtype=dtype),
        nn.BatchNorm1d(4, dtype=dtype, eps=1e-3),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Identity(),
        nn.Linear(4, 2, dtype=dtype),
    ]
    if head is not None:
        mods.append(head)
    model = nn.Sequential(*mods)
    bn = model[2]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    return model.eval()


def _x(n_in: int = 3, n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (n, n_in))


def _eval(module: nn.Module, x: np.ndarray) -> np.ndarray:
    dtype = next(module.parameters()).dtype
    with torch.no_grad():
        return module(torch.from_numpy(x).to(dtype)).to(torch.float64).numpy()


def _export(model: nn.Module, path: Path, *, decompose: bool = False, n_in: int = 3) -> Path:
    dtype = next(model.parameters()).dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecation
        program = torch.export.export(model, (torch.zeros(2, n_in, dtype=dtype),))
        if decompose:  # the core-ATen form: addmm/permute, _native_batch_norm_legit_no_training
            program = program.run_decompositions()
        torch.export.save(program, path)
    return path


def _script(model: nn.Module, path: Path, *, trace: bool = False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        if trace:
            dtype = next(model.parameters()).dtype
            scripted = torch.jit.trace(model, torch.zeros(2, 3, dtype=dtype))
        else:
            scripted = torch.jit.script(model)
        torch.jit.save(scripted, path)
    return path


# --------------------------------------------------------------------------- state_dict note
def test_leaky_relu_state_dict_gets_a_note_on_the_console_and_in_the_report(
    tmp_path: Path, capsys
) -> None:
    """The state_dict of Linear-LeakyReLU-Linear has the keys of Linear-ReLU-Linear: it is still
    read the conventional way (nothing in the file says otherwise), but the run says so."""
    model = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.1), nn.Linear(4, 2))
    torch.save(model.state_dict(), tmp_path / "leaky.pt")
    out, rep = tmp_path / "small.pt", tmp_path / "r.json"
    argv = ["compress", str(tmp_path / "leaky.pt"), "--box=-1,1", "-o", str(out)]
    code = cli.main([*argv, "--report", str(rep), "--jobs", "1", "--check", "200"])
    assert code == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: ")]
    assert lines == [f"note: {STATE_DICT_NOTE}"]
    assert "state_dict" in lines[0] and "torch.export" in lines[0]
    assert json.loads(rep.read_text())["notes"] == [STATE_DICT_NOTE]
    # the compressed file records its architecture: reading it back assumes nothing
    assert "notes" not in eio.load(out).meta


def test_quiet_suppresses_the_note_but_not_the_report(tmp_path: Path, capsys) -> None:
    torch.save(nn.Sequential(nn.Linear(3, 2)).state_dict(), tmp_path / "m.pt")
    rep = tmp_path / "r.json"
    argv = ["stability", str(tmp_path / "m.pt"), "--box", "0,1", "--report", str(rep)]
    assert cli.main([*argv, "--quiet", "--jobs", "1"]) == 0
    assert "note:" not in capsys.readouterr().out
    assert json.loads(rep.read_text())["notes"] == [STATE_DICT_NOTE]


def test_out_of_order_keys_are_both_named(tmp_path: Path) -> None:
    """Layer ``4`` saved before layer ``2``: 3 -> 5 (``0``), then a 4x2... the message names the
    two keys that do not chain and says that in layer order they would."""
    sd = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    state = sd.state_dict()
    shuffled = OrderedDict((k, state[k]) for k in ["0.weight", "0.bias", "4.weight", "4.bias"])
    shuffled.update((k, state[k]) for k in ["2.weight", "2.bias"])
    torch.save(shuffled, tmp_path / "m.pt")
    with pytest.raises(InvalidNetworkError) as info:
        load_torch(tmp_path / "m.pt")
    message = str(info.value)
    assert "'4.weight'" in message and "'0.weight'" in message
    assert "out of layer order" in message and "\n" not in message


# --------------------------------------------------------------------------- torch.export
@pytest.mark.parametrize("decompose", [False, True])
def test_pt2_linear_relu_linear_reads_and_compresses(tmp_path: Path, decompose: bool) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    path = _export(model, tmp_path / "m.pt2", decompose=decompose)
    net = eio.load(path)
    assert net.describe() == "3-6r-2" and net.dtype == "float32"
    assert "notes" not in net.meta and "head" not in net.meta
    x = _x()
    np.testing.assert_allclose(net.forward(x), _eval(model, x), rtol=1e-5, atol=1e-6)
    res = exactcomp.compress(path, (-1.0, 1.0), jobs=1, check=500)
    np.testing.assert_allclose(res.network.forward(x), net.forward(x), rtol=1e-9, atol=1e-9)
    assert res.report["notes"] == [] and res.report["head"] is None


def test_pt2_is_read_without_torch_load(tmp_path: Path, monkeypatch) -> None:
    """No unpickling: torch.export.load and torch.load are never called."""
    path = _export(_bn_model(), tmp_path / "m.pt2")

    def forbidden(*args, **kwargs):
        raise AssertionError("must not be called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.export, "load", forbidden)
    assert eio.load(path).describe() == "3-4r-2"


def test_pt2_with_leaky_relu_is_refused_by_name(tmp_path: Path, capsys) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(), nn.Linear(4, 2)).eval()
    path = _export(model, tmp_path / "leaky.pt2")
    with pytest.raises(UnsupportedModelError, match=r"leaky_relu.*LeakyReLU '1'"):
        eio.load(path)
    code = cli.main(["compress", str(path), "--box", "0,1", "-o", str(tmp_path / "o.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "LeakyReLU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.pt").exists()


def test_pt2_skip_connection_is_refused(tmp_path: Path) -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    path = _export(Residual().eval(), tmp_path / "res.pt2")
    with pytest.raises(UnsupportedModelError, match="add"):
        eio.load(path)


def test_pt2_with_batch_norm_in_training_mode_is_refused(tmp_path: Path) -> None:
    model = _bn_model()
    model.train()
    path = _export(model, tmp_path / "train.pt2")
    with pytest.raises(UnsupportedModelError, match=r"BatchNorm1d '2'.*training mode"):
        eio.load(path)


def test_not_an_export_archive(tmp_path: Path) -> None:
    (tmp_path / "x.pt2").write_bytes(b"hello")
    with pytest.raises(InputFileError, match="torch.export"):
        eio.load(tmp_path / "x.pt2")
    with zipfile.ZipFile(tmp_path / "z.pt2", "w") as archive:
        archive.writestr("z/version", "3")
    with pytest.raises(InputFileError, match="archive_format"):
        eio.load(tmp_path / "z.pt2")


def test_pt2_flattens_an_image_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    program = torch.export.export(model, (torch.zeros(2, 2, 3),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.export.save(program, tmp_path / "img.pt2")
    net = eio.load(tmp_path / "img.pt2")
    assert net.input_size == 6 and any("flattened" in n for n in net.meta["notes"])
    x = _x(6)
    with torch.no_grad():
        want = model(torch.from_numpy(x).float().reshape(-1, 2, 3)).double().numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- BatchNorm fold
def _all_forms(model: nn.Module, tmp_path: Path) -> dict[str, object]:
    torch.save(model, tmp_path / "whole.pt")
    return {
        "module": model,
        "pickled": load_torch(tmp_path / "whole.pt", trust_pickle=True),
        "pt2": eio.load(_export(model, tmp_path / "m.pt2")),
        "pt2-core-aten": eio.load(_export(model, tmp_path / "d.pt2", decompose=True)),
        "torchscript": eio.load(_script(model, tmp_path / "ts.pt")),
    }


def test_batchnorm_fold_is_exact_against_torch_eval(tmp_path: Path) -> None:
    """In float64, the folded Linear equals torch's eval-mode Linear+BatchNorm1d to rounding."""
    model = _bn_model(torch.float64)
    x = _x()
    want = _eval(model, x)
    for form, net in _all_forms(model, tmp_path).items():
        net = eio.load(net)
        assert net.describe() == "3-4r-2", form
        assert net.dtype == "float64", form
        np.testing.assert_allclose(net.forward(x), want, rtol=1e-12, atol=1e-12, err_msg=form)
    w, b = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    bn = model[2]
    s = bn.weight.detach().numpy() / np.sqrt(bn.running_var.numpy() + bn.eps)
    folded = eio.load(model).layers[0]
    np.testing.assert_array_equal(folded.weight, s[:, None] * w)
    np.testing.assert_array_equal(
        folded.bias, s * (b - bn.running_mean.numpy()) + bn.bias.detach().numpy()
    )


def test_batchnorm_fold_in_float32(tmp_path: Path) -> None:
    model = _bn_model(torch.float32)
    x = _x()
    for form, net in _all_forms(model, tmp_path).items():
        net = eio.load(net)
        assert net.dtype == "float32", form
        np.testing.assert_allclose(net.forward(x), _eval(model, x), rtol=1e-5, atol=1e-5)


def test_batchnorm_after_a_relu_is_refused(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedModelError, match="BatchNorm1d '2' follows a ReLU"):
        eio.load(model)
    with pytest.raises(UnsupportedModelError, match="BatchNorm1d '2' follows a ReLU"):
        eio.load(_export(model, tmp_path / "m.pt2"))


def test_batchnorm_without_running_stats_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)).eval()
    with pytest.raises(UnsupportedModelError, match="running statistics"):
        eio.load(model)


def test_training_mode_module_is_read_in_eval_mode_with_a_note(tmp_path: Path) -> None:
    model = _bn_model()
    model.train()
    net = eio.load(model)
    assert any("Dropout '4'" in n and "eval mode" in n for n in net.meta["notes"])
    x = _x()
    np.testing.assert_allclose(net.forward(x), _eval(model.eval(), x), rtol=1e-12, atol=1e-12)


def test_subclass_of_an_accepted_layer_is_refused() -> None:
    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(UnsupportedModelError, match="Doubled.*subclasses nn.Linear"):
        eio.load(nn.Sequential(Doubled(3, 2)))


# --------------------------------------------------------------------------- Softmax head
@pytest.mark.parametrize("head", [nn.Softmax(dim=-1), nn.LogSoftmax(dim=1)])
def test_softmax_head_is_kept_and_reattached(tmp_path: Path, head: nn.Module) -> None:
    model = _bn_model(torch.float64, head=head)
    kind = "softmax" if isinstance(head, nn.Softmax) else "log_softmax"
    x = _x()
    logits = _eval(model[:-1], x)
    for form, net in _all_forms(model, tmp_path).items():
        net = eio.load(net)
        assert net.meta["head"] == kind, form
        assert any("kept as the head" in n for n in net.meta["notes"]), form
        np.testing.assert_allclose(net.forward(x), logits, rtol=1e-12, atol=1e-12)
    net = eio.load(tmp_path / "m.pt2")
    # compressed logits + the same head == the original: the written .pt records the head
    res = exactcomp.compress(net, (-1.0, 1.0), jobs=1, check=500)
    assert res.report["head"] == kind
    eio.save(res.network, tmp_path / "small.pt")
    back = eio.load(tmp_path / "small.pt")
    assert back.meta["head"] == kind
    np.testing.assert_allclose(_eval(to_torch_module(back), x), _eval(model, x), atol=1e-12)
    np.testing.assert_allclose(_eval(res.to_module(), x), _eval(model, x), atol=1e-12)


def test_verify_refuses_networks_with_different_heads(tmp_path: Path) -> None:
    model = _bn_model(torch.float64, head=nn.Softmax(dim=-1))
    with_head = eio.load(_export(model, tmp_path / "m.pt2"))
    without = eio.load(model[:-1])
    with pytest.raises(InvalidNetworkError, match="softmax head vs no head"):
        exactcomp.verify_equivalence(with_head, without, (-1.0, 1.0))


def test_softmax_before_the_end_is_refused(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=-1), nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedModelError, match=r"Linear '2' follows the Softmax '1'"):
        eio.load(model)
    with pytest.raises(UnsupportedModelError, match="follows the Softmax"):
        eio.load(_export(model, tmp_path / "m.pt2"))


def test_softmax_over_the_batch_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="dim=0"):
        eio.load(nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=0)))


# --------------------------------------------------------------------------- TorchScript
def test_torchscript_nested_sequential_with_identities(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Dropout(0.1), nn.Identity(), nn.Linear(4, 2)
    ).eval()
    net = eio.load(_script(model, tmp_path / "ts.pt"))
    assert net.describe() == "3-4r-2"
    x = _x()
    np.testing.assert_allclose(net.forward(x), _eval(model, x), rtol=1e-5, atol=1e-6)


def test_torchscript_with_leaky_relu_is_refused_by_name(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(), nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedModelError, match="LeakyReLU"):
        eio.load(_script(model, tmp_path / "ts.pt"))


def test_traced_module_is_read_from_its_graph(tmp_path: Path) -> None:
    model = _bn_model()
    net = eio.load(_script(model, tmp_path / "tr.pt", trace=True))
    assert net.describe() == "3-4r-2"
    x = _x()
    np.testing.assert_allclose(net.forward(x), _eval(model, x), rtol=1e-9, atol=1e-12)


def test_torchscript_whose_code_was_edited_is_refused(tmp_path: Path) -> None:
    """An archive whose 'Linear' computes something else is read from its graph, where the
    edit is an op the reader refuses by name."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    path = _script(model, tmp_path / "ts.pt")
    edited = tmp_path / "edited.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        edits = 0
        for item in src.infolist():
            data = src.read(item)
            # the Linear code file: 'linear.py', or a mangled name after earlier scripting
            if "nn/modules/linear" in item.filename:
                data = data.replace(
                    b"torch.linear(input, weight, bias)", b"torch.linear(input, weight, bias) * 2"
                )
                edits += b"* 2" in data
            dst.writestr(item, data)
    assert edits
    with pytest.raises(UnsupportedModelError, match="aten::mul"):
        eio.load(edited)


def test_torchscript_custom_module_is_read_from_its_graph(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    net = eio.load(_script(Net().eval(), tmp_path / "ts.pt"))
    assert net.describe() == "3-2" and net.meta["head"] == "sigmoid"


def test_pt2_read_does_not_import_torch(tmp_path: Path) -> None:
    path = _export(_bn_model(head=nn.Softmax(dim=-1)), tmp_path / "m.pt2")
    code = (
        "import sys, exactcomp.io as eio; net = eio.load(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(net.describe())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3-4r-2"


def test_malformed_program_is_an_input_error(tmp_path: Path) -> None:
    path = _export(_bn_model(), tmp_path / "m.pt2")
    broken = tmp_path / "broken.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, b"{}" if item.filename.endswith("models/model.json") else data)
    with pytest.raises(InputFileError, match="malformed torch.export program"):
        eio.load(broken)


def test_an_edited_copy_of_a_mangled_layer_is_refused(tmp_path: Path) -> None:
    """Three Linear layers give mangled code files that normalise to one name; editing any
    single one of them must still be caught (none may hide behind a genuine twin)."""
    model = nn.Sequential(
        nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)
    ).eval()
    path = _script(model, tmp_path / "ts.pt")
    with zipfile.ZipFile(path) as src:
        linear_files = [n for n in src.namelist() if "nn/modules/linear" in n and n.endswith(".py")]
    assert len(linear_files) >= 3
    for k, target in enumerate(linear_files):
        edited = tmp_path / f"edited{k}.pt"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename == target:
                    data = data.replace(
                        b"torch.linear(input, weight, bias)",
                        b"torch.linear(input, weight, bias) * 2",
                    )
                    assert b"* 2" in data
                dst.writestr(item, data)
        with pytest.raises(UnsupportedModelError, match="aten::mul"):
            eio.load(edited)
