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
``MatMul(W, h)`` weight first, :func:`~benchmarks.soak_hand_onnx.weight_first`; on another in two, nn4sys' pensieve
layout: the input read through ``Gather`` or ``Slice`` + ``Concat``, :func:`~benchmarks.soak_hand_onnx.input_selection`) or a
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

from .soak_hand_onnx import as_numpy, hand_onnx
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
        path.write_bytes(hand_onnx(case, model))
    else:
        path = d / "m.nnet"
        lin = [m for m in model if type(m).__name__ == "Linear"]
        layers = tuple(
            Layer(
                as_numpy(m.weight),
                as_numpy(m.bias) if m.bias is not None else np.zeros(m.out_features),
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
