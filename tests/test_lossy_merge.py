"""Near-parallel neuron merging as a lossy edit (issue 15 item 1, :mod:`exactcomp.rewrite.merging`).

The oracle :func:`exactcomp.testing.max_output_difference` computes the exact ``max |f - g|``;
the proven bound of the whole (and, into a linear output layer, the local charge) is never
below it.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.approx import compress_lossy
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite import edits, lossy, merging
from exactcomp.rewrite.structural import drop_unused
from exactcomp.testing import max_output_difference
from exactcomp.verify.charge import Charger

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _net(seed: int, widths=(2, 6, 6, 2), twin: float = 0.0) -> Network:
    """Random ``2-6r-6r-2``; ``twin`` > 0: neuron 5 of both hidden layers is 1.5 times neuron
    0 plus noise of that size (a near-parallel pair)."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    bs = [rng.normal(size=b) * 0.3 for b in widths[1:]]
    if twin > 0:
        for w, b in zip(ws[:-1], bs[:-1], strict=True):
            w[5] = 1.5 * w[0] + twin * rng.normal(size=w.shape[1])
            b[5] = 1.5 * b[0] + twin * rng.normal()
    return Network.from_arrays(ws, bs)


def _parallel(scale: float) -> Network:
    r"""``2-3r-2`` whose neuron 2 is ``scale`` times neuron 0::

    x0 ─┬─ n0 = relu(x0 - x1 + 0.1)              ─┐
        ├─ n1 = relu(x0 + x1 - 0.2)              ─┼─ y0, y1
    x1 ─┴─ n2 = relu(scale (x0 - x1 + 0.1))      ─┘
    """
    w0 = np.array([[1.0, -1.0], [1.0, 1.0], [scale, -scale]])
    b0 = np.array([0.1, -0.2, 0.1 * scale])
    w1 = np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]])
    return Network.from_arrays([w0, w1], [b0, np.array([0.1, -0.4])])


def _merges(f: Network, box: Box = BOX):
    charger = Charger(f, [box])
    ranges = edits.relu_ranges(f, charger)
    return charger, ranges, merging.merge_candidates(f, ranges, [box], charger.roots())


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_merge_of_exactly_parallel_neurons_is_charged_zero_and_exact(scale):
    f = _parallel(scale)
    charger, ranges, merges = _merges(f)
    i, alpha, shift, local = merges[(0, 2)]
    assert (i, alpha, shift, local) == (0, scale, 0.0, 0.0)
    edit = edits.Candidate("merge", (0, 2, i), local, 5, shift, alpha)
    p = edits.apply(f, [edit], ranges)  # the proven network: row 2 = scale * row 0
    assert charger.proven(p) == 0.0
    folds = merging.foldable(p, [(0, 2, 0, alpha)])
    g = drop_unused(merging.fold(p, folds))
    assert folds and g.layers[0].out_features == 2
    pad = merging.fold_pad(p, folds, [BOX])
    assert max_output_difference(f, g, BOX).value <= pad <= 1e-12
    # the constant edit of the same neuron changes the function
    const = edits.apply(f, [edits.Candidate("neuron", (0, 2), 0.0, 5)], ranges)
    assert max_output_difference(f, const, BOX).value > 0.1


def test_anti_parallel_neurons_are_never_merged():
    """``relu(-z) != -relu(z)``: a scale <= 0 is never proposed."""
    f = _parallel(-1.0)
    _, _, merges = _merges(f)
    assert all(m[1] > 0 for m in merges.values())
    assert merges.get((0, 2), (None,))[0] != 0  # n2 = relu(-(x0 - x1 + 0.1)) not into n0
    for seed in range(6):
        _, _, merges = _merges(_net(seed))
        assert all(m[1] > 0 for m in merges.values())


@pytest.mark.parametrize("seed", range(3))
def test_merge_charge_into_the_output_layer_is_never_below_the_exact_change(seed):
    """Into a linear output layer the local charge bounds ``|f - g|`` itself; the proof of the
    whole plus the fold's pad is never below the exact value either (the planted pairs and
    the cheapest other merge of each layer)."""
    f = _net(seed, twin=0.1)
    charger, ranges, merges = _merges(f)
    picked = {(k, 5) for k in (0, 1)} | {
        min((m for m in merges if m[0] == k), key=lambda m: merges[m][3]) for k in (0, 1)
    }
    for (k, j), (i, alpha, shift, local) in ((m, merges[m]) for m in sorted(picked)):
        p = edits.apply(f, [edits.Candidate("merge", (k, j, i), local, 1, shift, alpha)], ranges)
        folds = merging.foldable(p, [(k, j, i, alpha)])
        assert folds  # nothing else edited: the fold holds
        g = merging.fold(p, folds)
        exact = max_output_difference(f, g, BOX).value
        assert exact <= charger.proven(p) + merging.fold_pad(p, folds, [BOX]) + 1e-12
        if k == len(f.layers) - 2:
            assert exact <= local + 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_search_merges_a_near_parallel_pair_and_the_proof_holds(seed):
    f = _net(seed, twin=0.02)
    charger = Charger(f, [BOX])
    ranges = edits.relu_ranges(f, charger)
    cands = lossy.with_merges(
        edits.candidates(f, ranges, [BOX]),
        merging.merge_candidates(f, ranges, [BOX], charger.roots()),
    )
    pair = {c.index for c in cands if c.kind == "merge"} & {(1, 5, 0), (1, 0, 5)}
    assert len(pair) == 1  # the planted pair, one way only (never j -> i and i -> j)
    out = lossy.search(f, [BOX], 0.5, charger, time_limit=10.0)
    assert out.proven <= 0.5
    assert {m[:3] for m in out.merges} & {(1, 5, 0), (1, 0, 5)}  # folded in the written net
    g = drop_unused(merging.fold(out.network, out.merges))
    assert g.layers[1].out_features < 6
    assert max_output_difference(f, g, BOX).value <= out.proven


@pytest.mark.parametrize("seed", range(3))
def test_compress_with_merges_is_proven_within_tol_and_never_below_the_exact_max(seed):
    f = _net(seed, twin=0.05)
    res = compress_lossy(f, BOX, 0.2, time_limit=10.0)
    assert res.proven <= 0.2
    assert max_output_difference(f, res.network, BOX).value <= res.proven
    assert sum(r["neurons_merged"] for r in res.report["layers"]) >= 1


def test_compress_without_merges_merges_nothing():
    f = _net(0, twin=0.05)
    res = compress_lossy(f, BOX, 0.2, time_limit=10.0, merge=False)
    assert res.proven <= 0.2
    assert sum(r["neurons_merged"] for r in res.report["layers"]) == 0


@pytest.mark.parametrize("seed", range(2))
def test_merge_proposals_bounded_in_chunks_are_the_same(monkeypatch, seed):
    """The proposals' difference rows bounded a few at a time (``CHUNK_BYTES`` of 3 rows of
    the 6-wide layers, with every layer's proposals split unevenly) give the merges of one
    chunk, up to rounding, and each stays within the charge the oracle checks."""
    f = _net(seed, widths=(2, 6, 6, 6, 2), twin=0.05)
    _, _, whole = _merges(f)
    monkeypatch.setattr(merging, "CHUNK_BYTES", 3 * 8 * 6)
    _, _, chunked = _merges(f)
    assert whole and whole.keys() == chunked.keys()
    for key, (i, alpha, shift, local) in whole.items():
        assert chunked[key][:2] == (i, alpha)
        np.testing.assert_allclose(chunked[key][2:], (shift, local), rtol=1e-12, atol=1e-12)


def test_merge_proposals_start_no_chunk_of_bounds_past_the_end(monkeypatch):
    """Fake clock: each chunk of bounds takes 1 s, chunks of 3 rows, the end 2.5 s away: at
    most three chunks start (all before the end), and the merges found are some of those
    found without an end, the same."""
    from exactcomp.testing.clock import FakeClock

    f = _net(0, widths=(2, 6, 6, 6, 2), twin=0.05)
    _, _, whole = _merges(f)
    clock = FakeClock().install(monkeypatch)
    monkeypatch.setattr(merging, "CHUNK_BYTES", 3 * 8 * 6)
    real, starts = merging._bounds, []

    def slow(*args):
        starts.append(clock.now)
        clock.advance(1.0)
        return real(*args)

    monkeypatch.setattr(merging, "_bounds", slow)
    charger = Charger(f, [BOX])
    ranges = edits.relu_ranges(f, charger)
    end = clock.now + 2.5
    some = merging.merge_candidates(f, ranges, [BOX], charger.roots(), end=end)
    assert 1 <= len(starts) <= 3 and all(t < end for t in starts)
    assert set(some) < set(whole)
    for key, m in some.items():
        assert m[:2] == whole[key][:2]
