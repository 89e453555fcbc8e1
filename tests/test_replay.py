"""The re-check replays the analysis's recorded input-split trees (:mod:`exactcomp.bab.replay`).

Ground truth is the exact oracle (:func:`exactcomp.testing.oracle.exact_preactivation_ranges`)
on random networks with 2-3 inputs. A record only says where to cut: a replay does fewer
nodes than the search it stands for, a record that is corrupt, truncated or about another
layer or box still leaves a sound re-check (the claims are searched for), and a false claim
is never re-proven with a record present.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_bab import BOX, kink_net

import exactcomp.verify.recheck as recheck
from exactcomp.api import compress_verified
from exactcomp.bab.replay import replay_signs
from exactcomp.bab.split import prove_signs
from exactcomp.bab.split_tree import SplitTree, midpoint
from exactcomp.bounds.linear import linear_bounds
from exactcomp.domain import Box
from exactcomp.stability import stable_neurons
from exactcomp.testing.adversarial import planted_claims
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_network
from exactcomp.verify import recheck_certificates


def _net(seed: int, n: int = 2):
    rng = np.random.default_rng(seed)
    box = Box(-np.ones(n), np.ones(n))
    return random_network(rng, depth=(3, 3), width=(6, 8), inputs=(n, n), nasty=False), box


def _true_claims(net, box, k):
    """Layer ``k``'s neurons stable by a margin per the oracle but not per linear bounds,
    with the side each is stable on (``+1`` inactive, ``-1`` active), and those bounds."""
    lo, hi = exact_preactivation_ranges(net, box)[k]
    lin = linear_bounds(net, box)
    inac = np.flatnonzero((hi < -1e-3) & (lin[k][1] > 0.0))
    act = np.flatnonzero((lo > 1e-3) & (lin[k][0] < 0.0))
    sides = np.concatenate([np.ones(inac.size), -np.ones(act.size)]).astype(np.int64)
    return np.concatenate([inac, act]), sides, lin[: k + 1]


def _held(res, sides):
    return np.where(sides > 0, res.inactive, res.active)


def test_the_record_is_a_whole_tree_whose_leaves_cover_the_box() -> None:
    """Seed 21, layer 2: the search records one tree (31 nodes with optimised slopes, 47
    without); decoded, its leaves (cut at the midpoints computed here) hold every sampled input
    of the box."""
    net, box = _net(21)
    neurons, sides, known = _true_claims(net, box, 2)
    res = prove_signs(net, box, 2, known, neurons, sides)
    assert res.nodes > 7 and len(res.trees) == 1
    tree = res.trees[0]
    assert tree.fits(box.lower, box.upper, 2) and not tree.fits(box.lower, box.upper, 1)
    shape = tree.shape()
    assert shape is not None and shape.dims.size == tree.nodes
    leaves, stack = [], [(0, box.lower.copy(), box.upper.copy())]
    while stack:
        i, lo, hi = stack.pop()
        d = shape.dims[i]
        if d < 0:
            leaves.append((lo, hi))
            continue
        m = midpoint(lo, hi)[d]
        hi1, lo2 = hi.copy(), lo.copy()
        hi1[d], lo2[d] = m, m
        stack += [(shape.left[i], lo, hi1), (shape.right[i], lo2, hi)]
    assert len(leaves) == (tree.nodes + 1) // 2
    pts = np.random.default_rng(0).uniform(box.lower, box.upper, (2000, 2))
    inside = np.zeros(len(pts), bool)
    for lo, hi in leaves:
        inside |= ((pts >= lo) & (pts <= hi)).all(1)
    assert inside.all()


def test_replay_does_fewer_nodes_than_the_search() -> None:
    """The same claims proven, in fewer bounded nodes (31 searched, fewer walked: the walk
    bounds the leaves and every third level, and no node twice)."""
    net, box = _net(21)
    neurons, sides, known = _true_claims(net, box, 2)
    search = prove_signs(net, box, 2, known, neurons, sides)
    replay = replay_signs(net, box, 2, known, neurons, sides, trees=search.trees)
    assert _held(search, sides).all() and _held(replay, sides).all()
    assert replay.nodes < search.nodes


def _corrupt(tree: SplitTree) -> dict[str, SplitTree]:
    d = tree.dims
    bad = d.copy()
    bad[bad >= 0] = 7  # an input the box does not have
    shifted = Box(tree.lower + 0.25, tree.upper)
    return {
        "truncated": dataclasses.replace(tree, dims=d[:-3]),
        "extra nodes": dataclasses.replace(tree, dims=np.concatenate([d, [-1, -1]])),
        "input out of range": dataclasses.replace(tree, dims=bad),
        "another layer": dataclasses.replace(tree, layer=tree.layer - 1),
        "another box": dataclasses.replace(tree, lower=shifted.lower),
        "root only": dataclasses.replace(tree, dims=np.array([-1], np.int8)),
        "wrong cuts": dataclasses.replace(tree, dims=np.where(d >= 0, 1 - d, d).astype(np.int8)),
        "not integers": dataclasses.replace(tree, dims=d.astype(np.float64)),
        "empty": dataclasses.replace(tree, dims=np.zeros(0, np.int8)),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "extra nodes",
        "input out of range",
        "another layer",
        "another box",
        "root only",
        "wrong cuts",
        "not integers",
        "empty",
    ],
)
def test_a_bad_record_still_gives_the_search_s_answer(kind: str) -> None:
    """A record that does not fit is not walked, one that fits but cuts elsewhere is walked
    and its leaves are searched: the true claims are proven all the same."""
    net, box = _net(21)
    neurons, sides, known = _true_claims(net, box, 2)
    tree = prove_signs(net, box, 2, known, neurons, sides).trees[0]
    bad = _corrupt(tree)[kind]
    if kind not in ("root only", "wrong cuts"):
        assert bad.shape() is None or not bad.fits(box.lower, box.upper, 2)
    res = replay_signs(net, box, 2, known, neurons, sides, trees=[bad, "junk"])
    assert _held(res, sides).all()


@pytest.mark.parametrize("seed", [21, 24, 28, 39])
def test_false_claims_are_never_proven_with_a_record(seed: int) -> None:
    """Each neuron of layer 2 whose exact range crosses 0 (by a margin), asked as INACTIVE
    and as ACTIVE beside the true claims, with the record of the true claims' tree and with
    a record grown for it: never proven; the true claims still are."""
    net, box = _net(seed)
    neurons, sides, known = _true_claims(net, box, 2)
    lo, hi = exact_preactivation_ranges(net, box)[2]
    crossing = np.flatnonzero((lo < -1e-3) & (hi > 1e-3))
    assert crossing.size
    good = prove_signs(net, box, 2, known, neurons, sides).trees
    for j in crossing:
        for s in (1, -1):
            ask, want = np.append(neurons, j), np.append(sides, s)
            grown = prove_signs(net, box, 2, known, [j], [0], max_nodes=200).trees
            res = replay_signs(net, box, 2, known, ask, want, trees=good + grown)
            held = _held(res, want)
            assert not held[-1]
            assert held[:-1].all()


def test_sides_zero_is_the_search() -> None:
    """Either claim asked (side 0): nothing to replay, the search's answer."""
    net, box = _net(21)
    neurons, sides, known = _true_claims(net, box, 2)
    tree = prove_signs(net, box, 2, known, neurons, sides).trees
    zero = np.zeros_like(sides)
    a = replay_signs(net, box, 2, known, neurons, zero, trees=tree)
    b = prove_signs(net, box, 2, known, neurons, zero)
    assert a.nodes == b.nodes and (a.inactive == b.inactive).all()


def _cases() -> list[tuple[int, object, Box]]:
    out = []
    for seed in range(4):
        rng = np.random.default_rng(200 + seed)
        n = int(rng.integers(2, 4))
        box = Box(-np.ones(n), np.ones(n))
        out.append((seed, random_network(rng, depth=(3, 3), width=(4, 6), inputs=(n, n)), box))
    return out


@pytest.mark.parametrize(("seed", "net", "box"), _cases(), ids=lambda v: str(v)[:8])
def test_recheck_with_the_analysis_s_trees_rejects_planted_claims(seed, net, box) -> None:
    """The whole re-check given the analysis's trees: the engine's report (true per the
    oracle) is re-proven, and a planted claim on a neuron whose exact range crosses 0 is
    refused with the trees present."""
    exact = exact_preactivation_ranges(net, box)
    rep = stable_neurons(net, box, jobs=1)
    good = recheck_certificates(net, rep, box, time_limit=30, trees=rep.trees)
    assert good.ok, good.failures
    planted = 0
    for k, j, bad in planted_claims(net, rep, exact):
        res = recheck_certificates(net, bad, box, time_limit=30, trees=rep.trees)
        assert (k, j) in {(f.layer, f.neuron) for f in res.failures}
        planted += 1
    assert planted > 0


def test_compress_verify_hands_the_trees_to_the_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """In one ``compress --verify`` (:func:`compress_verified`), the analysis's record of the
    kink network's tree reaches the re-check, which replays it and re-proves the claim."""
    net = kink_net()
    assert [t.layer for t in stable_neurons(net, BOX, jobs=1).trees] == [1]
    calls: list[int] = []
    replay = recheck.replay_split_phase

    def spied(q, trees):
        calls.append(len(trees))
        return replay(q, trees)

    monkeypatch.setattr(recheck, "replay_split_phase", spied)
    out = compress_verified(net, BOX, verify=True)
    assert out.ok and out.recheck.checked["bab"] == 1
    assert calls == [1]
