"""The soak's ``conv-residual`` family: small residual ONNX graphs, read by carrying.

Each case is an ONNX graph built with ``onnx.helper`` (float64; float32 with convolutions,
which onnxruntime does not run in float64; inputs 2 x 2), a DAG that the reader turns
into a chain by carrying skip tensors through ReLU layers (:mod:`exactcomp.io.onnx_skip`):

- a conv stem (1-2 channels, ``3 x 3`` or ``1 x 1`` kernels, zero padding) or a dense stem;
- one or two residual blocks ``conv/gemm -> relu -> conv/gemm -> Add(skip)``, the skip
  from the stem's ReLU output (non-negative: one carry neuron per entry) or, in one case of
  three, from the network input (two carry neurons per entry);
- in one case of four a ``Concat`` of the block's branch and the skip instead of the ``Add``;
- a ReLU, then a dense head of two outputs.

A float32 graph is also quantised in its own graph (``--bits``, or ``--tol`` with per-tensor
widths: :func:`quantized_source_checks`); for a float64 one, a float32 graph of two input rows
read by ``Slice``/``Gather`` into branches merged by ``Concat`` at opset 12 is, instead
(:func:`branch_graph`, as nn4sys' pensieve). Biases are drawn so that some units are dead or
tied on the box. The graph is read with
:func:`exactcomp.api.load` and compared with onnxruntime on the case's box (an ``onnx-load``
finding otherwise), then the chain goes through every check of
:func:`~exactcomp.testing.soak_case.check_case` against the exact oracle.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.testing.random_networks import Case, random_box
from exactcomp.testing.regions import box_corners
from exactcomp.testing.soak_case import check_case
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    b = rng.normal(size=n).round(3)
    dead = rng.random(n) < 0.15
    b[dead] = -10.0  # off on the box (weights are O(1), inputs in [-1, 1])
    return b


def residual_graph(seed: int) -> tuple[onnx.ModelProto, tuple[int, ...], dict[str, Any]]:
    """The graph of case ``seed``, its input shape, and what was drawn."""
    rng = np.random.default_rng(seed)
    conv = bool(rng.random() < 0.6)
    from_input = seed % 3 == 0
    concat = seed % 4 == 1
    blocks = 1 if from_input or rng.random() < 0.6 else 2
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def init(name: str, value: np.ndarray) -> str:
        inits[name] = np.asarray(value, np.float64)
        return name

    if conv:
        c = int(rng.integers(1, 3))
        shape: tuple[int, ...] = (1, 1, 2, 2)
        k = 3 if rng.random() < 0.7 else 1
        pads = [k // 2] * 4

        def layer(x: str, y: str, c_in: int, c_out: int) -> None:
            w = init(f"W_{y}", rng.normal(size=(c_out, c_in, k, k)).round(3))
            b = init(f"b_{y}", _bias(rng, c_out))
            nodes.append(helper.make_node("Conv", [x, w, b], [y], pads=pads))

        width, channels_in = c, 1
    else:
        n_in = int(rng.integers(2, 4))
        shape = (1, n_in)
        width = int(rng.integers(2, 4))

        def layer(x: str, y: str, c_in: int, c_out: int) -> None:
            w = init(f"W_{y}", rng.normal(size=(c_in, c_out)).round(3))
            b = init(f"b_{y}", _bias(rng, c_out))
            nodes.append(helper.make_node("Gemm", [x, w, b], [y]))

        channels_in = n_in
    if from_input:
        width = channels_in  # the skip adds the input itself
        h = "x"
    else:
        layer("x", "s0", channels_in, width)
        nodes.append(helper.make_node("Relu", ["s0"], ["h0"]))
        h = "h0"
    for i in range(blocks):
        layer(h, f"a{i}", width, width)
        nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
        layer(f"r{i}", f"c{i}", width, width)
        if concat:
            nodes.append(helper.make_node("Concat", [f"c{i}", h], [f"o{i}"], axis=1))
        else:
            nodes.append(helper.make_node("Add", [f"c{i}", h], [f"o{i}"]))
        nodes.append(helper.make_node("Relu", [f"o{i}"], [f"h{i + 1}"]))
        h = f"h{i + 1}"
        if concat:
            break  # the widths no longer match a second block
    nodes.append(helper.make_node("Flatten", [h], ["f"]))
    feat = width * (2 if concat else 1) * (4 if conv else 1)
    w_out = init("W_out", rng.normal(size=(feat, 2)).round(3))
    nodes.append(helper.make_node("Gemm", ["f", w_out, init("b_out", rng.normal(size=2))], ["y"]))
    elem, dt = (TensorProto.FLOAT, np.float32) if conv else (TensorProto.DOUBLE, np.float64)
    graph = helper.make_graph(
        nodes,
        f"residual_{seed}",
        [helper.make_tensor_value_info("x", elem, list(shape))],
        [helper.make_tensor_value_info("y", elem, [1, 2])],
        initializer=[numpy_helper.from_array(v.astype(dt), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    drawn = {"conv": conv, "blocks": blocks, "skip_from_input": from_input, "concat": concat}
    return model, shape, drawn


def _onnxruntime(model: onnx.ModelProto, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    elem = model.graph.input[0].type.tensor_type.elem_type
    dt = np.float64 if elem == TensorProto.DOUBLE else np.float32
    rows = [sess.run(None, {"x": r.reshape(shape).astype(dt)})[0].reshape(-1) for r in x]
    return np.asarray(rows, dtype=np.float64)


def residual_case(seed: int) -> tuple[Case, dict[str, Any], Finding | None]:
    """Case ``seed``: the graph read as a chain through :func:`exactcomp.api.load`, and an
    ``onnx-load`` finding if it differs from onnxruntime on the box's centre, corners and 64
    random points beyond float32 rounding (:func:`~.soak_onnx.disagreement`)."""
    model, shape, drawn = residual_graph(seed)
    case, carried, finding = graph_case(model, shape, seed)
    drawn["carried"] = carried
    return case, drawn, finding


def graph_case(
    model: onnx.ModelProto, shape: tuple[int, ...], seed: int
) -> tuple[Case, list, Finding | None]:
    """``model`` read as a chain on a random box of case ``seed``, what it carries, and an
    ``onnx-load`` finding where it differs from onnxruntime (:func:`residual_case`)."""
    from .soak_onnx import disagreement

    rng = np.random.default_rng(seed + 1)
    box: Box = random_box(rng, int(np.prod(shape)), degenerate_prob=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "residual.onnx"
        onnx.save(model, str(path))
        net = api.load(path)
    x = np.vstack([box_corners(box), rng.uniform(box.lower, box.upper, (64, box.lower.size))])
    excess, at = disagreement(net, x, _onnxruntime(model, x, shape))
    finding = None
    if excess > 0:
        finding = Finding(
            "onnx-load", f"read differs from onnxruntime by {excess:.3g}", at.tolist()
        )
    return Case(net, box, seed), list(net.meta.get("carried", ())), finding


def branch_graph(seed: int) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """A float32 graph whose input rows feed branches merged by ``Concat`` (as nn4sys'
    pensieve, opset 12): ``x`` of shape ``1 x 2 x 2``, row 0 by ``Slice`` and ``Reshape``,
    row 1 by ``Gather``, each through ``Gemm`` (2-3 units, ``transB``) and ``Relu``, then
    ``Concat``, a ``Gemm`` and ``Relu`` (2-4 units) and a dense head of two outputs."""
    rng = np.random.default_rng(seed + 7)
    inits: dict[str, np.ndarray] = {}

    def init(name: str, value: Any) -> str:
        inits[name] = np.asarray(value)
        return name

    widths = [int(rng.integers(2, 4)) for _ in range(2)]
    hidden = int(rng.integers(2, 5))
    nodes = [
        helper.make_node("Slice", ["x", init("st", [0]), init("en", [1]), init("ax", [1])], ["s"]),
        helper.make_node("Reshape", ["s", init("sh", [1, 2])], ["v0"]),
        helper.make_node("Gather", ["x", init("one", 1)], ["v1"], axis=1),
    ]
    for i, w in enumerate(widths):
        g = init(f"G{i}", rng.normal(size=(w, 2)).round(3).astype(np.float32))
        b = init(f"g{i}", _bias(rng, w).astype(np.float32))
        nodes += [helper.make_node("Gemm", [f"v{i}", g, b], [f"p{i}"], transB=1),
                  helper.make_node("Relu", [f"p{i}"], [f"r{i}"])]  # fmt: skip
    h = init("H", rng.normal(size=(hidden, sum(widths))).round(3).astype(np.float32))
    nodes += [
        helper.make_node("Concat", ["r0", "r1"], ["c"], axis=1),
        helper.make_node("Gemm", ["c", h, init("hb", _bias(rng, hidden).astype(np.float32))],
                         ["q"], transB=1),
        helper.make_node("Relu", ["q"], ["o"]),
        helper.make_node("Gemm", ["o", init("O", rng.normal(size=(2, hidden)).astype(np.float32)),
                                  init("ob", rng.normal(size=2).astype(np.float32))], ["y"],
                         transB=1),
    ]  # fmt: skip
    for k in ("st", "en", "ax", "sh"):
        inits[k] = inits[k].astype(np.int64)
    inits["one"] = inits["one"].astype(np.int64)
    graph = helper.make_graph(
        nodes, f"branches_{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 7
    return model, (1, 2, 2)


def run_residual_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Generate and check case ``seed`` of ``conv-residual``: its JSON and its result; a
    float32 graph is also quantised in its own graph (:func:`quantized_source_checks`), and
    for a float64 one a float32 graph of branches (:func:`branch_graph`)."""
    case, drawn, finding = residual_case(seed)
    result = dataclasses.replace(check_case(case, opts, method), family="conv-residual")
    found = [] if finding is None else [finding]
    model = residual_graph(seed)[0]
    refused = lossy = 0
    if any(t.data_type == TensorProto.FLOAT for t in model.graph.initializer):
        more, refused, lossy = quantized_source_checks(model, case, seed)
        found += more
    else:  # a dense float64 graph: a float32 graph of branches is quantised instead
        branches, shape = branch_graph(seed)
        other, drawn["branches"], load_finding = graph_case(branches, shape, seed)
        more, refused, lossy = quantized_source_checks(branches, other, seed)
        found += more + ([] if load_finding is None else [load_finding])
    result = dataclasses.replace(
        result, findings=(*result.findings, *found), refused=result.refused + refused,
        lossy=result.lossy + lossy,
    )  # fmt: skip
    return {"family": "conv-residual", "drawn": drawn, **case.to_json()}, result


#: Bit widths of the residual graphs quantised in their own graph, by seed.
SOURCE_BITS = (8, 4, 16, 2, 1.5)
#: ... and, by ``seed // len(SOURCE_BITS)``, ``--tol`` (as a share of the outputs' sampled
#: span; None: ``--bits`` alone) with those bits as the widest: per-tensor widths chosen
#: under the proof (:mod:`exactcomp.source_quantization`).
SOURCE_TOL = (None, 0.05, 0.01, 0.2)


def quantized_source_checks(model: onnx.ModelProto, case: Case, seed: int):
    """``quantize --bits`` of the graph file itself (:mod:`exactcomp.io.onnx_requant`):
    the file written must read back as the proven network (``file-written``), and the exact
    ``max |f - g|`` must not exceed the proven bound (``lossy-bound``; skipped past the
    oracle's caps). Returns the findings, whether it was refused, and bounds checked."""
    from exactcomp.errors import ExactCompError
    from exactcomp.testing.oracle import OracleError, max_output_difference
    from exactcomp.testing.regions import JOINT_LPS, LpBudget
    from exactcomp.testing.written_checks import check_quantized_file

    bits = SOURCE_BITS[seed % len(SOURCE_BITS)]
    share = SOURCE_TOL[(seed // len(SOURCE_BITS)) % len(SOURCE_TOL)]
    tol = None
    if share is not None:
        y = case.network.forward(case.box.sample(256, np.random.default_rng(seed)))
        tol = share * max(float(np.ptp(y, axis=0).max()), 1e-6)
    what = (
        f"quantize --bits {bits:g}" + ("" if tol is None else f" --tol {tol:.3g}") + " of the graph"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "residual.onnx"
        onnx.save(model, str(path))
        try:
            res = api.quantize(
                path, case.box, bits=bits, tol=tol, split_seconds=1.0, lp_seconds=2.0
            )
        except ExactCompError:
            return [], 1, 0
        found = check_quantized_file(res, case.network, what)
        if tol is not None and res.proven > tol:
            found.append(Finding("lossy-tol", f"{what}: proven {res.proven!r} > tol"))
    try:
        exact = max_output_difference(
            case.network, res.network, case.box, budget=LpBudget(JOINT_LPS)
        ).value
    except OracleError:
        return found, 0, 0
    scale = 1.0 + float(np.max(np.abs(res.network.forward(case.box.lower[None]))))
    if exact > res.proven + 1e-9 * scale:
        found.append(Finding("lossy-bound", f"{what}: exact {exact!r} > proven {res.proven!r}"))
    return found, 0, 1


def example_graph(seed: int = 0) -> onnx.ModelProto:
    """The residual conv net of RESULTS.md: ``1 x 2 x 6 x 6`` input, a 4-channel ``3 x 3``
    stem, two residual blocks (conv, ReLU, conv, ``Add`` of the block's input, ReLU),
    ``GlobalAveragePool`` and a dense head of 3 outputs; float32, random weights."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    nodes = []

    def conv(x: str, y: str, c_in: int) -> None:
        inits[f"W_{y}"] = (rng.normal(size=(4, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
        inits[f"b_{y}"] = rng.normal(scale=0.3, size=4).astype(np.float32)
        nodes.append(helper.make_node("Conv", [x, f"W_{y}", f"b_{y}"], [y], pads=[1, 1, 1, 1]))

    conv("x", "s", 2)
    nodes.append(helper.make_node("Relu", ["s"], ["h0"]))
    for i in range(2):
        conv(f"h{i}", f"a{i}", 4)
        nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
        conv(f"r{i}", f"c{i}", 4)
        nodes.append(helper.make_node("Add", [f"c{i}", f"h{i}"], [f"o{i}"]))
        nodes.append(helper.make_node("Relu", [f"o{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["h2"], ["g"]))
    nodes.append(helper.make_node("Flatten", ["g"], ["f"]))
    inits["W_out"] = rng.normal(size=(4, 3)).astype(np.float32)
    inits["b_out"] = np.zeros(3, np.float32)
    nodes.append(helper.make_node("Gemm", ["f", "W_out", "b_out"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "residual_example",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


if __name__ == "__main__":  # python -m benchmarks.soak_residual OUT.onnx: the example net
    import sys

    onnx.save(example_graph(), sys.argv[1])
