"""The ``.nnet`` text format of Reluplex / ACAS Xu, read into the network IR.

The format (Kyle Julian, Stanford, 2016) is comma-separated text after ``//`` comment lines::

    L, n_in, n_out, max_width,          number of weight layers, sizes
    s_0, s_1, ..., s_L,                 layer sizes (s_0 = n_in, s_L = n_out)
    0,                                  unused flag
    min_0, ..., min_{n_in-1},           input lower limits
    max_0, ..., max_{n_in-1},           input upper limits
    mean_0, ..., mean_{n_in},           input means, then the output mean
    range_0, ..., range_{n_in},         input ranges, then the output range
    then per layer: s_k rows of s_{k-1} weights, and s_k biases (one per line)

A consumer evaluates ``x' = (clip(x, min, max) - mean) / range``, the ReLU network (no ReLU
after the last layer), then ``y = y' * range_out + mean_out``.

Normalisation and de-normalisation are affine, so they are folded exactly into the first and
last layers: the resulting :class:`~exactcomp.network.Network` takes *raw* inputs and returns
*raw* outputs. The clipping is not affine and cannot be represented in an affine+ReLU chain;
it is the identity only inside the box ``[min, max]``. The IR is therefore exact only on
inputs within those limits, so any domain used with an ``.nnet`` network must lie inside
them: :func:`load_nnet` checks a given box, and :func:`nnet_input_limits` /
:func:`check_nnet_box` let callers check one later. The limits are also in ``Network.meta``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..domain import Box
from ..errors import InputFileError, InvalidDomainError, InvalidNetworkError
from ..network import Layer, Network


class _Tokens:
    """The numbers of a ``.nnet`` file, consumed in order."""

    def __init__(self, values: list[float], source: str) -> None:
        self.values, self.pos, self.source = values, 0, source

    def take(self, n: int, what: str) -> np.ndarray:
        if n < 0 or self.pos + n > len(self.values):
            raise InputFileError(
                f"{self.source}: the file ends early (reading {what}); it is truncated or not "
                "in the .nnet format"
            )
        out = np.asarray(self.values[self.pos : self.pos + n], dtype=np.float64)
        self.pos += n
        return out


def _read_numbers(path: Path) -> list[float]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputFileError(f".nnet file {str(path)!r} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read .nnet file {str(path)!r}: {exc}") from None
    values: list[float] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        for field in line.split(","):
            field = field.strip()
            if not field:
                continue
            try:
                values.append(float(field))
            except ValueError:
                raise InputFileError(
                    f"{str(path)!r} line {lineno}: {field!r} is not a number; not a .nnet file"
                ) from None
    return values


def _size(v: float, what: str, source: str) -> int:
    if v != int(v) or v < 1:
        raise InputFileError(f"{source}: {what} must be a positive integer, got {v}")
    return int(v)


def load_nnet(path: str | Path, *, box: Box | None = None) -> Network:
    """Read a ``.nnet`` network with its normalisation folded into the first and last layers.

    Parameters
    ----------
    path:
        The ``.nnet`` file.
    box:
        The domain it will be used on, if known; it must lie within the file's input limits
        (see the module docstring), else :class:`InvalidDomainError`.

    Returns
    -------
    Network
        Raw inputs to raw outputs, ``dtype="float64"`` (the file is decimal text);
        ``meta`` holds ``format="nnet"``, ``input_min``/``input_max`` (the clipping limits),
        ``input_mean``/``input_range`` and ``output_mean``/``output_range``.

    Raises
    ------
    InputFileError
        Missing, unreadable, truncated or malformed file.
    InvalidNetworkError
        Inconsistent sizes, a zero range, or NaN/inf weights.
    InvalidDomainError
        ``box`` leaves the input limits, or has the wrong size.
    """
    path = Path(path)
    source = str(path)
    tok = _Tokens(_read_numbers(path), source)
    n_layers, n_in, n_out, _ = (
        _size(v, w, source)
        for v, w in zip(tok.take(4, "the header"), ("L", "n_in", "n_out", "max"), strict=True)
    )
    sizes = [_size(v, "a layer size", source) for v in tok.take(n_layers + 1, "the layer sizes")]
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise InvalidNetworkError(
            f"{source}: layer sizes {sizes} do not start with n_in={n_in} and end with n_out={n_out}"
        )
    tok.take(1, "the unused flag")
    lo, hi = tok.take(n_in, "the input minimums"), tok.take(n_in, "the input maximums")
    mean, rng = tok.take(n_in + 1, "the means"), tok.take(n_in + 1, "the ranges")
    if np.any(rng == 0):
        raise InvalidNetworkError(f"{source}: a normalisation range is zero")
    layers = []
    for k in range(n_layers):
        w = tok.take(sizes[k + 1] * sizes[k], f"the weights of layer {k}").reshape(
            sizes[k + 1], sizes[k]
        )
        b = tok.take(sizes[k + 1], f"the biases of layer {k}")
        layers.append([w, b])
    if tok.pos != len(tok.values):
        raise InputFileError(
            f"{source}: {len(tok.values) - tok.pos} numbers left over after the last layer; "
            "the header does not match the weights"
        )
    # x' = (x - mean) / range:  W x' + b = (W / range) x + (b - W (mean / range))
    w0, b0 = layers[0]
    layers[0] = [w0 / rng[:n_in], b0 - w0 @ (mean[:n_in] / rng[:n_in])]
    # y = y' * range_out + mean_out
    wl, bl = layers[-1]
    layers[-1] = [wl * rng[n_in], bl * rng[n_in] + mean[n_in]]
    meta = {
        "format": "nnet",
        "source": source,
        "input_min": lo.tolist(),
        "input_max": hi.tolist(),
        "input_mean": mean[:n_in].tolist(),
        "input_range": rng[:n_in].tolist(),
        "output_mean": float(mean[n_in]),
        "output_range": float(rng[n_in]),
    }
    net = Network(
        tuple(Layer(w, b, relu=k < n_layers - 1) for k, (w, b) in enumerate(layers)),
        dtype="float64",
        meta=meta,
    )
    if box is not None:
        check_nnet_box(net, box)
    return net


def nnet_input_limits(source: str | Path | Network) -> Box:
    """The input limits ``[min, max]`` of an ``.nnet`` file (or of a network read from one).

    Inside them the file's clipping is the identity, so the folded network is exact there.
    """
    net = source if isinstance(source, Network) else load_nnet(source)
    if "input_min" not in net.meta or "input_max" not in net.meta:
        raise InvalidDomainError(
            "the network was not read from a .nnet file: it has no input limits"
        )
    return Box(np.asarray(net.meta["input_min"]), np.asarray(net.meta["input_max"]))


def check_nnet_box(net: Network, box: Box) -> None:
    """Raise unless ``box`` lies within the ``.nnet`` input limits of ``net``.

    Outside the limits the original network clips its input, which the affine IR does not
    model, so verdicts there would describe a different function.
    """
    box.check_size(net.input_size)
    limits = nnet_input_limits(net)
    bad = np.flatnonzero((box.lower < limits.lower) | (box.upper > limits.upper))
    if bad.size:
        i = int(bad[0])
        raise InvalidDomainError(
            f"the box leaves the .nnet input limits in coordinate {i}: "
            f"[{box.lower[i]}, {box.upper[i]}] is not within [{limits.lower[i]}, "
            f"{limits.upper[i]}]; the network clips its inputs there, which cannot be "
            "represented exactly; shrink the box to the limits"
        )
