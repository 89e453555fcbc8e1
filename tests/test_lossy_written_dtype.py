"""What ``compress --tol`` writes is what it proved: a result whose float64 numbers the model's
dtype does not hold is written in float64 where their rounding is not proven within ``tol``
(:func:`exactcomp.rewrite.storage.store`). Ground truth: the exact maximum difference of each
written file from the original, by region enumeration settled in rationals."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import exactcomp
from exactcomp import api, approx
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.testing import max_output_difference
from exactcomp.testing.rational import exact_difference

BOX = Box(np.array([-1.0]), np.array([1.0]))
FAST = {"time_limit": 10.0, "tighten_seconds": 0.0, "split_seconds": 0.0}


def _copies() -> Network:
    r"""A float32 network with an exact copy ``v = 2 u``, which the exact pass merges into
    ``u``'s column: ``0.3 u + 0.7 v = (0.3 + 2 * 0.7) u``, the sum of two float32 numbers
    that no float32 holds (``w`` below are float32 roundings; ``u`` is unstable on ``[-1, 1]``)::

        x --+--> u = relu(0.1 x + 0.05) --- 0.3 ---+
            +--> v = relu(0.2 x + 0.1)  --- 0.7 ---+--> y
    """
    w1 = np.array([[0.1], [0.2]], np.float32)
    b1 = np.array([0.05, 0.1], np.float32)
    w2 = np.array([[0.3, 0.7]], np.float32)
    return Network.from_arrays([w1, w2], [b1, np.zeros(1, np.float32)], dtype="float32")


def _exact(cut: bool):
    """``exactcomp.compress`` as ``compress_lossy``'s ``exact``; ``cut``: its first call's
    deadline already past (nothing merged), so the pass after the search merges the copy."""
    calls = []

    def exact(f, boxes, *, deadline, analysis_end):
        calls.append(f.num_neurons)
        if cut and len(calls) == 1:
            deadline = analysis_end = time.perf_counter() - 1.0
        return exactcomp.compress(f, boxes, deadline=deadline, analysis_end=analysis_end)

    return exact


def test_the_copy_merges_to_a_weight_no_float32_holds() -> None:
    f = _copies()
    merged = exactcomp.compress(f, BOX).network
    w = np.asarray(merged.layers[-1].weight)
    assert merged.num_neurons == 1 and w[0, 0] != np.float32(w[0, 0])


@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_each_file_within_its_claim(tmp_path: Path, cut: bool, suffix: str) -> None:
    """At ``tol = 1e-12`` no edit and no float32 rounding is proven (rounding the merged
    weight moves ``y`` by ~1e-8): the file holds the merged network in float64, or the input
    itself (claim 0). Fails on ``main`` (``97e36de``): the merged network, labelled float32,
    was written rounded under the claim of its float64 numbers (claim 1.4e-321, exact
    ~1e-8), through the first exact pass (``cut=False``) and through the second one after a
    search that proved no edit (``cut=True``)."""
    f = _copies()
    src = tmp_path / "f.onnx"
    api.save(f, src)
    res = approx.compress_lossy(str(src), BOX, 1e-12, exact=_exact(cut), **FAST)
    out = tmp_path / f"g{suffix}"
    res.save(out)
    g = api.load(str(out))
    worst = max_output_difference(f, g, BOX)
    assert exact_difference(f, g, worst.x) <= res.report["proven_max_abs_diff"]
    assert res.report["proven_max_abs_diff"] <= 1e-12
