"""Golden results on the shipped digits model (l1 = 5e-4, box [0,1]^64).

The reference ``tests/golden/*.naive.json`` is the exhaustive baseline: one MILP per neuron and
sign solved to optimality (regenerate with ``python tests/golden/make_golden.py``; 669 s here).
The fast engine must find exactly the same stable sets, with nothing undecided, and the
compressed network must equal the original on 100,000 random inputs of the box.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import exactcomp
from exactcomp.domain import Box
from exactcomp.verdicts import Verdict

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "digits_64-100-100-10_l1-5e-04_s0.naive.json"


def test_fast_engine_matches_the_exhaustive_baseline() -> None:
    golden = json.loads(GOLDEN.read_text())
    res = exactcomp.compress(ROOT / golden["model"], (0.0, 1.0), check=100_000)
    for ls, expected in zip(res.stability.layers, golden["layers"], strict=True):
        got = [Verdict(int(v)).name.lower() for v in ls.verdict]
        assert "undecided" not in got
        assert got == expected
    assert res.report["neurons_before"] == 200
    assert res.report["neurons_after"] == 153  # 47 stably inactive removed; 33 active kept (rank)
    assert res.network.describe() == "64-79r-74r-10"
    x = Box.uniform(0.0, 1.0, 64).sample(100_000, np.random.default_rng(2026))
    assert np.abs(res.network(x) - res.original(x)).max() <= 1e-6
