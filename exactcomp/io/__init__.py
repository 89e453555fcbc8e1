"""Reading and writing networks: the format follows the file suffix.

``.pt`` / ``.pth`` are PyTorch checkpoints and TorchScript archives, ``.pt2`` is a
``torch.export`` program (all read by :mod:`exactcomp.io.torch_io`), ``.onnx`` is ONNX
(:mod:`exactcomp.io.onnx_io`), ``.nnet`` is the ACAS Xu text format (:mod:`exactcomp.io.nnet`,
read only). Each reader is imported only when its format is used, so a problem with one
format's dependencies never breaks the others. Every write is atomic (temporary file, then
rename) and can be told which files are inputs, so that it never overwrites one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputFileError, OutputPathError
from ..network import Network
from .atomic import atomic_open, atomic_path, atomic_write, check_output_path

__all__ = [
    "LOAD_SUFFIXES",
    "SAVE_SUFFIXES",
    "atomic_open",
    "atomic_path",
    "atomic_write",
    "check_output_path",
    "check_not_source",
    "check_source",
    "check_save_path",
    "larger_than_input",
    "load",
    "write_source_instead",
    "save",
    "to_torch_module",
]

#: Suffix -> format name, for reading and for writing.
LOAD_SUFFIXES = {
    ".pt": "torch",
    ".pth": "torch",
    ".pt2": "torch",
    ".onnx": "onnx",
    ".nnet": "nnet",
}
SAVE_SUFFIXES = {".pt": "torch", ".pth": "torch", ".onnx": "onnx", ".nnet": "nnet"}


def load(path_or_module: Any, *, trust_pickle: bool = False, nnet_units: str = "raw") -> Network:
    """Read a network from a file (format by suffix) or an in-memory ``nn.Module``.

    Parameters
    ----------
    path_or_module:
        A path ending in ``.pt``, ``.pth``, ``.pt2``, ``.onnx`` or ``.nnet``; a
        ``torch.nn.Module``; or a
        :class:`Network` (returned unchanged, so APIs can accept either).
    trust_pickle:
        For PyTorch files only: allow loading a module pickled whole, which can run code.
    nnet_units:
        For ``.nnet`` files only: ``"raw"`` (normalisation folded in) or ``"normalised"``
        (the stored network, normalised inputs and outputs); see :mod:`exactcomp.io.nnet`.

    Raises
    ------
    InputFileError
        Unknown suffix, missing or unreadable file (and the format reader's own errors).
    """
    if isinstance(path_or_module, Network):
        return path_or_module
    if not isinstance(path_or_module, str | os.PathLike):
        from .torch_io import load_torch

        if _is_torch_module(path_or_module):
            return load_torch(path_or_module)
        raise InputFileError(
            f"cannot load a {type(path_or_module).__name__}: give a file path, a "
            "torch.nn.Module or an exactcomp Network"
        )
    path = Path(path_or_module)
    fmt = _format(path, LOAD_SUFFIXES, "read")
    if fmt == "torch":
        from .torch_io import load_torch

        net = load_torch(path, trust_pickle=trust_pickle)  # as the other readers: the source
        return Network(net.layers, net.dtype, {**net.meta, "source": str(path)})
    if not path.is_file():
        raise InputFileError(f"model file {str(path)!r} not found; check the path")
    if fmt == "onnx":
        return _import("onnx_io", "ONNX").load_onnx(path)
    return _import("nnet", ".nnet").load_nnet(path, units=nnet_units)


def check_source(net: Network, boxes: Iterable[Any]) -> None:
    """Re-check ``net`` against the file it was read from, on the analysis domain ``boxes``.

    - ONNX (:func:`exactcomp.io.onnx_check.check_on_domain`): the file is run in onnxruntime
      on the corners, faces and random points of each box, since the load-time check could not
      know the domain.
    - ``.nnet`` (:func:`exactcomp.io.nnet.nnet_domain_check`): a box must lie within the
      file's input limits, outside which a ``.nnet`` consumer clips its inputs.

    Other formats are read exactly and need nothing.

    Raises
    ------
    InvalidNetworkError
        The file computes something else than ``net`` somewhere on the domain.
    InvalidDomainError
        A box leaves a ``.nnet`` file's input limits.
    """
    boxes = list(boxes)
    if net.meta.get("format") == "onnx":
        _import("onnx_check", "ONNX").check_on_domain(net, boxes)
    if net.meta.get("format") == "nnet":
        _import("nnet", ".nnet").nnet_domain_check(net, boxes)


def save(
    net: Network,
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    like: Any = None,
    boxes: Iterable[Any] = (),
    overwrite: bool = False,
) -> None:
    """Write ``net`` to ``path`` atomically, in the format given by the suffix.

    Never over the file ``net`` (or the network it was derived from: passes keep ``meta``)
    was read from, ``net.meta["source"]``, unless ``overwrite``: a compressed copy saved over
    its original loses the original, which is what the comparison needs.

    Parameters
    ----------
    net:
        The network; saved in ``net.dtype`` (the precision of the checkpoint it came from).
    path:
        Destination ending in ``.pt``, ``.pth``, ``.onnx`` or ``.nnet``
        (:func:`exactcomp.io.nnet_writer.save_nnet`: exact, read back and compared).
    inputs:
        Files the run read; ``path`` must not be any of them (checked with
        :func:`check_output_path`, which also checks the directory is writable).
    overwrite:
        Allow ``path`` to be ``net.meta["source"]`` (never one of ``inputs``).
    like:
        For ONNX only: a source model whose input/output names and shapes to mirror.
    boxes:
        For PyTorch files: boxes on whose corners and samples the file read back is run in
        torch against ``net``, besides ``[-1, 1]^n`` (ONNX files are run in onnxruntime on
        ``[-1, 1]^n``). For ``.nnet`` files of a network not read from one: the input limits
        are the hull of the boxes.

    Raises
    ------
    OutputPathError
        Unknown or read-only suffix, ``path`` equal to an input or (without ``overwrite``)
        to the file ``net`` was read from, or an unwritable directory.
    """
    target = Path(path)
    fmt = _format(target, SAVE_SUFFIXES, "write")
    check_output_path(target, inputs)
    check_not_source(target, net, overwrite)
    if fmt == "torch":
        from .torch_io import save_torch

        save_torch(net, target, list(boxes))
        return
    if fmt == "nnet":
        nnet_writer = _import("nnet_writer", ".nnet")
        with atomic_path(target) as tmp:
            nnet_writer.save_nnet(net, tmp, list(boxes))
        return
    onnx_io = _import("onnx_io", "ONNX")
    with atomic_path(target) as tmp:
        onnx_io.save_onnx(net, tmp, like=like)


def to_torch_module(net: Network) -> Any:  # -> torch.nn.Sequential
    """``net`` as a ``torch.nn.Sequential`` (flat in, flat out, in ``net.dtype``): Linear/ReLU,
    with ``Conv2d`` and pool modules where the layers carry a convolution or pool; see
    :func:`exactcomp.io.torch_io.to_torch_module`. ``to_torch_module(load("small.pt"))``
    rebuilds the module a ``.pt`` file written by :func:`save` holds."""
    return _import("torch_io", "PyTorch").to_torch_module(net)


def larger_than_input(output: str | Path, model: Any, *, any_format: bool = False) -> str | None:
    """The warning to give when the file written at ``output`` is larger in bytes than the
    file ``model`` it came from, both of one format (PyTorch, ONNX or ``.nnet``); ``None``
    otherwise (or when either is not a file). ``any_format=True``: files of any two formats
    (a lossy result, which is meant to be smaller: ``quantize`` writes dense matrices, so a
    convolutional network's file grows).

    The rewrite written has the fewest parameters as written of the candidates, the network
    read among them (:func:`~exactcomp.rewrite.channels.choose_structured`), and the writers
    keep convolutions as such, so a larger file of the same format means the input stored
    the network more compactly (another layout or dtype, or ``MatMul``/``Add`` where a dense
    ONNX file is written as ``Gemm`` with its reshapes), which the user must be told.
    """
    if not isinstance(model, str | Path):
        return None
    src, out = Path(model), Path(output)
    kinds = {LOAD_SUFFIXES.get(src.suffix.lower()), LOAD_SUFFIXES.get(out.suffix.lower())}
    if not any_format and len(kinds) != 1:
        return None
    if not (src.is_file() and out.is_file()):
        return None
    n_out, n_src = out.stat().st_size, src.stat().st_size
    if n_out <= n_src:
        return None
    return (
        f"the file written ({n_out:,} bytes) is larger than the input {src.name} ({n_src:,} bytes)"
    )


def write_source_instead(output: str | Path, model: Any, least: int | None = None) -> int | None:
    """Write a byte copy of the file ``model`` at ``output`` (atomically) instead of a rewrite
    that is larger, both of the same suffix; returns the rewrite's bytes (``None``: nothing
    was written). ``least=None``: the rewrite is the file just written at ``output``, replaced
    when :func:`larger_than_input` (the one comparison of sizes) says it is larger;
    ``least``: a lower bound of the bytes the rewrite would take, not written yet, which is
    never written when that already exceeds the input's.

    Only for a network that *is* ``model``'s function, which the caller knows (a lossy result
    proven within 0 of it: no edit was accepted, and what the exact pass removed did not make
    the file smaller): the input then holds the same function, exactly and everywhere, in
    fewer bytes. ONNX files only: another suffix is a format change the user asked for, and a
    ``.pt`` that exactcomp writes records the architecture (the modules, ReLU flags), which
    a bare state_dict input does not (its reading assumed one, a note): both are written as
    they are, with the size warning.
    """
    if not isinstance(model, str | Path):
        return None
    src, out = Path(model), Path(output)
    if {src.suffix.lower(), out.suffix.lower()} != {".onnx"} or not src.is_file():
        return None
    if least is None and larger_than_input(out, src) is not None:
        least = out.stat().st_size
    elif least is None or least <= src.stat().st_size:
        return None
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    return least


def check_not_source(path: str | Path, net: Network, overwrite: bool = False) -> None:
    """Refuse (:class:`OutputPathError`) to write over ``net.meta["source"]``, the file ``net``
    or the network it was derived from was read from, unless ``overwrite``."""
    source = net.meta.get("source")
    if source and not overwrite:
        try:
            check_output_path(path, [str(source)])
        except OutputPathError:
            raise OutputPathError(
                f"{str(path)!r} is the file this network was read from ({str(source)!r}); "
                "save it elsewhere, or pass overwrite=True to replace that file"
            ) from None


def check_save_path(path: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Check, before any work, that :func:`save` can write ``path``: a known suffix, not an
    input, a writable directory (raises :class:`OutputPathError` otherwise)."""
    target = Path(path)
    _format(target, SAVE_SUFFIXES, "write")
    return check_output_path(target, inputs)


def _format(path: Path, table: dict[str, str], verb: str) -> str:
    suffix = path.suffix.lower()
    if suffix in table:
        return table[suffix]
    known = ", ".join(table)
    if verb == "write" and suffix in LOAD_SUFFIXES:
        raise OutputPathError(f"writing {suffix} files is not supported; use one of {known}")
    message = f"cannot {verb} {str(path)!r}: unknown file type {suffix or '(no suffix)'!r}"
    if verb == "write":
        raise OutputPathError(f"{message}; use one of {known}")
    raise InputFileError(f"{message}; use one of {known}")


def _import(module: str, label: str) -> Any:
    """Import a format module lazily, turning a missing dependency into a clear error."""
    import importlib

    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        raise InputFileError(f"{label} support is not available here ({exc})") from exc


def _is_torch_module(obj: Any) -> bool:
    """True for a ``torch.nn.Module``; never imports torch (no module exists before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)
