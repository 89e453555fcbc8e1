"""``torch.export`` programs (``.pt2``, written by ``torch.export.save``) read without torch.

``torch.export.load`` unpickles the archive's sample inputs (and any weight saved as a
pickle), so it is not used. The archive is a zip holding the program as JSON
(``models/<name>.json``: the graph of ATen ops and its signature), a JSON config per weight
(dtype, sizes, strides, storage offset) and the raw little- or big-endian bytes of each
storage (``data/weights/weight_<i>``). This module reads exactly that: JSON and raw numbers,
nothing that can run code. A weight stored as a pickle, a legacy archive layout or a dtype
other than float16/32/64 is refused by name.

The graph is then walked node by node. It must be a chain: one user input, each op on
activations taking the previous op's output, one user output. ATen ops map to layers:

================================================  =======================================
``aten.linear``, ``aten.addmm(b, x, W^T)``,        ``Linear`` (``W^T`` = ``permute``/``t``/
``aten.mm(x, W^T)``                                ``transpose`` of a parameter)
``aten.relu``, ``aten.relu_``                      ``ReLU``
``aten.batch_norm(training=False)``,               eval-mode ``BatchNorm1d`` (folded into the
``aten._native_batch_norm_legit_no_training``      Linear before it)
``aten.dropout(train=False)``, ``aten.clone``,     the identity
``aten.alias``, ``aten.detach``
``aten.flatten(1, -1)``, ``aten.view/reshape``     flattening to ``(batch, features)``
to ``(batch, n)``
``aten.softmax``/``_softmax``,                     the head (last op only)
``aten.log_softmax``/``_log_softmax``
================================================  =======================================

Any other op is refused, naming it and the module it came from (``nn_module_stack``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, UnsupportedModelError
from ..network import Network
from .torch_chain import ChainBuilder
from .torch_zip import byte_order

__all__ = ["load_export", "program_to_network"]

#: ``torch._export.serde.schema.ScalarType`` codes of the float dtypes read (numpy names).
SCALAR_TYPES = {6: "f2", 7: "f4", 8: "f8"}
#: Names of the other codes, for the refusal message.
OTHER_TYPES = {13: "bfloat16", 4: "int32", 5: "int64", 12: "bool", 1: "uint8", 2: "int8"}

_IDENTITY_OPS = ("clone.default", "alias.default", "detach.default", "lift_fresh_copy.default")
_HEAD_OPS = {
    "softmax.int": "softmax",
    "_softmax.default": "softmax",
    "log_softmax.int": "log_softmax",
    "_log_softmax.default": "log_softmax",
    "sigmoid.default": "sigmoid",
    "tanh.default": "tanh",
}


class _Unreadable(str):
    """Why a tensor of the archive cannot be used (raised only if an op uses it)."""


class _Refused(Exception):
    """The archive is not a torch.export program this reader can read (message says why)."""


# --------------------------------------------------------------------------- the archive
def load_export(path: str | Path) -> Network:
    """Read a ``torch.export.save`` archive into the IR (see the module docstring)."""
    path = Path(path)
    try:
        doc, tensors = _read_archive(path)
    except _Refused as exc:
        raise InputFileError(f"{str(path)!r}: {exc}") from None
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(
            f"{str(path)!r} is not a readable torch.export archive ({type(exc).__name__}: "
            f"{str(exc)[:100]}); write one with torch.export.save"
        ) from None
    try:
        return program_to_network(doc, tensors)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputFileError(
            f"{str(path)!r}: malformed torch.export program ({type(exc).__name__}: "
            f"{str(exc)[:100]}); write it with torch.export.save"
        ) from None


def _read_archive(path: Path) -> tuple[dict, dict[str, np.ndarray | str]]:
    """The program's JSON and its weights/constants by fully-qualified name."""
    if not zipfile.is_zipfile(path):
        raise _Refused(
            "not a torch.export archive (not a zip file); write one with torch.export.save"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
        present = set(names)
        if prefix + "archive_format" not in present:
            raise _Refused(
                "not a torch.export archive (no archive_format record); write one with "
                "torch.export.save"
            )
        models = [n for n in names if n.startswith(prefix + "models/") and n.endswith(".json")]
        if len(models) != 1:
            raise _Refused(f"holds {len(models)} exported programs; expected exactly one")
        model = models[0][len(prefix + "models/") : -len(".json")]
        order = byte_order(archive, prefix, present)
        if order is None:
            raise _Refused("unknown byte order record")
        doc = json.loads(archive.read(models[0]))
        tensors: dict[str, np.ndarray | str] = {}
        for kind in ("weights", "constants"):
            config_name = f"{prefix}data/{kind}/{model}_{kind}_config.json"
            if config_name not in present:
                raise _Refused(
                    f"no {kind} config (an archive from an older torch?); re-save it with "
                    "torch.export.save"
                )
            config = json.loads(archive.read(config_name))["config"]
            for fqn, payload in config.items():
                if payload.get("use_pickle"):
                    raise _Refused(
                        f"{kind[:-1]} {fqn!r} is stored as a pickle, which can run code; "
                        "it is not read"
                    )
                raw = archive.read(f"{prefix}data/{kind}/{payload['path_name']}")
                tensors[fqn] = _tensor(raw, payload["tensor_meta"], order, fqn)
    return doc, tensors


def _tensor(raw: bytes, meta: dict, order: str, fqn: str) -> np.ndarray | str:
    """The strided view a tensor's metadata describes on its raw storage bytes, as a copy;
    for a tensor that is not float16/32/64, the reason it cannot be used (a string)."""
    code = meta["dtype"]
    if code not in SCALAR_TYPES:  # e.g. BatchNorm's num_batches_tracked: refused if used
        name = OTHER_TYPES.get(code, f"dtype code {code}")
        return f"tensor {fqn!r} has dtype {name}; only float16/32/64 are supported"
    dtype = np.dtype(order + SCALAR_TYPES[code])
    if len(raw) % dtype.itemsize:
        raise _Refused(f"tensor {fqn!r}: storage length is not a whole number of elements")
    data = np.frombuffer(raw, dtype=dtype)
    size = [_int(s) for s in meta["sizes"]]
    stride = [_int(s) for s in meta["strides"]]
    offset = _int(meta["storage_offset"])
    if len(size) != len(stride) or min([offset, *size, *stride], default=0) < 0:
        raise _Refused(f"tensor {fqn!r}: bad sizes or strides")
    if 0 in size:
        return np.empty(size, dtype=dtype.newbyteorder("="))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= data.size:
        raise _Refused(f"tensor {fqn!r} reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=size, strides=[s * dtype.itemsize for s in stride], writeable=False
    )
    return np.array(view, dtype=dtype.newbyteorder("="), order="C")


def _int(value: Any) -> int:
    """An ``{"as_int": n}`` size; symbolic sizes raise."""
    if isinstance(value, dict) and "as_int" in value and type(value["as_int"]) is int:
        return value["as_int"]
    raise _Refused(f"symbolic size {value}; only static weight shapes are supported")


# --------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class _Act:
    """The activation flowing through the chain: its value name and feature shape."""

    name: str
    features: tuple[int, ...]


def program_to_network(doc: dict, tensors: dict[str, np.ndarray | str]) -> Network:
    """Walk the serialized ExportedProgram ``doc`` (JSON) and build the IR network.

    ``tensors``: the parameters, buffers and constants by name (a string: why that tensor
    cannot be read, raised only if an op uses it).
    """
    gm = doc["graph_module"]
    graph, signature = gm["graph"], gm["signature"]
    shapes = graph.get("tensor_values", {})
    values: dict[str, Any] = {}
    user_inputs: list[_Act] = []
    for spec in signature["input_specs"]:
        (kind, body), *_ = spec.items()
        if kind in ("parameter", "buffer", "tensor_constant"):
            fqn = body[
                {"parameter": "parameter_name", "buffer": "buffer_name"}.get(
                    kind, "tensor_constant_name"
                )
            ]
            tensor = tensors[fqn]
            values[body["arg"]["name"]] = _Unreadable(tensor) if isinstance(tensor, str) else tensor
        elif kind == "user_input" and "as_tensor" in body["arg"]:
            name = body["arg"]["as_tensor"]["name"]
            user_inputs.append(_Act(name, _features(shapes, name)))
        else:
            raise UnsupportedModelError(f"torch.export program has an input of kind {kind!r}")
    outputs = signature["output_specs"]
    if len(user_inputs) != 1 or len(outputs) != 1 or "user_output" not in outputs[0]:
        raise UnsupportedModelError(
            f"torch.export program has {len(user_inputs)} inputs and {len(outputs)} outputs "
            "(or mutates buffers); only one input and one output are supported"
        )
    chain = ChainBuilder("torch.export")
    current = user_inputs[0]
    values[current.name] = current
    if len(current.features) != 1:
        chain.notes.append(
            f"the input of shape {current.features} is read flattened (C order) to "
            f"{int(np.prod(current.features))} features"
        )
    for node in graph["nodes"]:
        current = _step(chain, node, values, current, shapes)
    out = outputs[0]["user_output"]["arg"].get("as_tensor", {}).get("name")
    if out != current.name:
        raise UnsupportedModelError(
            "torch.export program's output is not the end of its chain of layers"
        )
    return chain.network()


def _features(shapes: dict, name: str) -> tuple[int, ...]:
    sizes = shapes.get(name, {}).get("sizes")
    if not sizes or not all("as_int" in s for s in sizes[1:]):
        raise UnsupportedModelError(
            f"torch.export value {name!r} has no static feature shape (dynamic feature sizes "
            "are not supported; only the batch dimension may be dynamic)"
        )
    return tuple(int(s["as_int"]) for s in sizes[1:])


def _args(node: dict, values: dict[str, Any]) -> dict[str, Any]:
    """The node's arguments by name: tensors resolved to arrays or :class:`_Act`."""
    args: dict[str, Any] = {}
    for item in node["inputs"]:
        (kind, value), *_ = item["arg"].items()
        if kind == "as_tensor":
            if value["name"] not in values:
                raise UnsupportedModelError(
                    f"torch.export node {node.get('name')!r} uses {value['name']!r}, which is "
                    "not the previous layer's output (the graph is not a chain)"
                )
            args[item["name"]] = values[value["name"]]
        elif kind == "as_none":
            args[item["name"]] = None
        else:
            args[item["name"]] = value
    return args


def _origin(node: dict) -> str:
    """``LeakyReLU '1'``: the module a node came from, or its node name."""
    stack = (node.get("metadata") or {}).get("nn_module_stack", "")
    last = stack.split(";")[-1].split(",") if stack else []
    if len(last) >= 3 and last[1]:
        return f"{last[-1].rsplit('.', 1)[-1]} {last[1]!r}"
    return f"node {node.get('name', '?')!r}"


def _layer_name(node: dict) -> str:
    stack = (node.get("metadata") or {}).get("nn_module_stack", "")
    last = stack.split(";")[-1].split(",") if stack else []
    return last[1] if len(last) >= 3 and last[1] else str(node.get("name", "?"))


def _step(
    chain: ChainBuilder, node: dict, values: dict[str, Any], current: _Act, shapes: dict
) -> _Act:
    """Apply one node; returns the new current activation."""
    target = str(node["target"]).removeprefix("torch.ops.aten.")
    args = _args(node, values)
    outs = [o.get("as_tensor", {}).get("name") for o in node["outputs"]]
    name = _layer_name(node)

    def refuse(why: str = "") -> UnsupportedModelError:
        return UnsupportedModelError(
            f"torch.export op aten.{target} ({_origin(node)}) is not supported{why}; supported: "
            "linear/addmm/mm, relu, batch_norm and dropout in eval mode, flatten, and a final "
            "softmax/log_softmax"
        )

    if target.split(".")[0].endswith("_") and target != "relu_.default":
        raise refuse(
            " (an in-place update: a BatchNorm exported in training mode? export after "
            "model.eval())"
        )
    unusable = [a for a in args.values() if isinstance(a, _Unreadable)]
    if unusable:
        raise refuse(f" ({unusable[0]})")
    acts = [a for a in args.values() if isinstance(a, _Act)]
    if not acts:  # an op on parameters only: the transposes of a decomposed Linear
        if target in ("permute.default", "t.default", "transpose.int"):
            (const,) = [a for a in args.values() if isinstance(a, np.ndarray)]
            if const.ndim == 2 and _is_transpose(target, args):
                values[outs[0]] = const.T
                return current
        raise refuse()
    if len(acts) != 1 or acts[0] is not current:
        raise refuse(" (it combines or reuses activations: not a chain)")
    if len(current.features) != 1 and not target.startswith(
        ("flatten", "view", "reshape", "_unsafe_view")
    ):
        raise refuse(f" on an input of shape {current.features}")
    act_in = [k for k, a in args.items() if a is current][0]

    def const(key: str) -> np.ndarray | None:
        value = args.get(key)
        if value is not None and not isinstance(value, np.ndarray):
            raise refuse(f" (its {key} is not a parameter)")
        return value

    if target == "linear.default" and act_in == "input":
        chain.linear(name, const("weight"), const("bias"))
    elif target == "addmm.default" and act_in == "mat1":
        if args.get("beta", 1) != 1 or args.get("alpha", 1) != 1:
            raise refuse(" (alpha or beta not 1)")
        bias, mat2 = const("self"), const("mat2")
        if bias is None or mat2 is None or bias.ndim != 1:
            raise refuse(" (its bias is not a vector)")
        chain.linear(name, mat2.T, bias)
    elif target == "mm.default" and act_in == "self":
        chain.linear(name, const("mat2").T, None)
    elif target in ("relu.default", "relu_.default"):
        chain.relu(name)
    elif target == "batch_norm.default" and act_in == "input":
        if args.get("training"):
            raise refuse(" in training mode (export the model after model.eval())")
        chain.batchnorm(
            name, const("weight"), const("bias"), const("running_mean"), const("running_var"),
            float(args["eps"]),
        )  # fmt: skip
    elif target == "_native_batch_norm_legit_no_training.default" and act_in == "input":
        chain.batchnorm(
            name, const("weight"), const("bias"), const("running_mean"), const("running_var"),
            float(args["eps"]),
        )  # fmt: skip
    elif target == "dropout.default":
        if args.get("train"):
            raise refuse(" in training mode (export the model after model.eval())")
    elif target in _IDENTITY_OPS:
        pass
    elif target in _HEAD_OPS:
        if args.get("dtype") is not None or args.get("half_to_float"):
            raise refuse(" (with a dtype conversion)")
        chain.head(name, _HEAD_OPS[target], args.get("dim"))
    elif target == "flatten.using_ints":
        start, end = args.get("start_dim", 0), args.get("end_dim", -1)
        if start != 1 or end not in (-1, len(current.features)):
            raise refuse(f" with start_dim={start}, end_dim={end}")
    elif target in ("view.default", "reshape.default", "_unsafe_view.default"):
        size = args.get("size") or args.get("shape")
        n = int(np.prod(current.features))
        if not (isinstance(size, list) and len(size) == 2 and size[1] in (n, -1)):
            raise refuse(f" to size {size} (only to (batch, {n}))")
    else:
        raise refuse()
    new = _Act(outs[0], _features(shapes, outs[0]))
    if target.startswith(("flatten", "view", "reshape", "_unsafe_view")) and len(new.features) != 1:
        raise refuse(f" (gives shape {new.features}, not (batch, features))")
    values[new.name] = new
    return new


def _is_transpose(target: str, args: dict[str, Any]) -> bool:
    if target == "t.default":
        return True
    if target == "permute.default":
        return list(args.get("dims", [])) == [1, 0]
    return {args.get("dim0"), args.get("dim1")} in ({0, 1}, {-1, -2}, {0, -1}, {-2, 1})
