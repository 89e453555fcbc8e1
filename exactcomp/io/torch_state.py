"""A bare ``state_dict`` -> the IR: the conventional MLP, said to be an assumption.

A ``state_dict`` carries no activations, so it is read as Linear -> ReLU -> ... -> Linear: the
``*.weight``/``*.bias`` pairs in the dict's saved order (never re-sorted: ``layers.10`` may
legitimately follow ``layers.2``), a ReLU after every layer but the last. A LeakyReLU or
Sigmoid model has the same keys, so the network carries :data:`STATE_DICT_NOTE` in
``meta["notes"]`` (the CLI prints it, the report stores it). Files written by
:func:`~exactcomp.io.torch_io.save_torch` record the exact ReLU pattern (and a Softmax head)
under ``_metadata[METADATA_KEY]``; those are read as recorded, without a note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Box
from ..errors import InvalidNetworkError, UnsupportedModelError
from ..network import Layer, Network
from .heads import HEADS, head_note
from .torch_chain import build_network, to_float64

if TYPE_CHECKING:
    import torch

    from .onnx_check import Comparison

#: Key under the ``state_dict``'s ``_metadata`` where :func:`save_torch` records ReLU flags.
METADATA_KEY = "exactcomp"

#: The note a network read from a bare state_dict carries (printed by the CLI, in the report).
STATE_DICT_NOTE = (
    "architecture assumed from a state_dict: Linear -> ReLU -> ... -> Linear (a state_dict "
    "stores no activations, so a LeakyReLU, Sigmoid or other model would be misread); to give "
    "the real one, save torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2'), "
    "or torch.jit.script(model) of an nn.Sequential, or the whole module (--trust-pickle)"
)


def state_dict_to_network(state_dict: Mapping[str, torch.Tensor | np.ndarray]) -> Network:
    """Read an MLP ``state_dict``: weight/bias pairs in saved order, ReLU between layers.

    Values are torch tensors or numpy arrays (as :mod:`~exactcomp.io.torch_zip` reads them).

    Keys are grouped by their prefix (``"0"`` for ``"0.weight"``) in the order they first
    appear; a prefix must have a 2-D ``weight`` and may have a ``bias`` (absent = zero).
    If the dict carries the ReLU flags written by :func:`save_torch`, they are used instead of
    the convention (ReLU after every layer but the last); otherwise the network's
    ``meta["notes"]`` says the architecture was assumed (:data:`STATE_DICT_NOTE`).
    """
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        prefix, _, name = key.rpartition(".")
        if name not in ("weight", "bias"):
            raise UnsupportedModelError(
                f"state_dict entry {key!r} is not a Linear weight or bias (a normalisation or "
                "other layer?): a state_dict holds no architecture, and only a Linear/ReLU MLP "
                "is assumed; save the model itself instead (torch.save(model) read with "
                "--trust-pickle, torch.jit.script, or a torch.export .pt2 program)"
            )
        groups.setdefault(prefix, {})[name] = value
    weights, biases, dtypes = [], [], []
    for prefix, params in groups.items():
        label = prefix or "<root>"
        if "weight" not in params:
            raise InvalidNetworkError(f"layer {label!r} has a bias but no weight")
        w = params["weight"]
        ndim = len(w.shape)
        if ndim != 2:
            kind = "a convolution?" if ndim > 2 else "a normalisation layer?"
            raise UnsupportedModelError(
                f"layer {label!r} has a {ndim}-D weight of shape {tuple(w.shape)} ({kind}); "
                "only Linear layers are supported"
            )
        b = params.get("bias")
        weights.append(to_float64(w, f"{label}.weight"))
        biases.append(
            np.zeros(w.shape[0]) if b is None else to_float64(b, f"{label}.bias").reshape(-1)
        )
        dtypes.append(w.dtype)
        if b is not None and _numel(b) != w.shape[0]:
            raise InvalidNetworkError(
                f"layer {label!r}: bias has {_numel(b)} entries but the weight has "
                f"{w.shape[0]} rows"
            )
    _check_key_order(list(groups), weights)
    recorded = _recorded(state_dict, len(weights))
    relu = recorded["relu"] if recorded else [k < len(weights) - 1 for k in range(len(weights))]
    head = recorded.get("head") if recorded else None
    notes = (head_note(head),) if head else () if recorded else (STATE_DICT_NOTE,)
    layers = tuple(Layer(w, b, r) for w, b, r in zip(weights, biases, relu, strict=True))
    return build_network(layers, dtypes, notes=notes, head=head)


def _check_key_order(prefixes: list[str], weights: list[np.ndarray]) -> None:
    """Raise, naming both keys, where one layer's weight does not take the previous one's output.

    The usual cause is a dict whose entries are not in execution order; the message says
    whether sorting the layer names numerically would make the shapes chain.
    """
    for k in range(1, len(weights)):
        if weights[k].shape[1] == weights[k - 1].shape[0]:
            continue
        here, before = f"{prefixes[k]}.weight", f"{prefixes[k - 1]}.weight"
        order = sorted(range(len(prefixes)), key=lambda i: _natural_key(prefixes[i]))
        chains = all(
            weights[j].shape[1] == weights[i].shape[0]
            for i, j in zip(order[:-1], order[1:], strict=True)
        )
        hint = (
            "; the keys are out of layer order (sorted by layer name they chain): save the "
            "entries in execution order"
            if chains and order != list(range(len(prefixes)))
            else "; are the keys out of layer order, or is a layer missing?"
        )
        raise InvalidNetworkError(
            f"state_dict key {here!r} (shape {tuple(weights[k].shape)}) expects "
            f"{weights[k].shape[1]} inputs but the key before it, {before!r} (shape "
            f"{tuple(weights[k - 1].shape)}), has {weights[k - 1].shape[0]} outputs{hint}"
        )


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """``"layers.10"`` after ``"layers.2"``: digit runs compare as numbers."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name) if t]


def _numel(t: Any) -> int:
    return int(t.size) if isinstance(t, np.ndarray) else int(t.numel())


def _recorded(state_dict: Mapping[str, Any], n: int) -> dict[str, Any] | None:
    """The ReLU flags (and head) that :func:`save_torch` stored in ``_metadata``, if present
    and consistent: ``{"relu": [...], "head": "softmax" | None}``."""
    metadata = getattr(state_dict, "_metadata", None)
    if not isinstance(metadata, Mapping):
        return None
    record = metadata.get(METADATA_KEY)
    if not isinstance(record, Mapping):
        return None
    flags, head = record.get("relu"), record.get("head")
    if (
        isinstance(flags, list | tuple)
        and len(flags) == n
        and all(isinstance(f, bool) for f in flags)
        and (head is None or head in HEADS)
    ):
        return {"relu": list(flags), "head": head}
    return None


def check_saved_state(
    path: str | Path,
    net: Network,
    module: Any,
    boxes: Sequence[Box] = (),
    *,
    samples: int = 64,
    seed: int = 0,
) -> Comparison:
    """Run the ``state_dict`` saved at ``path``, loaded into ``module``, against ``net``.

    The file is read back with ``torch.load(weights_only=True)`` into ``module`` (the layout
    :func:`~exactcomp.io.torch_io.to_torch_module` built it from, ``strict``), widened to
    float64 (exact), and evaluated in torch on the probe points
    (:func:`~exactcomp.io.onnx_check.probe_points`: corners, faces, centre, random points) of
    ``[-1, 1]^n`` and of each box of ``boxes``. A Softmax/LogSoftmax head is left out (it has
    no parameters; ``net`` computes the logits). The allowance is the ONNX check's,
    ``64 u depth S(x)`` with ``u`` the unit roundoff of the weights' dtype
    (:mod:`exactcomp.io.onnx_check`): what rounding the weights to ``net.dtype`` can do, far
    below any layout mistake (a transposed, missing or misplaced layer).
    """
    import torch

    from .onnx_check import Comparison, partial_sum_size, probe_points

    state = torch.load(path, map_location="cpu", weights_only=True)
    module = module.double()
    module.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)
    layers = list(module)
    if net.meta.get("head") in HEADS:  # to_torch_module appended it last
        layers = layers[:-1]
    rng = np.random.default_rng(seed)
    x = np.vstack(
        [probe_points(b, samples, rng) for b in (Box.uniform(-1.0, 1.0, net.input_size), *boxes)]
    )
    with torch.no_grad():
        got = torch.nn.Sequential(*layers)(torch.from_numpy(x)).numpy().reshape(len(x), -1)
    want = net.forward(x)
    if got.shape != want.shape:
        return Comparison(float("inf"), float("inf"), 0.0)
    dt = np.dtype(net.dtype) if np.dtype(net.dtype).kind == "f" else np.dtype(np.float64)
    u = float(np.finfo(dt).eps) / 2
    allowed = 64 * u * max(len(net.layers), 1) * partial_sum_size(net, x)[:, None] + 1e-12
    return Comparison.of(np.abs(got - want), allowed)
