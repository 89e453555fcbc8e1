"""The soak's checks of the readers: a network read from a user's file against the file's own
runtime, and what ``compress`` writes from it (the ``readers`` family,
:mod:`benchmarks.soak_readers`, which builds the files with torch and onnx; this module needs
neither).

A reader is exact or refuses by name (``CONVENTIONS.md``), so for every file:

- ``read``: the network read, head included (``net.meta["head"]``), computes what the
  reference runtime computes (torch in float64 on the file's weights, or onnxruntime on the
  file) at the probe points of the box (its corners, faces, centre and random points:
  :func:`~exactcomp.io.onnx_check.probe_points`) within the reference's own rounding,
  ``64 u depth S(x)`` (:func:`~exactcomp.io.onnx_check.compare_outputs`; ``u`` the unit
  roundoff the reference computes with);
- ``file-written``: a file ``compress`` wrote, read back by exactcomp and (``.onnx``) run by
  onnxruntime, computes the same at the same points, allowed ``64 u depth S(x)`` with ``u``
  float32's, or the checkpoint's when coarser: ``compress`` (``--dtype input``, the default)
  rounds folded weights to the checkpoint's dtype, so a float16 checkpoint's file differs
  from it by float16 rounding (``u = 2^-11``; measured up to ``2e-4`` on outputs of ``0.3``
  by the soak, ``stored_dtype_max_deviation`` in the report);
- a refusal is an :class:`~exactcomp.errors.ExactCompError` of one line; any other exception
  is an ``error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..domain import Box
from ..errors import ExactCompError
from ..network import Network
from .soak_results import Finding

#: Unit roundoff of float32, the coarsest arithmetic a written file is checked against.
U32 = float(np.finfo(np.float32).eps) / 2


def probe(box: Box, seed: int, random: int = 32) -> np.ndarray:
    """The probe points of ``box`` (corners, faces, centre, ``random`` interior points)."""
    from ..io.onnx_check import probe_points

    return probe_points(box, random, np.random.default_rng(seed))


def read(model: Any, trust: bool) -> tuple[Network | None, str, list[Finding]]:
    """``exactcomp.load(model)``: the network, or None with the refusal's message; a refusal
    over more than one line or any other exception is an ``error`` finding."""
    from ..io import load

    try:
        return load(model, trust_pickle=trust), "", []
    except ExactCompError as exc:
        msg = str(exc)
        bad = [Finding("error", f"refusal of {len(msg.splitlines())} lines: {msg!r}")]
        return None, msg, bad if len(msg.strip().splitlines()) != 1 else []
    except Exception as exc:  # noqa: BLE001 - a reader's crash is what the soak looks for
        return None, "", [Finding("error", f"reader crashed: {type(exc).__name__}: {exc}")]


def compare(
    net: Network, x: np.ndarray, want: np.ndarray, u: float, kind: str, what: str
) -> list[Finding]:
    """A ``kind`` finding where ``net`` (head included) and the reference outputs ``want`` at
    the rows of ``x`` differ by more than the reference's rounding (unit roundoff ``u``)."""
    from ..errors import InvalidNetworkError
    from ..io.onnx_check import compare_outputs

    try:
        c = compare_outputs(net, x, np.asarray(want, dtype=np.float64).reshape(len(x), -1), u)
    except InvalidNetworkError as exc:
        return [Finding(kind, f"{what}: {exc}")]
    if c.excess <= 0:
        return []
    detail = f"{what}: |read - reference| = {c.max_abs_diff!r} > allowed {c.allowed_at_worst!r}"
    return [Finding(kind, detail)]


def check_written(
    path: Path, x: np.ndarray, want: np.ndarray, source_dtype: str = "float32"
) -> list[Finding]:
    """``file-written``: the file ``compress`` wrote from a checkpoint in ``source_dtype``,
    read back by exactcomp and, for ``.onnx``, run by onnxruntime, against the original's
    reference outputs ``want`` (module docstring)."""
    net, why, found = read(path, False)
    if net is None:
        return found or [Finding("file-written", f"{path.name} written but not read back: {why}")]
    u = max(U32, float(np.finfo(np.dtype(source_dtype)).eps) / 2)
    found = compare(net, x, want, u, "file-written", f"{path.name} read back")
    if path.suffix == ".onnx":
        got, u = onnxruntime_outputs(path, x)
        found += compare(net, x, got, max(u, U32), "file-written", f"{path.name} in onnxruntime")
    return found


def onnxruntime_outputs(model: bytes | Path | str, x: np.ndarray) -> tuple[np.ndarray, float]:
    """onnxruntime's outputs of the file at the rows of ``x`` and the unit roundoff of its
    input dtype (:func:`~exactcomp.io.onnx_check.run_file`)."""
    from ..io.onnx_check import run_file

    return run_file(model, x)
