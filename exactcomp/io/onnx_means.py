r"""Bias correction of an ONNX file's own ``Conv``/``Gemm`` weights: each node's mean input on
the domain, run in onnxruntime, and the shift of its bias that cancels the mean error.

The chain's ``corrected`` quantiser (:mod:`exactcomp.rewrite.quantize`) folds each layer's
mean weight error into its bias; here the same for the nodes of a graph kept as it is
(:mod:`exactcomp.io.onnx_requant`). A node computes :math:`y = W a + b` (a ``Gemm``, ``a`` its
input row) or :math:`y_m = \sum K_m * a + b_m` (a ``Conv``). Quantised, :math:`W \to W + E`
adds :math:`E a` to its output, whose mean over domain points is :math:`E \mu`, :math:`\mu`
the mean of the node's input over them (linear in ``a``). The bias becomes :math:`b - E \mu`
(per output channel; for a ``Conv`` the mean over the channel's positions of the convolution
of :math:`\mu` with :math:`E`, as :func:`exactcomp.rewrite.kernels.channel_shift`), so the
node's error has mean 0 on the domain, as the chain's.

The means are taken from the *original* file (its inputs, not the quantised network's, as the
chain's moments), in onnxruntime's float32 on :data:`MEAN_POINTS` uniform domain points. They
are estimates that only steer a quantiser, never a proof: the claim is the proof of the file
read back from the bytes written, whatever bias it holds. A node whose bias cannot take the
shift per output channel (a ``Gemm`` with ``alpha`` or ``beta`` other than 1 or a ``C`` that is
not a vector; a ``Conv`` that is not 2-D with explicit pads) gets none (``None``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from ..conv import ConvSpec
from ..conv_eval import conv_apply
from ..domain import Box

#: Uniform domain points (all boxes together, seeded) the nodes' mean inputs are taken over.
MEAN_POINTS = 1024
MIN_POINTS = 16  # ... of which at least these, whatever the deadline


def node_inputs(model: onnx.ModelProto, weights: Sequence[str]) -> dict[str, onnx.NodeProto]:
    """For each weight tensor name, the ``Conv``/``Gemm`` node that reads it as its weight."""
    wanted = set(weights)
    return {n.input[1]: n for n in model.graph.node
            if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] in wanted}  # fmt: skip


def input_means(
    model: onnx.ModelProto,
    weights: Sequence[str],
    boxes: Sequence[Box],
    input_shape: Sequence,
    deadline: float | None = None,
) -> dict[str, np.ndarray]:
    """Per weight name, the mean over :data:`MEAN_POINTS` uniform points of the boxes of the
    node's input (one sample's shape, the batch axis dropped), by onnxruntime (float32); past
    ``deadline`` (``time.perf_counter``) no point after the first :data:`MIN_POINTS`."""
    nodes = node_inputs(model, weights)
    names = sorted({n.input[0] for n in nodes.values()})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        helper.make_empty_tensor_value_info(t) for t in names if t not in known
    )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    each = max(MEAN_POINTS // len(boxes), 1)
    x = np.concatenate([b.lower + (b.upper - b.lower) * rng.random((each, b.dim)) for b in boxes])
    one = tuple(d if isinstance(d, int) else 1 for d in input_shape)
    feed = sess.get_inputs()[0].name
    sums: dict[str, np.ndarray] = {}
    count = 0
    for row in x.astype(np.float32):
        if count >= MIN_POINTS and deadline is not None and time.perf_counter() > deadline:
            break
        count += 1
        outs = sess.run(names, {feed: row.reshape(one)})
        for t, v in zip(names, outs, strict=True):
            v = np.asarray(v, dtype=np.float64)[0]  # the batch of one
            sums[t] = v if t not in sums else sums[t] + v
    return {w: sums[n.input[0]] / count for w, n in nodes.items()}


def bias_shift(node: onnx.NodeProto, error: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """Per output channel, the mean output error :math:`E \\mu` of ``node`` whose weight is
    off by ``error`` (the tensor's own layout) at its mean input ``mean`` (module docstring);
    None where its bias cannot take it."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        if attrs.get("transA", 0) or mean.ndim != 1:
            return None
        e = error if attrs.get("transB", 0) else error.T  # rows: output channels
        return e @ mean
    if (
        error.ndim != 4
        or mean.ndim != 3
        or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
    ):
        return None
    pads = attrs.get("pads", [0, 0, 0, 0])
    spec = ConvSpec(
        mean.shape,
        error,
        strides=attrs.get("strides", [1, 1]),
        pads=(pads[0], pads[1], pads[2], pads[3]),
        dilations=attrs.get("dilations", [1, 1]),
        groups=attrs.get("group", 1),
    )
    shift = conv_apply(spec, mean.reshape(1, -1))
    return shift.reshape(spec.out_shape[0], -1).mean(axis=1)


def shift_bias(model: onnx.ModelProto, node: onnx.NodeProto, shift: np.ndarray) -> bool:
    """Subtract ``shift`` (per output channel) from ``node``'s bias in ``model``, in float32: its
    own initialiser where it is a float32 vector used by ``node`` alone, else a new one (a node
    without a bias gets one). False (nothing changed) where the bias is of another kind."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    slot = 2
    old = node.input[slot] if len(node.input) > slot and node.input[slot] else None
    b, shape = np.zeros(len(shift)), (len(shift),)
    if old is not None:
        if old not in inits or inits[old].data_type != onnx.TensorProto.FLOAT:
            return False
        b = numpy_helper.to_array(inits[old]).astype(np.float64)
        if b.shape not in ((len(shift),), (1, len(shift))):
            return False
        b, shape = b.reshape(-1), b.shape
    value = (b - shift).astype(np.float32).reshape(shape)
    if old is not None and sum(i == old for n in graph.node for i in n.input) == 1:
        graph.initializer.remove(inits[old])  # its own: the same name, the new values
        graph.initializer.append(numpy_helper.from_array(value, old))
        return True
    name = f"{node.input[1]}_bias"
    while name in inits:
        name += "_"
    graph.initializer.append(numpy_helper.from_array(value, name))
    while len(node.input) < slot:
        node.input.append("")
    if len(node.input) == slot:
        node.input.append(name)
    else:
        node.input[slot] = name
    return True


def corrected_errors(
    model: onnx.ModelProto, errors: Mapping[str, np.ndarray], means: Mapping[str, np.ndarray]
) -> tuple[str, ...]:
    """Fold each quantised weight's mean error into its node's bias (:func:`bias_shift`,
    :func:`shift_bias`); the names of the weights corrected."""
    nodes = node_inputs(model, list(errors))
    done = []
    for name, error in errors.items():
        if name not in means or name not in nodes:
            continue
        shift = bias_shift(nodes[name], error, means[name])
        if (
            shift is not None
            and np.all(np.isfinite(shift))
            and shift_bias(model, nodes[name], shift)
        ):
            done.append(name)
    return tuple(done)
