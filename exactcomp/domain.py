"""Input domains: a box ``lo <= x <= hi``, and the readers that build one.

There is no default domain: stability is meaningless without one, and a silently wrong
domain would make every verdict wrong. Readers here understand the CLI string ``LO,HI``,
``.npy`` arrays of shape ``(2, n)``, JSON ``{"lower": [...], "upper": [...]}``, and data
arrays (per-feature min/max). VNN-LIB lives in :mod:`exactcomp.io.vnnlib`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputFileError, InvalidDomainError, InvalidOptionError


@dataclass(frozen=True, eq=False)
class Box:
    """An axis-aligned box ``lower <= x <= upper`` in float64; ``lower == upper`` is allowed."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.array(self.lower, dtype=np.float64, copy=True).reshape(-1)
        hi = np.array(self.upper, dtype=np.float64, copy=True).reshape(-1)
        if lo.shape != hi.shape:
            raise InvalidDomainError(
                f"box lower bound has {lo.size} entries but upper bound has {hi.size}"
            )
        if lo.size == 0:
            raise InvalidDomainError("the box is empty (no coordinates)")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise InvalidDomainError("the box has a non-finite (NaN or inf) bound")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise InvalidDomainError(
                f"the box is inverted in coordinate {i}: lower {lo[i]} > upper {hi[i]}"
            )
        lo.setflags(write=False)
        hi.setflags(write=False)
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2

    def contains(self, x: np.ndarray, atol: float = 0.0) -> np.ndarray:
        """Boolean mask of the rows of ``x`` that lie in the box (within ``atol``)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return np.all((x >= self.lower - atol) & (x <= self.upper + atol), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points uniformly at random in the box."""
        return self.lower + rng.random((n, self.dim)) * (self.upper - self.lower)

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lower, self.upper)

    def check_size(self, n_inputs: int) -> None:
        """Raise unless the box has ``n_inputs`` coordinates."""
        if self.dim != n_inputs:
            raise InvalidDomainError(
                f"the box has {self.dim} coordinates but the network has {n_inputs} inputs"
            )

    @classmethod
    def uniform(cls, lo: float, hi: float, n: int) -> Box:
        """The box ``[lo, hi]^n``."""
        return cls(np.full(n, lo, dtype=np.float64), np.full(n, hi, dtype=np.float64))

    def to_json(self) -> dict[str, list[float]]:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist()}


def parse_box_string(text: str, n_inputs: int) -> Box:
    """Parse the CLI form ``LO,HI`` (same bounds for every input)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise InvalidDomainError(f"--box expects LO,HI (two numbers), got {text!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidDomainError(f"--box expects LO,HI (two numbers), got {text!r}") from None
    return Box.uniform(lo, hi, n_inputs)


def read_npy_numbers(path: str | Path, what: str) -> np.ndarray:
    """The float64 array in the ``.npy`` file ``path`` (a ``what`` file: box, data, labels),
    or a one-line :class:`InputFileError`: not found, not a .npy, or not numbers."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{what} file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputFileError(f"cannot read {what} file {path} as .npy: {exc}") from None
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputFileError(f"{what} file {path} must hold numbers, got {arr.dtype}") from None


def read_box_file(path: str | Path) -> Box:
    """Read a box from ``.npy`` (shape ``(2, n)``) or JSON (``{"lower": [...], "upper": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"box file not found: {path}")
    if path.suffix.lower() == ".npy":
        arr = read_npy_numbers(path, "box")
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise InvalidDomainError(
                f"box file {path} must hold an array of shape (2, n), got {arr.shape}"
            )
        return Box(arr[0], arr[1])
    try:
        data = json.loads(path.read_text())
        return Box(np.asarray(data["lower"], dtype=float), np.asarray(data["upper"], dtype=float))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read box file {path} as JSON: {exc}") from None
    except (KeyError, TypeError, ValueError):
        raise InvalidDomainError(
            f'box file {path} must be JSON {{"lower": [...], "upper": [...]}} of numbers'
        ) from None


def box_from_data(path: str | Path) -> Box:
    """The per-feature min/max box of a data array saved as ``.npy`` (shape ``(samples, n)``)."""
    arr = read_npy_numbers(path, "data")
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise InvalidDomainError(
            f"data file {path} must hold a non-empty array of samples, got shape {arr.shape}"
        )
    arr = arr.reshape(arr.shape[0], -1)
    return Box(arr.min(axis=0), arr.max(axis=0))


def sample_rows(data: np.ndarray, n_inputs: int, labels: np.ndarray | None = None) -> np.ndarray:
    """``data`` (``--data``) as float64 rows of ``n_inputs`` features; a 1-D array is one sample.

    Checked before any work, since a mistake found after it costs the whole run: no samples,
    rows of another width, or ``labels`` (``--labels``) that are not one per row raise
    :class:`InvalidOptionError` naming the shapes."""
    arr = np.asarray(data, dtype=np.float64)
    if arr.size == 0:
        raise InvalidOptionError(f"the data holds no samples (shape {arr.shape})")
    rows = arr.reshape(1, -1) if arr.ndim < 2 else arr.reshape(arr.shape[0], -1)
    if rows.shape[1] != n_inputs:
        raise InvalidOptionError(
            f"data must hold rows of {n_inputs} features, got shape {arr.shape}"
        )
    if labels is not None and np.asarray(labels).reshape(-1).shape[0] != rows.shape[0]:
        raise InvalidOptionError(
            f"the labels must be one per data row: {np.asarray(labels).size} labels for "
            f"{rows.shape[0]} rows"
        )
    return rows
