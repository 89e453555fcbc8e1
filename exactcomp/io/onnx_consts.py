"""ONNX handlers on constant tensors: ``Shape``, ``Gather``, ``Slice``, ``Mod`` and
``DequantizeLinear``, and :func:`const`, which every handler uses to read a constant input.

Each computes a numpy constant exactly (shape arithmetic feeding a ``Reshape``, weights
stored quantised); a tensor that depends on the input is refused by :func:`const`, except
the data of ``Gather`` and ``Slice``: with constant indices they select entries of a tensor,
which is exact on an :class:`~exactcomp.io.onnx_ops.Affine` value too (both its parts are
indexed alike, as a ``Transpose`` is; nn4sys' pensieve networks slice their input). The
affine handlers are in :mod:`exactcomp.io.onnx_handlers`, which dispatches to these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedModelError
from .onnx_ops import Affine, Value


def const(v: Value | None, what: str) -> np.ndarray:
    """The constant input ``v`` (``what`` names it in a refusal): refuses a missing input and
    one that depends on the network's input."""
    if v is None:
        raise UnsupportedModelError(f"needs {what}, which is missing")
    if isinstance(v, Affine):
        raise UnsupportedModelError(f"needs {what} to be a constant, but it depends on the input")
    return np.asarray(v)


def shape(st: Any, at: dict, xs: list) -> list:
    x = xs[0]
    shape = np.asarray(x.shape if isinstance(x, Affine) else np.shape(x), dtype=np.int64)
    start = int(at.get("start", 0))
    end = at.get("end")
    return [shape[start : None if end is None else int(end)]]


def take(x: np.ndarray, lead: int, idx: np.ndarray, axis: int) -> np.ndarray:
    """Entries ``idx`` of axis ``axis`` (counted after the ``lead`` basis axes) of ``x``: a
    structural operator (:meth:`~exactcomp.io.onnx_ops.Affine.map`)."""
    return np.take(x, idx, axis=axis + lead)


def _select(data: Value, idx: np.ndarray, axis: int) -> Value:
    """``np.take(data, idx, axis)`` of a constant or of an affine tensor; an index outside
    ``[-dim, dim)`` is refused (ONNX leaves it undefined)."""
    shape = data.shape if isinstance(data, Affine) else np.shape(data)
    if not -len(shape) <= axis < len(shape):
        raise UnsupportedModelError(f"has axis {axis} for a tensor of rank {len(shape)}")
    axis %= len(shape)
    dim = shape[axis]
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise UnsupportedModelError(f"has an index outside [-{dim}, {dim}) on axis {axis}")
    if isinstance(data, Affine):
        return data.map(take, idx, axis)
    return take(np.asarray(data), 0, idx, axis)


def gather(st: Any, at: dict, xs: list) -> list:
    """``Gather`` of constant indices (negative ones count from the end) along ``axis``."""
    if xs[0] is None:
        raise UnsupportedModelError("needs data, which is missing")
    idx = const(xs[1], "constant indices")
    if idx.dtype.kind not in "iu":
        raise UnsupportedModelError(f"has indices of type {idx.dtype}")
    return [_select(xs[0], idx.astype(np.int64), int(at.get("axis", 0)))]


def dequantize(st: Any, at: dict, xs: list) -> list:
    """``DequantizeLinear`` of a constant integer tensor: ``(x - zero_point) * scale`` per
    ``axis`` (or one scale), computed exactly in float64. onnxruntime computes it in the
    scale's type (FLOAT16/FLOAT), so it is read only where every product is exact in that
    type (exactcomp's quantised files choose their scales so); otherwise refused."""
    x = const(xs[0], "a constant quantised tensor")
    scale = const(xs[1], "a constant scale")
    integer = x.dtype.kind in "iu" or str(x.dtype) in ("int4", "uint4", "int2", "uint2")
    if not integer or scale.dtype.kind != "f" or scale.dtype.itemsize < 2:
        raise UnsupportedModelError(f"dequantises {x.dtype} with a {scale.dtype} scale")
    if "block_size" in at and int(at["block_size"]):
        raise UnsupportedModelError("uses blocked quantisation; not supported")
    zp = np.zeros((), np.int64) if len(xs) < 3 or xs[2] is None else const(xs[2], "a zero point")
    q = x.astype(np.int64) - zp.astype(np.int64).reshape(axis_shape(x, zp, at))
    s = scale.astype(np.float64).reshape(axis_shape(x, scale, at))
    out = q.astype(np.float64) * s
    if not np.array_equal(out.astype(scale.dtype).astype(np.float64), out):
        raise UnsupportedModelError(
            f"(x - zero_point) * scale rounds in {scale.dtype}; not supported (not exact)"
        )
    return [out.astype(scale.dtype)]


def axis_shape(x: np.ndarray, v: np.ndarray, at: dict) -> tuple[int, ...]:
    """Shape that broadcasts a per-axis vector ``v`` (or a scalar) against ``x``."""
    if v.size == 1:
        return ()
    axis = int(at.get("axis", 1)) % x.ndim
    if v.ndim != 1 or v.size != x.shape[axis]:
        raise UnsupportedModelError(f"has a scale or zero point of shape {v.shape}")
    return tuple(-1 if i == axis else 1 for i in range(x.ndim))


def slice_(st: Any, at: dict, xs: list) -> list:
    """``Slice`` of a constant (the shape arithmetic ``torch.onnx.export`` writes for
    ``nn.Unflatten`` with a dynamic batch): ``starts``/``ends``/``axes``/``steps`` as inputs
    (opset 10+) or attributes (before), as the ONNX specification states them: a negative
    start or end counts from the end (``+ dim``); then, for a step ``k > 0``, both are clamped
    to ``[0, dim]``; for ``k < 0``, the start to ``[0, dim - 1]`` and the end to
    ``[-1, dim - 1]`` (``-1``: up to and including index 0, which numpy's slices cannot say);
    the indices taken are ``start, start + k, ...`` before the end. A zero step, and an axis
    named twice (the specification leaves it undefined), are refused.
    The data may depend on the input (:func:`_select`)."""
    data = xs[0]
    if data is None:
        raise UnsupportedModelError("needs data, which is missing")

    def arg(k: int, name: str) -> np.ndarray | None:
        if len(xs) > k and xs[k] is not None:
            return const(xs[k], name).astype(np.int64).reshape(-1)
        return np.asarray(at[name], np.int64).reshape(-1) if name in at else None

    starts, ends = arg(1, "starts"), arg(2, "ends")
    if starts is None or ends is None:
        raise UnsupportedModelError("needs starts and ends")
    axes = arg(3, "axes")
    steps = arg(4, "steps")
    axes = np.arange(len(starts)) if axes is None else axes
    steps = np.ones(len(starts), np.int64) if steps is None else steps
    if np.any(steps == 0):
        raise UnsupportedModelError(f"has steps {steps.tolist()}; a step of 0 is invalid")
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise UnsupportedModelError("has starts, ends, axes and steps of different lengths")
    rank = len(data.shape if isinstance(data, Affine) else np.shape(data))
    named = [int(a) % rank for a in axes if -rank <= int(a) < rank]  # else refused below
    if len(set(named)) < len(named):
        raise UnsupportedModelError(f"has axes {axes.tolist()} naming an axis twice (undefined)")
    for a, b, e, k in zip(axes, starts, ends, steps, strict=True):
        shape = data.shape if isinstance(data, Affine) else np.shape(data)
        if not -len(shape) <= int(a) < len(shape):
            raise UnsupportedModelError(f"has axis {int(a)} for a tensor of rank {len(shape)}")
        axis = int(a) % len(shape)
        dim, b, e, k = shape[axis], int(b), int(e), int(k)
        b, e = b + dim if b < 0 else b, e + dim if e < 0 else e
        if k > 0:
            b, e = min(max(b, 0), dim), min(max(e, 0), dim)
        else:
            b, e = min(max(b, 0), dim - 1), min(max(e, -1), dim - 1)
        data = _select(data, np.arange(b, e, k, dtype=np.int64), axis)
    return [data]


def mod(st: Any, at: dict, xs: list) -> list:
    """``Mod`` of constants: of integers, the sign of the divisor's (``fmod=0``, numpy's
    ``mod``) or of the dividend's (``fmod=1``, numpy's ``fmod``); of floats, C's ``fmod``
    (the specification requires ``fmod=1`` for them); a zero divisor is refused."""
    a, b = const(xs[0], "a constant dividend"), const(xs[1], "a constant divisor")
    fmod = int(at.get("fmod", 0))
    floats = a.dtype.kind == "f" and b.dtype.kind == "f"
    if not floats and (a.dtype.kind not in "iu" or b.dtype.kind not in "iu"):
        raise UnsupportedModelError(f"of {a.dtype} by {b.dtype}; only integer or float constants")
    if floats and not fmod:
        raise UnsupportedModelError("of floats with fmod=0 (the specification requires fmod=1)")
    if np.any(b == 0):
        raise UnsupportedModelError("divides by zero")
    return [(np.fmod if fmod else np.mod)(a, b)]


CONST_HANDLERS = {
    "Shape": shape,
    "Gather": gather,
    "Slice": slice_,
    "Mod": mod,
    "DequantizeLinear": dequantize,
}
