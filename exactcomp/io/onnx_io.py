"""ONNX files <-> the network IR, each direction checked against onnxruntime.

Reading lowers the graph with :func:`exactcomp.io.onnx_graph.lower_graph` and then runs the
original file in onnxruntime on the corners, faces and random points of a box: a network we misread would make every later
proof a proof about the wrong function, so a disagreement is an error, never a warning.
Writing builds the graph (:mod:`exactcomp.io.onnx_build`: a ``Gemm`` (+ ``Relu``) chain, with
``Conv`` and pools where the layers carry them, the source's input and output names and
shapes, the head), checks it with ``onnx.checker`` and onnxruntime, and only then renames it
into place. A convolutional
network read from a file and left unchanged is never written larger than that file.

What each operator and cast means, and which are refused, is in :mod:`exactcomp.io.onnx_types`;
the cross-check (probe points and tolerance) is in :mod:`exactcomp.io.onnx_check`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..domain import Box
from ..errors import InputFileError, InvalidNetworkError, VerificationError
from ..network import Network
from .atomic import atomic_path
from .heads import head_note
from .onnx_build import build_model, half_storage
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

__all__ = [
    "Comparison",
    "build_model",
    "compare_with_onnxruntime",
    "load_onnx",
    "partial_sum_size",
    "save_onnx",
]


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
    half = net.dtype == "float16"
    sparse_storage(built, half)  # a pruned Gemm weight: sparse where that saves bytes
    if half:
        half_storage(built)
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
