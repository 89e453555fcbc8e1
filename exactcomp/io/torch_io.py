"""PyTorch checkpoints <-> the network IR.

Reading is safe by default: every file is opened with an unpickler that can only rebuild
tensors and plain containers, never run code. That covers the two forms training scripts
usually write: a ``state_dict`` of an MLP, and a checkpoint dict that wraps one under
``state_dict`` / ``model_state_dict`` / ``model``. The common case (a zip archive of
float16/32/64 tensors) is read without torch by :mod:`exactcomp.io.torch_zip`, which saves the
seconds torch takes to import; anything else goes to ``torch.load(weights_only=True)``, which
gives the same values and its own errors. A module pickled whole (``torch.save(model)``) needs
the full unpickler, which can execute arbitrary code, so it is loaded only when the caller
passes ``trust_pickle=True`` (the CLI's ``--trust-pickle``).

torch itself is imported only inside the functions that need it (the fallback reader, modules
in memory, saving), so reading a plain checkpoint never imports it. Tensors therefore arrive
either as numpy arrays (fast reader) or as torch tensors; the readers below accept both.

A ``state_dict`` carries no activations, so :mod:`exactcomp.io.torch_state` reads it as the
conventional MLP (Linear -> ReLU -> ... -> Linear) and the network carries a note saying that
this was assumed, which the CLI prints and the report stores. Files written by
:func:`save_torch` record the exact ReLU pattern (and a Softmax head) in the ``state_dict``'s
``_metadata`` (which ``load_state_dict`` ignores): those are read without assumption, so
networks with a ReLU after the output layer, or two affine layers in a row, survive a round
trip. A convolutional network is saved as the ``state_dict`` of its ``Conv2d``/pool module
(:mod:`exactcomp.io.torch_conv`) with that module's layout recorded there too; reading the
file rebuilds the module and reads it with :func:`module_to_network`.

The formats that carry the graph are read exactly: ``torch.export`` programs (``.pt2``, by
:mod:`exactcomp.io.torch_export`, without torch and without unpickling anything) and
TorchScript archives of an ``nn.Sequential`` (:mod:`exactcomp.io.torch_script`). Modules (in
memory, pickled whole, TorchScript) go through :class:`~exactcomp.io.torch_chain.ChainBuilder`,
which also folds eval-mode BatchNorm1d and keeps a final Softmax/LogSoftmax as the head.
"""

from __future__ import annotations

import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Box
from ..errors import InputFileError, UnsupportedModelError, VerificationError
from ..network import Network
from .atomic import atomic_path
from .heads import HEADS
from .torch_chain import LAYER_KINDS, ChainBuilder
from .torch_conv import (
    check_linear,
    has_structure,
    head_modules,
    linear_module,
    nn_class,
    plan,
    recorded_module,
    to_torch_conv_module,
    torch_dtype,
)
from .torch_spatial import SPATIAL_KINDS, SpatialSteps
from .torch_state import METADATA_KEY, state_dict_to_network
from .torch_zip import read_zip_checkpoint

if TYPE_CHECKING:
    from torch import nn

#: Checkpoint-dict keys that may hold the model's ``state_dict`` (or the module), in order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def _is_module(obj: Any) -> bool:
    """True for a ``torch.nn.Module`` (without importing torch: none exists before it is)."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(obj, torch_module.nn.Module)


def _is_tensor(obj: Any) -> bool:
    """True for a tensor: a numpy array from the fast reader, or a torch tensor."""
    if isinstance(obj, np.ndarray):
        return True
    torch_module = sys.modules.get("torch")
    return torch_module is not None and torch_module.is_tensor(obj)


# --------------------------------------------------------------------------- loading
def load_torch(path_or_module: str | Path | nn.Module, *, trust_pickle: bool = False) -> Network:
    """Read a PyTorch network (checkpoint, export program, TorchScript, or module) into the IR.

    Parameters
    ----------
    path_or_module:
        A ``.pt``/``.pth`` file (state_dict, checkpoint dict, pickled module, TorchScript), a
        ``.pt2`` ``torch.export`` program, or an ``nn.Module`` already in memory.
    trust_pickle:
        Allow ``torch.load(weights_only=False)`` for a module pickled whole. Unpickling can run
        arbitrary code, so only set it for files from a trusted source.

    Returns
    -------
    Network
        In float64, with ``dtype`` the checkpoint's dtype (e.g. ``"float32"``) and ``meta``
        holding ``format="torch"``, the ``notes`` to show the user (e.g. that a state_dict's
        architecture was assumed) and the ``head`` (``"softmax"``/``"log_softmax"``) if any.

    Raises
    ------
    InputFileError
        Missing file, not a PyTorch checkpoint, or a pickled module without ``trust_pickle``.
    UnsupportedModelError
        A layer or op outside Linear/ReLU/BatchNorm1d/Dropout/Flatten/Identity and a final
        Softmax/LogSoftmax (named in the message).
    InvalidNetworkError
        NaN/inf values, or weight shapes that do not chain.
    """
    if _is_module(path_or_module):
        return module_to_network(path_or_module)
    path = Path(path_or_module)
    if not path.exists():
        raise InputFileError(f"model file {str(path)!r} not found; check the path")
    if not path.is_file():
        raise InputFileError(f"model path {str(path)!r} is not a file")
    members = _zip_members(path)
    if any(n.endswith("/archive_format") for n in members) or path.suffix.lower() == ".pt2":
        from .torch_export import load_export

        return load_export(path)
    if any(n.endswith("/constants.pkl") for n in members):
        from .torch_script import load_torchscript

        return load_torchscript(path)
    obj = _read_checkpoint(path, trust_pickle=trust_pickle)
    return _object_to_network(obj, source=str(path))


def _zip_members(path: Path) -> list[str]:
    """The names in a zip archive (TorchScript and export archives are zips); [] if not one."""
    try:
        if not zipfile.is_zipfile(path):
            return []
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def _read_checkpoint(path: Path, *, trust_pickle: bool) -> Any:
    """The checkpoint's object, read safely; every failure becomes an :class:`InputFileError`.

    The torch-free reader first (tensors as numpy arrays); whatever it does not handle goes
    to ``torch.load`` with safe defaults.
    """
    fast = read_zip_checkpoint(path)
    if fast is not None:
        return fast
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        global_name = _unsafe_global(exc)
        if global_name is None:
            raise InputFileError(
                f"{str(path)!r} is not a PyTorch checkpoint ({_short(exc)}); expected a "
                "state_dict or a checkpoint saved with torch.save"
            ) from exc
        if not trust_pickle:
            raise InputFileError(
                f"{str(path)!r} is a pickled module or object ({global_name}), which can run "
                "code when loaded; pass --trust-pickle (trust_pickle=True) only if you trust "
                "its source, or save model.state_dict() instead"
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputFileError(
            f"could not unpickle {str(path)!r} ({_short(exc)}); if it is a custom class, save "
            "model.state_dict() instead"
        ) from exc


def _unsafe_global(exc: BaseException) -> str | None:
    """The class name a weights-only load refused, or None if the file is simply not a pickle."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:120]}" if first else type(exc).__name__


def _object_to_network(obj: Any, *, source: str, depth: int = 0) -> Network:
    """Dispatch on what the file held: a module, a state_dict, or a wrapper dict."""
    if _is_module(obj):
        return module_to_network(obj)
    if isinstance(obj, Mapping) and obj and all(_is_tensor(v) for v in obj.values()):
        module = recorded_module(obj)  # a convolutional network written by save_torch
        return state_dict_to_network(obj) if module is None else module_to_network(module)
    if isinstance(obj, Mapping) and depth < 2:
        for key in WRAPPER_KEYS:
            if key in obj and (isinstance(obj[key], Mapping) or _is_module(obj[key])):
                return _object_to_network(obj[key], source=source, depth=depth + 1)
    what = f"a dict with keys {list(obj)[:6]}" if isinstance(obj, Mapping) else type(obj).__name__
    raise InputFileError(
        f"{source!r} holds {what}, not a model: expected a state_dict (name -> tensor), a "
        f"checkpoint dict with one of {list(WRAPPER_KEYS)}, or an nn.Module"
    )


def module_to_network(module: nn.Module) -> Network:
    """Read an ``nn.Sequential`` (nested ones too) of the layers :data:`MODULE_KINDS`.

    Linear, ReLU, an eval-mode BatchNorm1d right after a Linear (folded into it), Dropout,
    Flatten, Identity, and a final Softmax/LogSoftmax kept as the head (see
    :mod:`~exactcomp.io.torch_chain`); and, after an ``nn.Unflatten(1, (C, H, W))`` that
    gives the flat input its image shape, Conv2d (with a ZeroPad2d before it and a
    BatchNorm2d after it), MaxPool2d, AvgPool2d, kept as convolutions and pools
    (:mod:`~exactcomp.io.torch_spatial`). Any other layer raises
    :class:`UnsupportedModelError` naming it; so does a subclass of an accepted layer (its
    ``forward`` may differ).
    """
    chain = ChainBuilder("module")
    steps = SpatialSteps(chain)
    for name, leaf in _leaves(module, ""):
        steps.feed(name, _kind(leaf, name), leaf)
    steps.finish()
    return chain.network()


#: Every layer kind the module reader accepts: the chain's and the spatial ones.
MODULE_KINDS = (*LAYER_KINDS, *SPATIAL_KINDS)


def _kind(leaf: nn.Module, name: str) -> str:
    """The class name of a ``torch.nn`` layer of an accepted type (exactly that class)."""
    cls = type(leaf)
    if cls.__name__ in MODULE_KINDS and nn_class(cls.__name__) is cls:
        return cls.__name__
    base = next((k for k in MODULE_KINDS if isinstance(leaf, nn_class(k) or ())), None)
    if base is not None:
        raise UnsupportedModelError(
            f"layer {name!r} ({cls.__name__}) subclasses nn.{base}; only the torch.nn class "
            "itself is read (a subclass may compute something else)"
        )
    raise UnsupportedModelError(
        f"unsupported layer {name!r} ({cls.__name__}); supported in nn.Sequential: "
        f"{', '.join(MODULE_KINDS)}"
    )


def _leaves(module: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The layers of (nested) Sequentials in execution order, with their dotted names."""
    from torch import nn

    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        out: list[tuple[str, nn.Module]] = []
        for child_name, child in module.named_children():
            out += _leaves(child, f"{name}.{child_name}" if name else child_name)
        return out
    custom = isinstance(module, nn.Sequential) or type(module) is nn.Module
    if custom or (list(module.children()) and type(module).__name__ not in MODULE_KINDS):
        raise UnsupportedModelError(
            f"module {name or '<root>'!r} ({type(module).__name__}) has a custom forward() that "
            "cannot be read; pass an nn.Sequential, or save a torch.export program (.pt2)"
        )
    return [(name or "<root>", module)]


# --------------------------------------------------------------------------- saving
def to_torch_module(net: Network) -> nn.Sequential:
    """The network as ``nn.Sequential(Linear, ReLU, Linear, ...)`` in ``net.dtype``.

    Every affine layer becomes an ``nn.Linear`` (always with a bias), followed by ``nn.ReLU``
    when the layer has one, including after the last layer if the network ends with a ReLU.
    A network read with a Softmax/LogSoftmax head (``net.meta["head"]``) gets it back as the
    last module, so the module computes the original function, not the logits.
    Zero-width layers (``nn.Linear(n, 0)``) are built as well: they compute an empty vector,
    and the next layer then has zero inputs and outputs only its bias.

    A network with convolutions or pools (layers carrying a :class:`~exactcomp.conv.ConvSpec`
    or :class:`~exactcomp.conv.PoolLevel`) gets ``Conv2d``/pool modules for them instead
    (:func:`~exactcomp.io.torch_conv.to_torch_conv_module`; still flat in, flat out).
    """
    from torch import nn

    if has_structure(net):
        return to_torch_conv_module(net)
    dtype = torch_dtype(net.dtype)
    modules: list[nn.Module] = []
    for k, layer in enumerate(net.layers):
        modules.append(linear_module(layer, dtype, f"layer {k}"))
        if layer.relu:
            modules.append(nn.ReLU())
    modules += head_modules(net)
    return nn.Sequential(*modules).eval()


def check_torch_target(net: Network) -> None:
    """Refuse, by layer, a network a ``.pt`` state_dict cannot hold: a layer held sparse (a
    convolution or max pool too large to hold densely) that is not written as a ``Conv2d``
    or pool (it has lost its structure) is too large for a dense ``nn.Linear``
    (:func:`~exactcomp.io.torch_conv.check_linear`)."""
    for kind, k, _ in plan(net):
        if kind == "linear":
            check_linear(net.layers[k], f"layer {k}")


def save_torch(net: Network, path: str | Path, boxes: Sequence[Box] = ()) -> int:
    """Write ``to_torch_module(net).state_dict()`` to ``path`` atomically, in ``net.dtype``.

    Returns the number of bytes written. Before the rename, the file is read back into the
    module and run in torch (float64) on the corners, faces and samples of ``[-1, 1]^n`` and
    of ``boxes`` (:func:`~exactcomp.io.torch_state.check_saved_state`); if it differs from
    ``net`` beyond the rounding of its weights, nothing is written (:class:`VerificationError`).

    **MLPs.** The keys are the ``nn.Sequential`` indices: ``0.weight``, ``0.bias``,
    ``2.weight``, ... (index ``i + 1`` holds the ReLU after Linear ``i``, so it has no key).
    To load the file into a plain ``nn.Sequential``, rebuild the modules from the weight
    shapes::

        import torch
        from torch import nn

        sd = torch.load("small.pt", weights_only=True)
        weights = [v for k, v in sd.items() if k.endswith(".weight")]
        modules = []
        for i, w in enumerate(weights):
            modules.append(nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype))
            if i < len(weights) - 1:  # ReLU between layers, none after the last
                modules.append(nn.ReLU())
        model = nn.Sequential(*modules)
        model.load_state_dict(sd)   # strict: fails loudly if the layout differs

    This recipe matches every network whose ReLUs sit exactly between its layers (the usual
    MLP, and what compression produces from one). A network with a ReLU after its output
    layer, or with two affine layers in a row, is still saved exactly, but its module has a
    different layout: use ``exactcomp.io.to_torch_module(exactcomp.load("small.pt"))``, which
    reads the ReLU flags recorded in ``sd._metadata["exactcomp"]["relu"]``.

    **Convolutional networks** (layers with a convolution or pool structure) are written as
    the ``state_dict`` of :func:`~exactcomp.io.torch_conv.to_torch_conv_module`: ``Conv2d``
    weights stay 4-D kernels, pools have no parameters, and ``nn.Unflatten``/``nn.Flatten``
    keep the module flat in, flat out. A layer held sparse is written too when it is a
    convolution or pool. The layout is recorded as ``sd._metadata["exactcomp"]["modules"]``
    (:func:`~exactcomp.io.torch_conv.module_record`: one dict of constructor arguments per
    module), from which the module is rebuilt::

        import torch
        from torch import nn

        sd = torch.load("small.pt", weights_only=True)
        modules = []
        for spec in sd._metadata["exactcomp"]["modules"]:
            args = {k: tuple(v) if isinstance(v, list) else v
                    for k, v in spec.items() if k != "kind"}
            modules.append(getattr(nn, spec["kind"])(**args))
        model = nn.Sequential(*modules).to(next(iter(sd.values())).dtype)
        model.load_state_dict(sd)   # strict

    or, in one line, ``exactcomp.io.to_torch_module(exactcomp.load("small.pt"))``: reading
    the file rebuilds that module and reads it back with :func:`module_to_network`.

    A network with a Softmax/LogSoftmax head (read from a model that ended with one) records
    it as ``sd._metadata["exactcomp"]["head"]`` (MLP) or as the last module (conv); the
    state_dict has no entry for it (it has no parameters), so append ``nn.Softmax(dim=-1)``
    to the MLP recipe's module, or use ``to_torch_module``, which does.
    """
    import torch

    from .torch_conv import module_record
    from .torch_state import check_saved_state

    check_torch_target(net)
    module = to_torch_module(net)
    state = module.state_dict()
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        record: dict[str, Any]
        if has_structure(net):
            record = {"modules": module_record(module)}
        else:
            record = {"relu": [layer.relu for layer in net.layers]}
            if net.meta.get("head") in HEADS:
                record["head"] = net.meta["head"]
        metadata[METADATA_KEY] = record
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
        worst = check_saved_state(tmp, net, module, boxes)
        if worst.excess > 0:
            raise VerificationError(
                f"the .pt file written for {str(path)!r} differs from the network by up to "
                f"{worst.max_abs_diff:.3g} in torch (allowed {worst.allowed_at_worst:.3g}); "
                "nothing was written"
            )
        return tmp.stat().st_size
