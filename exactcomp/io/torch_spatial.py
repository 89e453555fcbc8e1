"""``Conv2d``, pools, pads and ``Unflatten`` in an ``nn.Sequential``: layers that keep structure.

The module reader (:func:`~exactcomp.io.torch_io.module_to_network`) hands every layer to
:class:`SpatialSteps`, which keeps the tensor's layout (flat, or ``(C, H, W)`` after an
``nn.Unflatten(1, (C, H, W))``) and turns the spatial layers into IR layers carrying their
exact structure, the same ones the ONNX reader builds (:mod:`exactcomp.conv`):

* ``Conv2d`` (``padding_mode="zeros"``, any stride, padding, dilation, groups) is one layer
  whose matrix is :meth:`~exactcomp.conv.ConvSpec.dense` (its taps, sparse, above
  :data:`~exactcomp.network.SPARSE_ABOVE`) and whose bias is the channel's bias at every
  position. A ``ZeroPad2d`` (or ``ConstantPad2d`` of 0) right before it adds to its padding;
  an eval-mode ``BatchNorm2d`` right after it is folded into it,
  ``K'[m] = s_m K[m]``, ``b'_m = s_m (b_m - mean_m) + beta_m``, ``s_m = gamma_m / sqrt(var_m + eps)``,
  computed in float64 as the Linear fold of :mod:`~exactcomp.io.torch_chain`;
* ``MaxPool2d`` is the ReLU block of :func:`~exactcomp.conv.pool_matrices`
  (``max(a, b) = b + relu(a - b)``, stated there), non-negative when the layer before it has
  a ReLU; a ``ConstantPad2d(-inf)`` right before it adds to its padding (``-inf`` is never a
  maximum, which is how the pool's own padding counts too);
* ``AvgPool2d`` is one linear layer (``count_include_pad`` honoured; a ``ZeroPad2d`` before
  a pool without padding of its own is padding whose zeros count);
* ``AdaptiveAvgPool2d((oh, ow))`` on an ``H x W`` image averages output cell ``i`` over rows
  ``[floor(i H / oh), ceil((i + 1) H / oh))`` (columns likewise). When ``oh`` divides ``H``
  these are the windows ``[i k, (i + 1) k)`` with ``k = H / oh``: the ``AvgPool2d`` of kernel
  and stride ``(H / oh, W / ow)``, no padding, read as above (``AdaptiveAvgPool2d(1)`` is the
  global average, ONNX's ``GlobalAveragePool``). Otherwise the windows overlap and differ in
  size: refused by name. A ``None`` in the output size keeps that dimension (``k = 1``);
* ``Flatten`` returns to the flat layout (the IR's vectors are the tensors in C order);
* a ``Permute`` (``dims`` of the form ``(0, ...)``: torchvision's ``ops.Permute``, the one
  :func:`~exactcomp.io.torch_conv.permute_module` writes) of an ``(H, W, C)`` tensor directly
  before a ``Conv2d`` (or its pad) is the convolution's input permutation
  (:attr:`~exactcomp.conv.ConvSpec.in_axes`), the same structure the ONNX reader gives a
  ``Transpose`` into a ``Conv``; anywhere else it is refused by name.

Refused, by name: ``ceil_mode`` that adds a partial window, pool dilation, ``return_indices``,
``divisor_override``, other padding modes or constants, a pad not directly before the layer
that absorbs it, a convolution on a flat tensor (its image shape is unknown: start with
``nn.Unflatten``), and a ``Linear``, ``BatchNorm1d`` or head on a ``(C, H, W)`` tensor.
torch is never imported here: only the layers' attributes are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..conv import (
    ConvSpec,
    PoolLevel,
    pool_layers,
    pool_layers_coo,
    pool_matrices,
)
from ..errors import InvalidNetworkError, UnsupportedModelError
from ..network import SPARSE_ABOVE, Layer
from .heads import HEAD_OF
from .onnx_ops import csr
from .onnx_pool import average_layer
from .torch_chain import ChainBuilder, feed, to_float64

#: The spatial layer kinds (torch.nn class names) read here, besides the chain's own.
SPATIAL_KINDS = (
    "Conv2d",
    "BatchNorm2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "ZeroPad2d",
    "ConstantPad2d",
    "Unflatten",
    "Permute",
)

Pads = tuple[int, int, int, int]  # top, left, bottom, right


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = (int(x) for x in v)
    return a, b


class SpatialSteps:
    """The layout and pending steps of one module being read; see the module docstring.

    Call :meth:`feed` for every layer in execution order, then :meth:`finish`.
    """

    def __init__(self, chain: ChainBuilder) -> None:
        self.chain = chain
        self.shape: tuple[int, int, int] | None = None  # None: flat
        self.pad: tuple[str, Pads, float] | None = None  # (name, pads, value) not yet absorbed
        self.conv: tuple[str, ConvSpec, np.ndarray, Any] | None = None  # not yet committed
        self.perm: tuple[str, tuple[int, int, int]] | None = None  # a Permute before a Conv2d

    # ----------------------------------------------------------------- dispatch
    def feed(self, name: str, kind: str, leaf: Any) -> None:
        """Read one layer (any kind the module reader accepts)."""
        if kind == "BatchNorm2d":
            self._batchnorm(name, leaf)
            return
        self._flush()
        if self.perm is not None and kind not in ("Conv2d", "ZeroPad2d"):
            raise UnsupportedModelError(
                f"module {self.perm[0]!r} (a Permute) is followed by {kind} {name!r}; a Permute "
                "is supported only directly before a Conv2d (or its ZeroPad2d)"
            )
        if kind == "Permute":
            self._permute(name, leaf)
            return
        if kind in ("ZeroPad2d", "ConstantPad2d"):
            self._pad(name, kind, leaf)
            return
        if kind == "Conv2d":
            self._conv(name, leaf)
            return
        pad, self.pad = self.pad, None
        if kind == "MaxPool2d":
            self._max_pool(name, leaf, pad)
        elif kind == "AvgPool2d":
            self._avg_pool(name, leaf, pad)
        elif kind == "AdaptiveAvgPool2d":
            self._avg_pool(name, self._adaptive(name, leaf, pad), pad)
        elif pad is not None:
            raise UnsupportedModelError(
                f"module {pad[0]!r} (a pad) is followed by {kind} {name!r}; a pad is supported "
                "only directly before the Conv2d or pool that absorbs it"
            )
        elif kind == "Unflatten":
            self._unflatten(name, leaf)
        elif kind == "Flatten":
            feed(self.chain, name, kind, leaf)
            self.shape = None
        else:
            if self.shape is not None and kind in (
                "Linear",
                "BatchNorm1d",
                *HEAD_OF,
            ):
                raise UnsupportedModelError(
                    f"module {kind} {name!r} acts on a (C, H, W) = {self.shape} tensor; add "
                    "nn.Flatten() before it (only flat tensors are read for this layer)"
                )
            feed(self.chain, name, kind, leaf)

    def finish(self) -> None:
        """Commit what is pending; refuse a trailing pad or a spatial output."""
        self._flush()
        if self.pad is not None:
            raise UnsupportedModelError(f"module {self.pad[0]!r} (a pad) is the last layer")
        if self.perm is not None:
            raise UnsupportedModelError(f"module {self.perm[0]!r} (a Permute) is the last layer")

    def _permute(self, name: str, leaf: Any) -> None:
        dims = tuple(int(d) for d in leaf.dims)
        if self.shape is None or len(dims) != 4 or dims[0] != 0 or sorted(dims) != [0, 1, 2, 3]:
            raise UnsupportedModelError(
                f"Permute {name!r} (dims={list(dims)}): only a Permute(0, ...) of an "
                "(H, W, C) tensor after nn.Unflatten is supported"
            )
        axes = (dims[1] - 1, dims[2] - 1, dims[3] - 1)
        self.perm = (name, axes)
        src = self.shape
        self.shape = (src[axes[0]], src[axes[1]], src[axes[2]])

    # ----------------------------------------------------------------- layout
    def _unflatten(self, name: str, leaf: Any) -> None:
        size = tuple(int(v) for v in leaf.unflattened_size)
        if self.shape is not None or int(leaf.dim) not in (1, -1) or len(size) != 3:
            raise UnsupportedModelError(
                f"Unflatten {name!r} (dim={leaf.dim}, size={size}): only nn.Unflatten(1, "
                "(C, H, W)) of a flat tensor is supported"
            )
        width = self.chain.width
        if width is not None and width != int(np.prod(size)):
            raise InvalidNetworkError(
                f"Unflatten {name!r} to {size} needs {int(np.prod(size))} features but the "
                f"layer before it has {width}"
            )
        self.shape = size  # type: ignore[assignment]

    def _image(self, name: str, kind: str, channels: int | None = None) -> tuple[int, int, int]:
        if self.shape is None:
            raise UnsupportedModelError(
                f"{kind} {name!r} acts on a flat tensor whose image shape is unknown; start "
                "the nn.Sequential with nn.Unflatten(1, (C, H, W))"
            )
        if channels is not None and self.shape[0] != channels:
            raise InvalidNetworkError(
                f"{kind} {name!r} expects {channels} channels but its input has shape {self.shape}"
            )
        return self.shape

    def _pad(self, name: str, kind: str, leaf: Any) -> None:
        left, right, top, bottom = (int(v) for v in leaf.padding)
        value = 0.0 if kind == "ZeroPad2d" else float(leaf.value)
        if min(left, right, top, bottom) < 0:
            raise UnsupportedModelError(f"{kind} {name!r} has negative padding (a crop)")
        if value != 0.0 and value != -np.inf:
            raise UnsupportedModelError(
                f"{kind} {name!r} pads with {value}; only 0 (before a Conv2d or AvgPool2d) "
                "and -inf (before a MaxPool2d) are supported"
            )
        if self.pad is not None:
            raise UnsupportedModelError(f"{kind} {name!r} follows another pad; merge them")
        self._image(name, kind)
        self.pad = (name, (top, left, bottom, right), value)

    def _take_pad(self, value: float) -> Pads:
        if self.pad is None:
            return (0, 0, 0, 0)
        name, pads, v = self.pad
        if v != value:
            raise UnsupportedModelError(
                f"the pad {name!r} (value {v}) is not the padding the next layer uses ({value})"
            )
        self.pad = None
        return pads

    # ----------------------------------------------------------------- convolution
    def _conv(self, name: str, leaf: Any) -> None:
        if getattr(leaf, "padding_mode", "zeros") != "zeros":
            raise UnsupportedModelError(
                f"Conv2d {name!r} has padding_mode={leaf.padding_mode!r}; only 'zeros' is supported"
            )
        shape = self._image(name, "Conv2d", int(leaf.in_channels))
        kernel = to_float64(leaf.weight, f"{name}.weight")
        (kh, kw), dil = kernel.shape[2:], _pair(leaf.dilation)
        if isinstance(leaf.padding, str):
            if leaf.padding == "valid":
                own = (0, 0, 0, 0)
            else:  # "same" (stride 1): torch puts the odd extra entry at the end
                th, tw = dil[0] * (kh - 1), dil[1] * (kw - 1)
                own = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        else:
            ph, pw = _pair(leaf.padding)
            own = (ph, pw, ph, pw)
        extra = self._take_pad(0.0)
        pads = tuple(a + b for a, b in zip(own, extra, strict=True))
        axes, self.perm = (None if self.perm is None else self.perm[1]), None
        try:
            spec = ConvSpec(shape, kernel, _pair(leaf.stride), pads, dil, int(leaf.groups), axes)
        except ValueError as exc:
            raise InvalidNetworkError(f"Conv2d {name!r}: {exc}") from exc
        m = spec.out_shape[0]
        bias = np.zeros(m) if leaf.bias is None else to_float64(leaf.bias, f"{name}.bias")
        self.conv = (name, spec, bias.reshape(m), leaf.weight.dtype)
        self.shape = spec.out_shape

    def _batchnorm(self, name: str, leaf: Any) -> None:
        if self.conv is None or self.pad is not None:
            raise UnsupportedModelError(
                f"BatchNorm2d {name!r} does not directly follow a Conv2d; only that is "
                "supported (it is folded into the convolution)"
            )
        if bool(getattr(leaf, "training", False)):
            self.chain.training(name, "BatchNorm2d")
        if leaf.running_mean is None or leaf.running_var is None:
            raise UnsupportedModelError(
                f"BatchNorm2d {name!r} has no running statistics (track_running_stats=False)"
            )
        conv_name, spec, bias, dtype = self.conv
        m = spec.out_shape[0]
        mean = to_float64(leaf.running_mean, f"{name}.running_mean")
        var = to_float64(leaf.running_var, f"{name}.running_var")
        g = np.ones(m) if leaf.weight is None else to_float64(leaf.weight, f"{name}.weight")
        be = np.zeros(m) if leaf.bias is None else to_float64(leaf.bias, f"{name}.bias")
        if not all(a.shape == (m,) for a in (mean, var, g, be)):
            raise InvalidNetworkError(f"BatchNorm2d {name!r} does not have {m} channels")
        denom = np.sqrt(var + float(leaf.eps))
        if not (np.isfinite(denom).all() and (denom > 0).all()):
            raise InvalidNetworkError(f"BatchNorm2d {name!r}: running_var + eps is not positive")
        s = g / denom
        spec = spec.replace(spec.kernel * s[:, None, None, None], spec.in_shape[0])
        self.conv = (conv_name, spec, s * (bias - mean) + be, dtype)

    def _flush(self) -> None:
        if self.conv is None:
            return
        name, spec, bias, dtype = self.conv
        self.conv = None
        big = spec.out_features * spec.in_features > SPARSE_ABOVE
        w = csr(spec.coo()) if big else spec.dense()
        per = spec.out_features // spec.out_shape[0]
        self.chain.layer(name, Layer(w, np.repeat(bias, per), False, spec), dtype)

    # ----------------------------------------------------------------- pools
    def _geometry(self, name: str, kind: str, leaf: Any, extra: Pads) -> dict[str, Any]:
        shape = self._image(name, kind)
        if bool(getattr(leaf, "return_indices", False)):
            raise UnsupportedModelError(f"{kind} {name!r} returns indices; not supported")
        if _pair(getattr(leaf, "dilation", 1)) != (1, 1):
            raise UnsupportedModelError(f"{kind} {name!r} has a dilation; not supported")
        kernel = _pair(leaf.kernel_size)
        strides = _pair(leaf.stride if leaf.stride is not None else leaf.kernel_size)
        ph, pw = _pair(leaf.padding)
        pads = tuple(a + b for a, b in zip((ph, pw, ph, pw), extra, strict=True))
        geo = {"in_shape": shape, "kernel": kernel, "strides": strides, "pads": pads}
        floor_hw = PoolLevel("max", **geo).out_hw  # type: ignore[arg-type]
        if min(floor_hw) < 1:
            raise InvalidNetworkError(f"{kind} {name!r}: the kernel is larger than its input")
        if bool(getattr(leaf, "ceil_mode", False)):
            (_, h, w), t, le, b, r = shape, *pads
            ceil_hw = tuple(
                -(-(n + p - k) // s) + 1
                for n, p, k, s in zip((h, w), (t + b, le + r), kernel, strides, strict=True)
            )
            if ceil_hw != floor_hw:
                raise UnsupportedModelError(
                    f"{kind} {name!r} has ceil_mode=True, which adds a partial window here; "
                    "not supported"
                )
        return geo

    def _max_pool(self, name: str, leaf: Any, pad: tuple[str, Pads, float] | None) -> None:
        self.pad = pad
        geo = self._geometry(name, "MaxPool2d", leaf, self._take_pad(-np.inf))
        nonneg = self.chain.last_relu
        pool = PoolLevel("max", nonneg=nonneg, **geo)
        try:
            mats = pool_matrices(pool)
        except ValueError as exc:
            raise UnsupportedModelError(f"MaxPool2d {name!r}: {exc}") from exc
        c, levels = pool.channels, len(mats) - 1
        rows, cols = mats[0][0].shape
        big = c * rows * c * cols > SPARSE_ABOVE
        layers = [(csr(m), b) for m, b in pool_layers_coo(pool)] if big else pool_layers(pool)
        for level, (w, b) in enumerate(layers):
            tag = PoolLevel("max", nonneg=nonneg, level=level, levels=levels, **geo)
            self.chain.layer(name, Layer(w, b, level < levels, tag), self.chain.last_dtype)
        self.shape = (pool.channels, *pool.out_hw)

    def _adaptive(self, name: str, leaf: Any, pad: tuple[str, Pads, float] | None) -> Any:
        """The ``AvgPool2d`` equal to an ``AdaptiveAvgPool2d`` (see the module docstring)."""
        from types import SimpleNamespace

        if pad is not None:
            raise UnsupportedModelError(
                f"module {pad[0]!r} (a pad) is followed by AdaptiveAvgPool2d {name!r}; not "
                "supported"
            )
        _, h, w = self._image(name, "AdaptiveAvgPool2d")
        size = leaf.output_size
        size = (size, size) if isinstance(size, int | np.integer) or size is None else size
        out = tuple(n if o is None else int(o) for n, o in zip((h, w), size, strict=True))
        if any(o < 1 or n % o for n, o in zip((h, w), out, strict=True)):
            raise UnsupportedModelError(
                f"AdaptiveAvgPool2d {name!r} maps {h}x{w} to {out[0]}x{out[1]}, which does not "
                "divide it (overlapping windows of unequal size); not supported"
            )
        k = (h // out[0], w // out[1])
        return SimpleNamespace(
            kernel_size=k,
            stride=k,
            padding=0,
            ceil_mode=False,
            count_include_pad=True,
            divisor_override=None,
        )

    def _avg_pool(self, name: str, leaf: Any, pad: tuple[str, Pads, float] | None) -> None:
        if getattr(leaf, "divisor_override", None) is not None:
            raise UnsupportedModelError(f"AvgPool2d {name!r} has a divisor_override")
        include = bool(leaf.count_include_pad)
        if pad is not None:
            if _pair(leaf.padding) != (0, 0) and not include:
                raise UnsupportedModelError(
                    f"AvgPool2d {name!r} after the pad {pad[0]!r} has padding of its own that "
                    "is not counted (count_include_pad=False): not supported"
                )
            include = True  # the pad's zeros are entries of the pooled tensor
        self.pad = pad
        geo = self._geometry(name, "AvgPool2d", leaf, self._take_pad(0.0))
        pool = PoolLevel("average", count_include_pad=include, **geo)
        try:
            ((mat, _),) = pool_matrices(pool)
        except ValueError as exc:
            raise UnsupportedModelError(f"AvgPool2d {name!r}: {exc}") from exc
        self.chain.layer(name, average_layer(pool, mat), self.chain.last_dtype)
        self.shape = (pool.channels, *pool.out_hw)
