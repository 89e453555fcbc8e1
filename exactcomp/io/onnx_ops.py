"""Affine tensor algebra for the ONNX reader: the value types and the operators on them.

The reader (:mod:`exactcomp.io.onnx_graph`) executes a graph *symbolically* with a batch of
one sample. Every tensor is either a :class:`numpy.ndarray` (a constant: an initializer, a
``Constant`` node, or anything computed only from constants) or an :class:`Affine` value: a
tensor whose every entry is an affine function of ``h``, the output of the last ReLU committed
so far (or of the network input). ``Affine`` keeps the linear part as a stack of ``n``
tensors, one per entry of ``h`` (shape ``(n,) + shape``), and the constant part separately
(shape ``shape``), so no coefficient is ever recovered by subtracting two large numbers.

Each function here applies one ONNX operator to either kind of value. Structural operators
(reshapes, transposes) act on the constant part as written and on the linear part with every
axis shifted by one; elementwise and matrix products with a constant act on both parts.
Anything that would multiply two input-dependent tensors is not affine and is refused by the
caller. All arithmetic is float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedModelError


def csr(coo: Any):  # scipy.sparse.csr_array
    """The ``scipy.sparse`` CSR array of a :class:`~exactcomp.conv.Coo`."""
    from scipy import sparse

    return sparse.csr_array((coo.vals, (coo.rows, coo.cols)), shape=coo.shape)


def _eye(n: int) -> np.ndarray:
    """The ``n x n`` identity as a read-only view of ``2n - 1`` numbers (row ``i`` starts
    ``i`` entries before the single 1), so that the identity on a wide layer's output costs
    ``O(n)`` memory until an operator really combines it."""
    z = np.zeros(2 * n - 1)
    z[n - 1] = 1.0
    view = np.lib.stride_tricks.as_strided(
        z[n - 1 :], shape=(n, n), strides=(-z.itemsize, z.itemsize), writeable=False
    )
    return view


@dataclass(frozen=True, eq=False)
class Affine:
    """A tensor ``T = sum_j lin[j] * h[j] + off`` that depends affinely on ``h``.

    Attributes
    ----------
    lin:
        The linear part, shape ``(n,) + off.shape`` with ``n = len(h)``.
    off:
        The constant part.
    base:
        Which ``h`` this is a function of: the number of ReLU layers committed before it
        (0 = the network input). Values over different bases cannot be combined.
    pure:
        True when only layout operators (reshape, transpose, identity...) were applied to
        ``h``: an identity-valued ``pure`` output needs no extra layer, while an explicit
        identity ``MatMul`` in the file stays a layer of its own.
    eye:
        True when ``lin``, read in row-major order as an ``n x n`` matrix, is the identity
        (``h`` itself, reshaped at most): a product with a weight is then the weight, taken
        without reading the ``n x n`` view (numpy would copy it to a contiguous ``n x n``
        array first: 29 GB for the 60,100 ReLUs of VNN-COMP's nn4sys ``normal_100``).
    """

    lin: np.ndarray
    off: np.ndarray
    base: int
    pure: bool = False
    eye: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.off.shape)

    @classmethod
    def identity(cls, shape: tuple[int, ...], base: int) -> Affine:
        """The tensor ``h`` itself, laid out in ``shape``."""
        n = int(np.prod(shape, dtype=np.int64))
        return cls(_eye(n).reshape((n, *shape)), np.zeros(shape), base, pure=True, eye=True)

    def is_identity(self) -> bool:
        """True when this is exactly ``h`` (same entries, no offset)."""
        n = self.lin.shape[0]
        if self.off.size != n or np.any(self.off):
            return False
        m = self.lin.reshape(n, n)  # no n x n temporary: the identity of a wide layer is big
        return bool(np.all(np.diagonal(m) == 1.0)) and int(np.count_nonzero(m)) == n

    def map(self, fn, *args) -> Affine:
        """Apply a structural operator ``fn(x, lead, *args)`` to both parts (one that keeps
        the entries' row-major order keeps ``eye``)."""
        eye = self.eye and fn in _ORDER_PRESERVING
        return Affine(fn(self.lin, 1, *args), fn(self.off, 0, *args), self.base, self.pure, eye)


Value = np.ndarray | Affine


# ----------------------------------------------------------------------------- structure
def flatten(x: np.ndarray, lead: int, axis: int) -> np.ndarray:
    """ONNX ``Flatten``: ``shape[:axis]`` and ``shape[axis:]`` each become one axis."""
    shape = x.shape[lead:]
    axis = axis + len(shape) if axis < 0 else axis
    rows = int(np.prod(shape[:axis], dtype=np.int64))
    return x.reshape((*x.shape[:lead], rows, -1))


def reshape(x: np.ndarray, lead: int, target: np.ndarray, allowzero: int = 0) -> np.ndarray:
    """ONNX ``Reshape`` (``0`` copies the input's dimension unless ``allowzero``)."""
    shape = x.shape[lead:]
    dims = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        dims = [shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape((*x.shape[:lead], *dims))


def transpose(x: np.ndarray, lead: int, perm: tuple[int, ...] | None) -> np.ndarray:
    """ONNX ``Transpose`` (default: reverse the axes)."""
    rank = x.ndim - lead
    order = tuple(reversed(range(rank))) if perm is None else tuple(perm)
    return np.transpose(x, (*range(lead), *(p + lead for p in order)))


def squeeze(x: np.ndarray, lead: int, axes: tuple[int, ...] | None) -> np.ndarray:
    """ONNX ``Squeeze`` (default: every axis of size one)."""
    shape = x.shape[lead:]
    if axes is None:
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
    axes = tuple(a + len(shape) if a < 0 else a for a in axes)
    return np.squeeze(x, axis=tuple(a + lead for a in axes))


def unsqueeze(x: np.ndarray, lead: int, axes: tuple[int, ...]) -> np.ndarray:
    """ONNX ``Unsqueeze``: insert axes of size one (negative axes count from the output's end)."""
    rank = x.ndim - lead + len(axes)
    out = x
    for a in sorted(a + rank if a < 0 else a for a in axes):
        out = np.expand_dims(out, a + lead)
    return out


def _expand(v: Affine, shape: tuple[int, ...]) -> Affine:
    """Broadcast ``v`` to ``shape`` (numpy rules), keeping the leading basis axis apart."""
    if v.shape == shape:
        return v
    n = v.lin.shape[0]
    pad = (1,) * (len(shape) - len(v.shape))
    lin = np.broadcast_to(v.lin.reshape((n, *pad, *v.shape)), (n, *shape)).copy()
    return Affine(lin, np.broadcast_to(v.off, shape).copy(), v.base)


# ----------------------------------------------------------------------------- arithmetic
def add(a: Value, b: Value) -> Value:
    """``a + b``: constant + constant, affine + constant, or affine + affine (same base)."""
    if not isinstance(a, Affine) and not isinstance(b, Affine):
        return np.asarray(a) + np.asarray(b)
    if not isinstance(a, Affine):
        a, b = b, a
    if isinstance(b, Affine):
        if a.base != b.base:
            raise UnsupportedModelError(
                "adds two tensors computed after different ReLU layers (a skip connection)"
            )
        shape = np.broadcast_shapes(a.shape, b.shape)
        a, b = _expand(a, shape), _expand(b, shape)
        return Affine(a.lin + b.lin, a.off + b.off, a.base)
    c = np.asarray(b, dtype=np.float64)
    shape = np.broadcast_shapes(a.shape, c.shape)
    a = _expand(a, shape)
    return Affine(a.lin, a.off + c, a.base)


def neg(a: Value) -> Value:
    """``-a``."""
    if isinstance(a, Affine):
        return Affine(-a.lin, -a.off, a.base)
    return -np.asarray(a)


def mul(a: Value, b: Value) -> Value:
    """``a * b`` where at most one factor depends on the input."""
    if not isinstance(a, Affine) and not isinstance(b, Affine):
        return np.asarray(a) * np.asarray(b)
    if not isinstance(a, Affine):
        a, b = b, a
    if isinstance(b, Affine):
        raise UnsupportedModelError("multiplies two input-dependent tensors (not affine)")
    c = np.asarray(b, dtype=np.float64)
    a = _expand(a, np.broadcast_shapes(a.shape, c.shape))
    return Affine(a.lin * c, a.off * c, a.base)


def div(a: Value, b: Value) -> Value:
    """``a / b`` where only ``a`` may depend on the input and ``b`` has no zero."""
    if isinstance(b, Affine):
        raise UnsupportedModelError("divides by an input-dependent tensor (not affine)")
    c = np.asarray(b, dtype=np.float64)
    if np.any(c == 0):
        raise UnsupportedModelError("divides by a constant that contains zero")
    if not isinstance(a, Affine):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype.kind in "iu" and y.dtype.kind in "iu":
            # ONNX integer Div truncates toward zero (numpy's // floors)
            q = np.abs(x.astype(object)) // np.abs(y.astype(object))
            sign = np.where((x < 0) != (y < 0), -1, 1)
            return np.asarray(q * sign, dtype=object).astype(np.result_type(x, y))
        return x / y
    return mul(a, 1.0 / c)


def matmul(a: Value, b: Value) -> Value:
    """ONNX/numpy ``MatMul`` where exactly one operand depends on the input.

    ``x @ W`` contracts the last axis of ``x``; ``W @ x`` (weight first, as in ERAN's and
    VNN-COMP's hand-written graphs) contracts the first axis of a 1-D ``x`` or the
    second-to-last axis of a batched one.
    """
    if not isinstance(a, Affine) and not isinstance(b, Affine):
        return np.matmul(np.asarray(a), np.asarray(b))
    if isinstance(a, Affine) and isinstance(b, Affine):
        raise UnsupportedModelError("multiplies two input-dependent tensors (not affine)")
    if isinstance(a, Affine):
        w = np.asarray(b, dtype=np.float64)
        if w.ndim > 2 and w.ndim > len(a.shape):
            raise UnsupportedModelError(f"MatMul with a {w.ndim}-D weight is not supported")
        lin = _eye_matmul(a, w)
        lin = np.matmul(a.lin, w) if lin is None else lin
        return Affine(lin, np.matmul(a.off, w), a.base)
    w = np.asarray(a, dtype=np.float64)
    x = b
    if len(x.shape) == 1:
        if w.ndim > 2:
            raise UnsupportedModelError(f"MatMul with a {w.ndim}-D weight is not supported")
        if x.eye:  # h itself: the product is the weight (no n x n temporary)
            lin = w.copy() if w.ndim == 1 else np.ascontiguousarray(w.T)
        else:
            lin = x.lin @ w if w.ndim == 1 else x.lin @ w.T
        return Affine(lin, np.matmul(w, x.off), x.base)
    if w.ndim > len(x.shape):
        raise UnsupportedModelError(f"MatMul with a {w.ndim}-D weight is not supported")
    return Affine(np.matmul(w, x.lin), np.matmul(w, x.off), x.base)


#: The structural operators that keep the entries in row-major order (an identity stays one).
_ORDER_PRESERVING = (flatten, reshape, squeeze, unsqueeze)


def _eye_matmul(x: Affine, w: np.ndarray) -> np.ndarray | None:
    """``matmul(x.lin, w)`` for an identity ``x`` whose shape is ``(1, ..., 1, n)``: row ``j``
    of the product is row ``j`` of ``w``; ``None`` where that shortcut does not apply."""
    n = x.lin.shape[0]
    if not x.eye or w.ndim != 2 or x.shape[-1] != n or w.shape[0] != n:
        return None
    return w.reshape((n, *x.shape[:-1], w.shape[1])).copy()


def relu(a: np.ndarray) -> np.ndarray:
    """ReLU of a constant."""
    return np.maximum(a, 0.0)
