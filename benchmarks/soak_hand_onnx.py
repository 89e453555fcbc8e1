"""The soak ``readers`` family's ONNX graphs written by hand (:mod:`benchmarks.soak_readers`).

:func:`hand_onnx` writes a case's ``nn.Sequential`` as a user's exporter might: ``Gemm`` with
``transB`` or ``MatMul`` + ``Add``, a ``Flatten``/``Reshape`` in front, nn4sys' and ERAN's
weight-first ``MatMul(W, h)`` on a 1-D input (:func:`weight_first`), or the input read through
``Gather``/``Slice`` chains as nn4sys' pensieve networks do (:func:`input_selection`). Which
layout a case gets is drawn from its seed's bits, so the other cases draw as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .soak_readers import ReaderCase


def as_numpy(t: Any) -> np.ndarray:
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


def hand_onnx(case: ReaderCase, model: Any) -> bytes:
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
            w = as_numpy(m.weight).astype(dt)
            w = w[:, perm] if perm is not None and k == 0 else w  # reads x[:, perm]
            b = as_numpy(m.bias).astype(dt) if m.bias is not None else np.zeros(m.out_features, dt)
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
