"""TorchScript archives (``torch.jit.save`` of a scripted or traced module).

A TorchScript module carries its graph as TorchScript code. Two readings, both exact:

* a scripted ``nn.Sequential`` of the layers the module reader accepts
  (:func:`~exactcomp.io.torch_chain.feed`'s, and the convolutions, pools, pads and
  ``Unflatten`` of :mod:`~exactcomp.io.torch_spatial`) is read by its layers:

  1. the module's children are read by attribute (weights, ``eps``, ``dim``...);
  2. the layout is rebuilt from genuine ``torch.nn`` classes with those attributes,
     scripted, and its TorchScript code compared with the archive's, file by file. Only if
     every file is identical is this network returned;

* any other module (traced, whose layers keep no hyper-parameters; scripted with its own
  ``forward``; or code that differs from what torch writes, e.g. edited) is read from its
  inlined graph by :mod:`~exactcomp.io.torch_graph`, which reads an ``if`` on known flags
  (a scripted module's BatchNorm, dropout, its own attributes) by its taken branch and
  refuses every op outside a chain of known layers by name: a file that claims to be
  ``nn.Linear`` but computes something else is read as what it computes, or refused.

No archive whose code defines ``__setstate__`` (the one hook ``torch.jit.load`` runs) is
loaded, so loading runs no code of the file's. Refusals advise saving a ``torch.export``
program instead.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from ..errors import InputFileError, UnsupportedModelError
from ..network import Network
from .torch_chain import LAYER_KINDS, ChainBuilder
from .torch_spatial import SPATIAL_KINDS, SpatialSteps

__all__ = ["load_torchscript"]

_ADVICE = (
    "save a torch.export program instead: torch.export.save(torch.export.export(model.eval(), "
    "(x,)), 'model.pt2')"
)
_MANGLE = re.compile(r"___torch_mangle_\d+")
#: A mangled segment of a module path (``activation.___torch_mangle_5.ReLU``, or as a file
#: ``activation/___torch_mangle_5.py``), removed whole.
_MANGLED = re.compile(r"[./]___torch_mangle_\d+(?=[.])")
_FINAL = re.compile(r"^\s+\w+ : Final\[")
_TEMP = re.compile(r"\b_\d+\b")
_NN = "__torch__.torch.nn.modules."


def load_torchscript(path: str | Path) -> Network:
    """Read a TorchScript archive: a scripted ``nn.Sequential`` by its layers, checked
    against the code torch writes for them (see the module docs); any other module (traced,
    or scripted with its own ``forward``) by its graph
    (:func:`~exactcomp.io.torch_graph.graph_to_network`)."""
    path = Path(path)
    code = _code_files(path)
    if any(b"__setstate__" in text for text in code.values()):
        raise UnsupportedModelError(
            f"{str(path)!r} is a TorchScript archive whose code defines __setstate__ (run "
            f"when it is loaded); it is not read: {_ADVICE}"
        )
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and others for bad archives
        raise InputFileError(
            f"could not load TorchScript archive {str(path)!r} ({type(exc).__name__}); {_ADVICE}"
        ) from None
    if all("/code/__torch__/torch/nn/" in n for n in code):
        network = _scripted_sequential(path, code, module)
        if network is not None:
            return network
    from .torch_graph import graph_to_network

    try:
        return graph_to_network(module, repr(str(path)))
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{exc}; or {_ADVICE}") from None


def _scripted_sequential(path: Path, code: dict[str, bytes], module: Any) -> Network | None:
    """The network of a scripted ``nn.Sequential`` whose code is exactly what torch writes
    for its layers; None where it is not one (traced: its layers lack their attributes, or
    its code differs), for the graph reader to read."""
    import torch

    chain = ChainBuilder("TorchScript")
    steps = SpatialSteps(chain)
    try:
        reference = _rebuild(steps, module, "")
        steps.finish()
    except AttributeError:  # traced modules keep only tensors, not hyper-parameters
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.script(reference), buffer)
    except Exception as exc:
        raise UnsupportedModelError(
            f"{str(path)!r}: could not rebuild its layers to check them ({type(exc).__name__}); "
            f"{_ADVICE}"
        ) from None
    if _normalised(code) != _normalised(_code_files(buffer)):
        return None
    return chain.network()


def _code_files(source: Path | io.BytesIO) -> dict[str, bytes]:
    """The archive's TorchScript code files (``code/**.py``), by name."""
    try:
        with zipfile.ZipFile(source) as archive:
            return {
                n: archive.read(n)
                for n in archive.namelist()
                if "/code/" in n and n.endswith(".py")
            }
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"not a readable TorchScript archive ({exc})") from None


def _normalised(code: dict[str, bytes]) -> list[tuple[str, str]]:
    """The archive's code as a sorted list of (module path, top-level ``class``/``def``
    block), with what differs between two scriptings of the same layers taken out:

    - the grouping into files and the mangling: a session that scripts a second variant of
      a class (``nn.ReLU(inplace=True)`` beside ``nn.ReLU()``, ``nn.Softmax`` of another
      ``dim``, a second model) names it ``activation.___torch_mangle_5.ReLU`` in the file
      ``activation/___torch_mangle_5.py``, while a fresh process puts the same class in
      ``activation.py`` beside others. Blocks are compared one by one, the mangled segment
      removed from paths and code alike;
    - the numbering of temporaries (``_0 = ...``), which runs on through a file: renumbered
      by first appearance in each block (a consistent renaming of locals);
    - the order of a class's ``Final`` constant declarations, which follows a set's
      iteration order and so the process's hash seed: each run of them is sorted.

    A list, not a dict: blocks that normalise to one path must all be kept, each compared
    whole (a class's constants are in its text), or an edited one could hide behind a
    genuine one.
    """
    blocks = []
    for name, raw in code.items():
        path = _MANGLED.sub("", name.split("/", 1)[-1]).removesuffix(".py")
        text = _MANGLED.sub("", raw.decode("utf-8", "replace"))
        for block in _top_level_blocks(text):
            blocks.append((path, _renumbered(_sorted_finals(block))))
    return sorted(blocks)


def _top_level_blocks(text: str) -> list[str]:
    """``text`` cut before every unindented line (a ``class``, ``def`` or other statement)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not blocks or (line and not line[0].isspace()):
            blocks.append([])
        blocks[-1].append(line)
    return ["\n".join(b).rstrip() for b in blocks if any(ln.strip() for ln in b)]


def _renumbered(block: str) -> str:
    """The temporaries ``_0, _1, ...`` of ``block`` renamed by order of first appearance."""
    names: dict[str, str] = {}
    return _TEMP.sub(lambda m: names.setdefault(m.group(0), f"_{len(names)}"), block)


def _sorted_finals(text: str) -> str:
    """``text`` with each run of consecutive ``name : Final[...] = ...`` lines sorted."""
    out: list[str] = []
    run: list[str] = []
    for line in text.splitlines():
        if _FINAL.match(line):
            run.append(line)
            continue
        out += sorted(run) + [line]
        run = []
    return "\n".join(out + sorted(run))


#: The torch.nn classes read from a scripted ``nn.Sequential``.
SCRIPT_KINDS = (*LAYER_KINDS, *SPATIAL_KINDS)


def _rebuild(steps: SpatialSteps, module: Any, name: str) -> Any:
    """Feed ``module``'s layers to ``steps``; return the same layout of genuine nn modules."""
    from torch import nn

    kind = _MANGLE.sub("", module._c._type().qualified_name()).replace("..", ".")
    if kind == _NN + "container.Sequential":
        children = [
            (child_name, _rebuild(steps, child, f"{name}.{child_name}" if name else child_name))
            for child_name, child in module.named_children()
        ]
        from collections import OrderedDict

        return nn.Sequential(OrderedDict(children))
    cls_name = kind.rsplit(".", 1)[-1]
    if not kind.startswith(_NN) or cls_name not in SCRIPT_KINDS:
        raise UnsupportedModelError(
            f"TorchScript module {name or '<root>'!r} ({kind.removeprefix('__torch__.')}) is "
            f"not supported; supported in a scripted nn.Sequential: {', '.join(SCRIPT_KINDS)}"
        )
    steps.feed(name or "<root>", cls_name, module)
    return _genuine(cls_name, module)


def _genuine(cls_name: str, m: Any) -> Any:
    """A real ``torch.nn`` module of class ``cls_name`` with ``m``'s hyper-parameters."""
    from torch import nn

    if cls_name == "Linear":
        shape = m.weight.shape
        return nn.Linear(shape[1], shape[0], bias=m.bias is not None)
    if cls_name == "BatchNorm1d":
        return nn.BatchNorm1d(
            m.num_features,
            eps=m.eps,
            momentum=m.momentum,
            affine=m.weight is not None,
            track_running_stats=m.running_mean is not None,
        )
    if cls_name in ("Softmax", "LogSoftmax"):
        return getattr(nn, cls_name)(dim=m.dim)
    if cls_name in ("Sigmoid", "Tanh"):
        return getattr(nn, cls_name)()
    if cls_name == "Flatten":
        return nn.Flatten(m.start_dim, m.end_dim)
    if cls_name in ("Dropout", "AlphaDropout", "FeatureAlphaDropout"):
        return getattr(nn, cls_name)(p=m.p, inplace=m.inplace)
    if cls_name == "ReLU":
        return nn.ReLU(inplace=m.inplace)
    if cls_name in SPATIAL_KINDS:
        return _genuine_spatial(cls_name, m)
    return nn.Identity()


#: The constructor arguments of each spatial class, read from the scripted module.
_SPATIAL_ARGS = {
    "Conv2d": (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "padding_mode",
    ),  # fmt: skip
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
    "AvgPool2d": (
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    ),  # fmt: skip
    "AdaptiveAvgPool2d": ("output_size",),
    "ZeroPad2d": ("padding",),
    "ConstantPad2d": ("padding", "value"),
    "Unflatten": ("dim", "unflattened_size"),
}


def _genuine_spatial(cls_name: str, m: Any) -> Any:
    """A real ``torch.nn`` convolution, pool, pad or ``Unflatten`` with ``m``'s constants."""
    from torch import nn

    args = {a: getattr(m, a) for a in _SPATIAL_ARGS[cls_name]}
    if cls_name == "Conv2d":
        args["bias"] = m.bias is not None
    return getattr(nn, cls_name)(**args)
