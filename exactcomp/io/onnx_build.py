"""The ONNX graph of a network: what :func:`exactcomp.io.onnx_io.save_onnx` writes.

A ``Gemm`` (+ ``Relu``) chain, with ``Conv`` for the layers that carry a convolution and one
``MaxPool``/``AveragePool`` per intact pooling block (:mod:`exactcomp.conv`), with the
source's input and output names and shapes (a ``Reshape`` adapts odd layouts such as
``[1, 784, 1]`` or ``[1, 1, 1, 5]``), then the head (:mod:`exactcomp.io.heads`), if any. A
float16 network is stored in FLOAT16 and computed in FLOAT (:func:`half_storage`). Checking
the graph against onnxruntime and writing it into place is :mod:`exactcomp.io.onnx_io`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..conv import ConvSpec, PoolLevel
from ..errors import InputFileError
from ..network import Layer, Network
from .heads import HEAD_CLASSES, ROW_HEADS
from .onnx_graph import declared_dims

__all__ = ["WRITE_IR_VERSION", "WRITE_OPSET", "build_model", "half_storage"]

#: Opset and IR version of the files we write (supported by every onnxruntime since 1.10).
WRITE_OPSET = 13
WRITE_IR_VERSION = 8

Dims = tuple[int | str | None, ...]


def _io_facts(net: Network, like: Any) -> tuple[str, Dims, str, Dims]:
    """Input/output names and shapes to write: from ``like`` or ``net.meta``, if they fit."""
    meta: Mapping[str, Any]
    if like is None:
        meta = net.meta
    elif isinstance(like, Network):
        meta = like.meta
    elif isinstance(like, Mapping):
        meta = like
    else:
        meta = _meta_of_file(Path(like))
    in_name, out_name = str(meta.get("input_name", "input")), str(meta.get("output_name", "output"))
    in_shape = _fitting(meta.get("input_shape"), net.input_size)
    out_shape = _fitting(meta.get("output_shape"), net.output_size)
    if in_name == out_name or not in_name or not out_name:
        in_name, out_name = "input", "output"
    return (
        in_name,
        in_shape or ("batch", net.input_size),
        out_name,
        out_shape or ("batch", net.output_size),
    )


def _meta_of_file(path: Path) -> dict[str, Any]:
    """Input/output names and shapes of an ONNX file, read without lowering it."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"cannot read {str(path)!r} as ONNX to mirror it ({exc})") from None
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in inits]

    meta: dict[str, Any] = {}
    if len(inputs) == 1:
        meta.update(input_name=inputs[0].name, input_shape=declared_dims(inputs[0]))
    if len(graph.output) == 1:
        meta.update(output_name=graph.output[0].name, output_shape=declared_dims(graph.output[0]))
    return meta


def _fitting(shape: Any, size: int) -> Dims | None:
    """``shape`` if it holds ``size`` features per sample (batch first when rank >= 2)."""
    if not shape:
        return None
    dims = tuple(shape)
    features = dims[1:] if len(dims) >= 2 else dims
    if len(dims) >= 2 and isinstance(dims[0], int) and dims[0] != 1:
        return None
    if not all(isinstance(d, int) for d in features):
        return None
    if int(np.prod(features, dtype=np.int64)) != size:
        return None
    return dims


def _onnx_dims(dims: Dims) -> list[int | str]:
    return [d if d is not None else "batch" for d in dims]


def _reshape_target(dims: Dims) -> np.ndarray:
    return np.array([d if isinstance(d, int) else -1 for d in dims], dtype=np.int64)


def _flat_end(layers: list[Layer]) -> bool:
    return layers[-1].structure is None


def _pool_block(layers: list[Layer], k: int) -> int:
    """How many layers from ``k`` form one intact pooling block (0 when none starts there)."""
    first = layers[k].structure
    if not isinstance(first, PoolLevel) or first.level != 0:
        return 0
    n = first.levels + 1
    if k + n > len(layers):
        return 0
    for i in range(n):
        la = layers[k + i]
        if la.structure != first.at_level(i) or la.relu != (i < first.levels):
            return 0
    return n


def _layer_nodes(
    layers: list[Layer], dt: np.dtype, h: str, in_shape: Dims
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing ``layers`` from the tensor ``h``: ``Conv`` for a
    layer with a :class:`ConvSpec` (after a ``Transpose`` for one with ``in_axes``), one ``MaxPool``/``AveragePool`` per intact pooling block,
    ``Gemm`` otherwise, with a ``Reshape`` wherever the layout changes. In float64 a
    convolution or average pool is written as ``Gemm``: onnxruntime implements neither in
    double precision, and a file it cannot run is no use."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    layout: tuple[int, ...] = tuple(d for d in in_shape[1:]) if len(in_shape) >= 2 else ()

    def to(shape: tuple[int, ...], k: int) -> None:
        nonlocal h, layout
        if layout == shape:
            return
        name = f"ec_shape{k}"
        inits.append(numpy_helper.from_array(np.array([-1, *shape], np.int64), name))
        nodes.append(helper.make_node("Reshape", [h, name], [f"ec_r{k}"], name=f"ec_reshape{k}"))
        h, layout = f"ec_r{k}", shape

    k = 0
    while k < len(layers):
        layer, spec = layers[k], layers[k].structure
        if dt == np.float64 and (
            isinstance(spec, ConvSpec) or (isinstance(spec, PoolLevel) and spec.kind != "max")
        ):
            spec = None  # onnxruntime has no float64 Conv or AveragePool: written as Gemm
        block = _pool_block(layers, k) if spec is not None else 0
        if block:
            assert isinstance(spec, PoolLevel)
            to(tuple(spec.in_shape), k)
            op = "MaxPool" if spec.kind == "max" else "AveragePool"
            extra = {"count_include_pad": int(spec.count_include_pad)} if op != "MaxPool" else {}
            nodes.append(
                helper.make_node(
                    op,
                    [h],
                    [f"ec_p{k}"],
                    name=f"ec_pool{k}",
                    kernel_shape=list(spec.kernel),
                    strides=list(spec.strides),
                    pads=list(spec.pads),
                    **extra,
                )  # fmt: skip
            )
            h, layout = f"ec_p{k}", (spec.channels, *spec.out_hw)
            k += block
            continue
        w, b = f"ec_W{k}", f"ec_b{k}"
        if isinstance(spec, ConvSpec):
            to(tuple(spec.source_shape), k)
            if spec.in_axes is not None:  # a channels-last input: transposed, as it was read
                perm = [0, *(a + 1 for a in spec.in_axes)]
                nodes.append(
                    helper.make_node("Transpose", [h], [f"ec_t{k}"], name=f"ec_tr{k}", perm=perm)
                )
                h = f"ec_t{k}"
            m = spec.out_shape[0]
            inits.append(numpy_helper.from_array(spec.kernel.astype(dt), w))
            inits.append(numpy_helper.from_array(layer.bias.reshape(m, -1)[:, 0].astype(dt), b))
            nodes.append(
                helper.make_node(
                    "Conv",
                    [h, w, b],
                    [f"ec_z{k}"],
                    name=f"ec_conv{k}",
                    kernel_shape=list(spec.kernel.shape[2:]),
                    strides=list(spec.strides),
                    pads=list(spec.pads),
                    dilations=list(spec.dilations),
                    group=spec.groups,
                )  # fmt: skip
            )
            layout = tuple(spec.out_shape)
        else:
            to((layer.in_features,), k)
            weight = layer.weight.toarray() if layer.sparse else layer.weight
            inits.append(numpy_helper.from_array(weight.astype(dt), w))
            inits.append(numpy_helper.from_array(layer.bias.astype(dt), b))
            nodes.append(
                helper.make_node("Gemm", [h, w, b], [f"ec_z{k}"], name=f"ec_gemm{k}", transB=1)
            )
            layout = (layer.out_features,)
        h = f"ec_z{k}"
        if layer.relu:
            nodes.append(helper.make_node("Relu", [h], [f"ec_h{k}"], name=f"ec_relu{k}"))
            h = f"ec_h{k}"
        k += 1
    return nodes, inits


def _without_empty(net: Network) -> list[Layer]:
    """The layers of ``net``, which has a layer of width zero (not a valid ``Gemm``), written
    as a valid graph with the same numbers. With ``k`` the last such layer, layer ``k + 1``
    reads nothing and outputs its activated bias: layers ``0..k + 1`` become one ``Gemm`` of
    zero weights, that bias and that activation, and the layers after it stay as they are.
    The file then computes exactly what ``net`` computes: no constant is formed from the
    weights and rounded to the dtype (the output constant of the whole network, computed in
    float64 and rounded to float32, moved a lossy result's outputs by 3.8e-9: conv-compress
    soak seed 94011). A structure of layer ``k + 1`` is dropped: the layers after it are
    written from their matrices where their pooling block is broken. Mostly zero, the weights
    are stored sparsely (:func:`~exactcomp.io.onnx_sparse.sparse_storage`)."""
    layers = list(net.layers)
    k = max(i for i, la in enumerate(layers) if la.out_features == 0)
    if k + 1 == len(layers):  # no output: an empty constant
        return [Layer(np.zeros((0, net.input_size)), np.zeros(0), relu=False)]
    nxt = layers[k + 1]
    zero = np.zeros((nxt.out_features, net.input_size))
    return [Layer(zero, np.asarray(nxt.bias, dtype=np.float64), nxt.relu), *layers[k + 2 :]]


def build_model(net: Network, like: Any = None) -> onnx.ModelProto:
    """The ONNX model of ``net``: per layer ``Conv`` (a layer with a convolution structure)
    or ``Gemm``, each with its ``Relu``, and one ``MaxPool``/``AveragePool`` per intact
    pooling block (:class:`~exactcomp.conv.PoolLevel`), in ``net.dtype``; then the head
    (``net.meta["head"]``: ``Softmax``/``LogSoftmax`` over the flattened logits), if any.

    A network with a layer of width zero computes a constant (:func:`_without_empty`).
    """
    in_name, in_shape, out_name, out_shape = _io_facts(net, like)
    dt = np.dtype(net.dtype) if np.dtype(net.dtype).kind == "f" else np.dtype(np.float32)
    if dt == np.float16:  # computed in float32 (save_onnx stores it in float16: _half_storage)
        dt = np.dtype(np.float32)
    elem = helper.np_dtype_to_tensor_dtype(dt)
    layers = list(net.layers)
    if any(layer.out_features == 0 for layer in layers):
        layers = _without_empty(net)
    nodes, inits = _layer_nodes(layers, dt, in_name, in_shape)
    h = nodes[-1].output[0]
    head = net.meta.get("head")
    if head:  # over the flat logits of each sample, as read (onnx_graph) and as torch applies it
        if not _flat_end(layers):
            nodes.append(helper.make_node("Flatten", [h], ["ec_logits"], name="ec_flat", axis=1))
            h = "ec_logits"
        axis = {"axis": 1} if head in ROW_HEADS else {}
        nodes.append(helper.make_node(HEAD_CLASSES[head], [h], ["ec_head"], name="ec_head", **axis))
        h = "ec_head"
    if (
        len(out_shape) == 2
        and (head or nodes[-1].op_type in ("Gemm", "Relu"))
        and (head or _flat_end(layers))
    ):
        nodes[-1].output[0] = out_name
    else:
        inits.append(numpy_helper.from_array(_reshape_target(out_shape), "ec_out_shape"))
        nodes.append(helper.make_node("Reshape", [h, "ec_out_shape"], [out_name], name="ec_out"))
    graph = helper.make_graph(
        nodes,
        "exactcomp",
        [helper.make_tensor_value_info(in_name, elem, _onnx_dims(in_shape))],
        [helper.make_tensor_value_info(out_name, elem, _onnx_dims(out_shape))],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", WRITE_OPSET)],
        producer_name="exactcomp",
    )
    model.ir_version = WRITE_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def half_storage(model: onnx.ModelProto) -> None:
    """Store each float32 initializer whose values are all float16 numbers as FLOAT16, read
    through a ``Cast`` to FLOAT (exact: float16 -> float32 is a widening). A float16 network
    is so written at its checkpoint's size and computed in float32, the arithmetic the reader
    accepts; a graph computing in FLOAT16 rounds every step and is refused by
    :mod:`~exactcomp.io.onnx_types` (as exactcomp's own output, before: issue 18 sweep)."""
    graph = model.graph
    casts = []
    for t in list(graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            continue
        graph.initializer.remove(t)
        graph.initializer.append(numpy_helper.from_array(a.astype(np.float16), f"{t.name}_h"))
        casts.append(helper.make_node("Cast", [f"{t.name}_h"], [t.name], name=f"{t.name}_cast",
                                      to=onnx.TensorProto.FLOAT))  # fmt: skip
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
