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

Units: the network read here takes *raw* inputs, in the units of the file's ``min``/``max``
(ACAS Xu: feet, radians, feet per second), and returns *raw* outputs; so a domain (``--box``,
``--vnnlib``) for an ``.nnet`` model is given in raw units. A box in normalised units ``x'``
maps to raw units by ``x = x' * range + mean``.

``load_nnet(path, units="normalised")`` instead returns the file's network as stored: it takes
normalised inputs ``x'`` and returns normalised outputs ``y'`` (no folding, no de-normalisation).
That is the question tools such as NeuroDiff and ReluVal ask, and a box for it is in normalised
units. The limits are translated to these units, ``[(min - mean) / range, (max - mean) /
range]`` (float64), kept in ``meta["input_min"]``/``meta["input_max"]`` and checked in the same
way: the file clips *raw* inputs, so a normalised box that leaves them is refused too.

Normalisation and de-normalisation are affine, so they are folded exactly into the first and
last layers. The clipping is not affine; it is the identity only inside the box ``[min, max]``,
so the folded network is exact only there. Every domain used with an ``.nnet`` network must
therefore lie inside the limits, and one that leaves them is refused (:func:`check_nnet_box`,
called where the API binds a domain to a network) rather than represented: outside the limits
the file's function is constant along the clipped coordinates, so the part of the box inside
the limits carries all of its behaviour, and a box that leaves them is in practice given in the
wrong units (normalised instead of raw), which an error surfaces and a silent clip would hide.

Header lines may carry more entries than the format needs (NeuroDiff's ACAS Xu files list 7
minimums for 5 inputs). The reference readers (Julian's NNet, ReluVal, NeuroDiff) read only
the first ``n`` numbers of each header line, and so does :func:`load_nnet`: the inputs' limits,
means and ranges are the first ``n_in`` entries, and the output's mean and range entry
``n_in`` of their lines. How many entries were ignored is kept in ``Network.meta``.

Writing: :mod:`exactcomp.io.nnet_writer` (exact, read back and compared).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..domain import Box
from ..errors import InputFileError, InvalidDomainError, InvalidNetworkError
from ..network import Layer, Network
from .atomic import read_text


class _Tokens:
    """The numbers of a ``.nnet`` file, line by line, consumed in order."""

    def __init__(self, lines: list[tuple[int, list[float]]], source: str) -> None:
        self.lines, self.line, self.source = lines, 0, source
        self.ignored: dict[str, int] = {}

    def header_line(self, n: int, what: str) -> np.ndarray:
        """The first ``n`` numbers of the next line; more on the line are ignored (and counted),
        as the reference readers do; fewer is an error."""
        if self.line >= len(self.lines):
            raise InputFileError(
                f"{self.source}: the file ends early (reading {what}); it is truncated or not "
                "in the .nnet format"
            )
        lineno, values = self.lines[self.line]
        if len(values) < n:
            raise InputFileError(
                f"{self.source} line {lineno}: {len(values)} numbers for {what}, expected {n}; "
                "not a .nnet file or a malformed header"
            )
        self.line += 1
        if len(values) > n:
            self.ignored[what] = len(values) - n
        return np.asarray(values[:n], dtype=np.float64)

    def body(self) -> _Body:
        """The numbers after the header, as one stream (weights may wrap lines)."""
        rest = [v for _, values in self.lines[self.line :] for v in values]
        return _Body(rest, self.source)


class _Body:
    """The weights and biases of a ``.nnet`` file, consumed in order."""

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


def _read_lines(path: Path) -> list[tuple[int, list[float]]]:
    """The numbers of each non-comment, non-blank line, with its line number."""
    text = read_text(path, ".nnet file")
    lines: list[tuple[int, list[float]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        values: list[float] = []
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
        lines.append((lineno, values))
    return lines


def _size(v: float, what: str, source: str) -> int:
    if v != int(v) or v < 1:
        raise InputFileError(f"{source}: {what} must be a positive integer, got {v}")
    return int(v)


UNITS = ("raw", "normalised")


def load_nnet(path: str | Path, *, box: Box | None = None, units: str = "raw") -> Network:
    """Read a ``.nnet`` network with its normalisation folded into the first and last layers.

    Parameters
    ----------
    path:
        The ``.nnet`` file.
    box:
        The domain it will be used on, if known, in ``units``; it must lie within the file's
        input limits (see the module docstring), else :class:`InvalidDomainError`.
    units:
        ``"raw"`` (default): normalisation folded in, raw inputs to raw outputs.
        ``"normalised"``: the stored network, normalised inputs to normalised outputs; the
        limits in ``meta`` are then in normalised units too.

    Returns
    -------
    Network
        Inputs to outputs in ``units``, ``dtype="float64"`` (the file is decimal text);
        ``meta`` holds ``format="nnet"``, ``input_min``/``input_max`` (the clipping limits),
        ``input_mean``/``input_range``, ``output_mean``/``output_range``, and
        ``header_entries_ignored`` (header line -> extra trailing entries not read), and
        ``units``.

    Raises
    ------
    InputFileError
        Missing, unreadable, truncated or malformed file.
    InvalidNetworkError
        Inconsistent sizes, a zero or non-finite range, a NaN limit, a minimum above its
        maximum, or NaN/inf weights.
    InvalidDomainError
        ``box`` leaves the input limits, or has the wrong size.
    ValueError
        ``units`` is not ``"raw"`` or ``"normalised"``.
    """
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, not {units!r}")
    path = Path(path)
    source = str(path)
    tok = _Tokens(_read_lines(path), source)
    n_layers, n_in, n_out, _ = (
        _size(v, w, source)
        for v, w in zip(
            tok.header_line(4, "the header"), ("L", "n_in", "n_out", "max"), strict=True
        )
    )
    sizes = [
        _size(v, "a layer size", source) for v in tok.header_line(n_layers + 1, "the layer sizes")
    ]
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise InvalidNetworkError(
            f"{source}: layer sizes {sizes} do not start with n_in={n_in} and end with n_out={n_out}"
        )
    tok.header_line(1, "the unused flag")
    lo, hi = (
        tok.header_line(n_in, "the input minimums"),
        tok.header_line(n_in, "the input maximums"),
    )
    tok_lo, tok_hi = lo, hi
    mean, rng = tok.header_line(n_in + 1, "the means"), tok.header_line(n_in + 1, "the ranges")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(rng))):
        raise InvalidNetworkError(f"{source}: a normalisation mean or range is not finite")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):  # +-inf is fine: no clipping that side
        raise InvalidNetworkError(f"{source}: an input limit is NaN")
    if np.any(rng == 0):
        i = int(np.flatnonzero(rng == 0)[0])
        which = f"input {i}" if i < n_in else "the output"
        raise InvalidNetworkError(f"{source}: the normalisation range of {which} is zero")
    if np.any(lo > hi):
        i = int(np.flatnonzero(lo > hi)[0])
        raise InvalidNetworkError(
            f"{source}: input {i} has minimum {lo[i]} above its maximum {hi[i]}"
        )
    body = tok.body()
    layers = []
    for k in range(n_layers):
        w = body.take(sizes[k + 1] * sizes[k], f"the weights of layer {k}").reshape(
            sizes[k + 1], sizes[k]
        )
        b = body.take(sizes[k + 1], f"the biases of layer {k}")
        layers.append([w, b])
    if body.pos != len(body.values):
        raise InputFileError(
            f"{source}: {len(body.values) - body.pos} numbers left over after the last layer; "
            "the header does not match the weights"
        )
    if units == "raw":
        # x' = (x - mean) / range:  W x' + b = (W / range) x + (b - W (mean / range))
        w0, b0 = layers[0]
        layers[0] = [w0 / rng[:n_in], b0 - w0 @ (mean[:n_in] / rng[:n_in])]
        # y = y' * range_out + mean_out
        wl, bl = layers[-1]
        layers[-1] = [wl * rng[n_in], bl * rng[n_in] + mean[n_in]]
    else:  # the limits in normalised units (a negative range swaps them)
        a, b = (lo - mean[:n_in]) / rng[:n_in], (hi - mean[:n_in]) / rng[:n_in]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
    meta = {
        "format": "nnet",
        "source": source,
        "units": units,
        "input_min": lo.tolist(),
        "input_max": hi.tolist(),
        "input_mean": mean[:n_in].tolist(),
        "input_range": rng[:n_in].tolist(),
        "output_mean": float(mean[n_in]),
        "output_range": float(rng[n_in]),
        "header_entries_ignored": dict(tok.ignored),
        # the header as the file states it (raw limits), for writing it back
        "file_header": {
            "min": _tolist(tok_lo),
            "max": _tolist(tok_hi),
            "mean": mean.tolist(),
            "range": rng.tolist(),
        },
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

    Outside the limits the file's network clips its input, which the affine IR does not
    model, so verdicts there would describe a different function. The error names the input,
    the bound, the limit and the units (raw: those of the file's ``min``/``max``).
    """
    box.check_size(net.input_size)
    limits = nnet_input_limits(net)
    below, above = box.lower < limits.lower, box.upper > limits.upper
    bad = np.flatnonzero(below | above)
    if not bad.size:
        return
    i = int(bad[0])
    if below[i]:
        where = f"lower bound {float(box.lower[i])!r} is below the file's minimum {float(limits.lower[i])!r}"
    else:
        where = f"upper bound {float(box.upper[i])!r} is above the file's maximum {float(limits.upper[i])!r}"
    mean, rng = net.meta.get("input_mean"), net.meta.get("input_range")
    units = net.meta.get("units", "raw")
    hint = ""
    if mean is not None and rng is not None:
        hint = f" (for this input, raw = normalised * {float(rng[i])!r} + {float(mean[i])!r})"
    what = (
        "in raw units, those of the file's min/max"
        if units == "raw"
        else "in normalised units (read with units='normalised'; limits (min - mean) / range)"
    )
    raise InvalidDomainError(
        f"input {i} of the box leaves the .nnet input limits: its {where}. This .nnet model's "
        f"box is {what}{hint}; the file clips its inputs to "
        "[min, max], which exactcomp does not model: give a box within the limits (intersect it "
        "with them: beyond a limit the file's output does not change along that input)"
    )


def nnet_domain_check(net: Network, boxes: Iterable[Box]) -> None:
    """Check every box of a domain against ``net``'s ``.nnet`` input limits, if it has any.

    A network read from another format has none, and this does nothing: call it wherever a
    domain is bound to a network.
    """
    if "input_min" not in net.meta or "input_max" not in net.meta:
        return
    for box in boxes:
        check_nnet_box(net, box)


def _tolist(a: np.ndarray) -> list[float]:
    return [float(v) for v in a]
