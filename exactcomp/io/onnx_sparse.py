"""Pruned weight matrices stored sparsely in ONNX: a ``Constant`` node with ``sparse_value``.

Size. A matrix of ``n`` entries, ``k`` of them nonzero, takes ``n s`` bytes as a dense
initializer (``s`` = 2 in float16, 4 in float32, 8 in float64) and about ``k (s + 8)`` as an
ONNX sparse tensor: its ``k`` values and one int64 linear index each (ONNX refuses any narrower
index type: "Sparse tensor indices must have INT64 type", onnx 1.x). Sparse storage pays only
below a density of ``s / (s + 8)`` (1/5 in float16, 1/3 in float32, 1/2 in float64), so
:func:`sparse_storage` uses it only where it saves at least :data:`SPARSE_MIN_SAVING` bytes.
Measured (RESULTS.md "budget17"): ``compress --tol 0.3`` zeroes 71 % of Convnet_avgpool's
10 x 900 ``Gemm`` head; written sparsely the file drops from 37,152 to about 32,600 bytes.

Form. A ``Constant`` node whose ``sparse_value`` is the tensor, whose (dense) output feeds
the ``Gemm``; the graph's ``sparse_initializer`` list would be the other place, but onnx's full
checker refuses a sparse tensor as ``Gemm``'s input B ("has unsupported type:
sparse_tensor(float)"). onnxruntime reads the node as the dense tensor.

Reading (:func:`dense_of_sparse`) is exact: each value is placed at its index in a zero array
of the declared shape, no arithmetic. Indices must be int64, in range and strictly increasing
(the ONNX spec: ascending, no duplicates; a duplicate would make the value ambiguous), given
as linear indices ``[k]`` or coordinates ``[k, rank]``; anything else is refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InvalidNetworkError, UnsupportedModelError

#: Least bytes a sparse ``Gemm`` weight must save over its dense initializer (the node and the
#: tensor's names and dims cost some 100 bytes); below it the weight stays dense.
SPARSE_MIN_SAVING = 256


def sparse_storage(model: onnx.ModelProto, half: bool = False) -> None:
    """Store each ``Gemm`` weight initializer (``B``) sparsely where that saves at least
    :data:`SPARSE_MIN_SAVING` bytes (module docstring), in place; the function is unchanged.
    With ``half`` (a float16 network computed in float32: :func:`~exactcomp.io.onnx_build.
    half_storage`) the dense size to beat and the values are float16, read through a ``Cast``
    to FLOAT (exact: a widening)."""
    graph = model.graph
    weights = {node.input[1] for node in graph.node if node.op_type == "Gemm"}
    consts = []
    for t in list(graph.initializer):
        if t.name not in weights:
            continue
        a = numpy_helper.to_array(t)
        if a.dtype.kind != "f" or a.ndim != 2:
            continue
        stored = a.astype(np.float16) if half else a
        if not np.array_equal(stored, a):  # not float16 numbers: stays for half_storage to skip
            continue
        idx = np.flatnonzero(a)
        if idx.size * (stored.itemsize + 8) + SPARSE_MIN_SAVING > stored.nbytes:
            continue
        values = numpy_helper.from_array(stored.reshape(-1)[idx], f"{t.name}_values")
        indices = numpy_helper.from_array(idx.astype(np.int64), f"{t.name}_indices")
        sparse = helper.make_sparse_tensor(values, indices, list(a.shape))
        graph.initializer.remove(t)
        out = f"{t.name}_h" if half else t.name
        consts.append(
            helper.make_node("Constant", [], [out], name=f"{t.name}_sparse", sparse_value=sparse)
        )
        if half:
            consts.append(helper.make_node("Cast", [out], [t.name], name=f"{t.name}_cast",
                                           to=onnx.TensorProto.FLOAT))  # fmt: skip
    if consts:
        nodes = consts + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model, full_check=True)


def dense_of_sparse(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """The dense array of an ONNX sparse tensor, exactly (module docstring), or a refusal."""
    values = numpy_helper.to_array(sparse.values).reshape(-1)
    shape = tuple(int(d) for d in sparse.dims)
    size = int(np.prod(shape, dtype=np.int64))
    if sparse.indices.data_type != onnx.TensorProto.INT64:
        raise UnsupportedModelError("has a sparse constant whose indices are not int64")
    idx = numpy_helper.to_array(sparse.indices)
    if idx.ndim == 2 and idx.shape == (values.size, len(shape)):
        idx = np.ravel_multi_index(tuple(idx.T), shape) if values.size else idx.reshape(-1)
    if idx.shape != (values.size,):
        raise UnsupportedModelError(
            f"has a sparse constant with {values.size} values but indices of shape {idx.shape}"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= size or np.any(np.diff(idx) <= 0)):
        raise UnsupportedModelError(
            "has a sparse constant whose indices are out of range or not strictly increasing"
        )
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InvalidNetworkError("a sparse constant holds NaN or inf")
    dense = np.zeros(size, dtype=values.dtype)
    dense[idx] = values
    return dense.reshape(shape)
