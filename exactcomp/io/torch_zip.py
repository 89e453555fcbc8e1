"""A torch-free reader for the common PyTorch checkpoint: a zip archive of float tensors.

Importing torch takes seconds, most of a short CLI run, while the checkpoints this package
reads are nearly always ``torch.save(model.state_dict())`` (or a dict wrapping one): a zip
archive holding a small pickle (``data.pkl``) and one raw little-endian record per storage
(``data/0``, ``data/1``, ...). :func:`read_zip_checkpoint` reads exactly that form into numpy
arrays, and returns ``None`` for anything else, so that the caller falls back to
``torch.load(weights_only=True)`` with its own behaviour and messages.

Safety
------
Unpickling can call any global a file names, which is why ``torch.load(weights_only=True)``
restricts them. This reader is stricter still: the pickle may use only the opcodes of plain
containers, numbers and strings (checked before loading), and ``find_class`` resolves only

* ``collections.OrderedDict`` (the state_dict and its empty ``backward_hooks``),
* ``torch._utils._rebuild_tensor_v2``, replaced by :func:`_rebuild_tensor`, which builds a
  numpy array after checking that every element lies inside its storage,
* ``torch.HalfStorage`` / ``FloatStorage`` / ``DoubleStorage``, replaced by inert markers
  that persistent ids name (``("storage", marker, key, location, numel)``); the storage bytes
  are read from ``data/<key>`` and must be exactly ``numel`` elements long.

The first two are handed out wrapped, and every object of this module refuses ``BUILD``, so a
crafted pickle cannot set attributes on them (``OrderedDict`` instances accept ``BUILD``, as
under torch: that is how a state_dict's ``_metadata`` is restored).

Anything else (another global or opcode, the legacy non-zip format, a bfloat16 or integer
tensor, a mismatched record) raises :class:`NotRecognised` inside the reader, which returns
``None``: no global outside that list is ever looked up, let alone called.

Tensors come back as C-contiguous numpy arrays in native byte order with the stored dtype
(float16, float32 or float64), holding bitwise the values ``torch.load`` gives, honouring the
archive's ``byteorder`` record (absent: little-endian, as torch assumes), and each tensor's
storage offset, size and stride. Tensors sharing a storage share its bytes but are separate
copies.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NotRecognised", "read_zip_checkpoint"]

#: ``torch.<Name>Storage`` -> element dtype (without byte order) of the storages we read.
STORAGE_DTYPES = {"HalfStorage": "f2", "FloatStorage": "f4", "DoubleStorage": "f8"}

#: The first bytes of a zip archive (a local file header), as torch checks them.
ZIP_MAGIC = b"PK\x03\x04"

#: ``version`` records of the archive layout this reader knows (torch writes ``3``).
KNOWN_VERSIONS = frozenset({"1", "2", "3"})

#: Pickle opcodes of plain data, plus the few that build objects (GLOBAL/REDUCE/BUILD, only
#: on allowlisted globals) and BINPERSID (storages). INST, OBJ, NEWOBJ, EXT* and text
#: PERSID are not among them.
ALLOWED_OPCODES = frozenset(
    {
        "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE",
        "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
        "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
        "SHORT_BINUNICODE", "BINUNICODE8", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
        "TUPLE3", "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_DICT", "DICT", "SETITEM",
        "SETITEMS", "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
        "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "BINPERSID",
    }
)  # fmt: skip


class NotRecognised(Exception):
    """The file is not the plain checkpoint this reader handles (use ``torch.load``)."""


class _Inert:
    """Base of every object the unpickler hands out: no ``__dict__``, and ``BUILD`` (which
    would call ``__setstate__`` or set attributes) is refused."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise NotRecognised(f"BUILD on {type(self).__name__}")


class _Allowed(_Inert):
    """An allowlisted global: calling it calls ``func`` (what REDUCE does), nothing else."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, *args: object) -> Any:
        return self.func(*args)


class _StorageType(_Inert):
    """Inert stand-in for ``torch.<name>Storage``: only a persistent id may name it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Storage(_Inert):
    """One storage record: its elements, in the archive's byte order."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray) -> None:
        self.data = data


class _Tensor(_Inert):
    """A rebuilt tensor during unpickling; replaced by its array afterwards."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _rebuild_tensor(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object,
    backward_hooks: object,
    metadata: object = None,
) -> _Tensor:
    """``torch._utils._rebuild_tensor_v2`` for a plain CPU tensor, as a numpy array.

    Checks every argument: the storage came from a persistent id, offset/size/stride are
    non-negative ints, the last element lies inside the storage, no hooks and no metadata.
    """
    if not isinstance(storage, _Storage) or not isinstance(requires_grad, bool):
        raise NotRecognised("unexpected tensor arguments")
    if backward_hooks is not None and (type(backward_hooks) not in (OrderedDict, dict)):
        raise NotRecognised("backward hooks")
    if backward_hooks or metadata:  # hooks, or conj/neg bits and the like
        raise NotRecognised("tensor hooks or metadata")
    if not (_is_ints(size) and _is_ints(stride) and _is_ints((storage_offset,))):
        raise NotRecognised("tensor geometry is not a tuple of ints")
    assert isinstance(size, tuple) and isinstance(stride, tuple)
    assert isinstance(storage_offset, int)
    if len(size) != len(stride):
        raise NotRecognised("size and stride differ in length")
    data = storage.data
    if np.prod(size, dtype=object) > data.size:  # expanded (stride 0) tensors: leave to torch
        raise NotRecognised("tensor larger than its storage")
    if 0 in size:
        return _Tensor(np.empty(size, dtype=data.dtype.newbyteorder("=")))
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= data.size:
        raise NotRecognised("tensor reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        data[storage_offset:],
        shape=size,
        strides=tuple(s * data.itemsize for s in stride),
        writeable=False,
    )
    return _Tensor(np.array(view, dtype=data.dtype.newbyteorder("="), order="C"))  # a copy


def _is_ints(values: object) -> bool:
    return isinstance(values, tuple) and all(type(v) is int and v >= 0 for v in values)


class _Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` with an allowlist of globals and storages read from the archive."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, order: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._order = order  # "<" or ">"
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return _Allowed(OrderedDict)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _Allowed(_rebuild_tensor)
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise NotRecognised(f"global {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise NotRecognised("persistent id")
        _, kind, key, location, numel = pid
        if not (
            isinstance(kind, _StorageType)
            and isinstance(key, str)
            and isinstance(location, str)
            and type(numel) is int
            and numel >= 0
        ):
            raise NotRecognised("persistent id")
        dtype = np.dtype(self._order + STORAGE_DTYPES[kind.name])
        cached = self._storages.get(key)
        if cached is not None:
            if cached.data.dtype != dtype or cached.data.size != numel:
                raise NotRecognised(f"storage {key!r} read with two types")
            return cached
        try:
            raw = self._archive.read(f"{self._prefix}data/{key}")
        except KeyError as exc:
            raise NotRecognised(f"missing storage record {key!r}") from exc
        if len(raw) != numel * dtype.itemsize:
            raise NotRecognised(f"storage record {key!r} has the wrong length")
        storage = _Storage(np.frombuffer(raw, dtype=dtype))
        self._storages[key] = storage
        return storage


def read_zip_checkpoint(path: str | Path) -> Any | None:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays; ``None`` if not handled.

    Handles zip archives whose pickle holds plain containers (dicts, ``OrderedDict`` with
    attributes such as ``_metadata``, lists, tuples, numbers, strings) and float16/32/64 CPU
    tensors, with a dict at the top. Returns ``None`` for everything else (including
    unreadable files): the caller then uses ``torch.load``, which gives the usual errors.
    """
    try:
        return _read(Path(path))
    except Exception:  # anything unexpected in a file: torch.load decides and explains
        return None


def _read(path: Path) -> Any:
    with open(path, "rb") as handle:
        if handle.read(4) != ZIP_MAGIC:  # torch.load's own test for the zip format
            raise NotRecognised("not a zip archive (legacy torch.save format?)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if not names or "/" not in names[0]:
            raise NotRecognised("no archive directory")
        prefix = names[0].split("/", 1)[0] + "/"
        if not all(n.startswith(prefix) for n in names):
            raise NotRecognised("records in several directories")
        present = set(names)
        version = next(
            (
                archive.read(prefix + r)
                for r in ("version", ".data/version")
                if prefix + r in present
            ),
            None,
        )
        if version is None or version.decode("ascii").strip() not in KNOWN_VERSIONS:
            raise NotRecognised("unknown archive version")
        if prefix + "constants.pkl" in present or prefix + "data.pkl" not in present:
            raise NotRecognised("not a torch.save archive (TorchScript?)")
        order = byte_order(archive, prefix, present)
        if order is None:
            raise NotRecognised("unknown byte order")
        data = archive.read(prefix + "data.pkl")
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name not in ALLOWED_OPCODES:
                raise NotRecognised(f"pickle opcode {opcode.name}")
        obj = _Unpickler(data, archive, prefix, order).load()
    if not isinstance(obj, dict):
        raise NotRecognised("not a dict at the top")
    return _arrays(obj, set())


def _arrays(obj: Any, seen: set[int]) -> Any:
    """``obj`` with every rebuilt tensor replaced by its array (dicts and lists in place)."""
    if isinstance(obj, _Tensor):
        return obj.array
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if id(obj) in seen:
        return obj
    if isinstance(obj, tuple):
        return tuple(_arrays(v, seen) for v in obj)
    seen.add(id(obj))
    if isinstance(obj, list):
        obj[:] = [_arrays(v, seen) for v in obj]
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if not (key is None or isinstance(key, str | int | float)):
                raise NotRecognised(f"dict key of type {type(key).__name__}")
            obj[key] = _arrays(value, seen)
        for name, value in vars(obj).items() if type(obj) is OrderedDict else ():
            setattr(obj, name, _arrays(value, seen))
    else:
        raise NotRecognised(f"unexpected object {type(obj).__name__}")
    return obj


def byte_order(archive: zipfile.ZipFile, prefix: str, present: set[str]) -> str | None:
    """The numpy byte-order mark of a torch archive's tensors: ``"<"`` or ``">"`` by its
    ``byteorder`` record, ``"<"`` without one, ``None`` for a record it cannot read."""
    if prefix + "byteorder" not in present:
        return "<"
    mark = archive.read(prefix + "byteorder")
    return {b"little": "<", b"big": ">"}.get(mark)
