"""Lower a feed-forward ONNX graph to the network IR by executing it symbolically.

The graph is run once, in float64, on a batch of one sample, with every tensor kept either as
a constant or as an :class:`~exactcomp.io.onnx_ops.Affine` function of the current hidden
vector ``h`` (see :mod:`exactcomp.io.onnx_ops`). Affine operators (``MatMul``, ``Gemm``,
``Add``/``Sub``/``Mul``/``Div`` by constants, ``BatchNormalization``, reshapes and
transposes...) only update that function, so input normalisation and consecutive affine layers
merge for free. Each ``Relu`` commits the affine function built so far as one
:class:`~exactcomp.network.Layer` with ``relu=True`` and restarts from the identity on its
output. Constants (initializers, ``Constant`` nodes, and any node whose inputs are all
constant, such as ``Constant -> Reshape -> Transpose``) are folded as they are met.

Only a chain is representable: a tensor from before a ReLU may not be used after it (skip
connections), and a node whose operator is not in :data:`SUPPORTED_OPS` is refused with an
:class:`~exactcomp.errors.UnsupportedModelError` naming it. Nodes that do not feed the
output are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InputFileError, InvalidNetworkError, UnsupportedModelError
from ..network import Layer
from . import onnx_ops as ops
from .onnx_ops import Affine, Value

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
}


@dataclass
class _State:
    """Mutable state of one symbolic run (local to :func:`lower_graph`)."""

    layers: list[Layer] = field(default_factory=list)

    def commit(self, v: Affine, relu: bool) -> Affine:
        """Close the affine function ``v`` as a layer; return the identity on its output."""
        if v.base != len(self.layers):
            raise UnsupportedModelError(
                "uses a tensor from before an earlier ReLU (skip connections are not supported)"
            )
        n = v.lin.shape[0]
        self.layers.append(Layer(v.lin.reshape(n, -1).T, v.off.reshape(-1), relu))
        return Affine.identity(v.shape, len(self.layers))


@dataclass(frozen=True)
class LoweredGraph:
    """The result of :func:`lower_graph`: the layers and the facts writers need."""

    layers: tuple[Layer, ...]
    input_name: str
    input_shape: tuple[int | str | None, ...]
    output_name: str
    output_shape: tuple[int | str | None, ...]
    input_dtype: str


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _const(v: Value | None, what: str) -> np.ndarray:
    if v is None:
        raise UnsupportedModelError(f"needs {what}, which is missing")
    if isinstance(v, Affine):
        raise UnsupportedModelError(f"needs {what} to be a constant, but it depends on the input")
    return np.asarray(v)


def _ints(v: object) -> tuple[int, ...]:
    return tuple(int(i) for i in np.asarray(v).reshape(-1))


def _structural(fn: Callable, x: Value, *args) -> Value:
    if isinstance(x, Affine):
        return x.map(fn, *args)
    return fn(np.asarray(x), 0, *args)


# ------------------------------------------------------------------------- operator handlers
# Each takes (state, node attributes, input values) and returns the list of output values.
Handler = Callable[[_State, dict, list], list]


def _identity(st: _State, at: dict, xs: list) -> list:
    return [xs[0]]


def _cast(st: _State, at: dict, xs: list) -> list:
    to = int(at.get("to", 0))
    if isinstance(xs[0], Affine):
        if to not in _FLOAT_TYPES:
            raise UnsupportedModelError("casts an input-dependent tensor to a non-float type")
        return [xs[0]]
    return [np.asarray(xs[0]).astype(helper.tensor_dtype_to_np_dtype(to))]


def _flatten(st: _State, at: dict, xs: list) -> list:
    return [_structural(ops.flatten, xs[0], int(at.get("axis", 1)))]


def _reshape(st: _State, at: dict, xs: list) -> list:
    target = at["shape"] if "shape" in at else _const(xs[1] if len(xs) > 1 else None, "a shape")
    return [_structural(ops.reshape, xs[0], np.asarray(target), int(at.get("allowzero", 0)))]


def _axes(at: dict, xs: list) -> tuple[int, ...] | None:
    if "axes" in at:
        return _ints(at["axes"])
    if len(xs) > 1 and xs[1] is not None:
        return _ints(_const(xs[1], "axes"))
    return None


def _squeeze(st: _State, at: dict, xs: list) -> list:
    return [_structural(ops.squeeze, xs[0], _axes(at, xs))]


def _unsqueeze(st: _State, at: dict, xs: list) -> list:
    axes = _axes(at, xs)
    if axes is None:
        raise UnsupportedModelError("has no axes")
    return [_structural(ops.unsqueeze, xs[0], axes)]


def _transpose(st: _State, at: dict, xs: list) -> list:
    perm = _ints(at["perm"]) if "perm" in at else None
    return [_structural(ops.transpose, xs[0], perm)]


def _no_legacy_broadcast(at: dict) -> None:
    if "axis" in at:
        raise UnsupportedModelError("uses the legacy (opset < 7) 'axis' broadcast")


def _add(st: _State, at: dict, xs: list) -> list:
    _no_legacy_broadcast(at)
    return [ops.add(xs[0], xs[1])]


def _sub(st: _State, at: dict, xs: list) -> list:
    _no_legacy_broadcast(at)
    return [ops.add(xs[0], ops.neg(xs[1]))]


def _mul(st: _State, at: dict, xs: list) -> list:
    _no_legacy_broadcast(at)
    return [ops.mul(xs[0], xs[1])]


def _div(st: _State, at: dict, xs: list) -> list:
    _no_legacy_broadcast(at)
    return [ops.div(xs[0], xs[1])]


def _neg(st: _State, at: dict, xs: list) -> list:
    return [ops.neg(xs[0])]


def _matmul(st: _State, at: dict, xs: list) -> list:
    return [ops.matmul(xs[0], xs[1])]


def _gemm(st: _State, at: dict, xs: list) -> list:
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


def _is_layer_output(st: _State, x: Affine) -> bool:
    """True when ``x`` is exactly the output of the last committed layer, merely re-laid out."""
    return x.pure and x.base == len(st.layers) and x.is_identity()


def _relu(st: _State, at: dict, xs: list) -> list:
    x = xs[0]
    if not isinstance(x, Affine):
        return [ops.relu(np.asarray(x))]
    if st.layers and st.layers[-1].relu and _is_layer_output(st, x):
        return [x]  # ReLU(ReLU(z)) = ReLU(z): no new layer
    return [st.commit(x, relu=True)]


def _batchnorm(st: _State, at: dict, xs: list) -> list:
    """Inference-mode batch norm: ``(x - mean) * scale / sqrt(var + eps) + B`` per channel."""
    if int(at.get("training_mode", 0)):
        raise UnsupportedModelError("is in training mode")
    x = xs[0]
    scale, bias, mean, var = (_const(v, "batch-norm statistics") for v in xs[1:5])
    rank = len(x.shape) if isinstance(x, Affine) else np.ndim(x)
    coef = scale.astype(np.float64) / np.sqrt(
        var.astype(np.float64) + float(at.get("epsilon", 1e-5))
    )
    tail = (1,) * max(rank - 2, 0)
    shift = bias.astype(np.float64) - mean.astype(np.float64) * coef
    return [ops.add(ops.mul(x, coef.reshape(-1, *tail)), shift.reshape(-1, *tail))]


def _constant(st: _State, at: dict, xs: list) -> list:
    if "value" in at:
        return [numpy_helper.to_array(at["value"])]
    for key in ("value_float", "value_int"):
        if key in at:
            return [np.asarray(at[key])]
    for key in ("value_floats", "value_ints"):
        if key in at:
            return [np.asarray(list(at[key]))]
    raise UnsupportedModelError(f"has an unsupported constant kind ({', '.join(at) or 'none'})")


def _shape(st: _State, at: dict, xs: list) -> list:
    x = xs[0]
    shape = np.asarray(x.shape if isinstance(x, Affine) else np.shape(x), dtype=np.int64)
    start = int(at.get("start", 0))
    end = at.get("end")
    return [shape[start : None if end is None else int(end)]]


def _gather(st: _State, at: dict, xs: list) -> list:
    data = _const(xs[0], "constant data")
    idx = _const(xs[1], "constant indices")
    return [np.take(data, idx.astype(np.int64), axis=int(at.get("axis", 0)))]


def _concat(st: _State, at: dict, xs: list) -> list:
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
    "Dropout": _identity,
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
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _gather,
    "Concat": _concat,
}

#: The ONNX operators the reader understands (default domain only).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(HANDLERS))


# ------------------------------------------------------------------------- driver
def declared_dims(value_info: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _node_label(node: onnx.NodeProto, index: int) -> str:
    name = node.name or f"#{index} (output {node.output[0] if node.output else '?'!r})"
    return f"node {name!r} ({node.op_type})"


def _needed_nodes(graph: onnx.GraphProto, output: str) -> list[int]:
    """Indices of the nodes the output depends on, in graph order."""
    producer = {o: i for i, node in enumerate(graph.node) for o in node.output if o}
    needed: set[int] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        i = producer.get(name)
        if i is None or i in needed:
            continue
        needed.add(i)
        stack.extend(t for t in graph.node[i].input if t)
    return sorted(needed)


def _input_shape(vi: onnx.ValueInfoProto) -> tuple[tuple[int | str | None, ...], tuple[int, ...]]:
    """The declared input shape and the concrete one used for the symbolic run (batch = 1)."""
    dims = declared_dims(vi)
    if dims is None:
        raise UnsupportedModelError(f"the input {vi.name!r} has no declared shape")
    concrete = []
    for i, d in enumerate(dims):
        if isinstance(d, int):
            if i == 0 and len(dims) >= 2 and d > 1:
                raise UnsupportedModelError(
                    f"the input {vi.name!r} has shape {list(dims)}: a fixed batch of {d} "
                    "samples; only one sample per row (batch 1 or dynamic) is supported"
                )
            concrete.append(d)
        elif i == 0 and len(dims) >= 2:
            concrete.append(1)  # dynamic batch dimension
        else:
            raise UnsupportedModelError(
                f"the input {vi.name!r} has shape {list(dims)}: a dynamic dimension other "
                "than the batch, so the number of features is unknown"
            )
    return dims, tuple(concrete)


def lower_graph(model: onnx.ModelProto) -> LoweredGraph:
    """Turn a feed-forward ONNX model into affine+ReLU layers (see the module docstring).

    Raises
    ------
    UnsupportedModelError
        An operator outside :data:`SUPPORTED_OPS`, a non-affine use of a supported one, a
        skip connection, or several inputs or outputs; the message names the node.
    InvalidNetworkError
        Shapes that do not fit together.
    """
    graph = model.graph
    try:
        consts: dict[str, Value] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    except Exception as exc:  # noqa: BLE001 - onnx raises assorted types for bad tensors
        raise InputFileError(f"cannot read the model's weights: {exc}") from exc
    inputs = [vi for vi in graph.input if vi.name not in consts]
    if len(inputs) != 1:
        names = [vi.name for vi in inputs]
        raise UnsupportedModelError(f"the model must have exactly one input; it has {names}")
    if len(graph.output) != 1:
        names = [vi.name for vi in graph.output]
        raise UnsupportedModelError(f"the model must have exactly one output; it has {names}")
    vin, vout = inputs[0], graph.output[0]
    in_type = vin.type.tensor_type.elem_type
    if in_type not in _FLOAT_TYPES:
        raise UnsupportedModelError(
            f"the input {vin.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(in_type)}; only float inputs are supported"
        )
    declared_in, concrete_in = _input_shape(vin)

    st = _State()
    env: dict[str, Value] = dict(consts)
    env[vin.name] = Affine.identity(concrete_in, 0)
    for i in _needed_nodes(graph, vout.name):
        node = graph.node[i]
        label = _node_label(node, i)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(
                f"{label} is from the operator domain {node.domain!r}; only standard ONNX "
                "operators are supported"
            )
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise UnsupportedModelError(
                f"{label}: operator {node.op_type!r} is not supported (it is not affine or "
                f"ReLU); supported operators: {', '.join(SUPPORTED_OPS)}"
            )
        try:
            xs = [env[name] if name else None for name in node.input]
        except KeyError as exc:
            raise InputFileError(
                f"{label} reads the tensor {exc.args[0]!r}, which no earlier node produces "
                "(the graph is malformed or not topologically sorted)"
            ) from None
        try:
            outs = handler(st, _attrs(node), xs)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{label}: {exc}") from None
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise InvalidNetworkError(f"{label}: cannot evaluate it ({exc})") from None
        for name, value in zip(node.output, outs, strict=False):
            if name:
                env[name] = value
    if vout.name not in env:
        raise InputFileError(f"no node produces the output {vout.name!r}")
    out = env[vout.name]
    if not isinstance(out, Affine):
        raise UnsupportedModelError(f"the output {vout.name!r} does not depend on the input")
    if not (st.layers and _is_layer_output(st, out)):
        st.commit(out, relu=False)
    declared_out = declared_dims(vout) or tuple(out.shape)
    return LoweredGraph(
        layers=tuple(st.layers),
        input_name=vin.name,
        input_shape=declared_in,
        output_name=vout.name,
        output_shape=declared_out,
        input_dtype=_FLOAT_TYPES[in_type],
    )


def initializer_dtype(model: onnx.ModelProto, default: str) -> str:
    """The float dtype of the model's weights: that of its largest float initializer."""
    best, size = default, -1
    for t in model.graph.initializer:
        if t.data_type in _FLOAT_TYPES:
            n = int(np.prod(t.dims, dtype=np.int64))
            if n > size:
                best, size = _FLOAT_TYPES[t.data_type], n
    return best


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset the model declares."""
    versions: Sequence[int] = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return int(max(versions, default=1))
