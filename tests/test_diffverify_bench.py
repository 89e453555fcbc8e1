"""``python -m benchmarks diffverify`` (NeuroDiff's benchmark) and splitting with fixed inputs.

The harness is smoke-tested on one shipped ACAS Xu pair (1_9 and its float16 copy, property 1,
output 0, eps 0.05: proven by input splitting in well under a second) without NeuroDiff, whose
row then comes from the stored JSON. The engine test is a tiny pair whose box fixes most inputs::

    x (20 inputs, 18 fixed) -> [8 ReLU] -> [8 ReLU] -> 2 outputs     f
    x                       -> [same, weights + 1e-3 noise]         g
"""

from __future__ import annotations

import json

import numpy as np

from benchmarks import diffverify
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.verify import EquivalenceStatus, verify_equivalence


def test_harness_one_pair_without_neurodiff(tmp_path, capsys):
    out = tmp_path / "dv.json"
    args = ["diffverify", "--pairs", "1_9", "--eps", "0.05", "--no-neurodiff", "--timeout", "20"]
    from benchmarks.cli import main

    assert main([*args, "--out", str(out), "--work", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "1/1 proven" in text and "stored rows" in text and "not sound" in text
    assert max(len(ln) for ln in text.splitlines()[:2]) <= 80  # header and the row
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["pair"] == "1_9" and row["ours"]["verdict"] == "proven"
    assert 0 < row["ours"]["upper"] <= 0.05 and row["ours"]["boxes"] > 1
    assert row["neurodiff"]["source"].startswith("stored")
    assert doc["totals"][0]["ours_proven"] == 1 and len(doc["loadavg_start"]) == 3


def test_the_question_is_neurodiffs(tmp_path):
    """Box B' normalised in float32 from the raw property 1 box; MNIST box fixes all but 15."""
    pair = diffverify.acas_pairs(["1_1"], tmp_path)
    assert pair[0].target == 0 and pair[0].nd_property == 1
    lo = np.float32((np.float32(55947.691) - np.float32(19791.091)) / np.float32(60261.0))
    assert pair[0].lower[0] == float(lo)
    assert np.all(pair[0].lower < pair[0].upper)


def test_mnist_box(tmp_path):
    pair = diffverify.mnist_pair(tmp_path)
    free = pair.upper > pair.lower
    assert free.sum() == 15 and np.all(pair.lower[free] == 0) and np.all(pair.upper[free] == 1)
    assert pair.target == 7 and pair.nd_options == ("-x", "15")


def test_splitting_counts_free_inputs_only():
    """20 inputs, 18 of them fixed: input splitting (which used to be skipped for more than
    12 inputs) proves the pair; the grid over the two free inputs confirms the bound."""
    rng = np.random.default_rng(3)
    sizes = [20, 8, 8, 2]
    ws = [rng.normal(size=(b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    f = Network.from_arrays(ws, [rng.normal(size=b) * 0.3 for b in sizes[1:]], dtype="float64")
    g = f.replace_layers(
        [
            Layer(ly.weight + 1e-3 * rng.normal(size=ly.weight.shape), ly.bias, ly.relu)
            for ly in f.layers
        ]
    )
    x0 = rng.uniform(-1, 1, size=20)
    lo, hi = x0.copy(), x0.copy()
    lo[[3, 11]], hi[[3, 11]] = -1.0, 1.0
    box = Box(lo, hi)
    res = verify_equivalence(f, g, box, tol=0.05, time_limit=30)
    assert res.status is EquivalenceStatus.EQUIVALENT, res.summary()
    assert res.boxes >= 1 and res.milps == 0, res.summary()
    t = np.linspace(-1, 1, 101)
    pts = np.tile(x0, (t.size**2, 1))
    pts[:, 3], pts[:, 11] = np.repeat(t, t.size), np.tile(t, t.size)
    seen = np.abs(f.forward(pts) - g.forward(pts)).max()
    assert 0 < seen <= res.upper_bound <= 0.05
