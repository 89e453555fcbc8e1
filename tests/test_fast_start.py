"""Start-up without torch: the torch-free checkpoint reader and the imports of a plain run.

:mod:`exactcomp.io.torch_zip` must return bitwise what ``torch.load(weights_only=True)``
returns for every checkpoint it accepts, decline (``None``, so torch decides) everything
else, and never call a global outside its allowlist. A stability run on a shipped ``.pt``
must not import torch at all.
"""

from __future__ import annotations

import struct
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
from exactcomp.errors import InputFileError
from exactcomp.io import torch_io, torch_zip
from exactcomp.io.torch_io import load_torch, save_torch
from exactcomp.io.torch_zip import NotRecognised, _Unpickler, read_zip_checkpoint
from exactcomp.network import Layer, Network

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "models").rglob("*.pt")) + sorted((ROOT / "models").rglob("*.pth"))


def assert_same(fast: object, ref: object) -> None:
    """``fast`` (numpy) holds bitwise the values of ``ref`` (torch.load), in the same layout."""
    if torch.is_tensor(ref):
        assert isinstance(fast, np.ndarray)
        want = ref.numpy()
        assert fast.dtype == want.dtype and fast.shape == want.shape
        assert fast.dtype.isnative and fast.flags.c_contiguous
        assert fast.tobytes() == np.ascontiguousarray(want).tobytes()
    elif isinstance(ref, dict):
        assert type(fast) is type(ref)
        assert list(fast) == list(ref)
        for key in ref:
            assert_same(fast[key], ref[key])
        assert getattr(fast, "_metadata", None) == getattr(ref, "_metadata", None)
    elif isinstance(ref, list | tuple):
        assert type(fast) is type(ref) and len(fast) == len(ref)
        for a, b in zip(fast, ref, strict=True):
            assert_same(a, b)
    else:
        assert type(fast) is type(ref) and fast == ref


def _saved(obj: object, path: Path, **kwargs: object) -> Path:
    torch.save(obj, path, **kwargs)
    return path


# --------------------------------------------------------------------------- same values
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_checkpoints_read_exactly(path: Path) -> None:
    fast = read_zip_checkpoint(path)
    assert fast is not None, "a shipped checkpoint should not need torch"
    assert_same(fast, torch.load(path, map_location="cpu", weights_only=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_dtypes_views_and_shared_storage(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    base = torch.randn(6, 5, dtype=dtype)
    sd = OrderedDict(
        [
            ("0.weight", base),
            ("0.bias", torch.randn(6, dtype=dtype)),
            ("1.weight", base.t()),  # transposed view of the same storage
            ("1.bias", base[2, 1:]),  # offset into the shared storage
            ("2.weight", base[1::2, ::2]),  # strided slice
            ("2.bias", base[:, 3]),  # a column: stride 5
            ("empty", torch.zeros(0, 4, dtype=dtype)),
            ("scalar", torch.tensor(2.5, dtype=dtype)),
        ]
    )
    path = _saved(sd, tmp_path / "sd.pt")
    fast = read_zip_checkpoint(path)
    assert fast is not None
    assert_same(fast, torch.load(path, weights_only=True))
    fast["0.weight"][0, 0] = 99  # copies: a view's owner is not changed through another
    assert fast["1.weight"][0, 0] != 99


def test_checkpoint_dict_and_metadata(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ckpt = {
        "epoch": 7,
        "loss": 0.25,
        "name": "mlp",
        "flags": [True, None, (1, 2.0)],
        "model_state_dict": model.state_dict(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict(),
    }
    path = _saved(ckpt, tmp_path / "ckpt.pth")
    fast = read_zip_checkpoint(path)
    assert fast is not None
    assert_same(fast, torch.load(path, weights_only=True))

    net = Network(
        (Layer(np.eye(2), np.zeros(2), True), Layer(np.ones((1, 2)), np.ones(1), True)),
        dtype="float64",
    )
    save_torch(net, tmp_path / "relu_last.pt")  # records ReLU flags in _metadata
    fast = read_zip_checkpoint(tmp_path / "relu_last.pt")
    assert fast._metadata["exactcomp"] == {"relu": [True, True]}
    assert_same(fast, torch.load(tmp_path / "relu_last.pt", weights_only=True))


def test_big_endian_record_is_swapped(tmp_path: Path) -> None:
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7, "h": torch.ones(2).half()}
    little = _saved(sd, tmp_path / "little.pt")
    big = tmp_path / "big.pt"
    itemsize = {}
    with zipfile.ZipFile(little) as src:
        pickled = src.read(next(n for n in src.namelist() if n.endswith("data.pkl")))
    # storage keys in save order: w (float32) then h (float16)
    itemsize["0"], itemsize["1"] = 4, 2
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            prefix, _, rest = info.filename.partition("/")
            if rest == "byteorder":
                data = b"big"
            elif rest.startswith("data/") and rest[5:] in itemsize:
                n = itemsize[rest[5:]]
                data = np.frombuffer(data, dtype=f"<u{n}").astype(f">u{n}").tobytes()
            dst.writestr(info, data)
    assert pickled  # the pickle itself is byte-order free
    fast = read_zip_checkpoint(big)
    assert fast is not None
    assert_same(fast, torch.load(big, weights_only=True))
    assert_same(fast, torch.load(little, weights_only=True))


def test_load_is_the_same_network_either_way(tmp_path: Path, monkeypatch) -> None:
    """Fast reader and torch fallback give identical networks (values, dtype, ReLUs)."""
    for dtype in (torch.float16, torch.float32, torch.float64):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).to(dtype)
        path = _saved({"state_dict": model.state_dict()}, tmp_path / f"m_{dtype}.pt")
        fast = load_torch(path)
        with monkeypatch.context() as m:
            m.setattr(torch_io, "read_zip_checkpoint", lambda _path: None)
            slow = load_torch(path)
        assert fast.dtype == slow.dtype == str(dtype).removeprefix("torch.")
        for a, b in zip(fast.layers, slow.layers, strict=True):
            assert a.relu == b.relu
            assert a.weight.tobytes() == b.weight.tobytes()
            assert a.bias.tobytes() == b.bias.tobytes()


# --------------------------------------------------------------------------- declined
def test_declines_what_it_does_not_know(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    cases = {
        "bf16.pt": ({"0.weight": torch.ones(2, 2, dtype=torch.bfloat16)}, {}),
        "int.pt": ({"w": torch.ones(2, dtype=torch.int64)}, {}),
        "legacy.pt": (model.state_dict(), {"_use_new_zipfile_serialization": False}),
        "module.pt": (model, {}),
        "tensor.pt": (torch.ones(3), {}),  # not a dict at the top
        "param.pt": ({"w": nn.Parameter(torch.ones(2))}, {}),
    }
    for name, (obj, kwargs) in cases.items():
        assert read_zip_checkpoint(_saved(obj, tmp_path / name, **kwargs)) is None, name
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(model), str(scripted))
    assert read_zip_checkpoint(scripted) is None
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert read_zip_checkpoint(tmp_path / "junk.pt") is None
    # the fallback keeps torch's verdicts: bf16 loads, a pickled module is refused
    assert load_torch(tmp_path / "bf16.pt").dtype == "bfloat16"
    with pytest.raises(InputFileError, match="pickled module"):
        load_torch(tmp_path / "module.pt")


def _archive(path: Path, pickled: bytes, records: dict[str, bytes] | None = None) -> Path:
    """A zip laid out like torch.save's, with the given pickle and storage records."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return path


# Hand-written protocol-2 pickles, opcode by opcode (nothing is imported to write them).
def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _dict_w(value: bytes) -> bytes:
    """``{"w": value}``: PROTO 2, EMPTY_DICT, key, value, SETITEM, STOP."""
    return b"\x80\x02}" + _str("w") + value + b"s."


def _tensor(offset: int, size: tuple, stride: tuple, numel: int, kind="FloatStorage") -> bytes:
    """``_rebuild_tensor_v2(storage 0, offset, size, stride, False, OrderedDict())``."""
    storage = _tuple(_str("storage"), _global("torch", kind), _str("0"), _str("cpu"), _int(numel))
    hooks = _global("collections", "OrderedDict") + b")R"
    args = _tuple(
        storage + b"Q",  # BINPERSID
        _int(offset),
        _tuple(*map(_int, size)),
        _tuple(*map(_int, stride)),
        b"\x89",  # NEWFALSE: requires_grad
        hooks,
    )
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


FOUR = np.arange(4, dtype="<f4").tobytes()
#: BUILD with state ``(None, {"__defaults__": (1,)})``: would set an attribute on the target.
SLOTS = _tuple(b"N", b"}" + _str("__defaults__") + _tuple(_int(1)) + b"s") + b"b"


def test_hand_made_tensor_pickle_reads_like_torch(tmp_path: Path) -> None:
    path = _archive(tmp_path / "ok.pt", _dict_w(_tensor(1, (3,), (1,), 4)), {"0": FOUR})
    fast = read_zip_checkpoint(path)
    assert fast["w"].tolist() == [1.0, 2.0, 3.0]
    assert_same(fast, torch.load(path, weights_only=True))


@pytest.mark.parametrize(
    "name, pickled, records",
    [
        ("past the end", _dict_w(_tensor(0, (3,), (2,), 4)), {"0": FOUR}),
        ("offset past the end", _dict_w(_tensor(4, (1,), (1,), 4)), {"0": FOUR}),
        ("negative stride", _dict_w(_tensor(3, (2,), (-1,), 4)), {"0": FOUR}),
        ("short record", _dict_w(_tensor(0, (4,), (1,), 5)), {"0": FOUR}),
        ("missing record", _dict_w(_tensor(0, (4,), (1,), 4)), {}),
        ("unknown storage", _dict_w(_tensor(0, (4,), (1,), 4, "LongStorage")), {"0": FOUR * 2}),
        ("BUILD on a tensor", _dict_w(_tensor(0, (4,), (1,), 4) + b"}b"), {"0": FOUR}),
        ("storage called", _dict_w(_global("torch", "FloatStorage") + b")R"), {}),
        ("BUILD on a global", _dict_w(_global("torch._utils", "_rebuild_tensor_v2") + SLOTS), {}),
        ("BUILD on OrderedDict", _dict_w(_global("collections", "OrderedDict") + SLOTS), {}),
        ("BUILD on a storage type", _dict_w(_global("torch", "FloatStorage") + SLOTS), {}),
        ("INST opcode", _dict_w(b"(ibuiltins\nlist\n"), {}),
        ("forbidden global", _dict_w(_global("builtins", "eval") + _tuple(_str("1")) + b"R"), {}),
    ],
)
def test_declines_crafted_pickles(tmp_path: Path, name: str, pickled: bytes, records) -> None:
    defaults = torch_zip._rebuild_tensor.__defaults__
    assert read_zip_checkpoint(_archive(tmp_path / "x.pt", pickled, records)) is None, name
    assert torch_zip._rebuild_tensor.__defaults__ == defaults


def test_forbidden_global_is_never_called(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    call = _global("os", "system") + _tuple(_str(f"touch {marker}")) + b"R"
    path = _archive(tmp_path / "evil.pt", _dict_w(call))
    assert read_zip_checkpoint(path) is None
    assert not marker.exists()
    with pytest.raises(InputFileError):
        exactcomp.load(path)  # the torch fallback (weights_only) refuses it too
    assert not marker.exists()
    with zipfile.ZipFile(path) as archive, pytest.raises(NotRecognised):
        _Unpickler(b"", archive, "archive/", "<").find_class("os", "system")


# --------------------------------------------------------------------------- no torch
def test_stability_run_never_imports_torch() -> None:
    """CLI imports, loading a shipped .pt and a stability analysis leave torch unloaded."""
    model = ROOT / "models" / "digits_64-100-100-10_l1-0e+00_s0.pt"  # shipped (tracked)
    code = f"""
import sys
import exactcomp.cli
import exactcomp.api
net = exactcomp.load({str(model)!r})  # the public loader
report = exactcomp.api.stable_neurons({str(model)!r}, (0.0, 1.0), jobs=1, time_limit=5)
assert report is not None
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("TORCH" if loaded else "NO-TORCH", loaded[:5])
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "NO-TORCH" in done.stdout, done.stdout
