"""Input splitting over differential bounds (exactcomp.verify.splitting) and ``--outputs``.

The pairs are a network ``f`` and ``g``, the same network with perturbed or float16-rounded
weights (the same architecture, neuron ``j`` of ``g`` paired with neuron ``j`` of ``f``)::

    x (1-2 inputs) -> [6-8 ReLU] -> [6-8 ReLU] -> 2 outputs       f
    x              -> [same, weights + noise]  -> 2 outputs       g

Ground truth: the exact ``max |f - g|`` of the region-enumeration oracle
(:func:`exactcomp.testing.oracle.max_output_difference`), or a dense grid.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from exactcomp import cli
from exactcomp.api import load, save
from exactcomp.domain import Box
from exactcomp.errors import InvalidOptionError
from exactcomp.io.vnnlib import read_vnnlib
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import grid_check, max_output_difference
from exactcomp.testing.random_networks import gaussian_mlp as mlp
from exactcomp.testing.random_networks import perturbed
from exactcomp.verify import EquivalenceStatus, phases, verify_equivalence
from exactcomp.verify.pairs import Pair, paired
from exactcomp.verify.splitting import split_verify
from exactcomp.verify.symbolic import difference_bounds

EQ, NEQ, UNK = (
    EquivalenceStatus.EQUIVALENT,
    EquivalenceStatus.NOT_EQUIVALENT,
    EquivalenceStatus.UNKNOWN,
)
ACAS = Path(__file__).resolve().parents[1] / "models" / "real" / "acasxu"


def float16(net: Network) -> Network:
    """Every weight and bias rounded to float16 and back (in float64)."""
    r = [
        Layer(
            layer.weight.astype(np.float16).astype(np.float64),
            layer.bias.astype(np.float16).astype(np.float64),
            layer.relu,
        )
        for layer in net.layers
    ]
    return net.replace_layers(r)


# ------------------------------------------------------------------------ the bounds alone
@pytest.mark.parametrize("seed", range(6))
def test_difference_bounds_enclose_sampled_differences(seed: int) -> None:
    """On random sub-boxes, every sampled ``g_i - f_i`` lies within the proven bounds."""
    rng = np.random.default_rng(seed)
    n_in = 1 + seed % 3
    f = mlp([n_in, 8, 8, 6, 3], seed)
    g = perturbed(f, 0.05 * (1 + seed % 2), seed + 100)
    root = Box.uniform(-1.0, 1.0, n_in)
    pair = Pair.prepare(f, g, root, [0, 1, 2])
    c = root.sample(40, rng)
    r = rng.random((40, n_in)) * 0.5
    lo, hi = np.clip(c - r, -1, 1), np.clip(c + r, -1, 1)
    b = difference_bounds(pair, lo, hi)
    for n in range(40):
        x = lo[n] + rng.random((300, n_in)) * (hi[n] - lo[n])
        x = np.concatenate([x, lo[n][None], hi[n][None]])
        d = g.forward(x) - f.forward(x)
        assert (d >= b.lo[n] - 1e-12).all() and (d <= b.hi[n] + 1e-12).all()


def test_identical_networks_are_proven_at_the_root() -> None:
    f = mlp([2, 8, 8, 2], seed=3)
    out = split_verify(f, f, Box.uniform(-1, 1, 2), [0, 1], 1e-6, time.perf_counter() + 30)
    assert out.proven and out.nodes == 1
    assert max(out.bounds.values()) <= 1e-6  # rounding pads only


def test_a_dead_layer_below_a_tie_at_zero() -> None:
    """Layer 0 is dead on the box, so layers 1 and 2 are 0 exactly; their padded bounds
    straddle 0 and send layer 2 to back-substitution through a layer with no live neuron::

        x -> [3 ReLU, bias -1, weights 0] -> [3 ReLU, bias 0] -> [2 ReLU, bias 0] -> 1
    """
    ws = [np.zeros((3, 2)), np.ones((3, 3)), np.ones((2, 3)), np.ones((1, 2))]
    bs = [-np.ones(3), np.zeros(3), np.zeros(2), np.zeros(1)]
    f = Network.from_arrays(ws, bs, dtype="float64")
    g = Network.from_arrays(ws[:3] + [np.full((1, 2), 1.001)], bs, dtype="float64")
    out = split_verify(f, g, Box.uniform(-1, 1, 2), [0], 1e-6, time.perf_counter() + 30)
    assert out.proven and max(out.bounds.values()) <= 1e-6


def test_pairing_heuristic_rejects_a_permuted_copy() -> None:
    f = mlp([2, 8, 8, 2], seed=3)
    w0, b0, w1 = f.layers[0].weight[::-1], f.layers[0].bias[::-1], f.layers[1].weight[:, ::-1]
    g = f.replace_layers([Layer(w0, b0, True), Layer(w1, f.layers[1].bias, True), f.layers[2]])
    pts = Box.uniform(-1, 1, 2).sample(256, np.random.default_rng(0))
    assert paired(f, perturbed(f, 1e-3, 1), pts)
    assert not paired(f, g, pts)


# ------------------------------------------------------------------- against the exact max
CASES = [(1, 0.02, 0), (2, 0.02, 1), (2, 0.05, 2), (1, 0.05, 3), (2, 0.01, 4)]


@pytest.mark.parametrize(("n_in", "scale", "seed"), CASES)
def test_verdicts_agree_with_the_exact_maximum(n_in: int, scale: float, seed: int) -> None:
    """Just above the exact max: EQUIVALENT (by splitting); just below: never EQUIVALENT."""
    f = mlp([n_in, 6, 6, 2], seed)
    g = perturbed(f, scale, seed + 10)
    box = Box.uniform(-1.0, 1.0, n_in)
    exact = max_output_difference(f, g, box).value
    assert exact > 0
    above = verify_equivalence(f, g, box, tol=1.02 * exact, time_limit=60)
    assert above.status is EQ, above.summary()
    assert "input splitting" in above.reason
    assert exact * (1 - 1e-9) <= above.upper_bound <= 1.02 * exact
    below = verify_equivalence(f, g, box, tol=0.98 * exact, time_limit=60)
    assert below.status is NEQ, below.summary()
    assert below.counterexample.difference > 0.98 * exact
    assert below.lower_bound <= exact * (1 + 1e-9)


def test_float16_copy_on_a_grid() -> None:
    """A float16-rounded copy of a 1-input network: the bounds bracket the grid maximum."""
    f = mlp([1, 8, 8, 8, 2], seed=7)
    g = float16(f)
    box = Box.uniform(-2.0, 2.0, 1)
    grid = grid_check(f, box, g=g, per_dim=20001).max_difference
    exact = max_output_difference(f, g, box).value
    assert grid <= exact * (1 + 1e-9)
    out = split_verify(f, g, box, [0, 1], 1.5 * exact, time.perf_counter() + 60)
    assert out.proven, out.reason
    assert exact * (1 - 1e-9) <= max(out.bounds.values()) <= 1.5 * exact


def test_open_leaves_give_a_sound_upper_bound() -> None:
    """Stopped early (node budget), the bound is still an upper bound of the exact max."""
    f = mlp([2, 6, 6, 2], seed=5)
    g = perturbed(f, 0.02, 6)
    box = Box.uniform(-1.0, 1.0, 2)
    exact = max_output_difference(f, g, box).value
    out = split_verify(f, g, box, [0, 1], 0.5 * exact, time.perf_counter() + 60, max_nodes=5)
    assert not out.proven
    assert max(out.bounds.values()) >= exact * (1 - 1e-9)


def test_a_sampled_difference_above_tol_is_returned_for_rechecking() -> None:
    f = mlp([2, 6, 6, 2], seed=5)
    g = perturbed(f, 0.02, 6)
    box = Box.uniform(-1.0, 1.0, 2)
    exact = max_output_difference(f, g, box).value
    out = split_verify(f, g, box, [0, 1], 0.9 * exact, time.perf_counter() + 60)
    assert not out.proven and out.reason == "a sampled input exceeds tol"
    assert 0.9 * exact < out.lower <= exact * (1 + 1e-9)
    assert box.contains(out.x).all()
    diff = np.abs(f.forward(out.x[:1]) - g.forward(out.x[:1])).max()
    assert diff == out.lower


def test_real_float16_copy_is_proven_where_the_old_path_was_not(monkeypatch) -> None:
    """ACAS Xu 1_1 and its float16 copy on property 1's region, output 0, tol 0.05 (the
    NeuroDiff benchmark): input splitting proves it; the MILP path gives UNKNOWN (in 10 s
    here; the issue measured UNKNOWN with an upper bound of 1.45e3 in 300 s)."""
    f = load(ACAS / "ACASXU_run2a_1_1_batch_2000.onnx")
    g = float16(f)
    box = read_vnnlib(ACAS / "prop_1.vnnlib", f.input_size).boxes[0]
    new = verify_equivalence(f, g, box, tol=0.05, time_limit=60, outputs=[0])
    assert new.status is EQ, new.summary()
    assert new.milps == 0 and new.boxes > 1 and new.upper_bound <= 0.05
    assert set(new.timings) == {"sampling", "splitting", "total"}  # nothing else ran
    monkeypatch.setattr(phases, "SPLIT_MAX_INPUTS", 0)
    old = verify_equivalence(f, g, box, tol=0.05, time_limit=10, outputs=[0])
    assert old.status is UNK, old.summary()


# ------------------------------------------------------------------------------- --outputs
def test_outputs_subset(tmp_path) -> None:
    """g differs from f only in output 1: equal on output 0, different on both."""
    f = mlp([2, 6, 2], seed=1)
    w = f.layers[1].weight.copy()
    w[1] += 0.5
    g = f.replace_layers([f.layers[0], Layer(w, f.layers[1].bias, False)])
    box = Box.uniform(-1, 1, 2)
    assert verify_equivalence(f, g, box, tol=1e-6, outputs=[0]).status is EQ
    assert verify_equivalence(f, g, box, tol=1e-6).status is NEQ
    fp, gp = tmp_path / "f.onnx", tmp_path / "g.onnx"
    save(f, fp)
    save(g, gp)
    args = ["verify", str(fp), str(gp), "--box=-1,1", "--quiet", "--tol", "1e-4"]
    assert cli.main([*args, "--outputs", "0"]) == 0
    assert cli.main([*args, "--outputs", "0,1"]) == 1


@pytest.mark.parametrize(
    ("outputs", "mode", "needle"),
    [
        ([2], "linf", "does not exist"),
        ([], "linf", "empty"),
        ([0, 0], "linf", "twice"),
        ([0], "top1", "linf"),
    ],
)
def test_bad_outputs_are_refused(outputs, mode, needle) -> None:
    f = mlp([2, 4, 2], seed=1)
    with pytest.raises(InvalidOptionError, match=needle):
        verify_equivalence(f, f, Box.uniform(-1, 1, 2), mode=mode, outputs=outputs)


@pytest.mark.parametrize(("text", "needle"), [("a,1", "output indices"), ("5", "does not exist")])
def test_bad_outputs_on_the_cli(tmp_path, capsys, text: str, needle: str) -> None:
    fp = tmp_path / "f.onnx"
    save(mlp([2, 4, 2], seed=1), fp)
    code = cli.main(["verify", str(fp), str(fp), "--box", "0,1", "--quiet", "--outputs", text])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
