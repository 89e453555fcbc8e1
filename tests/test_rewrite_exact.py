"""Issue 18, path 1: a merge or a fold is made only when the identity behind it is proven.

The networks here are the smallest that tripped the old code (rows compared within a relative
tolerance of 1e-9). Each is checked with exact rational evaluation at points where the old
rewrite was wrong, which 100,000 random points would miss.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import exactcomp
from exactcomp.cli import main
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Network
from exactcomp.rewrite import Reason, compress_network
from exactcomp.verdicts import LayerStability, Proof, StabilityReport, Verdict


def report(net: Network, codes: list[list[int]]) -> StabilityReport:
    """Verdicts ``codes`` per ReLU layer, proven (ENUMERATION) where stable."""
    layers = []
    for k, c in zip(net.relu_layers, codes, strict=True):
        v = np.asarray(c, dtype=np.int8)
        stable = np.isin(v, (Verdict.ACTIVE, Verdict.INACTIVE))
        proof = np.where(stable, Proof.ENUMERATION, Proof.NONE).astype(np.int8)
        inf = np.full(v.size, np.inf)
        none = np.full(v.size, -1, dtype=np.int64)
        layers.append(LayerStability(k, v, proof, -inf, inf, none, none))
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))


def near_duplicates() -> Network:
    """Two kinks 1.8e-9 apart on x in [0, 1], read with weights 1 and 1e9::

        z0 = x - 1               (max 0 on the box: INACTIVE)
        z1 = x - 1 + 1.8e-9      (positive on the slab x > 1 - 1.8e-9 only)
        y  = h0 + 1e9 h1         (y(1) = 1.8, y(x) = 0 for x <= 1 - 1.8e-9)

    Rows ``[1 | -1]`` and ``[1 | -1 + 1.8e-9]`` agree to 9e-10 relative: the old merge
    folded z1 onto z0, which the stability passes then removed, so y became 0 everywhere.
    """
    return Network.from_arrays(
        [np.array([[1.0], [1.0]]), np.array([[1.0, 1e9]])],
        [np.array([-1.0, -1.0 + 1.8e-9]), np.zeros(1)],
        dtype="float64",
    )


SLAB = [1.0, 1.0 - 1e-9, 1.0 - 1.7e-9]


def test_near_duplicate_is_not_merged_by_the_rewrite():
    net = near_duplicates()
    res = compress_network(net, report(net, [[Verdict.INACTIVE, Verdict.UNSTABLE]]))
    assert res.neuron_map[(0, 1)].kept
    assert Reason.DUPLICATE not in {f.reason for f in res.neuron_map.values()}
    for x in SLAB + [0.0, 0.5]:
        assert exact_forward(res.network, [x]) == exact_forward(net, [x])
    assert exact_forward(net, [1.0])[0] > Fraction(17, 10)  # the slab really matters


def test_near_duplicate_network_compresses_exactly():
    net = near_duplicates()
    res = exactcomp.compress(net, (0.0, 1.0), check=1000)
    for x in SLAB:
        assert exact_forward(res.network, [x]) == exact_forward(net, [x])


def test_exact_duplicates_are_still_merged():
    """``z1 = 4 z0`` exactly (bias included): merged, and exactly equal afterwards."""
    net = Network.from_arrays(
        [np.array([[1.0], [4.0]]), np.array([[1.0, 1e9]])],
        [np.array([-0.5, -2.0]), np.zeros(1)],
        dtype="float64",
    )
    res = compress_network(net, report(net, [[Verdict.UNSTABLE, Verdict.UNSTABLE]]))
    assert res.neuron_map[(0, 1)].reason == Reason.DUPLICATE
    assert res.network.hidden_widths == (1,)
    for x in [0.0, 0.5, 0.75, 1.0]:
        assert exact_forward(res.network, [x]) == exact_forward(net, [x])


def near_dependent() -> Network:
    """Two stably active neurons on x in [0, 1]^2 whose rows agree to 5e-11 relative, read
    with weights -1e9 and 1e9, next to an unstable neuron that keeps the layer::

        z0 = x1 + x2 + 1              (ACTIVE)
        z1 = x1 + (1 + 1e-10) x2 + 1  (ACTIVE)
        z2 = x1 - x2                  (UNSTABLE)
        y  = -1e9 h0 + 1e9 h1 + h2    (= 0.1 x2 + relu(x1 - x2), up to float64's 1 + 1e-10)

    The rows span the plane, so neither is a combination of the other; the old numerical
    rank folded z1 onto z0 and the re-check failed with "this is a bug" (exit 2).
    """
    return Network.from_arrays(
        [np.array([[1.0, 1.0], [1.0, 1.0 + 1e-10], [1.0, -1.0]]), np.array([[-1e9, 1e9, 1.0]])],
        [np.array([1.0, 1.0, 0.0]), np.zeros(1)],
        dtype="float64",
    )


def test_near_dependent_active_neurons_compress_correctly():
    net = near_dependent()
    res = exactcomp.compress(net, Box.uniform(0.0, 1.0, 2), check=1000)
    assert res.network.hidden_widths == (3,)
    for x in ([0.0, 1.0], [1.0, 1.0], [0.3, 0.7], [1.0, 0.0]):
        assert exact_forward(res.network, x) == exact_forward(net, x)


def test_spanning_active_neurons_are_still_folded():
    """Three ACTIVE neurons on two inputs: two are proven to span the plane (rank modulo a
    prime), so the third is an exact combination of them and is folded; the float64
    coefficients leave a rounding-level residual."""
    w0 = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-10], [0.3, 0.7], [1.0, -1.0]])
    net = Network.from_arrays(
        [w0, np.array([[-1e9, 1e9, 2.0, 1.0]])], [np.array([1.0, 1.0, 1.0, 0.0]), np.zeros(1)]
    )
    codes = [[Verdict.ACTIVE] * 3 + [Verdict.UNSTABLE]]
    res = compress_network(net, report(net, codes))
    assert res.counts()["folded-active"] == 1
    assert res.network.hidden_widths == (3,)
    fold = next(f.fold for f in res.neuron_map.values() if f.reason == Reason.FOLDED_ACTIVE)
    assert fold.residual <= 1e-12
    x = Box.uniform(0.0, 1.0, 2).sample(1000, np.random.default_rng(0))
    scale = np.abs(x) @ np.abs(w0).T @ np.abs(net.layers[1].weight).T + 1.0
    assert np.all(np.abs(res.network(x) - net(x)) <= 1e-12 * scale)


def test_cli_compresses_both_networks_exactly(tmp_path):
    """Through the CLI: exit 0 (it was a wrong network for the first, exit 2 for the second)
    and a file that equals the original in exact arithmetic where the old rewrite was wrong."""
    for name, net, points in (
        ("dup", near_duplicates(), [[x] for x in SLAB]),
        ("dep", near_dependent(), [[0.0, 1.0], [1.0, 1.0], [0.3, 0.7]]),
    ):
        src, out = tmp_path / f"{name}.pt", tmp_path / f"{name}_small.pt"
        exactcomp.save(net, src)
        argv = ["compress", str(src), "--box", "0,1", "-o", str(out), "--quiet"]
        assert main([*argv, "--dtype", "float64"]) == 0
        small = exactcomp.load(out)
        for x in points:
            assert exact_forward(small, x) == exact_forward(net, x)
