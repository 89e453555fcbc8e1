"""``quantize`` starts from the exact compression (``exactcomp.quantize``, the CLI).

As ``compress --tol``, it first compresses exactly (:func:`exactcomp.api.compress`, through
:mod:`exactcomp.exact_reference`), then quantises that network and proves the claim against
it plus the proven gap of its folds. Ground truth: the exact ``max |f - g|`` against the
*original* (:func:`exactcomp.testing.max_output_difference`, or rational arithmetic where
the network is linear on the box), and the DAG's choice by the bytes of both files.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import exactcomp
from exactcomp.domain import Box
from exactcomp.io import load
from exactcomp.network import Network
from exactcomp.quantization import quantize as quantize_as_is
from exactcomp.testing import max_output_difference

sys.path.insert(0, str(Path(__file__).parent))
from test_exact_reference import ROUNDING_BOX, _exact, _rounding_net  # noqa: E402
from test_quantize_source import BRANCH_INITS, BRANCHES, _save  # noqa: E402

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
FAST = {"time_limit": 30.0, "tighten_seconds": 0.0, "split_seconds": 0.0}


def planted() -> Network:
    """``2-6r-3r-2`` on ``[-1, 1]^2`` with three planted stably inactive neurons::

        x --> n0..n2 = relu(random rows, |bias| < 0.5)   unstable
          --> n3..n5 = relu(x1 + x2 - 3 - k)               <= -1: inactive
          --> m0 = relu((n0 - n1 + n2 / 2) / 6 + ...), m1 = relu((n1 + n2 - n0) / 6 + ...)
              unstable (their n-parts change sign), m2 = relu(. - 40) <= -1: inactive
          --> y (2 outputs)

    The exact pass leaves ``2-3r-2r-2``: 5 neurons of 9."""
    rng = np.random.default_rng(26)
    w0 = np.vstack([rng.uniform(-1, 1, (3, 2)), np.ones((3, 2))])
    b0 = np.concatenate([rng.uniform(-0.5, 0.5, 3), [-3.0, -4.0, -5.0]])
    w1 = np.array([[1.0, -1, 0.5, 1, 1, 1], [-1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) / 6
    b1 = np.array([0.0, 0.0, -40.0])
    w2 = rng.uniform(-1, 1, (2, 3))
    return Network.from_arrays([w0, w1, w2], [b0, b1, np.zeros(2)], dtype="float64")


def test_planted_inactive_neurons_are_removed_before_quantising() -> None:
    """The exact pass removes the four inactive neurons: quantised, the result keeps fewer
    neurons than quantising ``f`` as it is, and its claim holds against ``f``, exactly."""
    f = planted()
    for opts in ({"bits": 8}, {"bits": 4}, {"tol": 0.05}):
        res = exactcomp.quantize(f, BOX, **opts, **FAST)
        plain = quantize_as_is(f, BOX, **opts, **FAST)
        assert res.report["exact_pass"]["neurons_removed"] == 4
        # (at few bits a quantised row may leave a neuron unread: dropped too)
        assert res.network.num_neurons <= 5 < plain.network.num_neurons
        assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-12
        if "tol" in opts:
            assert res.proven <= opts["tol"]


def test_a_folding_network_keeps_its_claim_with_the_gap() -> None:
    """The exact pass merges two layers whose rounding moves the output by 7.45e-3 at
    x = 2e6 (tests/test_exact_reference.py). At tol 1 that gap is within a tenth of tol: it
    is claimed; at tol 1e-3 it is not (the deleting passes alone, gap 0); nor with ``--bits``
    alone (a gap within ``UNTOLD_GAP``, 1e-6, only). Both networks are linear on the box, so the exact largest
    difference is at one of its ends, computed in rational arithmetic. (No claim is within
    ``tol``: ``quantize`` writes float32, and ``1e8 / 3`` in float32 alone moves ``f`` by
    2e6 on the box; the claim says so.)"""
    f = _rounding_net()
    for opts in ({"tol": 1.0}, {"tol": 1e-3}, {"bits": 8}, {"bits": 8, "tol": 1.0}):
        res = exactcomp.quantize(f, ROUNDING_BOX, **opts, **FAST)
        gap = res.report["exact_pass"]["gap"]
        assert gap == res.reference_gap  # reported, as compress --tol's
        if opts.get("tol") == 1.0:
            assert 7.4e-3 <= gap <= 0.1
        else:
            assert gap == 0.0
        worst = max(abs(_exact(f, x) - _exact(res.network, x)) for x in (1e6, 2e6))
        assert gap <= res.proven and worst <= Fraction(res.proven)


def _dag(tmp_path: Path, inactive: int) -> str:
    """The branch graph of tests/test_quantize_source.py (4 inputs, 80 ReLUs) with the bias
    of ``inactive`` of the 32 rows of its third ``Gemm`` at -1e3 (its inputs are < 30 on
    ``[-1, 1]^4``: stably inactive)."""
    src = _save(tmp_path / f"f{inactive}.onnx", BRANCHES, BRANCH_INITS, [1, 2, 2], [1, 2], 12)
    model = onnx.load(src)
    for k, t in enumerate(model.graph.initializer):
        if t.name == "cb":
            cb = numpy_helper.to_array(t).copy()
            cb[:inactive] = -1e3
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(cb, "cb"))
    onnx.save(model, src)
    return src


def test_a_dag_writes_the_smaller_of_its_own_graph_and_the_exact_chain(tmp_path) -> None:
    """Both are built: with no stable neuron the own graph is smaller (its 1,744 weights in
    8 bits, the chain carries the branches as dense rows); with 30 of the 32 neurons of a
    layer inactive the exact compression's chain is. The file written is the smaller of the
    two (or the float network they started from, smaller still: ``written_choice``), its
    claim holds on dense samples (80 ReLUs: too many regions to enumerate), and
    with ``tol`` it is proven within it."""
    for inactive, written in ((0, "own graph"), (30, "exact compression's chain")):
        src = _dag(tmp_path, inactive)
        f = load(src)
        box = Box.uniform(-1.0, 1.0, f.input_size)
        x = np.random.default_rng(3).uniform(-1.0, 1.0, size=(20000, 4))
        for opts in ({"bits": 8}, {"tol": 0.5}):
            res = exactcomp.quantize(src, box, **opts, **FAST)
            choice = res.report["graph_choice"]
            assert choice["written"] == written, choice
            out = tmp_path / f"g{inactive}.onnx"
            res.save(out)
            sizes = [choice["own_graph_bytes"], choice["exact_chain_bytes"]]
            picked = res.report["written_choice"]  # or the float network started from
            if picked["written"] == "started from":
                sizes.append(picked["started_from_bytes"])
            assert out.stat().st_size == min(sizes)
            assert (res.source is not None) == (written == "own graph")
            claim = res.report["proven_max_abs_diff"]  # of the file written (exact)
            # a float64 forward of either network rounds: 1e-12 for that
            assert np.abs(f.forward(x) - load(out).forward(x)).max() <= claim + 1e-12
            assert claim <= opts.get("tol", np.inf)
