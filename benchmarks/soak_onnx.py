"""The soak's ``onnx`` family: ONNX graphs with casts and non-affine ops against onnxruntime.

Each case is a random network (float32 weights) written as an ONNX graph (``Gemm``/``Relu``)
with one edge op inserted on a tensor:

- ``dormant-f16``: every first-layer neuron is off on ``[-1, 1]^n`` (where the reader's own
  onnxruntime check samples) but on near the corners of the box, which reaches beyond it;
  its outputs, scaled up to ``1e5``, go through ``Cast(FLOAT16)`` and back: rounded, or
  ``inf`` past 65504, only where the box leaves ``[-1, 1]^n`` (issue 18, bug 3);
- ``f16`` (the same cast anywhere), ``f64`` (to DOUBLE and back: exact), ``int`` (to INT32
  and back: truncation), ``f32`` (a no-op cast), ``op`` (``Clip``, ``Abs``, ``LeakyRelu``,
  ``Sigmoid``, ``Floor``, ``Max`` with 0).

The ground truth is onnxruntime itself at the box's corners, points just inside them, its
centre and points on its faces. Through :func:`exactcomp.api.load`, the file is either
refused with a one-line ``ExactCompError`` (counted, fine), or the network read agrees with
onnxruntime at every point within float32 rounding (:data:`F32_SCALE` of the term scale):
else ``onnx-load`` (a non-finite onnxruntime output against a finite one counts as a
disagreement). Then ``verify_equivalence(file, the network without the op, box)``: an
EQUIVALENT where onnxruntime and that network differ by more than the tolerance plus rounding
is ``onnx-equivalent``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exactcomp import api
from exactcomp.api import EquivalenceStatus
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import box_corners
from exactcomp.testing.random_networks import random_box, random_network
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions

from .soak_nnet import _call

F32_SCALE = 2.0**-18
"""Allowed ``|onnxruntime - network read|`` per unit of the term scale ``S(x)``: 32 float32
units in the last place of the largest term (sums of at most a dozen terms per layer)."""

KINDS = ("dormant-f16",) * 3 + ("f16", "f16", "f64", "f64", "int", "f32", "op", "op")
OPS = ("Clip", "Abs", "LeakyRelu", "Sigmoid", "Floor", "Max")


class OnnxCase:
    """A network, the op inserted after layer ``where`` (-1: on the input), and a box."""

    def __init__(self, net: Network, kind: str, op: str, where: int, box: Box, seed: int):
        self.network, self.kind, self.op, self.where, self.box, self.seed = (
            net,
            kind,
            op,
            where,
            box,
            seed,
        )

    def to_json(self) -> dict:
        return {
            "family": "onnx",
            "kind": self.kind,
            "op": self.op,
            "after_layer": self.where,
            "layers": [
                {"weight": la.weight.tolist(), "bias": la.bias.tolist(), "relu": la.relu}
                for la in self.network.layers
            ],
            "box": {"lower": self.box.lower.tolist(), "upper": self.box.upper.tolist()},
            "seed": self.seed,
        }


def onnx_case(seed: int, inputs=(1, 3), max_neurons: int = 8) -> OnnxCase:
    """Draw a case (see the module docstring); weights are float32 values."""
    rng = np.random.default_rng(seed)
    kind = str(rng.choice(KINDS))
    n = int(rng.integers(inputs[0], inputs[1] + 1))
    box = random_box(rng, n, degenerate_prob=0.0)
    net = random_network(
        rng, depth=(1, 3), width=(1, 6), inputs=n, max_neurons=max_neurons, box=box, nasty=False
    )
    layers = list(net.layers)
    where = int(rng.integers(-1, len(layers) - 1))
    if kind == "dormant-f16":
        first = layers[0]
        w = first.weight * 10.0 ** rng.uniform(0, 5, size=(first.out_features, 1))
        b = -np.abs(w).sum(axis=1) - rng.choice([0.0, 0.25]) * np.abs(w).max(axis=1)
        layers[0] = Layer(w, b, first.relu)
        half = 1.0 + rng.uniform(0.5, 4.0, size=n)
        box, where = Box(-half, half), 0
    layers = [Layer(_f32(la.weight), _f32(la.bias), la.relu) for la in layers]
    op = str(rng.choice(OPS)) if kind == "op" else "Cast"
    return OnnxCase(Network(tuple(layers), dtype="float32"), kind, op, where, box, seed)


def _inserted(case: OnnxCase, x: str, out: str, inits: list) -> list:
    """The nodes of the inserted op, reading tensor ``x`` and writing ``out``."""
    casts = {"f16": TensorProto.FLOAT16, "dormant-f16": TensorProto.FLOAT16}
    casts |= {"f64": TensorProto.DOUBLE, "int": TensorProto.INT32, "f32": TensorProto.FLOAT}
    if case.kind in casts:
        return [
            helper.make_node("Cast", [x], [x + "_c"], to=casts[case.kind]),
            helper.make_node("Cast", [x + "_c"], [out], to=TensorProto.FLOAT),
        ]
    if case.op == "Clip":
        inits += [_const("clip_lo", -0.5), _const("clip_hi", 0.5)]
        return [helper.make_node("Clip", [x, "clip_lo", "clip_hi"], [out])]
    if case.op == "Max":
        inits.append(_const("zero", 0.0))
        return [helper.make_node("Max", [x, "zero"], [out])]
    attrs = {"alpha": 0.1} if case.op == "LeakyRelu" else {}
    return [helper.make_node(case.op, [x], [out], **attrs)]


def _const(name: str, v: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(v, dtype=np.float32), name)


def build_model(case: OnnxCase) -> bytes:
    """The case as a serialized ONNX model (opset 13, dynamic batch)."""
    n = case.network.input_size
    nodes, inits = [], []
    h = "x"
    if case.where == -1:
        nodes += _inserted(case, h, "x_op", inits)
        h = "x_op"
    for k, la in enumerate(case.network.layers):
        inits += [
            numpy_helper.from_array(la.weight.astype(np.float32), f"W{k}"),
            numpy_helper.from_array(la.bias.astype(np.float32), f"B{k}"),
        ]
        nodes.append(helper.make_node("Gemm", [h, f"W{k}", f"B{k}"], [f"z{k}"], transB=1))
        h = f"z{k}"
        if la.relu:
            nodes.append(helper.make_node("Relu", [h], [f"h{k}"]))
            h = f"h{k}"
        if k == case.where:
            nodes += _inserted(case, h, f"{h}_op", inits)
            h = f"{h}_op"
    nodes.append(helper.make_node("Identity", [h], ["y"]))
    graph = helper.make_graph(
        nodes,
        "soak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", case.network.output_size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def probe_points(box: Box, rng: np.random.Generator, faces: int = 16) -> np.ndarray:
    """Corners, points just inside them, the centre, and random points on the faces."""
    corners = box_corners(box)
    inside = corners + 1e-3 * (box.center - corners)
    pts = box.sample(faces, rng)
    side = rng.integers(box.dim, size=faces)
    pts[np.arange(faces), side] = np.where(
        rng.random(faces) < 0.5, box.lower[side], box.upper[side]
    )
    return np.vstack([corners, inside, pts]).astype(np.float32).astype(np.float64)


def run_onnxruntime(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    with np.errstate(all="ignore"):
        return np.asarray(sess.run(None, {"x": x.astype(np.float32)})[0], dtype=np.float64)


def disagreement(net: Network, x: np.ndarray, want: np.ndarray) -> tuple[float, np.ndarray]:
    """Worst ``|want - net(x)| - F32_SCALE * S(x)`` (inf where ``want`` is not finite)."""
    got = net.forward(x)
    with np.errstate(invalid="ignore"):
        diff = np.where(np.isfinite(want), np.abs(want - got), np.inf)
    excess = (diff - F32_SCALE * net.term_scale(x)).max(axis=1)
    i = int(np.argmax(excess))
    return float(excess[i]), x[i]


def check_onnx_case(case: OnnxCase, opts: SoakOptions, method: str) -> CaseResult:
    """All the checks of one ONNX case (see the module docstring)."""
    t0 = time.perf_counter()
    findings: list[Finding] = []
    notes: list[str] = []
    statuses: dict[str, int] = {}
    model = build_model(case)
    pts = probe_points(case.box, np.random.default_rng(case.seed))
    truth = run_onnxruntime(model, pts)
    equivalences = 0
    with tempfile.TemporaryDirectory(prefix="soak-onnx-") as tmp:
        path = Path(tmp) / f"case-{case.seed}.onnx"
        path.write_bytes(model)
        loaded = _call(findings, notes, f"load[{case.kind} {case.op}]", lambda: api.load(path))
        if loaded is not None:
            excess, x = disagreement(loaded, pts, truth)
            if excess > 0:
                findings.append(
                    Finding(
                        "onnx-load",
                        f"{case.kind} {case.op}: exceeds rounding by {excess!r}",
                        x.tolist(),
                    )
                )
            ref = case.network
            finite = np.isfinite(truth).all(axis=1)
            scale = float(np.abs(ref.forward(pts)).max())
            tol = 1e-6 * max(1.0, scale)
            r = (
                _call(
                    findings,
                    notes,
                    "verify_equivalence",
                    lambda: api.verify_equivalence(
                        path, ref, case.box, tol=tol, time_limit=opts.time_limit, seed=case.seed
                    ),
                )
                if opts.equivalence
                else None
            )
            if r is not None:
                equivalences = 1
                statuses[f"onnx {r.status.name}"] = 1
                if r.status is EquivalenceStatus.EQUIVALENT:
                    excess, x = disagreement(ref, pts, np.where(finite[:, None], truth, np.inf))
                    if excess > tol:
                        findings.append(
                            Finding(
                                "onnx-equivalent",
                                f"{case.kind} {case.op}: EQUIVALENT, onnxruntime differs by > {tol!r}",
                                x.tolist(),
                            )
                        )
    return CaseResult(
        seed=case.seed,
        neurons=case.network.num_neurons,
        regions=0,
        method=method,
        oracle={},
        claims={},
        findings=tuple(findings),
        equivalences=equivalences,
        statuses=statuses,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
        family="onnx",
        refused=sum(n.startswith("refused") for n in notes),
    )


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)
