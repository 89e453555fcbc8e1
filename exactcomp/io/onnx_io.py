"""ONNX files <-> the network IR, each direction checked against onnxruntime.

Reading lowers the graph with :func:`exactcomp.io.onnx_graph.lower_graph` and then runs the
original file in onnxruntime on the corners, faces and random points of a box: a network we misread would make every later
proof a proof about the wrong function, so a disagreement is an error, never a warning.
Writing produces a ``Gemm`` (+ ``Relu``) chain, with ``Conv`` for the layers that carry a
convolution and one ``MaxPool``/``AveragePool`` per intact pooling block
(:mod:`exactcomp.conv`), with the source's input and output names and shapes (a ``Reshape``
adapts odd layouts such as ``[1, 784, 1]`` or ``[1, 1, 1, 5]``), checks it with
``onnx.checker`` and onnxruntime, and only then renames it into place. A convolutional
network read from a file and left unchanged is never written larger than that file.

What each operator and cast means, and which are refused, is in :mod:`exactcomp.io.onnx_types`;
the cross-check (probe points and tolerance) is in :mod:`exactcomp.io.onnx_check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..conv import ConvSpec, PoolLevel
from ..domain import Box
from ..errors import InputFileError, InvalidNetworkError, VerificationError
from ..network import Layer, Network
from .atomic import atomic_path
from .onnx_check import (
    Comparison,
    check_boxes,
    compare_with_onnxruntime,
    layers_digest,
    partial_sum_size,
    probe_points,
)
from .onnx_graph import declared_dims, initializer_dtype, lower_graph, opset_version
from .onnx_handlers import FLOAT_TYPES
from .onnx_sparse import sparse_storage
from .torch_chain import head_note

__all__ = [
    "Comparison",
    "build_model",
    "compare_with_onnxruntime",
    "load_onnx",
    "partial_sum_size",
    "save_onnx",
]

#: The ONNX operator written for each head (see :mod:`exactcomp.io.onnx_graph`).
HEAD_NAMES = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}

#: Opset and IR version of the files we write (supported by every onnxruntime since 1.10).
WRITE_OPSET = 13
WRITE_IR_VERSION = 8

Dims = tuple[int | str | None, ...]


# ----------------------------------------------------------------------------- reading
def load_onnx(
    path: str | Path,
    *,
    check_box: Box | None = None,
    check_samples: int = 64,
    seed: int = 0,
) -> Network:
    """Read a feed-forward ReLU network from an ONNX file.

    Parameters
    ----------
    path:
        The ``.onnx`` file.
    check_box:
        The box on whose corners, faces and random points onnxruntime checks the network
        (:func:`~exactcomp.io.onnx_check.probe_points`); default ``[-1, 1]^n``. The API checks
        again on the analysis domain once it is known
        (:func:`~exactcomp.io.onnx_check.check_on_domain`).
    check_samples:
        How many random interior points the check adds to the corners and faces.
    seed:
        Seed of those inputs (the check is deterministic).

    Returns
    -------
    Network
        ``dtype`` is the weights' dtype (FLOAT16 weights: the compute dtype, so that a
        saved copy never computes in float16); ``meta`` holds ``format="onnx"``, ``input_name``,
        ``input_shape``, ``output_name``, ``output_shape`` (shapes include the batch dimension;
        a dynamic dimension is its name or ``None``), ``opset``, ``producer`` and
        ``input_dtype``, ``compute_dtype`` (see :mod:`~exactcomp.io.onnx_types`),
        ``layers_digest`` and ``check_max_abs_diff`` (the largest difference seen against
        onnxruntime).

    Raises
    ------
    InputFileError
        Missing file, not ONNX, or a model ``onnx.checker`` or onnxruntime rejects.
    UnsupportedModelError
        An operator or structure that is not an affine+ReLU chain, or an operator or cast
        the reader cannot read exactly (FLOAT16 arithmetic, a narrowing or integer cast...),
        naming the node.
    InvalidNetworkError
        The lowered network disagrees with onnxruntime (a reader bug or an odd graph).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"ONNX file {str(path)!r} does not exist; check the path")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for bad bytes
        raise InputFileError(f"{str(path)!r} is not a readable ONNX model ({exc})") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise InputFileError(f"{str(path)!r} is not a valid ONNX model: {first}") from None
    lowered = lower_graph(model)
    meta = {
        "format": "onnx",
        "source": str(path),
        "input_name": lowered.input_name,
        "input_shape": list(lowered.input_shape),
        "output_name": lowered.output_name,
        "output_shape": list(lowered.output_shape),
        "opset": opset_version(model),
        "producer": model.producer_name,
        "input_dtype": lowered.input_dtype,
        "compute_dtype": lowered.compute_dtype,
    }
    if lowered.head:  # the logits network is analysed; the file's (Log)Softmax is the head
        meta["head"] = lowered.head
        meta["notes"] = (head_note(lowered.head),)
    if any(lowered.carried):  # a DAG read as a chain (onnx_skip): what its file costs
        meta["carried"] = list(lowered.carried)
        meta["source_parameters"] = sum(
            int(np.prod(t.dims, dtype=np.int64))
            for t in model.graph.initializer
            if t.data_type in FLOAT_TYPES
        )
        meta["source_bytes"] = path.stat().st_size
    dtype = initializer_dtype(model, lowered.input_dtype)
    if dtype not in ("float32", "float64"):
        dtype = lowered.compute_dtype  # FLOAT16 weights: save in the type the graph computes in
    net = Network(lowered.layers, dtype=dtype, meta=meta)
    box = check_box if check_box is not None else Box.uniform(-1.0, 1.0, net.input_size)
    worst = check_boxes(model.SerializeToString(), net, [box], random=check_samples, seed=seed)
    if worst.excess > 0:
        raise InvalidNetworkError(
            f"the network read from {str(path)!r} differs from onnxruntime by up to "
            f"{worst.max_abs_diff:.3g} (allowed {worst.allowed_at_worst:.3g}); the graph uses a "
            "construct the reader misinterprets, please report it"
        )
    extra = {"layers_digest": layers_digest(net), "check_max_abs_diff": worst.max_abs_diff}
    return Network(net.layers, dtype=net.dtype, meta={**meta, **extra})


# ----------------------------------------------------------------------------- writing
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
    layer with a :class:`ConvSpec`, one ``MaxPool``/``AveragePool`` per intact pooling block,
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
            to(tuple(spec.in_shape), k)
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


def build_model(net: Network, like: Any = None) -> onnx.ModelProto:
    """The ONNX model of ``net``: per layer ``Conv`` (a layer with a convolution structure)
    or ``Gemm``, each with its ``Relu``, and one ``MaxPool``/``AveragePool`` per intact
    pooling block (:class:`~exactcomp.conv.PoolLevel`), in ``net.dtype``; then the head
    (``net.meta["head"]``: ``Softmax``/``LogSoftmax`` over the flattened logits), if any.

    A network with a layer of width zero computes a constant; it is written as one ``Gemm``
    with zero weights and that constant as bias (the same function, and a valid graph).
    """
    in_name, in_shape, out_name, out_shape = _io_facts(net, like)
    dt = np.dtype(net.dtype) if np.dtype(net.dtype).kind == "f" else np.dtype(np.float32)
    if dt == np.float16:  # computed in float32 (save_onnx stores it in float16: _half_storage)
        dt = np.dtype(np.float32)
    elem = helper.np_dtype_to_tensor_dtype(dt)
    layers = list(net.layers)
    if any(layer.out_features == 0 for layer in layers):
        const = net.forward(np.zeros(net.input_size))
        layers = [Layer(np.zeros((net.output_size, net.input_size)), const, relu=False)]
    nodes, inits = _layer_nodes(layers, dt, in_name, in_shape)
    h = nodes[-1].output[0]
    head = net.meta.get("head")
    if head:  # over the flat logits of each sample, as read (onnx_graph) and as torch applies it
        if not _flat_end(layers):
            nodes.append(helper.make_node("Flatten", [h], ["ec_logits"], name="ec_flat", axis=1))
            h = "ec_logits"
        nodes.append(helper.make_node(HEAD_NAMES[head], [h], ["ec_head"], name="ec_head", axis=1))
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


def _half_storage(model: onnx.ModelProto) -> None:
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


def _unchanged_source(net: Network, built: onnx.ModelProto) -> onnx.ModelProto:
    """The source file's model when ``net`` is exactly the network read from it (same layers,
    same dtype), the file has convolutions or pools, and writing ``built`` would be larger: a
    rewrite that gained nothing is never written into a bigger file. Otherwise ``built``
    (a dense file is always rewritten as a clean ``Gemm`` chain)."""
    meta = net.meta
    src = Path(str(meta.get("source", "")))
    if meta.get("format") != "onnx" or not src.is_file() or src.suffix.lower() != ".onnx":
        return built
    if net.dtype != meta.get("compute_dtype") or meta.get("layers_digest") != layers_digest(net):
        return built
    if built.ByteSize() <= src.stat().st_size:
        return built
    try:
        source = onnx.load(str(src))
    except Exception:  # noqa: BLE001 - the source changed or went away: write ours
        return built
    spatial = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "Pad"}
    dag = bool(meta.get("carried"))  # skip connections: the chain pays for its carries
    return source if dag or any(n.op_type in spatial for n in source.graph.node) else built


def save_onnx(
    net: Network, path: str | Path, like: Any = None, *, check_samples: int = 64, seed: int = 0
) -> None:
    """Write ``net`` as a clean ONNX graph, verified by onnxruntime before the atomic rename.

    Parameters
    ----------
    net:
        The network (written in ``net.dtype``).
    path:
        Destination file; replaced atomically, or left untouched if anything fails.
    like:
        Whose input/output names and shapes to mirror: a :class:`Network` (its ``meta``), a
        ``meta``-like mapping, or a path to an ONNX file. Default: ``net.meta``. Names and
        shapes that do not fit the network's sizes fall back to ``"input"``/``"output"`` and
        ``[batch, n]``.

    Raises
    ------
    VerificationError
        onnxruntime's outputs for the written file differ from ``net`` beyond rounding.
    OutputPathError
        The destination directory cannot be written.
    """
    built = build_model(net, like)
    if net.dtype == "float16":
        _half_storage(built)
    else:  # a pruned Gemm weight: sparse where that saves bytes
        sparse_storage(built)
    model = _unchanged_source(net, built)
    write_checked(model, net, path, "ONNX", check_samples, seed)


def write_checked(
    model: onnx.ModelProto, net: Network, path: str | Path, what: str, samples: int, seed: int
) -> None:
    """Save ``model`` to ``path`` atomically once onnxruntime computes ``net`` with it, up to
    rounding, at the probe points of ``[-1, 1]^n``; otherwise nothing is written."""
    in_vi = model.graph.input[0]
    in_shape = declared_dims(in_vi) or ()
    dt = str(helper.tensor_dtype_to_np_dtype(in_vi.type.tensor_type.elem_type))
    box = Box.uniform(-1.0, 1.0, net.input_size)
    x = probe_points(box, samples, np.random.default_rng(seed))
    with atomic_path(Path(path)) as tmp:
        onnx.save(model, str(tmp))
        worst = compare_with_onnxruntime(tmp, net, x, in_vi.name, in_shape, dt)
        if worst.excess > 0:
            raise VerificationError(
                f"the {what} file written for {str(path)!r} differs from the network by up to "
                f"{worst.max_abs_diff:.3g} in onnxruntime (allowed {worst.allowed_at_worst:.3g}); "
                "nothing was written"
            )
