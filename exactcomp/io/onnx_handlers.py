"""The ONNX operators the reader understands, each as a handler on constants and affine values.

A handler receives the lowering state, the node's attributes and its input values (numpy
constants or :class:`~exactcomp.io.onnx_ops.Affine`), and returns its output values. The
only handler with a side effect is ``Relu``, which commits the affine function built so far
as a layer (:meth:`LoweringState.commit`). Anything not affine raises
:class:`~exactcomp.errors.UnsupportedModelError`; the driver in
:mod:`exactcomp.io.onnx_graph` adds the node's name to the message. The handlers of
constant tensors are in :mod:`exactcomp.io.onnx_consts`, of convolutions and pools in
:mod:`exactcomp.io.onnx_conv` and :mod:`exactcomp.io.onnx_pool`.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..conv import ConvSpec, PoolLevel
from ..errors import UnsupportedModelError
from ..network import SPARSE_ABOVE, Layer
from . import onnx_ops as ops
from . import onnx_skip as skip
from .conv_recognition import permuted_conv, recognize_conv
from .onnx_consts import CONST_HANDLERS, const
from .onnx_conv import conv
from .onnx_ops import Affine, Value
from .onnx_pool import POOL_HANDLERS
from .onnx_sparse import dense_of_sparse

FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
}


@dataclass
class LoweringState:
    """Mutable state of one symbolic run: the layers committed so far (one per run).

    ``shapes[k]`` is the tensor shape of the input of layer ``k`` (``shapes[0]``: the
    network's input), and ``convs`` the ``Conv`` nodes applied since the last commit: the
    committed layer gets a :class:`~exactcomp.conv.ConvSpec` when one of them describes its
    matrix exactly (:func:`~exactcomp.io.conv_recognition.recognize_conv`), and stays dense otherwise.
    ``live`` holds the tensors still needed after the node being lowered (set by the
    driver); a commit carries them through the new layer and replaces them by their values
    after it (:mod:`exactcomp.io.onnx_skip`). ``nonneg[k]``: the output of layer ``k`` is
    proven non-negative; ``carried[k]``: the carry rows layer ``k`` has.
    """

    layers: list[Layer] = field(default_factory=list)
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    convs: list[dict] = field(default_factory=list)
    live: list[Affine] = field(default_factory=list)
    nonneg: list[bool] = field(default_factory=list)
    carried: list[int] = field(default_factory=list)

    def commit(self, v: Affine, relu: bool) -> Affine:
        """Close the affine function ``v`` as a layer; return the identity on its output."""
        if v.base != len(self.layers) or any(t.base != v.base for t in self.live):
            raise UnsupportedModelError(
                "uses a tensor from before an earlier layer in a way the reader cannot carry"
            )
        n = v.lin.shape[0]
        w, b = v.lin.reshape(n, -1).T, v.off.reshape(-1)
        if self.live:
            layer, plan = skip.carry_layer((w, b), self.live, relu, self.h_nonneg())
            base = len(self.layers) + 1
            self.live = skip.read_back(self.live, plan, base)
            self.append(layer, (1, plan.width), identity=False, carried=plan.width - b.size)
            main = skip.selection(plan.width, tuple(v.shape), 0, None, base)
            return Affine(main.lin, main.off, base)
        spec = self._structure(w, b, v.shape)
        if spec is not None and w.size > SPARSE_ABOVE:
            w = ops.csr(spec.coo())  # the same entries, without the zeros
        return self.append(Layer(w, b, relu, spec), v.shape)

    def append(
        self, layer: Layer, shape: tuple[int, ...], identity: bool = True, carried: int = 0
    ) -> Affine:
        """Add ``layer`` (output laid out in ``shape``); return the identity on its output
        (``None`` with ``identity=False``, for a layer the next one is appended after)."""
        if self.live and not carried:
            raise UnsupportedModelError(
                "adds a pooling layer while a skip connection crosses it; not supported"
            )
        self.nonneg.append(self._output_nonneg(layer))
        self.layers.append(layer)
        self.carried.append(carried)
        self.convs = []
        self.shapes[len(self.layers)] = tuple(shape)
        if not identity:
            return None  # type: ignore[return-value]
        return Affine.identity(tuple(shape), len(self.layers))

    def h_nonneg(self) -> bool:
        """True when the current ``h`` (the last layer's output) is proven non-negative."""
        return bool(self.nonneg) and self.nonneg[-1]

    def _output_nonneg(self, layer: Layer) -> bool:
        pool = layer.structure
        if layer.relu:
            return True
        if isinstance(pool, PoolLevel) and pool.kind == "max":
            return pool.nonneg and pool.level == pool.levels
        if isinstance(pool, PoolLevel) and pool.kind == "average":
            return self.h_nonneg()
        return False

    def _structure(self, w: np.ndarray, b: np.ndarray, out: tuple[int, ...]) -> ConvSpec | None:
        """The conv whose matrix ``w`` is, exactly; its input laid out as the layer's input
        tensor, or (a flat input reshaped before the ``Conv``) as the ``Conv``'s input."""
        src = self.shapes.get(len(self.layers))
        if src is None or len(out) != 4 or out[0] != 1:
            return None
        for c in reversed(self.convs):
            args = {k: v for k, v in c.items() if k != "in_shape"}
            shapes = [src[1:]] if len(src) == 4 and src[0] == 1 else []
            shapes += [c["in_shape"]] if int(np.prod(c["in_shape"])) == w.shape[1] else []
            for in_shape in shapes:
                spec = recognize_conv(w, b, in_shape, out[1:], **args)
                if spec is not None:
                    return spec
            for source in _transposed_sources(src, c["in_shape"], w.shape[1]):
                spec = permuted_conv(w, b, source, c["in_shape"], out[1:], args)
                if spec is not None:
                    return spec
        return None

    def is_layer_output(self, x: Affine) -> bool:
        """True when ``x`` is exactly the output of the last committed layer, merely re-laid out."""
        return x.pure and x.base == len(self.layers) and x.is_identity()


def _transposed_sources(src: tuple[int, ...], in_shape: tuple[int, ...], width: int):
    """The layouts a ``Transpose`` into the ``Conv`` may have read its input in: the layer's
    input tensor (``(1, H, W, C)``, a channels-last image), or, when that input is a flat
    vector reshaped before the ``Transpose`` (an order-preserving ``Reshape``), every axis
    order of the ``Conv``'s input (the matrix decides, exactly, in :func:`permuted_conv`)."""
    if len(src) == 4 and src[0] == 1:
        return [src[1:]] if int(np.prod(src)) == width else []
    if int(np.prod(in_shape)) != width:
        return []
    return sorted(set(itertools.permutations(in_shape)))


def node_attributes(node: onnx.NodeProto) -> dict[str, object]:
    """The node's attributes as plain Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ints(v: object) -> tuple[int, ...]:
    return tuple(int(i) for i in np.asarray(v).reshape(-1))


def _structural(fn: Callable, x: Value, *args) -> Value:
    if isinstance(x, Affine):
        return x.map(fn, *args)
    return fn(np.asarray(x), 0, *args)


# ------------------------------------------------------------------------- operator handlers
# Each takes (state, node attributes, input values) and returns the list of output values.
Handler = Callable[[LoweringState, dict, list], list]


def _identity(st: LoweringState, at: dict, xs: list) -> list:
    return [xs[0]]


def _dropout(st: LoweringState, at: dict, xs: list) -> list:
    """Inference-mode dropout is the identity; the optional mask output is not supported."""
    training = xs[2] if len(xs) > 2 else None
    if training is not None and bool(np.any(const(training, "a constant training_mode"))):
        raise UnsupportedModelError("is in training mode")
    return [xs[0]]


def _cast(st: LoweringState, at: dict, xs: list) -> list:
    """``Cast``: an input-dependent tensor reaches here only for the exact or compute-dtype
    casts :func:`~exactcomp.io.onnx_types.audit_node` accepts, which the real-arithmetic IR
    reads as the identity; a constant is converted as onnxruntime does, or refused."""
    to = int(at.get("to", 0))
    if isinstance(xs[0], Affine):
        return [xs[0]]
    x = np.asarray(xs[0])
    target = np.dtype(helper.tensor_dtype_to_np_dtype(to))
    if x.dtype.kind == "f" and target.kind in "iub":
        if not np.all(np.isfinite(x)):
            raise UnsupportedModelError(f"casts a non-finite constant to {target}")
        if target.kind != "b":
            info = np.iinfo(target)
            if np.any(x <= info.min - 1.0) or np.any(x >= info.max + 1.0):
                raise UnsupportedModelError(f"casts a constant outside the range of {target}")
    with np.errstate(over="ignore"):
        out = x.astype(target)
    if out.dtype.kind == "f" and np.any(np.isinf(out) & np.isfinite(x.astype(np.float64))):
        raise UnsupportedModelError(f"casts a constant that overflows {target} to inf")
    return [out]


def _flatten(st: LoweringState, at: dict, xs: list) -> list:
    return [_structural(ops.flatten, xs[0], int(at.get("axis", 1)))]


def _reshape(st: LoweringState, at: dict, xs: list) -> list:
    target = at["shape"] if "shape" in at else const(xs[1] if len(xs) > 1 else None, "a shape")
    return [_structural(ops.reshape, xs[0], np.asarray(target), int(at.get("allowzero", 0)))]


def _axes(at: dict, xs: list) -> tuple[int, ...] | None:
    if "axes" in at:
        return _ints(at["axes"])
    if len(xs) > 1 and xs[1] is not None:
        return _ints(const(xs[1], "axes"))
    return None


def _squeeze(st: LoweringState, at: dict, xs: list) -> list:
    return [_structural(ops.squeeze, xs[0], _axes(at, xs))]


def _unsqueeze(st: LoweringState, at: dict, xs: list) -> list:
    axes = _axes(at, xs)
    if axes is None:
        raise UnsupportedModelError("has no axes")
    return [_structural(ops.unsqueeze, xs[0], axes)]


def _transpose(st: LoweringState, at: dict, xs: list) -> list:
    perm = _ints(at["perm"]) if "perm" in at else None
    return [_structural(ops.transpose, xs[0], perm)]


def _no_legacy_broadcast(at: dict) -> None:
    if "axis" in at:
        raise UnsupportedModelError("uses the legacy (opset < 7) 'axis' broadcast")


_INTEGER_OPS = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul}


def _integer_constants(op: str, a: Value, b: Value) -> np.ndarray | None:
    """The exact result of ``Add``/``Sub``/``Mul`` on two integer constants (``None`` when
    that is not the case); refused if it overflows the type, where onnxruntime would wrap."""
    if isinstance(a, Affine) or isinstance(b, Affine):
        return None
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
        return None
    dt = np.result_type(a, b)
    exact = np.asarray(_INTEGER_OPS[op](a.astype(object), b.astype(object)), dtype=object)
    info = np.iinfo(dt)
    if any(v < info.min or v > info.max for v in exact.reshape(-1)):
        raise UnsupportedModelError(f"overflows {dt} in integer arithmetic on constants")
    return exact.astype(dt)


def _arithmetic(op: str, apply: Callable) -> Callable:
    """The handler of a binary op: exact on integer constants (:func:`_integer_constants`),
    else ``apply`` on the lowered operands."""

    def handler(st: LoweringState, at: dict, xs: list) -> list:
        _no_legacy_broadcast(at)
        exact = _integer_constants(op, xs[0], xs[1])
        return [exact if exact is not None else apply(xs[0], xs[1])]

    return handler


_add = _arithmetic("Add", ops.add)
_sub = _arithmetic("Sub", lambda a, b: ops.add(a, ops.neg(b)))
_mul = _arithmetic("Mul", ops.mul)


def _div(st: LoweringState, at: dict, xs: list) -> list:
    _no_legacy_broadcast(at)
    return [ops.div(xs[0], xs[1])]


def _neg(st: LoweringState, at: dict, xs: list) -> list:
    return [ops.neg(xs[0])]


def _matmul(st: LoweringState, at: dict, xs: list) -> list:
    return [ops.matmul(xs[0], xs[1])]


def _gemm(st: LoweringState, at: dict, xs: list) -> list:
    """``Y = alpha * A' B' + beta * C`` with ``A' = A^T`` if ``transA`` (same for ``B``)."""
    a, b = xs[0], xs[1]
    if int(at.get("transA", 0)):
        a = _structural(ops.transpose, a, None)
    if int(at.get("transB", 0)):
        b = _structural(ops.transpose, b, None)
    y = ops.matmul(a, b)
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    if alpha != 1.0:
        y = ops.mul(y, np.float64(alpha))
    if len(xs) > 2 and xs[2] is not None:
        y = ops.add(y, ops.mul(xs[2], np.float64(beta)))
    return [y]


def _relu(st: LoweringState, at: dict, xs: list) -> list:
    x = xs[0]
    if not isinstance(x, Affine):
        return [ops.relu(np.asarray(x))]
    if st.layers and st.layers[-1].relu and st.is_layer_output(x):
        return [x]  # ReLU(ReLU(z)) = ReLU(z): no new layer
    if st.carried and st.carried[-1] and skip.is_nonneg(x, st.h_nonneg()):
        return [x]  # ReLU(t) = t for a t proven >= 0 (a ReLU output read back from a carry)
    return [st.commit(x, relu=True)]


def _batchnorm(st: LoweringState, at: dict, xs: list) -> list:
    """Inference-mode batch norm: ``(x - mean) * scale / sqrt(var + eps) + B`` per channel."""
    if int(at.get("training_mode", 0)):
        raise UnsupportedModelError("is in training mode")
    x = xs[0]
    scale, bias, mean, var = (const(v, "batch-norm statistics") for v in xs[1:5])
    rank = len(x.shape) if isinstance(x, Affine) else np.ndim(x)
    coef = scale.astype(np.float64) / np.sqrt(
        var.astype(np.float64) + float(at.get("epsilon", 1e-5))
    )
    tail = (1,) * max(rank - 2, 0)
    shift = bias.astype(np.float64) - mean.astype(np.float64) * coef
    return [ops.add(ops.mul(x, coef.reshape(-1, *tail)), shift.reshape(-1, *tail))]


def _constant(st: LoweringState, at: dict, xs: list) -> list:
    if "value" in at:
        return [numpy_helper.to_array(at["value"])]
    if "sparse_value" in at:  # a pruned weight matrix, as exactcomp writes it
        return [dense_of_sparse(at["sparse_value"])]
    for key in ("value_float", "value_int"):
        if key in at:
            return [np.asarray(at[key])]
    for key in ("value_floats", "value_ints"):
        if key in at:
            return [np.asarray(list(at[key]))]
    raise UnsupportedModelError(f"has an unsupported constant kind ({', '.join(at) or 'none'})")


def _concat(st: LoweringState, at: dict, xs: list) -> list:
    axis = int(at["axis"])
    affs = [x for x in xs if isinstance(x, Affine)]
    if not affs:
        return [np.concatenate([np.asarray(x) for x in xs], axis=axis)]
    base = affs[0].base
    if any(a.base != base for a in affs):
        raise UnsupportedModelError("concatenates tensors from different ReLU layers")
    n = affs[0].lin.shape[0]
    parts = [
        x if isinstance(x, Affine) else Affine(np.zeros((n, *np.shape(x))), x, base) for x in xs
    ]
    rank = len(parts[0].shape)
    axis = axis + rank if axis < 0 else axis
    lin = np.concatenate([p.lin for p in parts], axis=axis + 1)
    off = np.concatenate([np.asarray(p.off, dtype=np.float64) for p in parts], axis=axis)
    return [Affine(lin, off, base)]


HANDLERS: dict[str, Handler] = {
    "Identity": _identity,
    "Dropout": _dropout,
    "Cast": _cast,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": _transpose,
    "Add": _add,
    "Sub": _sub,
    "Mul": _mul,
    "Div": _div,
    "Neg": _neg,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Relu": _relu,
    "BatchNormalization": _batchnorm,
    "Conv": conv,
    "Concat": _concat,
    **POOL_HANDLERS,
    "Constant": _constant,
    **CONST_HANDLERS,
}

#: The ONNX operators the reader understands (default domain only).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(HANDLERS))
