"""A network written as a ``.nnet`` file (the format: :mod:`exactcomp.io.nnet`).

Writing is exact: every number is written as the shortest decimal that reads back to the same
float64 (``repr``), and no arithmetic is done on the weights. A network in raw
units (read from a ``.nnet`` file with ``units="raw"``, or from any other format) is written with
the identity normalisation (means 0, ranges 1), under which the reader's folding multiplies by 1
and adds 0: the file computes ``net`` on raw inputs clipped to its limits. A network read with
``units="normalised"`` is written as stored, under its file's own header. The limits are those
of the file it was read from (raw units); a network from another format gets the hull of the
domain it was compressed on, or no limits (``-inf``/``inf``). The format needs a ReLU on every
layer but the last: a hidden layer without one is refused by name, a ReLU on the last layer is
followed by an identity layer, and a hidden layer of width 0 (the format has none) is written as
one neuron with zero weights and bias, whose output is ``relu(0) = 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..domain import Box
from ..errors import OutputPathError
from ..network import Network
from .nnet import load_nnet


def nnet_text(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    lower: Sequence[float],
    upper: Sequence[float],
    mean: Sequence[float],
    rng: Sequence[float],
    comment: str = "written by exactcomp",
) -> str:
    """The ``.nnet`` text of ``layers`` (``(W, b)`` pairs, a ReLU after every one but the last)
    under the given header; every number as ``repr`` of its float64 value (exact)."""

    def line(values) -> str:
        return ",".join(repr(float(v)) for v in np.ravel(values)) + ","

    sizes = [int(np.shape(layers[0][0])[1])] + [int(np.shape(w)[0]) for w, _ in layers]
    out = [f"// {comment}", f"{len(layers)},{sizes[0]},{sizes[-1]},{max(sizes)},"]
    out += [",".join(map(str, sizes)) + ",", "0,"]
    out += [line(lower), line(upper), line(mean), line(rng)]
    for w, b in layers:
        out += [line(row) for row in np.asarray(w, np.float64)]
        out += [line([v]) for v in np.asarray(b, np.float64)]
    return "\n".join(out) + "\n"


def save_nnet(net: Network, path: str | Path, boxes: Iterable[Box] = ()) -> None:
    """Write ``net`` to ``path`` (the caller makes it atomic) as a ``.nnet`` file computing
    the same function (module docstring), and check that it reads back to the same weights.

    Raises :class:`OutputPathError` for a network the format cannot hold: a hidden layer
    without a ReLU, a layer stored sparse (too large to write densely), or a head (a final
    Softmax/LogSoftmax, which the format has no way to state: written, the file would compute
    the logits instead)."""
    if net.meta.get("head"):
        raise OutputPathError(
            f"the network ends in a {net.meta['head']} head, which .nnet cannot hold (the file "
            "would compute the logits instead): write .onnx or .pt"
        )
    layers = []
    for k, la in enumerate(net.layers):
        if la.sparse:
            raise OutputPathError(
                f"layer {k} is too large to write densely; .nnet holds dense layers only: "
                "write .onnx"
            )
        if not la.relu and k < len(net.layers) - 1:
            raise OutputPathError(
                f"layer {k} has no ReLU; .nnet needs one after every layer but the last: "
                "write .onnx or .pt"
            )
        w, b = np.asarray(la.weight, np.float64), np.asarray(la.bias, np.float64)
        if w.shape[0] == 0:
            if k == len(net.layers) - 1:
                raise OutputPathError("the network has no outputs; .nnet cannot hold it")
            w, b = np.zeros((1, w.shape[1])), np.zeros(1)  # relu(0 h + 0) = 0, as width 0
        if layers and layers[-1][0].shape[0] != w.shape[1]:  # after a width-0 layer: h = 0
            w = np.zeros((w.shape[0], 1))
        layers.append((w, b))
    if net.layers[-1].relu:  # the format's last layer has no ReLU: add the identity
        m = layers[-1][0].shape[0]
        layers.append((np.eye(m), np.zeros(m)))
    n = net.input_size
    header = net.meta.get("file_header")
    normalised = net.meta.get("units") == "normalised"
    if net.meta.get("format") == "nnet" and header is not None:
        lo, hi = header["min"], header["max"]
        mean = header["mean"] if normalised else [0.0] * (n + 1)
        rng = header["range"] if normalised else [1.0] * (n + 1)
    else:
        boxes = list(boxes)
        lo = np.min([b.lower for b in boxes], axis=0) if boxes else np.full(n, -np.inf)
        hi = np.max([b.upper for b in boxes], axis=0) if boxes else np.full(n, np.inf)
        mean, rng = [0.0] * (n + 1), [1.0] * (n + 1)
    path = Path(path)
    path.write_text(nnet_text(layers, lo, hi, mean, rng), encoding="utf-8")
    back = load_nnet(path, units="normalised" if normalised else "raw")
    for la, (w, b) in zip(back.layers, layers, strict=True):
        if not (np.array_equal(la.weight, w) and np.array_equal(la.bias, b)):
            raise RuntimeError(f"{path}: the .nnet written does not read back to the network")
