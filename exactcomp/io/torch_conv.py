"""A network with convolution structure as a ``torch.nn.Sequential`` of ``Conv2d`` and pools.

:func:`to_torch_conv_module` is :func:`~exactcomp.io.torch_io.to_torch_module` for networks
whose layers carry a :class:`~exactcomp.conv.ConvSpec` or :class:`~exactcomp.conv.PoolLevel`:
a convolution becomes ``nn.Conv2d`` (its ``pads`` through ``nn.ZeroPad2d`` when they are not
symmetric, which ``Conv2d`` cannot express), an intact max-pool block ``nn.MaxPool2d`` (after
``nn.ConstantPad2d(-inf)`` for asymmetric padding), an average pool ``nn.AvgPool2d`` when its
padding is symmetric; anything else is an ``nn.Linear`` on the flattened tensor, exactly as
the dense writer does. ``nn.Unflatten``/``nn.Flatten`` adapt the layout between them, so the
module takes and returns flat ``(batch, features)`` tensors like the dense one. A convolution
of a channels-last input (``ConvSpec.in_axes``) is preceded by :func:`permute_module`,
``x.permute(0, ...)`` (torch has no such ``nn`` class; torchvision's ``ops.Permute`` is the same).

:func:`module_record` describes such a module in plain values (kinds, shapes, strides...),
which :func:`~exactcomp.io.torch_io.save_torch` stores beside its ``state_dict`` so that
:func:`module_from_record` can build the same module again when the file is read; the module
is then read by :func:`~exactcomp.io.torch_io.module_to_network` like any other (one reader of
weights, :mod:`exactcomp.io.torch_spatial` for the spatial layers).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..conv import ConvSpec, PoolLevel
from ..errors import InputFileError, UnsupportedModelError
from ..network import SPARSE_ABOVE, Layer, Network
from .heads import HEAD_CLASSES, ROW_HEADS
from .torch_state import METADATA_KEY

if TYPE_CHECKING:
    import torch
    from torch import nn


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named ``name`` (``"float32"``...); float32 for an unknown name."""
    import torch

    candidate = getattr(torch, name, None)
    if isinstance(candidate, torch.dtype) and candidate.is_floating_point:
        return candidate
    return torch.float32


def check_linear(layer: Layer, what: str) -> None:
    """Refuse, by name, a layer held sparse without a structure to write it as whose dense
    matrix has more than :data:`~exactcomp.network.SPARSE_ABOVE` entries (the size above
    which the readers would not hold it densely either); a smaller one is written densely,
    as the ONNX writer does."""
    if layer.sparse and layer.out_features * layer.in_features > SPARSE_ABOVE:
        raise UnsupportedModelError(
            f"{what} ({layer.out_features} x {layer.in_features}) is held as sparse taps "
            "without a convolution or pool to write it as, too large for a dense nn.Linear "
            "in a .pt file; write .onnx instead"
        )


def linear_module(layer: Layer, dtype: torch.dtype, what: str) -> nn.Linear:
    """``nn.Linear`` holding the layer's matrix and bias (see :func:`check_linear`)."""
    import torch
    from torch import nn

    check_linear(layer, what)
    weight = layer.weight.toarray() if layer.sparse else layer.weight.copy()
    with warnings.catch_warnings():
        # nn.Linear(n, 0) warns that initialising an empty tensor is a no-op: harmless.
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        linear = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(layer.bias.copy()))
    return linear


@functools.cache
def permute_class() -> type:
    from torch import nn

    class Permute(nn.Module):
        """``x.permute(*dims)``, as torchvision's ``ops.Permute``: a channels-last tensor put
        in the ``(N, C, H, W)`` order a ``Conv2d`` reads (no parameters)."""

        def __init__(self, dims: list[int]) -> None:
            super().__init__()
            self.dims = [int(d) for d in dims]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(*self.dims)

    return Permute


def permute_module(dims: list[int]) -> nn.Module:
    """The module computing ``x.permute(*dims)`` (see :func:`permute_class`)."""
    return permute_class()(dims)


def nn_class(kind: str) -> type | None:
    """The module class named ``kind`` that exactcomp writes and reads: ``torch.nn``'s, or
    its own ``Permute`` (:func:`permute_class`); None for neither."""
    from torch import nn

    return permute_class() if kind == "Permute" else getattr(nn, kind, None)


def _pool_block(net: Network, k: int) -> int:
    """The number of layers of the intact pooling block starting at layer ``k`` (0: none).

    The last level may have a ReLU (a pool followed by ``nn.ReLU``): it is written after it.
    """
    first = net.layers[k].structure
    if not isinstance(first, PoolLevel) or first.level != 0:
        return 0
    n = first.levels + 1
    if k + n > len(net.layers):
        return 0
    for i in range(n):
        la = net.layers[k + i]
        if la.structure != first.at_level(i) or (i < first.levels and not la.relu):
            return 0
    if first.kind == "average" and first.pads[:2] != first.pads[2:]:
        return 0  # torch's AvgPool2d pads symmetrically only: written as a Linear
    return n


def plan(net: Network) -> list[tuple[str, int, int]]:
    """How each layer is written: ``(kind, first layer, number of layers)`` with kind
    ``"pool"`` (a pooling block), ``"conv"`` (a :class:`ConvSpec`) or ``"linear"``."""
    out: list[tuple[str, int, int]] = []
    k = 0
    while k < len(net.layers):
        block = _pool_block(net, k)
        if block:
            out.append(("pool", k, block))
            k += block
            continue
        conv = isinstance(net.layers[k].structure, ConvSpec)
        out.append(("conv" if conv else "linear", k, 1))
        k += 1
    return out


def has_structure(net: Network) -> bool:
    """True when :func:`to_torch_conv_module` writes some layer as a Conv2d or a pool."""
    return any(kind != "linear" for kind, _, _ in plan(net))


def to_torch_conv_module(net: Network) -> Any:  # -> torch.nn.Sequential
    """The network as ``nn.Sequential`` with ``Conv2d``/pool modules where it has structure.

    Same function as :func:`~exactcomp.io.torch_io.to_torch_module` (flat input and output,
    ``net.dtype``), far fewer parameters for a convolutional network. A layer held sparse
    must be written as a Conv2d or pool (its kernel or geometry); the others are Linear.
    """
    import torch
    from torch import nn

    dtype = torch_dtype(net.dtype)
    modules: list[nn.Module] = []
    layout: tuple[int, ...] | None = None  # None: flat

    def to(shape: tuple[int, ...] | None) -> None:
        nonlocal layout
        if layout == shape:
            return
        if layout is not None:
            modules.append(nn.Flatten())
        if shape is not None:
            modules.append(nn.Unflatten(1, shape))
        layout = shape

    for kind, k, n in plan(net):
        layer, spec = net.layers[k + n - 1], net.layers[k].structure
        if kind == "pool" and isinstance(spec, PoolLevel):
            to(tuple(spec.in_shape))
            t, le, b, r = spec.pads
            if spec.kind == "max":
                if (t, le, b, r) != (0, 0, 0, 0):
                    modules.append(nn.ConstantPad2d((le, r, t, b), float("-inf")))
                modules.append(nn.MaxPool2d(spec.kernel, spec.strides))
            else:
                modules.append(
                    nn.AvgPool2d(
                        spec.kernel, spec.strides, (t, le), count_include_pad=spec.count_include_pad
                    )  # fmt: skip
                )
            layout = (spec.channels, *spec.out_hw)
        elif kind == "conv" and isinstance(spec, ConvSpec):
            to(tuple(spec.source_shape))
            if spec.in_axes is not None:  # a channels-last input, transposed as it was read
                modules.append(permute_module([0, *(a + 1 for a in spec.in_axes)]))
                layout = tuple(spec.in_shape)
            t, le, b, r = spec.pads
            symmetric = (t, le) == (b, r)
            if not symmetric:
                modules.append(nn.ZeroPad2d((le, r, t, b)))
            m = spec.out_shape[0]
            conv = nn.Conv2d(
                spec.in_shape[0], m, tuple(spec.kernel.shape[2:]), spec.strides,
                (t, le) if symmetric else 0, spec.dilations, spec.groups, dtype=dtype,
            )  # fmt: skip
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.array(spec.kernel)))
                conv.bias.copy_(torch.from_numpy(layer.bias.reshape(m, -1)[:, 0].copy()))
            modules.append(conv)
            layout = tuple(spec.out_shape)
        else:
            to(None)
            modules.append(linear_module(layer, dtype, f"layer {k}"))
        if layer.relu:
            modules.append(nn.ReLU())
    to(None)
    modules += head_modules(net)  # as to_torch_module: the original function, not the logits
    return nn.Sequential(*modules).eval()


def head_modules(net: Network) -> list[Any]:
    """``[the torch module of net's head]`` (:mod:`exactcomp.io.heads`), or ``[]``."""
    from torch import nn

    head = net.meta.get("head")
    if head is None:
        return []
    cls = getattr(nn, HEAD_CLASSES[head])
    return [cls(dim=-1) if head in ROW_HEADS else cls()]


#: What :func:`module_record` stores of each module kind: the constructor's arguments.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "Unflatten": ("dim", "unflattened_size"),
    "Flatten": ("start_dim", "end_dim"),
    "Conv2d": (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
    ),  # fmt: skip
    "Permute": ("dims",),
    "ZeroPad2d": ("padding",),
    "ConstantPad2d": ("padding", "value"),
    "MaxPool2d": ("kernel_size", "stride"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "count_include_pad"),
    "Linear": ("in_features", "out_features"),
    "ReLU": (),
    "Softmax": ("dim",),
    "LogSoftmax": ("dim",),
    "Sigmoid": (),
    "Tanh": (),
}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v if isinstance(v, bool | str | float) else int(v)


def module_record(module: Any) -> list[dict[str, Any]]:
    """The modules of :func:`to_torch_conv_module`'s ``nn.Sequential`` as plain values:
    ``[{"kind": "Conv2d", "in_channels": 3, ...}, {"kind": "ReLU"}, ...]`` (every Conv2d
    and Linear has a bias)."""
    out = []
    for child in module:
        kind = type(child).__name__
        out.append({"kind": kind, **{f: _plain(getattr(child, f)) for f in RECORD_FIELDS[kind]}})
    return out


def module_from_record(record: Any, dtype: Any) -> Any:  # -> torch.nn.Sequential
    """The ``nn.Sequential`` a :func:`module_record` describes, with parameters of ``dtype``
    (uninitialised values: load the ``state_dict`` into it). Anything that is not such a
    record is refused (:class:`InputFileError`), by position."""
    from torch import nn

    if not isinstance(record, list | tuple):
        raise InputFileError("the exactcomp module record of the .pt file is not a list")
    modules = []
    for i, entry in enumerate(record):
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in RECORD_FIELDS or set(entry) != {"kind", *RECORD_FIELDS[kind]}:
            raise InputFileError(
                f"module {i} of the exactcomp module record is not one this version writes "
                f"({str(entry)[:80]}); was the file written by a newer exactcomp?"
            )
        args = {f: tuple(v) if isinstance(v, list) else v for f, v in entry.items() if f != "kind"}
        if kind in ("Conv2d", "Linear"):
            args["dtype"] = dtype
        try:
            modules.append(nn_class(kind)(**args))  # type: ignore[misc]
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UnsupportedModelError(f"module {i} ({kind}) of the record: {exc}") from exc
    return nn.Sequential(*modules).eval()


def recorded_module(state: Mapping[str, Any]) -> Any | None:  # -> torch.nn.Sequential
    """The module a ``state_dict`` written by :func:`~exactcomp.io.torch_io.save_torch` for a
    convolutional network describes, with its tensors loaded (``strict``); ``None`` for a
    ``state_dict`` without the module record (torch is imported only when it has one)."""
    metadata = getattr(state, "_metadata", None)
    record = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(record, Mapping) or "modules" not in record:
        return None
    import torch

    tensors = {
        k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v
        for k, v in state.items()
    }
    dtypes = [t.dtype for t in tensors.values() if t.is_floating_point()]
    module = module_from_record(record["modules"], dtypes[0] if dtypes else torch.float32)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise InputFileError(
            f"the tensors of the .pt file do not fit its exactcomp module record ({first})"
        ) from exc
    return module
