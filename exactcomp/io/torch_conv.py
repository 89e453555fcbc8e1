"""A network with convolution structure as a ``torch.nn.Sequential`` of ``Conv2d`` and pools.

:func:`to_torch_conv_module` is :func:`~exactcomp.io.torch_io.to_torch_module` for networks
whose layers carry a :class:`~exactcomp.conv.ConvSpec` or :class:`~exactcomp.conv.PoolLevel`:
a convolution becomes ``nn.Conv2d`` (its ``pads`` through ``nn.ZeroPad2d`` when they are not
symmetric, which ``Conv2d`` cannot express), an intact max-pool block ``nn.MaxPool2d`` (after
``nn.ConstantPad2d(-inf)`` for asymmetric padding), an average pool ``nn.AvgPool2d`` when its
padding is symmetric; anything else is an ``nn.Linear`` on the flattened tensor, exactly as
the dense writer does. ``nn.Unflatten``/``nn.Flatten`` adapt the layout between them, so the
module takes and returns flat ``(batch, features)`` tensors like the dense one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..conv import ConvSpec, PoolLevel
from ..network import Network
from .torch_io import to_torch_module, torch_dtype


def _pool_block(net: Network, k: int) -> int:
    first = net.layers[k].structure
    if not isinstance(first, PoolLevel) or first.level != 0:
        return 0
    n = first.levels + 1
    if k + n > len(net.layers):
        return 0
    for i in range(n):
        la = net.layers[k + i]
        if la.structure != first.at_level(i) or la.relu != (i < first.levels):
            return 0
    return n


def to_torch_conv_module(net: Network) -> Any:  # -> torch.nn.Sequential
    """The network as ``nn.Sequential`` with ``Conv2d``/pool modules where it has structure.

    Same function as :func:`~exactcomp.io.torch_io.to_torch_module` (flat input and output,
    ``net.dtype``), far fewer parameters for a convolutional network.
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

    k = 0
    while k < len(net.layers):
        layer, spec = net.layers[k], net.layers[k].structure
        block = _pool_block(net, k)
        if block and isinstance(spec, PoolLevel):
            t, le, b, r = spec.pads
            if spec.kind == "average" and (t, le) != (b, r):
                block = 0  # torch's AvgPool2d pads symmetrically only: write it dense
        if block and isinstance(spec, PoolLevel):
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
            k += block
            continue
        if isinstance(spec, ConvSpec):
            to(tuple(spec.in_shape))
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
            dense = to_torch_module(net.replace_layers([layer]))
            modules.append(dense[0])
        if layer.relu:
            modules.append(nn.ReLU())
        k += 1
    to(None)
    head = net.meta.get("head")  # as to_torch_module: the original function, not the logits
    if head == "softmax":
        modules.append(nn.Softmax(dim=-1))
    elif head == "log_softmax":
        modules.append(nn.LogSoftmax(dim=-1))
    return nn.Sequential(*modules).eval()
