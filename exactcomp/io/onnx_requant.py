"""Quantise an ONNX file's own weights: its graph kept, each weight of a ``Conv`` or ``Gemm``
stored as integers behind a ``DequantizeLinear`` (along axis 0: see :func:`weight_axes`).

``quantize`` writes the network it proves as a chain of layers (:mod:`exactcomp.io.onnx_quant`).
For a file whose graph the reader could not keep as such (a DAG read as a chain whose layers
carry the skip connections, :mod:`exactcomp.io.onnx_skip`), that chain is dense and wide:
VNN-COMP's resnet_2b, 450,053 bytes, came out as 9,066,083 bytes at 8 bits. Here the file's
own weight tensors are quantised per output channel (the caller's ``quantize``, e.g.
:func:`exactcomp.rewrite.quantize.quantize_weight`, on each tensor as a matrix of one row per
output channel), every other tensor and node is kept, and the network to prove is the one
exactcomp reads back from these very bytes: what the proof is about is what the file holds
(the reader checks it against onnxruntime, and the file is checked again when written).

Opsets: a per-channel ``DequantizeLinear`` needs opset 13 (INT4 21, INT2 25, as
:mod:`exactcomp.io.onnx_quant`). An older file is raised to it only when every op of its graph
reads the same from the file's opset on (:data:`SAME_SINCE`: per op, the opset from which its
meaning on the attributes and inputs a file of that opset can hold did not change up to 25;
an op not listed, e.g. ``Unsqueeze``, ``Softmax`` or ``Pad``, whose inputs or axes changed,
keeps an older file out); otherwise it is not quantised this way (None).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..network import Network
from .onnx_graph import opset_version
from .onnx_io import load_onnx, write_checked
from .onnx_quant import INT2_IR_VERSION, INT2_OPSET, INT4_IR_VERSION, INT4_OPSET, int_tensor

#: Per op, the opset from which a file may be raised to opset 13-25 with that op read the same
#: (later versions only add types, or attributes whose default is the old meaning): the
#: elementwise ops since their numpy broadcasting (7), ``Gemm`` since 7 (no ``broadcast``
#: attribute), the pools since 9 (as before), ``Slice`` since its starts and ends became
#: inputs (10), ``Gather`` since negative indices were defined (11), ``Reshape`` since its
#: shape became an input (5; ``allowzero`` of 14 defaults to the old meaning).
SAME_SINCE: dict[str, int] = {
    "Add": 7, "Sub": 7, "Mul": 7, "Relu": 6, "Conv": 1, "Gemm": 7, "MatMul": 1,
    "Flatten": 1, "Identity": 1, "MaxPool": 9, "AveragePool": 9, "GlobalAveragePool": 1,
    "Concat": 4, "Transpose": 1, "Constant": 9, "Reshape": 5, "Slice": 10, "Gather": 11,
}  # fmt: skip
DEQUANT_OPSET = 13
DEQUANT_IR_VERSION = 7


@dataclass(frozen=True, eq=False)
class QuantizedSource:
    """The quantised file (``model``), the network read back from it, and per quantised
    tensor its name and grid (``q`` of the tensor's shape, output channels first);
    ``corrected``: the names whose node's bias took the mean error (:mod:`.onnx_means`)."""

    model: onnx.ModelProto
    network: Network
    names: tuple[str, ...]
    grids: tuple[Any, ...]
    corrected: tuple[str, ...] = ()


def weight_axes(model: onnx.ModelProto) -> dict[str, int]:
    """Float32 initialisers used as the weight of a ``Conv`` or ``Gemm`` (and by nothing
    else), each with its output-channel axis; empty where the opset cannot be raised.
    ``MatMul`` weights are left as they are: onnxruntime (1.23) fuses a ``DequantizeLinear``
    along axis 1 into its ``MatMul`` as ``MatMulNBits``, which computes another function
    (0.027 on a test network); a ``Gemm`` without ``transB`` is written with it instead."""
    graph = model.graph
    opset = opset_version(model)
    if opset < DEQUANT_OPSET and any(SAME_SINCE.get(n.op_type, 99) > opset for n in graph.node):
        return {}
    inits = {t.name: t for t in graph.initializer}
    uses = Counter(name for n in graph.node for name in n.input)
    inputs = {i.name for i in graph.input}
    axes: dict[str, int] = {}
    for n in graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        t = inits[n.input[1]]
        if t.data_type != TensorProto.FLOAT or len(t.dims) < 2 or t.name in inputs:
            continue
        if uses[t.name] != 1:
            continue
        trans = next((a.i for a in n.attribute if a.name == "transB"), 0)
        axes[t.name] = 0 if n.op_type == "Conv" or trans else 1
    return axes


def own_weights(path: str | Path) -> tuple[onnx.ModelProto, dict[str, int], frozenset[str]]:
    """The file at ``path``, its weights of :func:`weight_axes` with their entries, and those
    of them whose node has a bias."""
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    sizes = {k: int(np.prod(inits[k].dims)) for k in weight_axes(model)}
    biased = {n.input[1] for n in model.graph.node
              if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2]}  # fmt: skip
    return model, sizes, frozenset(biased & set(sizes))


def quantized_source(
    path: str | Path,
    bits: float | Mapping[str, float | None],
    quantize: Callable[[np.ndarray, float], Any],
    means: Mapping[str, np.ndarray] | None = None,
) -> QuantizedSource | None:
    """The ONNX file at ``path`` with its weights quantised by ``quantize`` (a matrix of one
    row per output channel -> a grid with ``q``, ``scale``, ``bits`` and ``storage_bits``) to
    ``bits`` (one width for all, or per tensor name of :func:`weight_axes`; None or a name
    left out: kept in float32), and the network read back from it; None where no weight
    applies. ``means`` (per name, its node's mean input on the domain,
    :func:`exactcomp.io.onnx_means.input_means`): each node's bias corrected by its mean
    error (:func:`exactcomp.io.onnx_means.corrected_errors`)."""
    source = onnx.load(str(path))
    axes = weight_axes(source)
    widths = {k: bits for k in axes} if not isinstance(bits, Mapping) else dict(bits)
    axes = {k: v for k, v in axes.items() if widths.get(k) is not None}
    if not axes:
        return None
    model = onnx.ModelProto()
    model.CopyFrom(source)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for n in graph.node:  # a Gemm reading its weight untransposed reads its transpose
        if n.op_type == "Gemm" and len(n.input) > 1 and axes.get(n.input[1]) == 1:
            kept = [a for a in n.attribute if a.name != "transB"]
            del n.attribute[:]
            n.attribute.extend([*kept, helper.make_attribute("transB", 1)])
    nodes, grids, errors = [], [], {}
    for name, axis in axes.items():
        # output channels first (a Gemm's untransposed weight is written transposed, above)
        w = np.moveaxis(numpy_helper.to_array(inits[name]).astype(np.float64), axis, 0)
        grid = quantize(w.reshape(w.shape[0], -1), widths[name])
        grids.append(grid)
        errors[name] = grid.dequantized.reshape(w.shape) - w
        graph.initializer.remove(inits[name])
        if grid.bits == 16:
            half = grid.q.reshape(w.shape).astype(np.float16)
            graph.initializer.append(numpy_helper.from_array(half, f"{name}_h"))
            nodes.append(helper.make_node("Cast", [f"{name}_h"], [name], to=TensorProto.FLOAT))
            continue
        q = grid.q.reshape(w.shape)
        zero = np.zeros(w.shape[0], np.int8)
        graph.initializer.extend(
            [
                int_tensor(q, f"{name}_q", grid.storage_bits),
                numpy_helper.from_array(grid.scale.astype(np.float32), f"{name}_s"),
                int_tensor(zero, f"{name}_z", grid.storage_bits),
            ]
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=0
            )
        )
    corrected: tuple[str, ...] = ()
    if means:
        from .onnx_means import corrected_errors

        corrected = corrected_errors(model, errors, means)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    storage = {g.storage_bits for g in grids}
    opset, ir = DEQUANT_OPSET, DEQUANT_IR_VERSION
    if 2 in storage:
        opset, ir = INT2_OPSET, INT2_IR_VERSION
    elif 4 in storage:
        opset, ir = INT4_OPSET, INT4_IR_VERSION
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, opset)
    model.ir_version = max(model.ir_version, ir)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "quantized.onnx"
        onnx.save(model, str(file))
        net = load_onnx(file)
    # no ``source``: the temporary file is gone, and no writer may take the input for it
    meta = {
        k: v for k, v in net.meta.items() if k not in ("source", "source_bytes", "layers_digest")
    }
    network = Network(net.layers, dtype=net.dtype, meta=meta)
    return QuantizedSource(model, network, tuple(axes), tuple(grids), corrected)


def save_quantized_source(source: QuantizedSource, path: str | Path) -> None:
    """Write the quantised file, checked against its network in onnxruntime first (atomic)."""
    write_checked(source.model, source.network, path, "quantised ONNX", 64, 0)
