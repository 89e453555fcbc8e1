"""The onnxruntime cross-check: run the ONNX file and compare it with the network read from it.

Where it is run. :func:`exactcomp.io.onnx_io.load_onnx` runs it at load time on the probe
points of a box (``[-1, 1]^n`` unless the caller knows the domain), and
:func:`check_on_domain` runs it again once the analysis domain is bound (the API calls it for
every ONNX network it is given a domain for), so the file is always checked on the domain the
proofs are about.

Probe points (:func:`probe_points`). Random points alone miss effects that live near a corner
of the box (an overflow, a saturation, a rounding step that only large inputs reach), so each
box contributes its corners (all ``2^n`` when ``n <= 8``, else the two extreme corners and a
random sample), points on its faces (one coordinate at a bound, the others random), its centre,
and random interior points.

Allowance. The reader's function is the graph in real arithmetic (see
:mod:`exactcomp.io.onnx_types`); onnxruntime computes in the graph's compute dtype. The
comparison tolerance is relative to the size ``S(x)`` of the partial sums the network forms at
``x``: the largest entry of ``|W_k| |h_{k-1}| + |b_k|`` over all layers (with the true
activations ``h``) and of ``|x|``. Rounding with unit roundoff ``u`` (float32: ``6e-8``) moved
the outputs of every shipped network by at most ``5 u S``; we allow ``64 u depth S`` (plus
``1e-12``), still far below the size of any structural mistake (a transposed or missing weight,
a lost normalisation), which changes outputs by a sizeable fraction of ``S``. A worst-case
bound (``|W|`` propagated through the whole network) would be ``1e7`` times looser on ACAS Xu
and so useless as a check. A non-finite output on either side (an overflow to ``inf``, a
``NaN``) is an infinite difference, never a pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..domain import Box
from ..errors import InputFileError, InvalidNetworkError
from ..network import Network
from .heads import apply_head

Dims = tuple[int | str | None, ...]

#: Boxes with at most this many inputs are probed at every corner (2^8 = 256 points).
ALL_CORNERS_UP_TO = 8
#: Otherwise: this many random corners, and faces of this many random coordinates.
SAMPLED_CORNERS = 256
SAMPLED_FACES = 64


@dataclass(frozen=True)
class Comparison:
    """Largest IR-vs-onnxruntime difference, and by how much the worst entry exceeds its
    allowance (``excess > 0`` means the two disagree)."""

    max_abs_diff: float
    excess: float
    allowed_at_worst: float

    @classmethod
    def of(cls, diff: np.ndarray, allowed: np.ndarray) -> Comparison:
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN must fail, not compare false
        allowed = np.broadcast_to(allowed, diff.shape)
        if diff.size == 0:
            return cls(0.0, -1.0, 0.0)
        over = diff - allowed
        i = np.unravel_index(int(np.argmax(over)), over.shape)
        return cls(float(diff.max()), float(over[i]), float(allowed[i]))


def probe_points(box: Box, random: int, rng: np.random.Generator) -> np.ndarray:
    """Corners, face points, the centre and ``random`` interior points of ``box`` (rows).

    All ``2^n`` corners when ``n <= ALL_CORNERS_UP_TO``; otherwise the corners ``lo`` and
    ``hi`` and ``SAMPLED_CORNERS`` random ones. Face points: for every coordinate (or
    ``SAMPLED_FACES`` random ones when there are more), one point with that coordinate at
    ``lo`` and one at ``hi``, the others uniform in the box.
    """
    lo, hi, n = box.lower, box.upper, box.dim
    if n <= ALL_CORNERS_UP_TO:
        upper = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    else:
        upper = np.vstack(
            [np.zeros((1, n), bool), np.ones((1, n), bool), rng.random((SAMPLED_CORNERS, n)) < 0.5]
        )
    corners = np.where(upper, hi, lo)
    coords = np.arange(n) if n <= SAMPLED_FACES else rng.choice(n, SAMPLED_FACES, replace=False)
    faces = box.sample(2 * len(coords), rng)
    rows = np.arange(len(coords))
    faces[2 * rows, coords] = lo[coords]
    faces[2 * rows + 1, coords] = hi[coords]
    centre = ((lo + hi) / 2)[None, :]
    return np.vstack([corners, faces, centre, box.sample(random, rng)])


def partial_sum_size(net: Network, x: np.ndarray) -> np.ndarray:
    """``S(x)`` per row of ``x``: the largest ``|W_k| |h_{k-1}| + |b_k|`` entry, or ``|x|``."""
    h = x
    size = np.abs(x).max(axis=1, initial=0.0)
    for layer in net.layers:
        size = np.maximum(
            size,
            (np.asarray((layer.abs_weight() @ np.abs(h).T).T) + np.abs(layer.bias)).max(
                axis=1, initial=0.0
            ),
        )
        h = layer.apply(h) + layer.bias
        if layer.relu:
            h = np.maximum(h, 0.0)
    return size


def _feed_shape(dims: Dims, batch: int) -> tuple[int, ...]:
    return tuple(batch if not isinstance(d, int) else d for d in dims)


def _run_session(sess: Any, xin: np.ndarray, name: str, shape: Dims) -> np.ndarray:
    """Outputs for each row of ``xin``, shape ``(rows, outputs)``: batched when the batch is
    dynamic (falling back to one row at a time if the graph insists on batch 1)."""
    try:
        if len(shape) >= 2 and not isinstance(shape[0], int):
            try:
                out = sess.run(None, {name: xin.reshape(_feed_shape(shape, len(xin)))})[0]
                return np.asarray(out, dtype=np.float64).reshape(len(xin), -1)
            except Exception:  # noqa: BLE001 - e.g. a Reshape that hard-codes batch 1
                pass
        one = _feed_shape(shape, 1)
        rows = [sess.run(None, {name: row.reshape(one)})[0] for row in xin]
        return np.asarray(rows, dtype=np.float64).reshape(len(xin), -1)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputFileError(f"onnxruntime fails to run the model: {exc}") from None


def run_file(model: bytes | str | Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    """onnxruntime's outputs of ``model`` at the rows of ``x`` (rounded to the input's dtype,
    each reshaped to the input's shape), one float64 row per point, and the unit roundoff
    of the input's dtype: the reference the soak compares a reader with
    (:mod:`exactcomp.testing.reader_checks`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dt = np.dtype(
        {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inp.type, np.float32)
    )
    dims = tuple(d if isinstance(d, int) else None for d in inp.shape)
    with np.errstate(over="ignore"):
        xin = np.asarray(x, dtype=np.float64).astype(dt)
    return _run_session(sess, xin, inp.name, dims), float(np.finfo(dt).eps) / 2


def compare_with_onnxruntime(
    model: bytes | str | Path,
    net: Network,
    x: np.ndarray,
    input_name: str,
    input_shape: Dims,
    input_dtype: str,
    compute_dtype: str | None = None,
) -> Comparison:
    """Run ``model`` in onnxruntime on the rows of ``x`` and compare with ``net`` in float64.

    The IR is evaluated on the inputs rounded to ``input_dtype`` (what onnxruntime sees), so
    only arithmetic rounding is left in the difference; it is allowed ``64 u depth S(x)`` with
    ``u`` the unit roundoff of ``compute_dtype`` (default: the coarser of the input's and the
    weights' dtypes); see the module docstring.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        src = model if isinstance(model, bytes) else str(model)
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputFileError(f"onnxruntime cannot run the model: {exc}") from None
    dt = np.dtype(input_dtype)
    with np.errstate(over="ignore"):
        xin = np.asarray(x, dtype=np.float64).astype(dt)
    got = _run_session(sess, xin, input_name, input_shape)
    if compute_dtype is not None:
        u = np.finfo(np.dtype(compute_dtype)).eps / 2
    else:
        weight_dt = np.dtype(net.dtype) if np.dtype(net.dtype).kind == "f" else np.dtype("f4")
        u = max(np.finfo(dt).eps, np.finfo(weight_dt).eps) / 2
    return compare_outputs(net, xin.astype(np.float64), got, u, "onnxruntime")


def compare_outputs(
    net: Network, x: np.ndarray, got: np.ndarray, u: float, what: str = "the reference"
) -> Comparison:
    """``got`` (a reference runtime's outputs at the rows of ``x``, computed with unit
    roundoff ``u``) against ``net`` in float64, head included: allowed ``64 u depth S(x)``
    plus ``1e-12`` (module docstring), and with a head ``64 u (1 + |y|)`` more for the
    rounding of the head itself. Every head is at most 2-Lipschitz in the max norm
    (log-softmax; softmax and tanh 1, sigmoid 1/4), and ``64`` is a dozen times the ``5 u S``
    measured on the logits, so the logits' allowance covers their error through the head."""
    want = apply_head(net.forward(x), net.meta.get("head"))
    if got.shape != want.shape:
        raise InvalidNetworkError(
            f"{what} returns {got.shape[-1]} outputs per sample but the network read has "
            f"{want.shape[1]}"
        )
    allowed = 64 * u * len(net.layers) * partial_sum_size(net, x)[:, None] + 1e-12
    if net.meta.get("head"):
        allowed = allowed + 64 * u * (1 + np.abs(want))
    return Comparison.of(np.abs(got - want), allowed)


def layers_digest(net: Network) -> str:
    """A fingerprint of ``net``'s layers: tells the network read from a file from a rewrite."""
    h = hashlib.sha256()
    for layer in net.layers:
        parts = (
            (layer.weight.indptr, layer.weight.indices, layer.weight.data)
            if layer.sparse
            else (layer.weight,)
        )
        for part in parts:
            h.update(np.ascontiguousarray(part).tobytes())
        h.update(np.ascontiguousarray(layer.bias).tobytes())
        h.update(b"r" if layer.relu else b"-")
    return h.hexdigest()


def check_boxes(
    model: bytes | str | Path,
    net: Network,
    boxes: Sequence[Box],
    *,
    random: int = 64,
    seed: int = 0,
) -> Comparison:
    """The worst :func:`compare_with_onnxruntime` over the probe points of every box.

    ``net.meta`` must hold ``input_name``, ``input_shape`` and ``input_dtype`` (as
    :func:`~exactcomp.io.onnx_io.load_onnx` records them; ``compute_dtype`` is used if
    present).
    """
    meta: Any = net.meta
    rng = np.random.default_rng(seed)
    for b in boxes:
        b.check_size(net.input_size)
    x = np.vstack([probe_points(b, random, rng) for b in boxes])
    compute = meta.get("compute_dtype")
    return compare_with_onnxruntime(
        model,
        net,
        x,
        str(meta["input_name"]),
        tuple(meta["input_shape"]),
        str(meta.get("input_dtype", "float32")),
        None if compute is None else str(compute),
    )


def check_on_domain(net: Network, boxes: Sequence[Box]) -> None:
    """Re-run the ONNX file ``net`` was read from on the corners, faces and random points of
    the analysis domain, and refuse the network if onnxruntime disagrees.

    Does nothing for a network that was not read from an ONNX file by this version of the
    reader, whose file is gone, or whose layers were rewritten since (a compressed network is
    checked by its proof, not against the original file).

    Raises
    ------
    InvalidNetworkError
        The file and the network differ beyond rounding somewhere on the domain.
    """
    meta = net.meta
    source = meta.get("source")
    if meta.get("format") != "onnx" or not source or "input_dtype" not in meta:
        return
    if meta.get("layers_digest") != layers_digest(net) or not Path(str(source)).is_file():
        return
    worst = check_boxes(Path(str(source)), net, boxes)
    if worst.excess > 0:
        raise InvalidNetworkError(
            f"the network read from {str(source)!r} differs from onnxruntime on the domain by "
            f"up to {worst.max_abs_diff:.3g} (allowed {worst.allowed_at_worst:.3g}; corners and "
            "faces included); the graph uses a construct the reader misinterprets"
        )
