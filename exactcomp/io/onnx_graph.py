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

``Conv`` is lowered to a dense affine map by :mod:`exactcomp.io.onnx_conv` (small convs
only); pooling and ``Pad`` are read by :mod:`exactcomp.io.onnx_pool` (``MaxPool`` as ReLU
layers).

Before each handler runs, :func:`exactcomp.io.onnx_types.audit_node` checks the node's element
types (tracked per tensor): what the reader computes is the graph in real arithmetic, so a node
whose ONNX meaning rounds beyond the graph's compute dtype (``Cast`` to FLOAT16 or to an
integer, FLOAT16 arithmetic, mixed operand types...) is refused by name, never approximated.

The IR is a chain, yet a tensor from before a ReLU may be used after it (a residual
``Add``, a ``Concat`` of branches): the driver knows, before each node, which tensors a later
node still reads, and a layer committed meanwhile carries them through as extra neurons
(:mod:`exactcomp.io.onnx_skip` states the maths: one ReLU per entry of a tensor proven
non-negative, two otherwise), so they are affine functions of the new ``h`` again. A node
whose operator is not in :data:`SUPPORTED_OPS`, or that cannot be carried (a ``MaxPool``
crossed by a skip connection), is refused with an
:class:`~exactcomp.errors.UnsupportedModelError` naming it. Nodes that do not feed the
output are ignored.

A ``Softmax`` or ``LogSoftmax`` that produces the graph's output over all the features of a
sample is kept as the *head*, as the PyTorch readers keep a final ``nn.Softmax``
(:mod:`exactcomp.io.torch_chain`): the network lowered is the logits network before it, and
``LoweredGraph.head`` names the head (``"softmax"`` or ``"log_softmax"``). "Over all the
features" is the operator's own axis rule on the logits' shape ``s`` (batch first when the
rank is >= 2, axis ``a`` taken modulo the rank): before opset 13 the input is coerced to 2-D
at ``a``, so ``a`` must be past the batch and ``s[1:a]`` all ones; from opset 13 the operator
acts along ``a`` alone, so every other non-batch dimension must be 1. Any other axis mixes
or splits samples' features and is refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InputFileError, InvalidNetworkError, UnsupportedModelError
from ..network import Layer
from .heads import HEAD_OF, ROW_HEADS
from .onnx_handlers import FLOAT_TYPES, HANDLERS, SUPPORTED_OPS, LoweringState, node_attributes
from .onnx_ops import Affine, Value
from .onnx_types import audit_node, compute_type, output_types


@dataclass(frozen=True)
class LoweredGraph:
    """The result of :func:`lower_graph`: the layers and the facts writers need."""

    layers: tuple[Layer, ...]
    input_name: str
    input_shape: tuple[int | str | None, ...]
    output_name: str
    output_shape: tuple[int | str | None, ...]
    input_dtype: str
    compute_dtype: str
    carried: tuple[int, ...] = ()  # per layer, its carry rows (a skip connection or Concat)
    head: str | None = None  # a final Softmax/LogSoftmax kept outside the layers


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


HEAD_OPS = HEAD_OF


def _head_node(graph: onnx.GraphProto, output: str) -> tuple[int, onnx.NodeProto] | None:
    """The final head node (index, node) producing ``output``, directly or through
    ``Identity`` nodes (as exporters and hand-written graphs name their output), or None."""
    producers = {name: (i, node) for i, node in enumerate(graph.node) for name in node.output}
    for _ in range(len(graph.node)):  # a malformed cycle of Identity nodes ends here
        if output not in producers:
            return None
        i, node = producers[output]
        if node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type in HEAD_OPS:
            return i, node
        if node.op_type != "Identity" or not node.input:
            return None
        output = node.input[0]
    return None


def _check_head_axis(label: str, node: onnx.NodeProto, shape: tuple[int, ...], opset: int) -> None:
    """Refuse a head whose axis is not over all of a sample's features (module docstring)."""
    r = len(shape)
    default = 1 if opset < 13 else -1
    axis = int(node_attributes(node).get("axis", default))
    a = axis % r if r else 0
    rest = [d for i, d in enumerate(shape) if i != a and not (i == 0 and r >= 2)]
    if opset < 13:
        ok = (r == 1 and a == 0) or (r >= 2 and a >= 1 and all(d == 1 for d in shape[1:a]))
    else:
        ok = (r == 1 or a >= 1) and all(d == 1 for d in rest)
    if not ok:
        raise UnsupportedModelError(
            f"{label}: {node.op_type} over axis {axis} of a tensor of shape {list(shape)} is "
            "not over all the features of a sample; only a final (Log)Softmax over them is "
            "supported"
        )


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
                fixed = all(isinstance(v, int) for v in dims)
                n = f"{int(np.prod(dims))} " if fixed else ""
                raise UnsupportedModelError(
                    f"the input {vi.name!r} has shape {list(dims)}: its first axis ({d}) is "
                    "read as the batch, which must be 1 or dynamic; a network reading all "
                    f"{n}numbers as one sample is not supported"
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


def _live_groups(
    env: dict[str, Value], last_use: dict[str, int], i: int
) -> list[tuple[list[str], Affine]]:
    """The input-dependent tensors a node after node ``i`` reads, one entry per distinct value
    (with every name bound to it): those a layer committed by node ``i`` must carry."""
    groups: dict[int, tuple[list[str], Affine]] = {}
    for name, value in env.items():
        if isinstance(value, Affine) and last_use.get(name, -1) > i:
            groups.setdefault(id(value), ([], value))[0].append(name)
    return list(groups.values())


def lower_graph(model: onnx.ModelProto) -> LoweredGraph:
    """Turn a feed-forward ONNX model into affine+ReLU layers (see the module docstring).

    Raises
    ------
    UnsupportedModelError
        An operator outside :data:`SUPPORTED_OPS`, a non-affine use of a supported one, a
        skip connection that cannot be carried (across a ``MaxPool``), or several inputs or
        outputs; the message names the node.
    InvalidNetworkError
        Shapes that do not fit together, or an initializer holding NaN or inf.
    """
    graph = model.graph
    try:
        consts: dict[str, Value] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    except Exception as exc:  # noqa: BLE001 - onnx raises assorted types for bad tensors
        raise InputFileError(f"cannot read the model's weights: {exc}") from exc
    for name, value in consts.items():  # else numpy warns while lowering, before the refusal
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise InvalidNetworkError(f"initializer {name!r} holds NaN or inf")
    inputs = [vi for vi in graph.input if vi.name not in consts]
    if len(inputs) != 1:
        names = [vi.name for vi in inputs]
        raise UnsupportedModelError(f"the model must have exactly one input; it has {names}")
    if len(graph.output) != 1:
        names = [vi.name for vi in graph.output]
        raise UnsupportedModelError(f"the model must have exactly one output; it has {names}")
    vin, vout = inputs[0], graph.output[0]
    in_type = vin.type.tensor_type.elem_type
    if in_type not in FLOAT_TYPES:
        raise UnsupportedModelError(
            f"the input {vin.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(in_type)}; only float inputs are supported"
        )
    declared_in, concrete_in = _input_shape(vin)
    final = _head_node(graph, vout.name)
    target = final[1].input[0] if final else vout.name

    st = LoweringState()
    env: dict[str, Value] = dict(consts)
    types: dict[str, int | None] = {t.name: int(t.data_type) for t in graph.initializer}
    types[vin.name] = int(in_type)
    compute = compute_type(in_type)
    env[vin.name] = Affine.identity(concrete_in, 0)
    st.shapes[0] = tuple(concrete_in)
    needed = _needed_nodes(graph, target)
    wanted = {t for i in needed for t in graph.node[i].input} | {target}
    last_use = {target: len(graph.node)}
    for i in needed:
        for name in graph.node[i].input:
            last_use[name] = max(last_use.get(name, -1), i)
    for i in needed:
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
                f"{label}: operator {node.op_type!r} is not supported; supported operators: "
                f"{', '.join(SUPPORTED_OPS)}"
            )
        try:
            xs = [env[name] if name else None for name in node.input]
        except KeyError as exc:
            raise InputFileError(
                f"{label} reads the tensor {exc.args[0]!r}, which no earlier node produces "
                "(the graph is malformed or not topologically sorted)"
            ) from None
        attrs = node_attributes(node)
        in_types = [types.get(name) if name else None for name in node.input]
        groups = _live_groups(env, last_use, i)
        st.live = [v for _, v in groups]
        try:
            audit_node(node.op_type, attrs, in_types, [isinstance(x, Affine) for x in xs], compute)
            outs = handler(st, attrs, xs)
        except UnsupportedModelError as exc:
            raise UnsupportedModelError(f"{label}: {exc}") from None
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise InvalidNetworkError(f"{label}: cannot evaluate it ({exc})") from None
        for (names, _), value in zip(groups, st.live, strict=True):
            env.update(dict.fromkeys(names, value))  # carried through the layers committed
        st.live = []
        out_types = output_types(node.op_type, attrs, in_types)
        for k, name in enumerate(node.output):
            if k < len(outs):
                env[name] = outs[k]
                types[name] = out_types[k] if k < len(out_types) else None
            elif name in wanted:
                raise UnsupportedModelError(f"{label}: its output #{k} ({name!r}) is not supported")
    if target not in env:
        raise InputFileError(f"no node produces the output {target!r}")
    out = env[target]
    if not isinstance(out, Affine):
        raise UnsupportedModelError(f"the output {target!r} does not depend on the input")
    if final and HEAD_OF[final[1].op_type] in ROW_HEADS:
        _check_head_axis(_node_label(final[1], final[0]), final[1], out.shape, opset_version(model))
    if not (st.layers and st.is_layer_output(out)):
        st.commit(out, relu=False)
    declared_out = declared_dims(vout) or tuple(out.shape)
    return LoweredGraph(
        layers=tuple(st.layers),
        carried=tuple(st.carried),
        input_name=vin.name,
        input_shape=declared_in,
        output_name=vout.name,
        output_shape=declared_out,
        input_dtype=FLOAT_TYPES[in_type],
        compute_dtype=FLOAT_TYPES[compute],
        head=HEAD_OPS[final[1].op_type] if final else None,
    )


def initializer_dtype(model: onnx.ModelProto, default: str) -> str:
    """The float dtype of the model's weights: that of its largest float initializer."""
    best, size = default, -1
    for t in model.graph.initializer:
        if t.data_type in FLOAT_TYPES:
            n = int(np.prod(t.dims, dtype=np.int64))
            if n > size:
                best, size = FLOAT_TYPES[t.data_type], n
    return best


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset the model declares."""
    versions: Sequence[int] = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return int(max(versions, default=1))
