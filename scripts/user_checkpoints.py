"""Users' own checkpoints through every command: build them, run the CLI, check the answers.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python scripts/user_checkpoints.py OUT_DIR [--workers 2]
        [--only SUBSTRING,...] [--commands load,stability,compress,...]

Builds (deterministic, CPU, seconds) small checkpoints the way people write them: PyTorch
``state_dict`` / checkpoint dicts / whole pickled modules / TorchScript (script and trace) of
``nn.Sequential`` and custom modules (Flatten, Dropout, Identity, BatchNorm, in-place ReLU,
``F.relu`` in ``forward``, ``bias=False``, float64/16/bfloat16, heads that are not ReLU,
convolutions with ``padding='same'``, groups, dilation, pools); ONNX written by
``torch.onnx.export`` at several opsets and by hand (Gemm with transA/transB/alpha/beta,
MatMul+Add, a ``(x - mean) / std`` front, Cast, Identity, Dropout, BatchNormalization,
Constant nodes, initializers listed as inputs, external data, two outputs, an int64 input);
``.nnet`` files with comments and Windows line endings; and bad domains.

Then runs ``python -m exactcomp <command>`` on each (``load`` is the in-process reader alone)
and writes one JSON line per run to ``OUT_DIR/results.jsonl``: exit code, wall and CPU
seconds, whether stderr holds a traceback, the last stderr line, and the verdict of the
checks: the network read must compute what torch / onnxruntime computes (float64 reference,
random points of the box), every file written must compute the same function when re-read by
exactcomp and (ONNX) by onnxruntime. An expected refusal is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.soak_readers import write_torch  # noqa: E402

PY = sys.executable
TIMEOUT_S = 120
COMMANDS = ("load", "compress-onnx", "compress-pt", "verify", "regions", "stability", "quantize")
#: max |read - reference| allowed, relative to 1 + max |reference|: float32 reference runs.
ATOL32 = 1e-4


def _torch_cases(out: Path) -> list[dict]:
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    cases: list[dict] = []

    def mlp(*mods: nn.Module) -> nn.Module:
        return nn.Sequential(*mods).eval()

    def add(name, model, form, shape=(4,), expect="ok", box=("--box=-1,1",), note=""):
        path = out / f"{name}.pt"
        write_torch(model, path, form, shape)  # the soak's readers family writes them too
        cases.append(
            dict(
                name=name,
                model=str(path),
                shape=list(shape),
                box=list(box),
                expect=expect,
                form=form,
                note=note,
                trust=form.endswith("pickle"),
            )
        )
        ref = copy.deepcopy(model).double()
        np.save(out / f"{name}.ref.npy", _ref_points(ref, shape, box))

    def bn1d(n):
        b = nn.BatchNorm1d(n)
        b.running_mean.uniform_(-0.5, 0.5)
        b.running_var.uniform_(0.5, 2.0)
        b.weight.data.uniform_(0.5, 1.5)
        b.bias.data.uniform_(-0.3, 0.3)
        return b

    sys.path.insert(0, str(out))
    (out / "user_models.py").write_text(USER_MODELS)
    import user_models

    Custom, Nested = user_models.Custom, user_models.Nested

    plain = mlp(
        nn.Flatten(),
        nn.Linear(4, 8),
        nn.ReLU(inplace=True),
        nn.Dropout(0.2),
        nn.Identity(),
        nn.Linear(8, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    for form in ("state_dict", "checkpoint", "pickle", "script", "trace"):
        add(
            f"pt_seq_flatten_dropout_{form}",
            plain,
            form,
            expect="ok",
            note="traced: read from its graph" if form == "trace" else "",
        )
    bn = mlp(nn.Linear(4, 8), bn1d(8), nn.ReLU(), nn.Linear(8, 3))
    for form in ("state_dict", "pickle", "script"):
        add(f"pt_bn1d_{form}", bn, form, expect="refuse" if form == "state_dict" else "ok")
    bn_after = mlp(nn.Linear(4, 8), nn.ReLU(), bn1d(8), nn.Linear(8, 3))
    add("pt_bn1d_after_relu_pickle", bn_after, "pickle", expect="refuse")
    custom = Custom().eval()
    for form in ("state_dict", "pickle", "script", "trace"):
        add(
            f"pt_custom_frelu_{form}",
            custom,
            form,
            expect="refuse" if form == "pickle" else "ok",  # TorchScript: read from its graph
        )
    nested = Nested().eval()
    for form in ("state_dict", "pickle", "script", "trace"):
        add(f"pt_nested_{form}", nested, form, expect="refuse" if form == "pickle" else "ok")
    # scripted custom modules whose forward branches on known flags (BatchNorm's training
    # and dimension checks, F.dropout's flag, the user's own bool/int attributes), plain,
    # frozen by torch.jit.freeze, traced; and one left in training mode (refused by name)
    conv_bn, bn_mlp, flagged = user_models.ConvBN(), user_models.BnDropMlp(), user_models.Flagged()
    for m in (conv_bn.bn1, bn_mlp.bn1):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
    for name, m, shape, box in (
        ("convbn", conv_bn, (36,), ("--box=0,1",)),
        ("bnmlp", bn_mlp, (4,), ("--box=-1,1",)),
        ("flags", flagged, (4,), ("--box=-1,1",)),
    ):
        for form in ("script", "script-frozen", "trace"):
            add(f"pt_custom_{name}_{form}", m.eval(), form, shape=shape, box=box)
    add(
        "pt_custom_bnmlp_training_script",
        user_models.BnDropMlp().train(),
        "script",
        expect="refuse",
    )
    for form in ("script-custom", "script-custom-frozen"):
        add(f"pt_bn1d_in_custom_{form}", bn, form)
    for dt in ("float64", "float16", "bfloat16"):
        m = mlp(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(getattr(torch, dt))
        add(f"pt_{dt}_state_dict", m, "state_dict")
    nobias = mlp(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    add("pt_nobias_state_dict", nobias, "state_dict")
    add("pt_nobias_pickle", nobias, "pickle")
    add("pt_cuda_state_dict", plain, "cuda_state_dict")
    add("pt_cuda_pickle", plain, "cuda_pickle")
    for head, mod in (
        ("softmax", nn.Softmax(dim=1)),
        ("sigmoid", nn.Sigmoid()),
        ("tanh", nn.Tanh()),
        ("gelu", nn.GELU()),
    ):
        m = mlp(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), mod)
        exp = "refuse" if head == "gelu" else "ok"
        add(f"pt_head_{head}_pickle", m, "pickle", expect=exp)
        add(f"pt_head_{head}_script", m, "script", expect=exp)
    leaky = mlp(nn.Linear(4, 8), nn.LeakyReLU(0.1), nn.Linear(8, 3))
    add("pt_leaky_pickle", leaky, "pickle", expect="refuse")
    add("pt_leaky_script", leaky, "script", expect="refuse")
    conv_box = ("--box=0,1",)
    s = (1, 6, 6)
    add(
        "pt_conv_no_unflatten_pickle",
        mlp(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)),
        "pickle",
        shape=s,
        box=conv_box,
        expect="refuse",
    )
    s = (36,)
    u = nn.Unflatten(1, (1, 6, 6))
    convs = {
        "same_maxpool": mlp(
            u,
            nn.Conv2d(1, 4, 3, padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(36, 3),
        ),
        "groups": mlp(
            u,
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, groups=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 3),
        ),
        "dilation": mlp(
            u, nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)
        ),
        "adaptive_avg": mlp(
            u, nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        ),
        "bn2d": mlp(
            u, nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
        ),
    }
    bn2 = convs["bn2d"][2]
    bn2.running_mean.uniform_(-0.5, 0.5)
    bn2.running_var.uniform_(0.5, 2.0)
    for name, m in convs.items():
        for form in ("pickle", "script"):
            add(
                f"pt_conv_{name}_{form}",
                m,
                form,
                shape=s,
                box=conv_box,
                expect="ok",
            )
    return cases


USER_MODELS = """import torch
import torch.nn as nn
import torch.nn.functional as F


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(36, 3)

    def forward(self, x):
        x = x.view(x.size(0), 1, 6, 6)
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))


class BnDropMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn1, self.fc2 = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        h = self.drop(F.relu(self.bn1(self.fc1(x))))
        return self.fc2(F.dropout(h, 0.1, self.training))


class Flagged(nn.Module):
    use_relu: bool
    depth: int

    def __init__(self):
        super().__init__()
        self.use_relu, self.depth = True, 2
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        if x.dim() != 2:
            raise ValueError("expected (batch, 4)")
        h = self.fc1(x)
        if self.use_relu:
            h = F.relu(h)
        else:
            h = torch.tanh(h)
        if self.depth > 1:
            h = self.fc2(h)
        return h


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(8, 3))

    def forward(self, x):
        return self.classifier(self.features(x))
"""


def _ref_points(model, shape, box, n=64):
    """(points, reference outputs) in float64: the box's corners-ish and random points."""
    import torch

    lo, hi = _box_bounds(box, int(np.prod(shape)))
    rng = np.random.default_rng(1)
    x = lo + (hi - lo) * rng.random((n, lo.size))
    with torch.no_grad():
        y = model(torch.tensor(x.reshape(n, *shape), dtype=torch.float64)).numpy()
    return np.concatenate([x, y.reshape(n, -1)], axis=1)


def _box_bounds(box, n):
    lo, hi = (float(v) for v in box[0].split("=", 1)[1].split(","))
    return np.full(n, lo), np.full(n, hi)


def _onnx_cases(out: Path) -> list[dict]:
    import onnx
    import torch
    import torch.nn as nn
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(1)
    cases: list[dict] = []
    rng = np.random.default_rng(2)

    def case(name, expect="ok", shape=(4,), box=("--box=-1,1",), note="", dtype=np.float32):
        cases.append(
            dict(
                name=name,
                model=str(out / f"{name}.onnx"),
                shape=list(shape),
                box=list(box),
                expect=expect,
                form="onnx",
                note=note,
                trust=False,
                in_dtype=np.dtype(dtype).name,
            )
        )

    m = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3)
    ).eval()
    for opset in (9, 11, 13, 17):
        torch.onnx.export(
            m,
            torch.zeros(1, 4),
            out / f"onnx_export_op{opset}.onnx",
            opset_version=opset,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
        case(f"onnx_export_op{opset}")
    torch.onnx.export(
        m,
        torch.zeros(1, 4),
        out / "onnx_export_old_init.onnx",
        opset_version=9,
        dynamo=False,
        keep_initializers_as_inputs=True,
    )
    case("onnx_export_old_init")
    sm = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1)).eval()
    for opset in (11, 17):
        torch.onnx.export(
            sm, torch.zeros(1, 4), out / f"onnx_export_softmax_op{opset}.onnx",
            opset_version=opset, dynamo=False, dynamic_axes={"onnx::Gemm_0": {0: "batch"}},
        )  # fmt: skip
        case(f"onnx_export_softmax_op{opset}")
    try:
        torch.onnx.export(
            m, (torch.zeros(2, 4),), out / "onnx_dynamo.onnx", dynamo=True, external_data=False
        )
        case("onnx_dynamo")
    except Exception as exc:  # noqa: BLE001 - recorded: dynamo export may need more than we have
        print(f"dynamo export failed: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
    bnm = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    bnm[1].running_mean.uniform_(-0.5, 0.5)
    bnm[1].running_var.uniform_(0.5, 2.0)
    torch.onnx.export(
        bnm,
        torch.zeros(1, 4),
        out / "onnx_export_bn_training_false.onnx",
        opset_version=13,
        dynamo=False,
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    case("onnx_export_bn_training_false")
    conv = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3)
    ).eval()
    torch.onnx.export(
        conv,
        torch.zeros(1, 1, 6, 6),
        out / "onnx_export_conv.onnx",
        opset_version=13,
        dynamo=False,
        dynamic_axes={"input.1": {0: "b"}} if False else None,
    )
    case("onnx_export_conv", shape=(1, 6, 6), box=("--box=0,1",))

    def w(*shape):
        return rng.normal(size=shape).astype(np.float32)

    def save(name, nodes, inits, inputs=None, outputs=None, extra_inputs=(), opset=13, **kw):
        inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
        outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]
        g = helper.make_graph(
            nodes,
            name,
            inputs + list(extra_inputs),
            outputs,
            [numpy_helper.from_array(v, k) for k, v in inits.items()],
        )
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        if kw.get("external"):
            onnx.save_model(
                model,
                out / f"{name}.onnx",
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=f"{name}.data",
                size_threshold=0,
            )
        else:
            onnx.save(model, out / f"{name}.onnx")

    W1, b1, W2, b2 = w(8, 4), w(8), w(3, 8), w(3)
    mlp_nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
    ]
    base = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    save("onnx_gemm_transB1", mlp_nodes, base)
    case("onnx_gemm_transB1")
    save(
        "onnx_gemm_transB0_alpha_beta",
        [
            helper.make_node("Gemm", ["x", "W1t", "b1"], ["h"], transB=0, alpha=0.5, beta=2.0),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1, alpha=1.5, beta=-1.0),
        ],
        {"W1t": W1.T.copy(), "b1": b1, "W2": W2, "b2": b2},
    )
    case("onnx_gemm_transB0_alpha_beta")
    save(
        "onnx_gemm_bias_row",
        [
            helper.make_node("Gemm", ["x", "W1", "b1r"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {"W1": W1, "b1r": b1.reshape(1, 8), "W2": W2, "b2": b2},
    )
    case("onnx_gemm_bias_row")
    save(
        "onnx_matmul_add",
        [
            helper.make_node("MatMul", ["x", "W1t"], ["m"]),
            helper.make_node("Add", ["b1", "m"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "W2t"], ["m2"]),
            helper.make_node("Add", ["m2", "b2"], ["y"]),
        ],
        {"W1t": W1.T.copy(), "b1": b1, "W2t": W2.T.copy(), "b2": b2},
    )
    case("onnx_matmul_add")
    mean, std = w(4) * 0.1, (np.abs(w(4)) + 0.5).astype(np.float32)
    save(
        "onnx_sub_div_front",
        [
            helper.make_node("Sub", ["x", "mean"], ["c"]),
            helper.make_node("Div", ["c", "std"], ["n"]),
            helper.make_node("Gemm", ["n", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {**base, "mean": mean, "std": std},
    )
    case("onnx_sub_div_front")
    save(
        "onnx_mul_front_scalar",
        [
            helper.make_node("Mul", ["x", "s"], ["n"]),
            helper.make_node("Gemm", ["n", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {**base, "s": np.array(1 / 255, np.float32)},
    )
    case("onnx_mul_front_scalar")
    save(
        "onnx_cast_identity_dropout",
        [
            helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT),
            helper.make_node("Identity", ["xc"], ["xi"]),
            helper.make_node("Gemm", ["xi", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Dropout", ["r"], ["d"]),
            helper.make_node("Gemm", ["d", "W2", "b2"], ["y"], transB=1),
        ],
        base,
    )
    case("onnx_cast_identity_dropout")
    save(
        "onnx_cast_to_float16",
        [
            helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT16),
            helper.make_node("Cast", ["xc"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Gemm", ["xf", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        base,
    )
    case("onnx_cast_to_float16", expect="refuse", note="a rounding Cast is not exact")
    save(
        "onnx_constant_nodes",
        [
            helper.make_node("Constant", [], ["W1c"], value=numpy_helper.from_array(W1, "W1c")),
            helper.make_node(
                "Constant",
                [],
                ["shape"],
                value=numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
            ),
            helper.make_node("Reshape", ["x", "shape"], ["xr"]),
            helper.make_node("Gemm", ["xr", "W1c", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {"b1": b1, "W2": W2, "b2": b2},
    )
    case("onnx_constant_nodes")
    save(
        "onnx_unsqueeze_squeeze_flatten",
        [
            helper.make_node("Unsqueeze", ["x", "ax"], ["xu"]),
            helper.make_node("Flatten", ["xu"], ["xf"], axis=1),
            helper.make_node("Gemm", ["xf", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Unsqueeze", ["r", "ax"], ["ru"]),
            helper.make_node("Squeeze", ["ru", "ax"], ["rs"]),
            helper.make_node("Gemm", ["rs", "W2", "b2"], ["y"], transB=1),
        ],
        {**base, "ax": np.array([1], np.int64)},
    )
    case("onnx_unsqueeze_squeeze_flatten")
    gamma, beta = (np.abs(w(8)) + 0.5), w(8)
    bmean, bvar = w(8) * 0.2, (np.abs(w(8)) + 0.5)
    save(
        "onnx_batchnorm",
        [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
            helper.make_node(
                "BatchNormalization", ["h", "g", "be", "mu", "var"], ["hb"], epsilon=1e-3
            ),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {**base, "g": gamma, "be": beta, "mu": bmean, "var": bvar},
    )
    case("onnx_batchnorm")
    init_inputs = [
        helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in base.items()
    ]
    save("onnx_initializers_as_inputs", mlp_nodes, base, extra_inputs=init_inputs)
    case("onnx_initializers_as_inputs")
    save("onnx_external_data", mlp_nodes, base, external=True)
    case("onnx_external_data")
    save(
        "onnx_two_outputs",
        mlp_nodes + [helper.make_node("Relu", ["y"], ["y2"])],
        base,
        outputs=[
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    case("onnx_two_outputs", expect="refuse")
    save(
        "onnx_int64_input",
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)]
        + [helper.make_node("Gemm", ["xf", "W1", "b1"], ["h"], transB=1)]
        + mlp_nodes[1:],
        base,
        inputs=[helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 4])],
    )
    case("onnx_int64_input", expect="refuse", dtype=np.int64)
    save(
        "onnx_sigmoid_head",
        mlp_nodes + [helper.make_node("Sigmoid", ["y"], ["p"])],
        base,
        outputs=[helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])],
    )
    case("onnx_sigmoid_head", note="kept as the head, as the Softmax head")
    save(
        "onnx_softmax_head",
        mlp_nodes + [helper.make_node("Softmax", ["y"], ["p"], axis=1)],
        base,
        outputs=[helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])],
    )
    case("onnx_softmax_head", note="kept as the head, as the torch readers keep it")
    save(
        "onnx_leakyrelu",
        [mlp_nodes[0], helper.make_node("LeakyRelu", ["h"], ["r"], alpha=0.1), mlp_nodes[2]],
        base,
    )
    case("onnx_leakyrelu", expect="refuse")
    save(
        "onnx_double",
        [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {k: v.astype(np.float64) for k, v in base.items()},
        inputs=[helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])],
    )
    case("onnx_double", dtype=np.float64)
    save(
        "onnx_1d_input",
        [
            helper.make_node("Unsqueeze", ["x", "ax0"], ["xb"]),
            helper.make_node("Gemm", ["xb", "W1", "b1"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        ],
        {**base, "ax0": np.array([0], np.int64)},
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    case("onnx_1d_input")
    for c in cases:
        np.save(
            out / f"{c['name']}.ref.npy",
            _ort_points(c, _box_bounds(c["box"], int(np.prod(c["shape"])))),
        )
    return cases


def _ort_points(c, bounds, n=64):
    import onnxruntime as ort

    lo, hi = bounds
    x = lo + (hi - lo) * np.random.default_rng(1).random((n, lo.size))
    try:
        sess = ort.InferenceSession(c["model"], providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dims = [d if isinstance(d, int) else None for d in inp.shape]
        dt = np.dtype(c.get("in_dtype", "float32"))
        if dims and dims[0] is None or len(dims) > 1 and dims[0] == 1:
            y = np.concatenate(
                [
                    sess.run(None, {inp.name: x[i : i + 1].reshape(1, *c["shape"]).astype(dt)})[
                        0
                    ].reshape(1, -1)
                    for i in range(n)
                ]
            )
        else:
            y = np.stack(
                [
                    sess.run(None, {inp.name: x[i].reshape(c["shape"]).astype(dt)})[0].reshape(-1)
                    for i in range(n)
                ]
            )
    except Exception as exc:  # noqa: BLE001 - recorded: onnxruntime itself refuses the file
        print(f"{c['name']}: onnxruntime: {str(exc)[:120]}", file=sys.stderr)
        return np.zeros((0, lo.size))
    return np.concatenate([x, y.astype(np.float64)], axis=1)


NNET = """// A .nnet file written by hand, with comments
// second comment line
2,4,3,8,
4,8,3,
0,
-1.0,-1.0,-1.0,-1.0,
1.0,1.0,1.0,1.0,
0.5,0.0,0.0,0.0,1.0,
2.0,2.0,2.0,2.0,3.0,
"""


def _nnet_cases(out: Path) -> list[dict]:
    rng = np.random.default_rng(3)
    W1, b1, W2, b2 = (np.round(rng.normal(size=s), 6) for s in ((8, 4), 8, (3, 8), 3))
    body = NNET
    for W, b in ((W1, b1), (W2, b2)):
        body += "".join(",".join(f"{v:.6f}" for v in row) + ",\n" for row in W)
        body += "".join(f"{v:.6f},\n" for v in b)
    cases = []
    for name, text in (
        ("nnet_comments", body),
        ("nnet_crlf", body.replace("\n", "\r\n")),
        ("nnet_no_trailing_commas", body.replace(",\n", "\n")),
    ):
        (out / f"{name}.nnet").write_bytes(text.encode())
        cases.append(
            dict(
                name=name,
                model=str(out / f"{name}.nnet"),
                shape=[4],
                box=["--box=-1,1"],
                expect="ok",
                form="nnet",
                note="",
                trust=False,
            )
        )
        # reference in raw units: x' = (clip(x, -1, 1) - mean) / 2; y = 3 * y' + 1
        x = -1 + 2 * np.random.default_rng(1).random((64, 4))
        xn = (np.clip(x, -1, 1) - [0.5, 0, 0, 0]) / 2.0
        h = np.maximum(W1 @ xn.T + b1[:, None], 0)
        y = (W2 @ h + b2[:, None]).T * 3.0 + 1.0
        np.save(out / f"{name}.ref.npy", np.concatenate([x, y], axis=1))
    return cases


def _domain_cases(out: Path, model: str) -> list[dict]:
    """Bad and unusual domains on one good model: each must be one line, exit 2, or work."""
    (out / "two_boxes.vnnlib").write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const X_2 Real)\n"
        "(declare-const X_3 Real)\n(declare-const Y_0 Real)\n"
        "(assert (or (and (>= X_0 -1) (<= X_0 0) (>= X_1 -1) (<= X_1 1) (>= X_2 -1) (<= X_2 1)"
        " (>= X_3 -1) (<= X_3 1)) (and (>= X_0 0) (<= X_0 1) (>= X_1 -1) (<= X_1 1)"
        " (>= X_2 -1) (<= X_2 1) (>= X_3 -1) (<= X_3 1))))\n(assert (>= Y_0 0))\n"
    )
    json_box = out / "box.json"
    json_box.write_text(json.dumps({"lower": [-1, -1, -1, -1], "upper": [1, 1, 1, 1]}))
    (out / "box_bad_len.json").write_text(json.dumps({"lower": [-1, -1], "upper": [1, 1]}))
    (out / "box_nan.json").write_text('{"lower": [NaN, -1, -1, -1], "upper": [1, 1, 1, 1]}')
    (out / "box_lohi.json").write_text(
        json.dumps({"lower": [1, -1, -1, -1], "upper": [-1, 1, 1, 1]})
    )
    np.save(out / "box_3d.npy", np.zeros((2, 2, 2)))
    forms = {
        "box_lo_gt_hi": (["--box=1,-1"], "refuse"),
        "box_nan": (["--box=nan,1"], "refuse"),
        "box_inf": (["--box=-inf,1"], "refuse"),
        "box_three_numbers": (["--box=0,1,2"], "refuse"),
        "box_space": (["--box", "-1, 1"], "ok"),
        "box_json": (["--box-file", str(json_box)], "ok"),
        "box_json_bad_len": (["--box-file", str(out / "box_bad_len.json")], "refuse"),
        "box_json_nan": (["--box-file", str(out / "box_nan.json")], "refuse"),
        "box_json_lo_gt_hi": (["--box-file", str(out / "box_lohi.json")], "refuse"),
        "box_npy_3d": (["--box-file", str(out / "box_3d.npy")], "refuse"),
        "vnnlib_two_boxes": (["--vnnlib", str(out / "two_boxes.vnnlib")], "ok"),
    }
    return [
        dict(
            name=f"domain_{k}",
            model=model,
            shape=[4],
            box=v,
            expect=e,
            form="domain",
            note="",
            trust=False,
            domain_only=True,
        )
        for k, (v, e) in forms.items()
    ]


def build(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    cases = _torch_cases(out) + _onnx_cases(out) + _nnet_cases(out)
    cases += _domain_cases(out, str(out / "onnx_gemm_transB1.onnx"))
    (out / "cases.json").write_text(json.dumps(cases, indent=1))
    return cases


def argv(c: dict, command: str, out: Path) -> list[str] | None:
    model, box = c["model"], c["box"]
    trust = ["--trust-pickle"] if c["trust"] else []
    stem = out / c["name"]
    if command == "load":
        return None
    if command == "stability":
        return ["stability", model, *box, *trust, "--quiet", "--jobs", "1", "--time-limit", "5"]
    if command in ("compress-onnx", "compress-pt"):
        suffix = ".onnx" if command == "compress-onnx" else ".pt"
        return [
            "compress",
            model,
            *box,
            *trust,
            "-o",
            f"{stem}.c{suffix}",
            "--quiet",
            "--jobs",
            "1",
            "--time-limit",
            "5",
            "--check",
            "1000",
        ]
    if command == "verify":  # the input against its compressed .onnx copy, across formats
        other = f"{stem}.c.onnx"
        return ["verify", model, other, *box, *trust, "--quiet", "--time-limit", "5"]
    if command == "regions":
        return ["regions", model, *box, *trust, "--quiet", "--bounds-only"]
    if command == "quantize":
        return ["quantize", model, *box, *trust, "-o", f"{stem}.q.onnx", "--quiet", "--bits", "8"]
    raise ValueError(command)


def check_read(path: str, ref: np.ndarray, shape, trust: bool) -> str:
    """'' when exactcomp's reading of ``path`` matches the reference points, else why not."""
    from exactcomp.errors import ExactCompError
    from exactcomp.io import load
    from exactcomp.io.heads import apply_head

    if ref.size == 0:
        return "no reference"
    n = int(np.prod(shape))
    x, y = ref[:, :n], ref[:, n:]
    try:
        net = load(path, trust_pickle=trust)
    except ExactCompError as exc:
        return f"refused: {exc}"
    except Exception as exc:  # noqa: BLE001 - a reader's crash is what the sweep looks for
        return f"CRASH {type(exc).__name__}: {exc}"
    got = apply_head(net.forward(x), net.meta.get("head"))
    if got.shape != y.shape:
        return f"shape {got.shape} vs reference {y.shape}"
    err = float(np.max(np.abs(got - y)) / (1 + np.max(np.abs(y))))
    return "" if err <= ATOL32 else f"max relative |read - reference| = {err:.3g}"


def run_one(c: dict, command: str, out: Path, code: Path) -> dict:
    rec = dict(case=c["name"], command=command, expect=c["expect"])
    ref = np.load(out / f"{c['name']}.ref.npy") if not c.get("domain_only") else None
    if command == "load":
        t0, c0 = time.time(), time.process_time()
        rec["check"] = check_read(c["model"], ref, c["shape"], c["trust"])
        rec.update(
            rc=0, wall_s=round(time.time() - t0, 2), cpu_s=round(time.process_time() - c0, 2)
        )
        return rec
    args = argv(c, command, out)
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{out}", "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.time()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S", "timeout", str(TIMEOUT_S), PY, "-m", "exactcomp", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,
    )
    err_lines = p.stderr.strip().splitlines()
    cpu = sum(float(v) for v in err_lines[-1].split()) if err_lines else 0.0
    err_lines = [ln for ln in err_lines[:-1] if not ln.startswith("Command exited with")]
    rec.update(
        rc=p.returncode,
        wall_s=round(time.time() - t0, 2),
        cpu_s=round(cpu, 2),
        traceback=any("Traceback" in ln for ln in err_lines),
        stderr_lines=len([ln for ln in err_lines if ln.strip()]),
        last=(err_lines or p.stdout.strip().splitlines() or [""])[-1],
    )
    written = [args[args.index("-o") + 1]] if "-o" in args else []
    if p.returncode == 0 and written and ref is not None:
        rec["check"] = check_written(written[0], ref, c["shape"], command)
    elif p.returncode != 0 and written:
        rec["partial_output"] = Path(written[0]).exists()
    return rec


def check_written(path: str, ref: np.ndarray, shape, command: str) -> str:
    """The file written, re-read by exactcomp and (ONNX) by onnxruntime, against the reference."""
    if command == "quantize":
        return ""  # lossy: its own bound is checked by scripts/command_sweep_claims.py
    why = check_read(path, ref, shape, False)
    if why or not path.endswith(".onnx"):
        return why
    import onnxruntime as ort

    n = int(np.prod(shape))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dt = np.float64 if "double" in inp.type else np.float32
    shape1 = [1, *inp.shape[1:]] if len(inp.shape) > 1 else [n]
    rows = [ref[i : i + 1, :n].astype(dt).reshape(shape1) for i in range(len(ref))]
    got = np.concatenate([sess.run(None, {inp.name: r})[0].reshape(1, -1) for r in rows])
    y = ref[:, n:]
    err = float(np.max(np.abs(got - y)) / (1 + np.max(np.abs(y))))
    return "" if err <= ATOL32 else f"onnxruntime: max relative |written - reference| = {err:.3g}"


def verdict(r: dict) -> str:
    if r["command"] == "load":
        if r["check"].startswith("CRASH"):
            return "CRASH"
        if r["check"].startswith("refused"):
            return "refused" if r["expect"] == "refuse" else "REFUSED?"
        return "ok" if not r["check"] else "WRONG"
    if r.get("traceback") or r["rc"] not in (0, 2):
        return "CRASH"
    if r["rc"] == 2:
        bad = r.get("partial_output") or r.get("stderr_lines", 0) > 2
        return "BAD-ERROR" if bad else ("refused" if r["expect"] == "refuse" else "REFUSED?")
    if r.get("check"):
        return "WRONG"
    return "ok" if r["expect"] == "ok" else "ACCEPTED?"


def wanted(c: dict, command: str) -> bool:
    """Every command on a checkpoint meant to be read; one CLI command (and the reader) on
    one meant to be refused (all commands share the reader) and on a domain."""
    if c.get("domain_only"):
        return command == "compress-onnx"
    if c["expect"] == "refuse":
        return command in ("load", "compress-onnx")
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--code", type=Path, default=ROOT, help="the exactcomp tree to run")
    a = ap.parse_args()
    sys.path.insert(0, str(a.code))
    import warnings

    import onnxruntime as ort

    warnings.simplefilter("ignore")
    ort.set_default_logger_severity(3)
    cases = build(a.out)
    if a.only:
        cases = [c for c in cases if any(s in c["name"] for s in a.only.split(","))]
    commands = a.commands.split(",")

    def one_case(c: dict) -> list[dict]:  # in order: verify reads what compress wrote
        return [run_one(c, cmd, a.out, a.code) for cmd in commands if wanted(c, cmd)]

    with ThreadPoolExecutor(a.workers) as pool:
        results = [r for rs in pool.map(one_case, cases) for r in rs]
    with open(a.out / "results.jsonl", "w") as f:
        for r in results:
            r["verdict"] = verdict(r)
            f.write(json.dumps(r) + "\n")
            print(
                f"{r['verdict']:10} {r['case']:38} {r['command']:14} rc={r['rc']} "
                f"{(r.get('check') or r.get('last', ''))[:150]}"
            )


if __name__ == "__main__":
    main()
