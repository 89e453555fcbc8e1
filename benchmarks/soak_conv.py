"""The soak's ``conv`` cases as ONNX graphs, aimed at how the conv paths could fail.

:func:`conv_onnx_case` builds, from a seed, a float32 ONNX graph of one or two blocks

    [Pad] -> Conv -> [BatchNormalization] -> Relu -> [MaxPool | AveragePool] -> ... -> Gemm

and reads it with ``exactcomp.load``, so that the reader's lowering
(and the structure it keeps) is what the analysis, the channel rewrite and the writer see.
Each block draws from the shapes that are easy to get wrong:

- ``stride-pad``: stride 2 with padding, so the last window reads the padding;
- ``dilation``: dilation 2 (the kernel's taps are spread out);
- ``groups``: ``group`` = the number of input channels (depthwise) or 2;
- ``asym-pad``: pads with ``top != bottom`` or ``left != right`` (torch's ``Conv2d`` cannot
  say them; ONNX can);
- ``pad-op``: a ``Pad`` node before the conv, constant 0 or another constant value;
- ``pool-pad``: a ``MaxPool`` or ``AveragePool`` with (asymmetric) pads after the ReLU, the
  average pool with ``count_include_pad`` 0 or 1;
- ``batchnorm``: a ``BatchNormalization`` folded into the conv, with a zero or negative
  scale on some channels (a zero scale makes the channel constant);
- ``zero-kernel``: channels whose kernel is all zeros (dead with a bias ``<= 0``, constant
  otherwise);
- ``channels-last``: an NHWC input ``(N, H, W, C)`` fed through ``Transpose(0, 3, 1, 2)``
  into the first block, as tf2onnx writes it (read as a convolution of the transposed input,
  ``ConvSpec.in_axes``, when the ``Conv`` follows it at once; written back as ``Transpose``
  + ``Conv``); half of them take a flat input ``(N, H*W*C)`` through a ``Reshape`` first.
  Drawn for :data:`CHANNELS_LAST` of the seeds by an RNG of its own, so that
  every seed's weights, shapes and box stay what they were before it existed.

Sizes stay small (at most 16 inputs, 24 units per convolution) for the exact oracle. The case's
``features`` name what the seed drew; ``model`` is the ONNX file's bytes.

Besides every check of :func:`~exactcomp.testing.soak_case.check_case` on the network read,
the family checks the files: the network read against onnxruntime on the probe points of the
box (``onnx-load``), and the compressed network written by ``save_onnx`` (Conv nodes where the
structure allows), run by onnxruntime, and as a ``.pt`` state_dict read back, against the
source network (:mod:`exactcomp.testing.written_checks`: ``onnx-written``, ``torch-written``), all allowed 64
units of float32 rounding per layer of the partial sums (:mod:`exactcomp.io.onnx_check`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.domain import Box
from exactcomp.testing.random_networks import Case, random_box
from exactcomp.testing.written_checks import check_read, check_written

__all__ = ["FEATURES", "ConvOnnxCase", "check_read", "check_written", "conv_onnx_case"]

FEATURES = (
    "stride-pad",
    "dilation",
    "groups",
    "asym-pad",
    "pad-op",
    "pool-pad",
    "batchnorm",
    "zero-kernel",
)
OPSET = 13
CHANNELS_LAST = 0.3


@dataclass(frozen=True)
class ConvOnnxCase:
    """An ONNX graph (``model``: its bytes), the network read from it, a box, the seed, and
    the :data:`FEATURES` it was built with."""

    model: bytes
    case: Case
    features: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"features": list(self.features), **self.case.to_json()}


def _out(n: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


class _Graph:
    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def const(self, value: np.ndarray, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _block(g: _Graph, rng, x: str, shape, feats: set[str], first: bool):
    """One ``[Pad] Conv [BN] Relu [Pool]`` block on ``x`` of ``shape`` (C, H, W); returns
    the output name and shape, or None when the drawn sizes do not fit."""
    c, h, w = shape
    if "pad-op" in feats and first:
        pads = [int(v) for v in rng.integers(0, 2, size=4)]  # top, left, bottom, right
        value = 0.0 if rng.random() < 0.5 else float(rng.choice([-0.5, 0.25, 1.0]))
        onnx_pads = np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], np.int64)
        x = g.node("Pad", [x, g.const(onnx_pads, np.int64), g.const(np.array(value))])
        h, w = h + pads[0] + pads[2], w + pads[1] + pads[3]
    groups = 1
    m = int(rng.integers(1, 4))
    if "groups" in feats and c > 1:
        groups = c if rng.random() < 0.5 or c % 2 else 2
        m = groups * int(rng.integers(1, 3))
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    s = (2, int(rng.integers(1, 3))) if "stride-pad" in feats else (1, 1)
    d = (2, int(rng.integers(1, 3))) if "dilation" in feats else (1, 1)
    if "asym-pad" in feats:
        p = [int(v) for v in rng.integers(0, 3, size=4)]
        if p[0] == p[2] and p[1] == p[3]:
            p[2] = p[0] + 1
    elif "stride-pad" in feats:
        p = [1, 1, 1, 1]
    else:
        p = [int(v) for v in rng.integers(0, 2, size=2)] * 2
    oh, ow = _out(h, k[0], s[0], d[0], p[0], p[2]), _out(w, k[1], s[1], d[1], p[1], p[3])
    if oh < 1 or ow < 1 or m * oh * ow > 24:
        return None
    kernel = rng.normal(size=(m, c // groups, *k)).round(3)
    bias = rng.normal(size=m).round(3)
    if "zero-kernel" in feats:
        dead = rng.random(m) < 0.4
        dead[int(rng.integers(m))] = True
        kernel[dead] = 0.0
        bias[dead] = np.where(rng.random(int(dead.sum())) < 0.5, -np.abs(bias[dead]), 0.5)
    attrs = {"kernel_shape": list(k), "strides": list(s), "dilations": list(d),
             "pads": [p[0], p[1], p[2], p[3]], "group": groups}  # fmt: skip
    y = g.node("Conv", [x, g.const(kernel), g.const(bias)], **attrs)
    if "batchnorm" in feats:
        scale = rng.normal(size=m).round(3)
        scale[rng.random(m) < 0.25] = 0.0
        stats = [scale, rng.normal(size=m).round(3), rng.normal(size=m).round(3),
                 (rng.random(m) + 0.1).round(3)]  # fmt: skip
        y = g.node("BatchNormalization", [y, *(g.const(v) for v in stats)], epsilon=1e-3)
    y = g.node("Relu", [y])
    if "pool-pad" in feats and min(oh, ow) >= 2:
        pk = (2, 2)
        ps = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pp = [int(v) for v in rng.integers(0, 2, size=4)]
        max_pool = rng.random() < 0.5
        ph, pw = _out(oh, 2, ps[0], 1, pp[0], pp[2]), _out(ow, 2, ps[1], 1, pp[1], pp[3])
        if ph >= 1 and pw >= 1:
            attrs = {"kernel_shape": list(pk), "strides": list(ps), "pads": pp}
            if max_pool:
                y = g.node("MaxPool", [y], **attrs)
            else:
                y = g.node("AveragePool", [y], count_include_pad=int(rng.integers(0, 2)), **attrs)
            oh, ow = ph, pw
    return y, (m, oh, ow)


def conv_onnx_case(seed: int, *, outputs: int = 2) -> ConvOnnxCase:
    """A small conv net as an ONNX graph (see the module docstring) and a box, from ``seed``;
    the network is read back by ``exactcomp.load`` (its structure
    kept)."""
    from onnx import TensorProto, helper

    from exactcomp import api

    rng = np.random.default_rng(seed)
    side = np.random.default_rng((seed, 7))
    nhwc = bool(side.random() < CHANNELS_LAST)
    flat = nhwc and bool(side.random() < 0.5)  # a flat input reshaped to NHWC first
    for _ in range(20):
        c = int(rng.integers(1, 3))
        h, w = int(rng.integers(2, 5)), int(rng.integers(2 if c == 1 else 2, 5 if c == 1 else 3))
        drawn = [f for f in FEATURES if rng.random() < 0.35]
        if not drawn:
            drawn = [FEATURES[seed % len(FEATURES)]]
        feats = set(drawn)
        g = _Graph()
        x, shape = "x", (c, h, w)
        if flat:
            x = g.node("Reshape", [x, g.const(np.array([-1, h, w, c]), np.int64)])
        if nhwc:
            x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
        ok = True
        for i in range(int(rng.integers(1, 3))):
            got = _block(g, rng, x, shape, feats, first=i == 0)
            if got is None:
                ok = i > 0
                break
            x, shape = got
        if not ok:
            continue
        in_shape = (h * w * c,) if flat else (h, w, c) if nhwc else (c, h, w)
        flat = g.node("Flatten", [x], axis=1)
        width = int(np.prod(shape))
        head = rng.normal(size=(outputs, width)).round(3)
        y = g.node("Gemm", [flat, g.const(head), g.const(rng.normal(size=outputs).round(3))],
                   transB=1)  # fmt: skip
        graph = helper.make_graph(
            g.nodes,
            f"conv_soak_{seed}",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", outputs])],
            initializer=g.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        data = model.SerializeToString()
        with tempfile.TemporaryDirectory(prefix="soak-conv-") as tmp:
            path = Path(tmp) / "case.onnx"
            path.write_bytes(data)
            net = api.load(path)
        box: Box = random_box(rng, c * h * w, degenerate_prob=0.1)
        if rng.random() < 0.5:  # narrower: fewer regions for the oracle, more stable units
            mid, half = box.center, (box.upper - box.lower) / 8
            box = Box(mid - half, mid + half)
        feats |= {"channels-last"} if nhwc else set()
        return ConvOnnxCase(data, Case(net, box, seed), tuple(sorted(feats)))
    raise ValueError(f"seed {seed}: no conv graph fits the size limits")
