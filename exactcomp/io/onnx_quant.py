"""Write a quantised network as ONNX: integer weight initialisers and ``DequantizeLinear``.

The graph is the one :func:`exactcomp.io.onnx_io.build_model` writes (``Gemm`` + ``Relu`` per
layer), with each quantised weight ``ec_W{k}`` computed by ``DequantizeLinear(q, scale, 0,
axis=0)`` from an INT8 initialiser (INT4 for 3- and 4-bit grids, opset 21: half the
bytes; INT2 for 2-bit and ternary grids, whose integers are -1, 0, 1, opset 25: a quarter),
or by an exact ``Cast`` from a FLOAT16 initialiser. (onnxruntime runs INT2
``DequantizeLinear`` since its opset-25 kernels; the file is checked in it before it is
written, so an onnxruntime without them refuses the file and nothing is written.) The scales are chosen so that
``q * scale`` is exact in float32 (:mod:`exactcomp.rewrite.quantize`), so onnxruntime, the
state_dict writer and exactcomp's reader all hold the weights the proofs were about; the file
is checked against the network in onnxruntime before the atomic rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import InvalidOptionError
from .onnx_io import build_model, write_checked

INT4_OPSET = 21
INT4_IR_VERSION = 10
INT2_OPSET = 25
INT2_IR_VERSION = 13


def int_tensor(q: np.ndarray, name: str, storage: int) -> onnx.TensorProto:
    """``q`` as an INT8, INT4 or INT2 initialiser (``storage`` bits, packed)."""
    if storage == 8:
        return numpy_helper.from_array(q.astype(np.int8), name)
    import ml_dtypes  # a dependency of onnx: its numpy int4 / int2 types (packed)

    small = ml_dtypes.int4 if storage == 4 else getattr(ml_dtypes, "int2", None)
    if small is None or not hasattr(TensorProto, "INT2"):
        raise InvalidOptionError(
            "2-bit and ternary weights are written as ONNX INT2, which needs onnx >= 1.20; "
            "upgrade onnx or choose --bits 3 or more"
        )
    return numpy_helper.from_array(q.astype(np.int8).astype(small), name)


def build_quantized_model(net, grids: Sequence[Any], like: Any = None):
    """The ONNX model of a quantised ``net`` (``grids[k]`` None: layer ``k`` kept as float).

    A network with a layer of width 0 is a constant, which :func:`build_model` writes as one
    ``Gemm`` of zero weights and that constant as bias: no weight of it is stored, so it is
    written as such (its grids had no ``ec_W{k}`` to replace: a KeyError, degenerate soak
    seed 25)."""
    model = build_model(net, like)
    if any(layer.out_features == 0 for layer in net.layers):
        return model
    storage = {g.storage_bits for g in grids if g is not None}
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes = []
    for k, g in enumerate(grids):
        if g is None:
            continue
        name = f"ec_W{k}"
        graph.initializer.remove(inits[name])
        if g.bits == 16:
            graph.initializer.append(numpy_helper.from_array(g.q.astype(np.float16), f"{name}_h"))
            new_nodes.append(
                helper.make_node(
                    "Cast", [f"{name}_h"], [name], name=f"ec_cast{k}", to=TensorProto.FLOAT
                )
            )
            continue
        graph.initializer.append(int_tensor(g.q, f"{name}_q", g.storage_bits))
        graph.initializer.append(numpy_helper.from_array(g.scale.astype(np.float32), f"{name}_s"))
        zero = np.zeros(g.q.shape[0], np.int8)
        graph.initializer.append(int_tensor(zero, f"{name}_z", g.storage_bits))
        new_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_q", f"{name}_s", f"{name}_z"],
                [name],
                name=f"ec_dequant{k}",
                axis=0,
            )
        )
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    if 2 in storage:
        model.opset_import[0].version = INT2_OPSET
        model.ir_version = INT2_IR_VERSION
    elif 4 in storage:
        model.opset_import[0].version = INT4_OPSET
        model.ir_version = INT4_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def save_quantized_onnx(net, grids: Sequence[Any], path: str | Path, like: Any = None) -> None:
    """Write the quantised network, verified by onnxruntime before the atomic rename."""
    write_checked(build_quantized_model(net, grids, like), net, path, "quantised ONNX", 64, 0)
