"""The soak's ``readers`` family: a user's tiny network in the forms users bring it, read and
compressed, against the reference runtime.

Each case (:func:`reader_case`, drawn from its seed) is a random ``nn.Sequential`` (1-5
inputs, 1-3 hidden ReLU layers of width 1-8, 1-4 outputs) in one :data:`FORMS` entry: the
module in memory, pickled whole, its ``state_dict`` (bare or in a checkpoint dict),
TorchScript (scripted, traced, traced through a functional ``forward``, or scripted inside a
user's module whose ``forward`` branches on flags and checks, plain or frozen:
:mod:`~benchmarks.torch_forms`),
``torch.onnx.export`` (opset 11/13/17), an ONNX graph written by hand
(``Gemm`` with ``transB`` or ``MatMul`` + ``Add``, a ``Flatten``/``Reshape`` in front, or
on one plain headless seed in two, nn4sys' and ERAN's layout: a 1-D input and
``MatMul(W, h)`` weight first, :func:`weight_first`; on another in two, nn4sys' pensieve
layout: the input read through ``Gather`` or ``Slice`` + ``Concat``, :func:`input_selection`) or a
``.nnet`` file; in float32, float64 or float16 (ONNX: float32/float64; ``.nnet``: text);
ending in no head or one of :data:`HEADS`; one of :data:`VARIANTS`: plain, ``Flatten`` /
``Dropout`` / ``Identity`` in between, ``BatchNorm1d`` after each Linear (folded) or after
each ReLU (refused by the torch readers), or a convolutional front (``Unflatten``,
``Conv2d``, sometimes ``BatchNorm2d``, ``AdaptiveAvgPool2d`` to a size that divides, then
``Flatten``).

The reference is torch in float64 on the file's weights (a ``state_dict`` holds no head and
so is compared without it) or onnxruntime on the ONNX file, at the probe points of a random
box (:mod:`exactcomp.testing.reader_checks`: corners, faces, centre, random points, rounded
to float32). Checks: ``read`` (the network read, head included, within the reference's own
rounding), then ``exactcomp compress`` on the file (``.onnx`` on two seeds in three, else
``.pt``): the file written, read back by exactcomp and run by onnxruntime, agrees with the
reference (``file-written``); a file the reader refuses must be refused by ``compress`` in
one line with exit 2 and no file (``cli``). A refusal of a case :func:`reader_case` expects
to be read is an ``error`` ("refused unexpectedly"), so that a reader that starts refusing
what users bring shows in the soak's error count.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.nnet_cases import write_nnet
from exactcomp.testing.random_networks import random_box
from exactcomp.testing.reader_checks import check_written, compare, onnxruntime_outputs, probe, read
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions

from .torch_forms import write_torch

FORMS = (
    "module", "pickle", "state_dict", "checkpoint", "script", "onnx", "onnx-hand", "nnet", "trace",
    "trace-functional", "script-custom",
)  # fmt: skip
HEADS = ("", "", "Softmax", "LogSoftmax", "Sigmoid", "Tanh")
VARIANTS = ("plain", "plain", "flatten", "bn", "bn-after-relu", "conv")
TORCH_FORMS = (
    "module", "pickle", "state_dict", "checkpoint", "script", "trace", "trace-functional",
    "script-custom",
)  # fmt: skip


@dataclass(frozen=True)
class ReaderCase:
    """One drawn case: how the network is written, its box and what the readers should do
    (``expect``: ``ok``, ``refuse``, or ``either`` where both are sound)."""

    seed: int
    form: str
    dtype: str
    head: str
    variant: str
    shape: tuple[int, ...]
    box: Box
    expect: str

    def to_json(self) -> dict[str, Any]:
        return {
            "family": "readers",
            "seed": self.seed,
            "form": self.form,
            "dtype": self.dtype,
            "head": self.head,
            "variant": self.variant,
            "shape": list(self.shape),
            "box": self.box.to_json(),
            "expect": self.expect,
        }


def reader_case(seed: int) -> tuple[ReaderCase, Any]:
    """Draw case ``seed``: the case and its ``nn.Sequential`` (eval mode, in its dtype)."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    form = str(rng.choice(FORMS))
    variant = "plain" if form == "nnet" else str(rng.choice(VARIANTS))
    if form == "onnx-hand" and variant not in ("plain", "flatten"):
        variant = "flatten"
    head = "" if form == "nnet" else str(rng.choice(HEADS))
    dtypes = ("float32", "float64", "float16") if form in TORCH_FORMS else ("float32", "float64")
    if form == "onnx" and variant == "conv":
        dtypes = ("float32",)  # onnxruntime has no float64 Conv on the CPU
    dtype = "float64" if form == "nnet" else str(rng.choice(dtypes))
    model, shape = _model(rng, variant, head)
    model = model.to(getattr(torch, dtype))
    box = Box(np.zeros(shape[0]), np.ones(shape[0])) if variant == "conv" else None
    box = box or random_box(rng, shape[0], degenerate_prob=0.1)
    case = ReaderCase(seed, form, dtype, head, variant, shape, box, _expect(form, variant))
    return case, model


def _expect(form: str, variant: str) -> str:
    if form in ("state_dict", "checkpoint"):  # tensors only: no BatchNorm, no conv geometry
        return "ok" if variant in ("plain", "flatten") else "refuse"
    if variant == "bn-after-relu":
        return "refuse" if form in TORCH_FORMS else "either"
    if variant == "conv":
        return "ok"
    return "ok"


def _model(rng: np.random.Generator, variant: str, head: str) -> tuple[Any, tuple[int, ...]]:
    import torch.nn as nn

    def bn(m: nn.Module) -> nn.Module:
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.uniform_(-0.3, 0.3)
        return m

    mods: list[nn.Module] = []
    prev = int(rng.integers(1, 6))
    shape = (prev,)
    if variant == "conv":
        c, hw, k, pad = (
            int(rng.integers(1, 3)),
            int(rng.choice([4, 6])),
            int(rng.integers(1, 4)),
            int(rng.integers(0, 2)),
        )
        side = hw - 2 + 2 * pad
        size = int(rng.choice([d for d in (1, 2, side) if side % d == 0]))
        mods += [nn.Unflatten(1, (c, hw, hw)), nn.Conv2d(c, k, 3, padding=pad)]
        mods += [bn(nn.BatchNorm2d(k))] if rng.random() < 0.5 else []
        mods += [nn.ReLU(), nn.AdaptiveAvgPool2d(size), nn.Flatten()]
        shape, prev = (c * hw * hw,), k * size * size
    if variant == "flatten":
        mods.append(nn.Flatten())
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.integers(1, 9))
        mods.append(nn.Linear(prev, width, bias=bool(rng.random() < 0.9)))
        mods += [bn(nn.BatchNorm1d(width))] if variant == "bn" else []
        mods.append(nn.ReLU(inplace=bool(rng.random() < 0.3)))
        mods += [bn(nn.BatchNorm1d(width))] if variant == "bn-after-relu" else []
        mods += (
            [nn.Dropout(0.2) if rng.random() < 0.5 else nn.Identity()]
            if variant == "flatten"
            else []
        )
        prev = width
    mods.append(nn.Linear(prev, int(rng.integers(1, 5))))
    if head:
        mods.append(getattr(nn, head)(dim=1) if "Softmax" in head else getattr(nn, head)())
    return nn.Sequential(*mods).eval(), shape


# ----------------------------------------------------------------------------- writers
def _write(case: ReaderCase, model: Any, d: Path) -> Path:
    """The case's file in ``d`` (for ``module``: a pickle, for the CLI; ``script-custom``
    frozen on odd seeds)."""
    import torch

    if case.form in TORCH_FORMS:
        path = d / "m.pt"
        form = "pickle" if case.form == "module" else case.form
        form += "-frozen" if form == "script-custom" and case.seed % 2 else ""
        write_torch(model, path, form, case.shape)
    elif case.form == "onnx":
        path = d / "m.onnx"
        opset = (11, 13, 17)[case.seed % 3] if case.variant != "conv" else 13  # Unflatten: 13+
        x0 = torch.zeros(1, *case.shape, dtype=next(model.parameters()).dtype)
        dynamic = {"dynamic_axes": {"x": {0: "batch"}}} if case.seed % 2 else {}
        with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model, x0, path, opset_version=opset, dynamo=False, input_names=["x"], **dynamic
            )
    elif case.form == "onnx-hand":
        path = d / "m.onnx"
        path.write_bytes(_hand_onnx(case, model))
    else:
        path = d / "m.nnet"
        lin = [m for m in model if type(m).__name__ == "Linear"]
        layers = tuple(
            Layer(
                _np(m.weight),
                _np(m.bias) if m.bias is not None else np.zeros(m.out_features),
                k < len(lin) - 1,
            )
            for k, m in enumerate(lin)
        )
        n = case.shape[0]
        lim = np.full(n, 1e4)  # the box lies inside the input limits: no clipping
        write_nnet(
            path, Network(layers, dtype="float64"), -lim, lim, np.zeros(n + 1), np.ones(n + 1)
        )
    return path


def _np(t: Any) -> np.ndarray:
    return t.detach().double().numpy()


def weight_first(case: ReaderCase) -> bool:
    """Whether a hand-written ONNX case is in nn4sys' layout (1-D input, ``MatMul(W, h)``):
    from the seed's bits, so the other cases draw as before (audit22: nn4sys ``normal_100``
    ran the reader out of memory in that layout)."""
    plain = case.form == "onnx-hand" and case.variant == "plain" and not case.head
    return plain and bool((case.seed >> 3) & 1)


def input_selection(case: ReaderCase) -> bool:
    """Whether a hand-written ONNX case reads its input through ``Gather``/``Slice`` (nn4sys'
    pensieve networks slice their input: audit24); from the seed's bits, as :func:`weight_first`."""
    plain = case.form == "onnx-hand" and case.variant == "plain" and not weight_first(case)
    return plain and bool((case.seed >> 4) & 1)


def _selection_front(n: int, seed: int) -> tuple[list, list, np.ndarray]:
    """Nodes and initialisers taking ``x`` (``N x n``) to ``xs = x[:, perm]``, and ``perm``:
    a ``Gather`` of a permutation (some indices negative), or a reversing ``Slice`` (step -1)
    cut in two by two ``Slice``s and concatenated the other way round; or, on one seed in
    two, a selection that repeats and drops inputs (:func:`_selection_chain`: then the first
    layer's weights are read at ``perm`` and the reference is onnxruntime on the file)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed + 7919)

    def c(v: Any, name: str) -> Any:
        return numpy_helper.from_array(np.asarray(v, np.int64), name)

    if (seed >> 6) & 1:
        return _selection_chain(n, rng, c)
    if (seed >> 5) & 1:
        perm = rng.permutation(n)
        idx = np.where(rng.random(n) < 0.5, perm - n, perm)  # negative: from the end
        node = helper.make_node("Gather", ["x", "sel_gi"], ["xs"], axis=1)
        return [node], [c(idx, "sel_gi")], perm
    k = int(rng.integers(1, n)) if n > 1 else 0
    nodes = [helper.make_node("Slice", ["x", "sel_m1", "sel_end", "sel_ax", "sel_m1"], ["sel_rev"])]
    inits = [c([-1], "sel_m1"), c([-(n + 1)], "sel_end"), c([1], "sel_ax"), c([0], "sel_0")]
    if k:
        inits += [c([k], "sel_k"), c([n], "sel_n")]
        nodes += [
            helper.make_node("Slice", ["sel_rev", "sel_0", "sel_k", "sel_ax"], ["sel_lo"]),
            helper.make_node("Slice", ["sel_rev", "sel_k", "sel_n", "sel_ax"], ["sel_hi"]),
            helper.make_node("Concat", ["sel_hi", "sel_lo"], ["xs"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["sel_rev"], ["xs"]))
    return nodes, inits, np.roll(np.arange(n)[::-1], -k)


I64 = (-(2**63), 2**63 - 1)
"""What exporters write for an open end of a ``Slice``."""


def _onnx_slice(sel: np.ndarray, b: int, e: int, k: int) -> np.ndarray:
    """``sel`` sliced as the ONNX specification states it (independently of the reader):
    negative start/end plus the length, clamped to ``[0, d]`` (step > 0) or start to
    ``[0, d - 1]`` and end to ``[-1, d - 1]`` (step < 0)."""
    d = sel.size
    b, e = b + d if b < 0 else b, e + d if e < 0 else e
    if k > 0:
        b, e = min(max(b, 0), d), min(max(e, 0), d)
    else:
        b, e = min(max(b, 0), d - 1), min(max(e, -1), d - 1)
    return sel[np.arange(b, e, k, dtype=np.int64)] if d else sel


def _selection_chain(n: int, rng: np.random.Generator, c: Any) -> tuple[list, list, np.ndarray]:
    """A ``Gather`` with repeated and negative indices (each input at least once), then one or
    two ``Slice``s with steps ``-1, 2, -2, 3``, starts and ends out of range or at the int64
    extremes (red25): ``xs = x[:, sel]`` with ``sel`` as the specification computes it."""
    from onnx import helper

    extra = rng.integers(-n, n, size=int(rng.integers(1, n + 1)))
    idx = rng.permutation(np.concatenate([rng.permutation(n) - n * (rng.random(n) < 0.5), extra]))
    nodes = [helper.make_node("Gather", ["x", "sel_gi"], ["sel_g"], axis=1)]
    inits, sel, cur = [c(idx, "sel_gi")], np.mod(idx, n), "sel_g"
    for t in range(int(rng.integers(1, 3))):
        d = sel.size
        pool = [0, 1, d - 1, d, d + 2, -1, -d, -d - 3, *I64]
        b, e, k = int(rng.choice(pool)), int(rng.choice(pool)), int(rng.choice([-1, 2, -2, 3]))
        out = _onnx_slice(sel, b, e, k)
        if out.size == 0:
            continue
        args = {"b": b, "e": e, "a": [1, -1][t % 2], "k": k}
        inits += [c([v], f"sel_{w}{t}") for w, v in args.items()]
        names = [cur] + [f"sel_{w}{t}" for w in args]
        nodes.append(helper.make_node("Slice", names, [f"sel_s{t}"]))
        sel, cur = out, f"sel_s{t}"
    nodes.append(helper.make_node("Identity", [cur], ["xs"]))
    return nodes, inits, sel


def _hand_onnx(case: ReaderCase, model: Any) -> bytes:
    """``model`` as an ONNX graph written by hand: a ``Flatten`` or ``Reshape([-1, n])`` in
    front (``flatten`` variant), each Linear as ``Gemm(transB=1)`` or ``MatMul`` + ``Add``
    (by the seed's bits), ``Relu``, and the head node."""
    from onnx import helper, numpy_helper

    dt = np.dtype(case.dtype)
    elem = helper.np_dtype_to_tensor_dtype(dt)
    nodes, inits, h = [], [], "x"
    if case.variant == "flatten":
        if case.seed % 2:
            nodes.append(helper.make_node("Flatten", [h], ["xf"], axis=1))
        else:
            inits.append(numpy_helper.from_array(np.array([-1, case.shape[0]], np.int64), "shp"))
            nodes.append(helper.make_node("Reshape", [h, "shp"], ["xf"]))
        h = "xf"
    k, first, perm = 0, weight_first(case), None
    if input_selection(case):
        front, front_inits, perm = _selection_front(case.shape[0], case.seed)
        nodes, inits, h = nodes + front, inits + front_inits, "xs"
    for m in model:
        kind = type(m).__name__
        if kind == "Linear":
            w = _np(m.weight).astype(dt)
            w = w[:, perm] if perm is not None and k == 0 else w  # reads x[:, perm]
            b = _np(m.bias).astype(dt) if m.bias is not None else np.zeros(m.out_features, dt)
            if first:  # y = W @ h + b on a 1-D h
                inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"B{k}")]
                nodes += [
                    helper.make_node("MatMul", [f"W{k}", h], [f"m{k}"]),
                    helper.make_node("Add", [f"m{k}", f"B{k}"], [f"z{k}"]),
                ]
            elif (case.seed >> k) & 1:
                inits += [
                    numpy_helper.from_array(w.T.copy(), f"W{k}"),
                    numpy_helper.from_array(b, f"B{k}"),
                ]
                nodes += [
                    helper.make_node("MatMul", [h, f"W{k}"], [f"m{k}"]),
                    helper.make_node("Add", [f"m{k}", f"B{k}"], [f"z{k}"]),
                ]
            else:
                inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"B{k}")]
                nodes.append(helper.make_node("Gemm", [h, f"W{k}", f"B{k}"], [f"z{k}"], transB=1))
            h, k = f"z{k}", k + 1
        elif kind == "ReLU":
            nodes.append(helper.make_node("Relu", [h], [f"{h}r"]))
            h = f"{h}r"
        elif kind in ("Softmax", "LogSoftmax", "Sigmoid", "Tanh"):
            nodes.append(
                helper.make_node(kind, [h], [f"{h}h"], **({"axis": 1} if "Softmax" in kind else {}))
            )
            h = f"{h}h"
    nodes.append(helper.make_node("Identity", [h], ["y"]))
    x_shape, y_shape = ([case.shape[0]], [None]) if first else (["N", case.shape[0]], ["N", None])
    graph = helper.make_graph(
        nodes, "readers", [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, y_shape)], inits,
    )  # fmt: skip
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx_model.ir_version = 8
    return onnx_model.SerializeToString()


# ----------------------------------------------------------------------------- checks
def _reference(case: ReaderCase, model: Any, path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The reference outputs at ``x`` and the unit roundoff they were computed with."""
    import torch

    if case.form.startswith("onnx"):
        return onnxruntime_outputs(path, x)
    ref = copy.deepcopy(model).double()
    if case.form in ("state_dict", "checkpoint") and case.head:
        ref = ref[:-1]  # a state_dict holds no head
    with torch.no_grad():
        y = ref(torch.tensor(x.reshape(len(x), *case.shape))).numpy()
    return y.reshape(len(x), -1), float(np.finfo(np.float64).eps) / 2


def run_reader_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Generate case ``seed``, check it (module docstring)."""
    from .soak_degenerate import _cli, _one_cli

    t0 = time.perf_counter()
    case, model = reader_case(seed)
    found: list[Finding] = []
    notes: list[str] = []
    refused, statuses = 0, {}
    hidden = [m.out_features for m in model if type(m).__name__ == "Linear"][:-1]
    neurons = sum(hidden)  # the hidden Linear widths, read or refused
    x = probe(case.box, seed).astype(np.float32).astype(np.float64)
    with tempfile.TemporaryDirectory(prefix="soak-readers-") as tmp:
        d = Path(tmp)
        path = _write(case, model, d)
        want, u = _reference(case, model, path, x)
        trust = case.form in ("module", "pickle")
        net, why, found = read(model if case.form == "module" else path, trust)
        what = f"{case.form} {case.dtype} {case.variant} {case.head or 'no head'}"
        if net is not None:
            found += compare(net, x, want, u, "read", what)
        elif why:
            refused += 1
            notes.append(f"refused: {why}")
            if case.expect == "ok":
                found.append(Finding("error", f"{what}: refused unexpectedly: {why}"))
        (d / "box.json").write_text(json.dumps(case.box.to_json()))
        out = d / ("c.pt" if seed % 3 == 2 else "c.onnx")
        argv = ["compress", str(path), "--box-file", str(d / "box.json"), "-o", str(out)]
        argv += ["--quiet", "--jobs", "1", "--time-limit", str(opts.time_limit)]
        argv += ["--trust-pickle"] if trust else []
        if net is None:
            found += _one_cli(argv, str(out), (2,))
        else:
            rc, err = _cli(argv)
            statuses[f"compress exit {rc}"] = 1
            if rc == 0:
                found += check_written(out, x, want, case.dtype)
            elif rc == 2 and len(err.strip().splitlines()) == 1 and not out.exists():
                refused += 1
                notes.append(f"compress refused: {err.strip()}")
            else:
                found.append(Finding("error", f"compress: exit {rc}: {err.strip()[:300]}"))
    result = CaseResult(
        seed=seed, neurons=neurons, regions=0, method=method, oracle={}, claims={},
        findings=tuple(found), statuses={f"{case.form} {'read' if net else 'refused'}": 1, **statuses},
        seconds=time.perf_counter() - t0, notes=tuple(notes), family="readers", refused=refused,
    )  # fmt: skip
    return case.to_json(), result
