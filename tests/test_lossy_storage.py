"""``compress --tol`` writes a float32 model in float32 (issue 15): the final network is
rounded to the model's dtype and proven again (:mod:`exactcomp.rewrite.storage`).

The exact pass folds stably active neurons: products of float32 weights, float64 numbers in
general, and the search's network inherits them. The oracle
:func:`exactcomp.testing.max_output_difference` gives the exact ``max |f - g|`` of the
*written* file (read back) against the original.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite.lossy import LossyOutcome
from exactcomp.rewrite.lowrank import expand, search_lowrank
from exactcomp.rewrite.storage import holds, store
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock
from exactcomp.verify.charge import Charger

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    """The fake clock, never advanced: every phase gets its whole share of the time limits
    below on any machine load (once, at load ~7 and the lowest priority, 20 s of wall clock
    were not enough). Solver limits are durations, unaffected."""
    FakeClock().install(monkeypatch)


def folding_float32(seed: int = 0, outputs: int = 1) -> Network:
    """``2-2r-5r-1`` (``outputs``: 2, then output 0 leads by a bias of 20) float32 on ``[-1, 1]^2`` whose first layer is stably active::

        x --> relu(a1 x1 + 3), relu(a2 x2 + 3)  (>= 2: folded) --> 5 ReLUs --> y

    The exact pass folds the first layer into the second: the products ``W1 W0`` of float32
    numbers are not float32 numbers, so the search's network is float64."""
    rng = np.random.default_rng(seed)
    w0 = np.diag(rng.uniform(0.3, 0.9, size=2))
    b0 = np.array([3.0, 3.0])
    w1 = rng.normal(size=(5, 2))
    b1 = rng.normal(size=5) - w1 @ b0  # the second layer's neurons unstable on the box
    w2 = rng.normal(size=(outputs, 5))
    b2 = np.array([20.0, 0.0][:outputs])
    ws = [w.astype(np.float32).astype(np.float64) for w in (w0, w1, w2)]
    bs = [b.astype(np.float32).astype(np.float64) for b in (b0, b1, b2)]
    return Network.from_arrays(ws, bs, dtype="float32")


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("seed", range(2))
def test_a_float32_model_whose_exact_pass_folds_is_written_in_float32(tmp_path, suffix, seed):
    f = folding_float32(seed)
    tol = 0.05
    res = api.compress_lossy(f, BOX, tol, time_limit=20.0)
    assert len(res.reference.layers) == 2  # folded
    assert not holds(res.reference, "float32")  # the search ran on float64 numbers
    assert res.report["stored_dtype"] == "float32"
    assert "stored_dtype_reason" not in res.report
    assert res.network.dtype == "float32" and holds(res.network, "float32")
    path = tmp_path / f"g{suffix}"
    res.save(path)
    back = api.load(path)
    assert back.dtype == "float32"
    for a, b in zip(back.layers, res.network.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert res.proven <= tol
    exact = max_output_difference(f, back, BOX).value  # of the written file
    assert exact <= res.proven + 1e-9


def test_when_the_rounded_network_is_not_proven_within_tol_float64_stays(tmp_path):
    """At tol 1e-9 the result is the exact pass's folded network (its rounding proven within
    a tenth of tol: :mod:`exactcomp.exact_reference`); rounded to float32 it moves by ~1e-7,
    more than tol: the float64 network and its claim are kept."""
    f = folding_float32()
    res = api.compress_lossy(f, BOX, 1e-9, time_limit=20.0)
    assert res.report["stored_dtype"] == "float64"
    assert "> tol 1e-09" in res.report["stored_dtype_reason"]
    assert res.network.dtype == "float64" and res.proven <= 1e-9
    assert len(res.network.layers) == 2  # folded
    path = tmp_path / "g.onnx"
    res.save(path)
    back = api.load(path)
    assert back.dtype == "float64"
    assert max_output_difference(f, back, BOX).value <= 1e-12


def test_top1_claim_is_of_the_rounded_network():
    f = folding_float32(1, outputs=2)
    res = api.compress_lossy(f, BOX, None, tol_mode="top1", time_limit=20.0)
    doc = res.report
    assert doc["stored_dtype"] == "float32" and holds(res.network, "float32")
    assert doc["top1_proven"] == bool(res.proven < doc["margin_proven_min"] / 2)
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


def low_rank_float64() -> Network:
    """``2-8r-8r-1`` of float64 numbers whose middle weight is rank 1 plus ``1e-4`` noise:
    the low-rank strategy factors it at rank 1 (float64 factors)."""
    rng = np.random.default_rng(3)
    w0, b0 = rng.normal(size=(8, 2)), rng.normal(size=8) * 0.3
    w1 = np.outer(rng.normal(size=8), rng.normal(size=8)) + 1e-4 * rng.normal(size=(8, 8))
    w2 = rng.normal(size=(1, 8))
    return Network.from_arrays([w0, w1, w2], [b0, rng.normal(size=8) * 0.3, np.zeros(1)])


def test_low_rank_factors_are_rounded_and_the_pad_kept():
    f = low_rank_float64().replace_layers(low_rank_float64().layers)
    f = Network(f.layers, dtype="float64")
    charger = Charger(f, [BOX], tighten_seconds=0.0)
    tol = 0.05
    out = search_lowrank(f, [BOX], tol, charger, time_limit=5.0)
    assert out is not None and out.factors
    assert not holds(expand(out.network, out.factors), "float32")
    got, facts = store(out, "float32", tol, charger.proven, [BOX])
    assert facts == {"stored_dtype": "float32"}
    written = expand(got.network, got.factors)
    assert holds(written, "float32")
    assert got.proven <= tol
    assert max_output_difference(f, written, BOX).value <= got.proven + 1e-9
    kept, facts = store(out, "float32", got.proven / 2, charger.proven, [BOX])
    assert kept is out and facts["stored_dtype"] == "float64"


def test_a_rounded_network_whose_own_proof_fails_keeps_the_claim_plus_the_rounding():
    """The rounded network's own proof refused (``inf``, as a looser pass can be): its claim is
    the search's plus the proven bound on what rounding moves (the triangle inequality), so
    a float32 model's result is still written in float32 (dubinsrejoin: float64 before, twice
    the bytes). The oracle: the exact ``max |f - g_r|`` is within that claim; at a ``tol``
    below it the float64 network and its claim stay."""
    f = folding_float32()
    w0 = f.layers[1].weight @ f.layers[0].weight  # the fold: products of float32 numbers
    b0 = f.layers[1].weight @ f.layers[0].bias + f.layers[1].bias
    g = Network.from_arrays([w0, f.layers[2].weight], [b0, f.layers[2].bias], dtype="float64")
    assert not holds(g, "float32")
    exact = max_output_difference(f, g, BOX).value  # ~1e-15: g is f in float64
    out = LossyOutcome(g, exact + 1e-3, [], 0)  # a claim of g that holds
    res, facts = store(out, "float32", 0.5, lambda net: np.inf, [BOX])
    assert facts == {"stored_dtype": "float32"} and holds(res.network, "float32")
    assert out.proven < res.proven < out.proven + 1e-5
    assert max_output_difference(f, res.network, BOX).value <= res.proven
    kept, facts = store(out, "float32", out.proven, lambda net: np.inf, [BOX])
    assert kept is out and facts["stored_dtype"] == "float64"
