"""``Conv`` lowered to a dense affine map, so small conv nets fit the affine+ReLU IR.

A convolution is linear in its input: each output entry is a weighted sum of a window of
input entries, plus a per-channel bias. The reader applies it to the affine value's linear
part (one stack entry per hidden unit, treated as a batch) and to its constant part, which
yields exactly the dense matrix of the convolution composed with everything before it. The
matrix is ``(inputs x outputs)`` dense, so this is for small convs only: a lowering that
would exceed :data:`MAX_DENSE_ENTRIES` is refused rather than exhausting memory.

Supported: 1-D and 2-D convolutions with ``strides``, ``dilations``, ``pads`` (or
``auto_pad``), and ``group``. ``BatchNormalization`` after a conv needs nothing special (it
is a per-channel affine map, handled by the generic reader, and so folded into the conv).
The layer a conv ends up in keeps its structure when the composed matrix is exactly a
convolution (see :class:`~exactcomp.io.onnx_handlers.LoweringState`). Pooling and ``Pad``
are in :mod:`exactcomp.io.onnx_pool`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..conv import conv_taps
from ..errors import UnsupportedModelError
from .onnx_ops import Affine

#: Largest linear part (entries) a lowered conv may have (2e8 float64 entries = 1.6 GB).
MAX_DENSE_ENTRIES = 200_000_000


def spatial_padding(
    at: dict, spatial: tuple[int, ...], kernel: tuple[int, ...], strides, dilations
):
    """Begin/end padding per spatial axis, from ``pads`` or ``auto_pad``."""
    mode = at.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    r = len(spatial)
    if mode in ("NOTSET", ""):
        pads = [int(p) for p in at.get("pads", [0] * (2 * r))]
        return pads[:r], pads[r:]
    if mode == "VALID":
        return [0] * r, [0] * r
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else big)
            end.append(big if mode == "SAME_UPPER" else small)
        return begin, end
    raise UnsupportedModelError(f"has an unknown auto_pad mode {mode!r}")


def convolve(x: np.ndarray, w: np.ndarray, at: dict) -> np.ndarray:
    """ONNX ``Conv`` (no bias) of ``x`` of shape ``(batch, C, *spatial)`` with ``w``."""
    r = x.ndim - 2
    if r not in (1, 2) or w.ndim != x.ndim:
        raise UnsupportedModelError(f"only 1-D and 2-D convolutions are supported (got {r}-D)")
    if r == 1:  # a 1-D conv is a 2-D conv over a height of one
        at = dict(at)
        for key, fill in (("strides", 1), ("dilations", 1), ("kernel_shape", 1)):
            if key in at:
                at[key] = [fill, *at[key]]
        if "pads" in at:
            p = list(at["pads"])
            at["pads"] = [0, p[0], 0, p[1]]
        return convolve(x[:, :, None, :], w[:, :, None, :], at)[:, :, 0, :]
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(int(s) for s in at.get("strides", (1, 1)))
    dil = tuple(int(d) for d in at.get("dilations", (1, 1)))
    group = int(at.get("group", 1))
    begin, end = spatial_padding(at, x.shape[2:], kernel, strides, dil)
    xp = np.pad(x, ((0, 0), (0, 0), (begin[0], end[0]), (begin[1], end[1])))
    c_in, m = x.shape[1], w.shape[0]
    if c_in % group or m % group or w.shape[1] != c_in // group:
        raise UnsupportedModelError(
            f"has weights {w.shape} that do not fit {c_in} input channels in {group} groups"
        )
    out_hw = [(xp.shape[2 + i] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(2)]
    if min(out_hw) < 1:
        raise UnsupportedModelError("has a kernel larger than its (padded) input")
    out = np.zeros((x.shape[0], m, *out_hw))
    cg, mg = c_in // group, m // group
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            rows = slice(p * dil[0], p * dil[0] + strides[0] * (out_hw[0] - 1) + 1, strides[0])
            cols = slice(q * dil[1], q * dil[1] + strides[1] * (out_hw[1] - 1) + 1, strides[1])
            window = xp[:, :, rows, cols]
            for g in range(group):
                out[:, g * mg : (g + 1) * mg] += np.einsum(
                    "bchw,mc->bmhw",
                    window[:, g * cg : (g + 1) * cg],
                    w[g * mg : (g + 1) * mg, :, p, q],
                )
    return out


def _identity_conv(x: Affine, w: np.ndarray, at: dict, out: tuple[int, ...]) -> np.ndarray | None:
    """The linear part of ``Conv(h)`` for ``x = h`` itself (``x.eye``, one 2-D sample): the
    convolution's own matrix, transposed, scattered from its taps (``W[row, col] = K[entry]``,
    each pair once, :func:`~exactcomp.conv.conv_taps`), which is what :func:`convolve` of the
    identity gives entry for entry (``1 * K + 0 + ...``) without padding and multiplying
    ``n`` one-hot images (cifar_biasfield's 16,384 ReLUs: 200 s to read). ``None`` where
    that does not apply."""
    n, shape = x.lin.shape[0], x.shape
    if not x.eye or w.ndim != 4 or len(shape) != 4 or shape[0] != 1 or n != int(np.prod(shape)):
        return None
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(int(v) for v in at.get("strides", (1, 1)))
    dil = tuple(int(v) for v in at.get("dilations", (1, 1)))
    begin, _ = spatial_padding(at, shape[2:], kernel, strides, dil)
    rows, cols, entries, n_out = conv_taps(shape[1:], w.shape, strides, begin, dil, out[1:])
    lin = np.zeros((n, n_out))
    lin[cols, rows] = w.reshape(-1)[entries]
    return lin.reshape(n, 1, *out)


def conv(st: Any, at: dict, xs: list) -> list:
    """Handler for ONNX ``Conv``: input ``X`` may be affine; weights and bias are constants."""
    x, w = xs[0], xs[1]
    bias = xs[2] if len(xs) > 2 else None
    if isinstance(w, Affine) or isinstance(bias, Affine):
        raise UnsupportedModelError("has input-dependent weights (not affine)")
    w = np.asarray(w, dtype=np.float64)
    if not isinstance(x, Affine):
        out = convolve(np.asarray(x, dtype=np.float64), w, at)
    else:
        n = x.lin.shape[0]
        shape = x.shape
        if len(shape) < 3:
            raise UnsupportedModelError(f"needs an input of shape (N, C, ...), got {list(shape)}")
        probe = convolve(np.zeros((1, *shape[1:])), w, at).shape[1:]
        if n * shape[0] * int(np.prod(probe)) > MAX_DENSE_ENTRIES:
            raise UnsupportedModelError(
                f"would need a dense matrix of {n} x {shape[0] * int(np.prod(probe))} entries; "
                "this conv is too large to lower to an affine layer"
            )
        if w.ndim == 4:  # a candidate structure for the layer this conv ends up in
            st.convs.append(
                {
                    "kernel_hw": tuple(int(k) for k in w.shape[2:]),
                    "strides": tuple(int(s) for s in at.get("strides", (1, 1))),
                    "dilations": tuple(int(d) for d in at.get("dilations", (1, 1))),
                    "groups": int(at.get("group", 1)),
                    "in_shape": tuple(int(d) for d in shape[1:]),
                }
            )
        lin = _identity_conv(x, w, at, probe)
        if lin is None:
            lin = convolve(x.lin.reshape(n * shape[0], *shape[1:]), w, at)
            lin = lin.reshape(n, shape[0], *lin.shape[1:])
        off = convolve(np.asarray(x.off, dtype=np.float64), w, at)
        out = Affine(lin, off, x.base)
    if bias is None:
        return [out]
    b = np.asarray(bias, dtype=np.float64).reshape(-1, *([1] * (len(w.shape) - 2)))
    if isinstance(out, Affine):
        return [Affine(out.lin, out.off + b, out.base)]
    return [out + b]
