"""``Pad``, ``AveragePool``, ``GlobalAveragePool`` and ``MaxPool``: each read exactly or refused.

``Pad`` (constant mode) and the average pools are linear: they act on both parts of an
:class:`~exactcomp.io.onnx_ops.Affine` value. ``MaxPool`` is not linear; it is read as ReLU
layers with :func:`exactcomp.conv.pool_matrices`, whose docstring states the encoding
(``max(a, b) = b + relu(a - b)``, ``b = relu(b) - relu(-b)``). A pool applied to the output of
a layer becomes layers of its own, tagged with a :class:`~exactcomp.conv.PoolLevel`, so that
the writer emits one ``MaxPool``/``AveragePool`` node again; elsewhere an average pool is
composed into the layer being built (still exact, but dense).

Refused, by name: ``Pad`` modes other than ``constant`` and negative pads (cropping);
pooling that is not 2-D, has ``dilations`` other than 1, or whose ``ceil_mode`` adds a
partial window; ``MaxPool``'s indices output (the driver refuses unsupported outputs). A
max-pool whose dense levels would be large is kept as sparse matrices
(:data:`~exactcomp.network.SPARSE_ABOVE`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..conv import PoolLevel, channel_blocks, pool_layers, pool_layers_coo, pool_matrices
from ..errors import UnsupportedModelError
from ..network import SPARSE_ABOVE, Layer
from .onnx_conv import spatial_padding
from .onnx_ops import Affine, csr


def _text(v: object, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else str(v)


def _pad(st: Any, at: dict, xs: list) -> list:
    """``Pad`` in ``constant`` mode: entries outside the tensor take the constant value."""
    mode = _text(at.get("mode"), "constant")
    if mode != "constant":
        raise UnsupportedModelError(f"uses mode {mode!r}; only constant padding is supported")
    x = xs[0]
    rank = len(x.shape) if isinstance(x, Affine) else np.ndim(x)
    if "pads" in at:
        pads = [int(p) for p in at["pads"]]
        value = float(at.get("value", 0.0))
    else:
        if len(xs) < 2 or xs[1] is None or isinstance(xs[1], Affine):
            raise UnsupportedModelError("needs constant pads")
        pads = [int(p) for p in np.asarray(xs[1]).reshape(-1)]
        value = 0.0
        if len(xs) > 2 and xs[2] is not None:
            if isinstance(xs[2], Affine):
                raise UnsupportedModelError("has an input-dependent constant_value")
            value = float(np.asarray(xs[2]).reshape(-1)[0]) if np.size(xs[2]) else 0.0
    axes = list(range(rank))
    if len(xs) > 3 and xs[3] is not None:
        if isinstance(xs[3], Affine):
            raise UnsupportedModelError("has input-dependent axes")
        axes = [int(a) % rank for a in np.asarray(xs[3]).reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise UnsupportedModelError(f"has {len(pads)} pads for {len(axes)} axes")
    if min(pads, default=0) < 0:
        raise UnsupportedModelError("has negative pads (cropping); not supported")
    if not any(pads):
        return [x]  # pads nothing: the identity (and a layer's output stays one)
    width = [(0, 0)] * rank
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + len(axes)])
    if not isinstance(x, Affine):
        return [np.pad(np.asarray(x), width, constant_values=value)]
    lin = np.pad(x.lin, [(0, 0), *width])
    off = np.pad(np.asarray(x.off, dtype=np.float64), width, constant_values=value)
    return [Affine(lin, off, x.base)]


def _geometry(x: Any, at: dict, kernel: tuple[int, ...] | None = None) -> dict:
    """The pooling's 2-D geometry from the node's attributes, or a refusal naming the cause."""
    shape = tuple(x.shape) if isinstance(x, Affine) else np.shape(x)
    if len(shape) != 4 or shape[0] != 1:
        raise UnsupportedModelError(
            f"pools a tensor of shape {list(shape)}: not supported (only 2-D, one sample)"
        )
    kernel = kernel or tuple(int(k) for k in at["kernel_shape"])
    if len(kernel) != 2:
        raise UnsupportedModelError(f"has a {len(kernel)}-D kernel; only 2-D pooling")
    strides = tuple(int(s) for s in at.get("strides", (1, 1)))
    if any(int(d) != 1 for d in at.get("dilations", (1, 1))):
        raise UnsupportedModelError("has dilations other than 1; not supported")
    begin, end = spatial_padding(at, shape[2:], kernel, strides, (1, 1))
    pads = (begin[0], begin[1], end[0], end[1])
    if int(at.get("ceil_mode", 0)):
        for n, k, s, b, e in zip(shape[2:], kernel, strides, begin, end, strict=True):
            if (n + b + e - k) % s:
                raise UnsupportedModelError("has ceil_mode=1 with a partial last window")
    return {"in_shape": tuple(int(v) for v in shape[1:]), "kernel": kernel,
            "strides": strides, "pads": pads}  # fmt: skip


def _apply(x: Any, pool: PoolLevel, mat: np.ndarray) -> Any:
    """Apply one channel's pooling matrix to every channel of ``x`` (affine or constant)."""
    c, _, _ = pool.in_shape
    oh, ow = pool.out_hw
    if not isinstance(x, Affine):
        y = np.asarray(x, dtype=np.float64).reshape(c, -1) @ mat.T
        return y.reshape(1, c, oh, ow)
    n = x.lin.shape[0]
    lin = (x.lin.reshape(n, c, -1) @ mat.T).reshape(n, 1, c, oh, ow)
    off = (np.asarray(x.off, dtype=np.float64).reshape(c, -1) @ mat.T).reshape(1, c, oh, ow)
    return Affine(lin, off, x.base)


def _is_output(st: Any, x: Any) -> bool:
    return isinstance(x, Affine) and st.is_layer_output(x)


def _average(st: Any, x: Any, pool: PoolLevel) -> list:
    ((mat, _),) = pool_matrices(pool)
    if not _is_output(st, x) or st.live:
        return [_apply(x, pool, mat)]  # composed into the layer being built
    return [st.append(average_layer(pool, mat), (1, pool.channels, *pool.out_hw))]


def average_layer(pool: PoolLevel, mat: np.ndarray) -> Layer:
    """The average pool as one linear layer (no ReLU): ``mat`` (one channel's pooling matrix)
    repeated per channel, held sparse when the block-diagonal matrix would be too large."""
    c = pool.channels
    if c * mat.size * c > SPARSE_ABOVE:
        ((coo, _),) = pool_layers_coo(pool)
        w = csr(coo)
    else:
        w = channel_blocks(mat, c)
    return Layer(w, np.zeros(c * mat.shape[0]), False, pool)


def _average_pool(st: Any, at: dict, xs: list) -> list:
    """``AveragePool``: linear, ``1/k`` over each window (``count_include_pad`` honoured)."""
    geo = _geometry(xs[0], at)
    include = bool(int(at.get("count_include_pad", 0)))
    return _average(st, xs[0], PoolLevel("average", count_include_pad=include, **geo))


def _global_average_pool(st: Any, at: dict, xs: list) -> list:
    """``GlobalAveragePool``: the mean over all positions of each channel."""
    shape = tuple(xs[0].shape) if isinstance(xs[0], Affine) else np.shape(xs[0])
    geo = _geometry(xs[0], {}, tuple(int(v) for v in shape[2:]))
    return _average(st, xs[0], PoolLevel("average", **geo))


def _max_pool(st: Any, at: dict, xs: list) -> list:
    """``MaxPool`` as ReLU layers (:func:`~exactcomp.conv.pool_matrices`)."""
    x = xs[0]
    if int(at.get("storage_order", 0)):
        raise UnsupportedModelError("has storage_order=1; not supported")
    geo = _geometry(x, at)
    if isinstance(x, Affine) and st.live:
        raise UnsupportedModelError(
            "is crossed by a skip connection (a tensor from before it is used after it); "
            "not supported"
        )
    if not isinstance(x, Affine):
        ys = np.asarray(x, dtype=np.float64)
        return [_max_of_constant(ys, PoolLevel("max", **geo))]
    if not _is_output(st, x):
        x = st.commit(x, relu=False)  # the pool reads a layer's output, as written
    nonneg = bool(st.layers) and st.layers[-1].relu
    pool = PoolLevel("max", nonneg=nonneg, **geo)
    mats = pool_matrices(pool)
    c = pool.channels
    if len(mats) == 1:
        return [_apply(x, pool, mats[0][0])]  # one-entry windows: a selection, linear
    rows, cols = mats[0][0].shape
    sparse = c * rows * c * cols > SPARSE_ABOVE  # kept as its taps: see SPARSE_ABOVE
    levels = len(mats) - 1
    layers = [(csr(m), b) for m, b in pool_layers_coo(pool)] if sparse else pool_layers(pool)
    for level, (w, b) in enumerate(layers):
        last = level == levels
        tag = PoolLevel("max", nonneg=nonneg, level=level, levels=levels, **geo)
        shape = (1, c, *pool.out_hw) if last else (1, b.size)
        x = st.append(Layer(w, b, not last, tag), shape, identity=last)
    return [x]


def _max_of_constant(x: np.ndarray, pool: PoolLevel) -> np.ndarray:
    c = pool.channels
    padded = np.full((c, pool.in_shape[1] + 2 * max(pool.pads), pool.in_shape[2]
                      + 2 * max(pool.pads)), -np.inf)  # fmt: skip
    t, le = pool.pads[:2]
    padded[:, t : t + pool.in_shape[1], le : le + pool.in_shape[2]] = x.reshape(pool.in_shape)
    oh, ow = pool.out_hw
    (kh, kw), (s0, s1) = pool.kernel, pool.strides
    out = np.empty((c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = padded[:, i * s0 : i * s0 + kh, j * s1 : j * s1 + kw].max(axis=(1, 2))
    return out.reshape(1, c, oh, ow)


POOL_HANDLERS = {
    "Pad": _pad,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool,
    "MaxPool": _max_pool,
}
