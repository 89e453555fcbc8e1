"""The NeuroDiff baseline runner: its output parser, the question it asks, the shipped networks.

No NeuroDiff build here: the parser reads outputs captured from a real run
(``tests/data/neurodiff/``; the adv sample is written from the artifact's format strings in
``split.c``, since the shipped pairs never produce one), and the networks are read with
exactcomp's own ``.nnet`` reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.neurodiff import (
    NETWORKS,
    NeuroDiffError,
    acas_pairs,
    acas_question,
    build,
    parse_output,
    unpack,
)
from exactcomp.io.nnet import load_nnet

DATA = Path(__file__).parent / "data" / "neurodiff"

ADV_SAMPLE = """Total difference: 9319.3037
Average difference: 0.7169
Initial output delta:
[-13.062750 -15.435750 -16.860000 -19.426375 -18.362500 ]
[13.375500 15.863500 16.193000 19.158000 18.121000 ]
progress: [=      ] 0.09%\r
adv found:
adv is: [0.650000 0.100000 -0.200000 0.470000 -0.460000 ]
it's output delta is: [0.081000 0.010000 -0.020000 0.030000 0.020000 ]
time: 4.250000 \n\n
numSplits: 77
"""


def test_parse_proven_run() -> None:
    res = parse_output((DATA / "proven_1_1_eps0.05.txt").read_text(), wall_seconds=9.0)
    assert res.verdict == "proven"
    assert res.seconds == pytest.approx(2.65335)  # NeuroDiff's own clock, not the wall time
    assert res.splits == 213
    assert res.initial_delta == (-269.650178, 270.808868)  # output 0 only
    other = parse_output((DATA / "proven_1_1_eps0.05.txt").read_text(), 9.0, target=2)
    assert other.initial_delta == (-343.905243, 345.054412)  # MNIST compares the image's class


def test_parse_timeout_run() -> None:
    text = (DATA / "timeout_3_3_eps0.01.txt").read_text()
    res = parse_output(text, wall_seconds=3.0, timed_out=True)
    assert (res.verdict, res.seconds, res.splits) == ("timeout", 3.0, 405)


def test_parse_adv_found_is_failed_not_proven() -> None:
    res = parse_output(ADV_SAMPLE, wall_seconds=5.0)
    assert (res.verdict, res.seconds, res.splits) == ("failed", 4.25, 77)


@pytest.mark.parametrize(
    "text", ["", "Wrong network!\n", "Initial output delta:\n[1 ]\n[2 ]\nNo adv!\n"]
)
def test_parse_anything_else_is_an_error(text: str) -> None:
    # "No adv!" without its closing "time:" line is a crash mid-print, not a proof
    res = parse_output(text, wall_seconds=1.0, returncode=1)
    assert res.verdict == "error" and res.message.startswith("exit 1")


def test_build_refuses_a_folder_without_the_source(tmp_path: Path) -> None:
    with pytest.raises(NeuroDiffError, match="delta_network_test.c"):
        build(tmp_path, tmp_path / "work")


def test_property_1_box_normalised_in_float32(tmp_path: Path) -> None:
    """NeuroDiff's normalised prop-1 box is VNN-LIB's prop_1 box up to float32 rounding."""
    q = acas_question(unpack(acas_pairs()["1_1"][0], tmp_path))
    assert q.target == 0
    vnn_lower = [0.6, -0.5, -0.5, 0.45, -0.5]
    vnn_upper = [0.679857769, 0.5, 0.5, 0.5, -0.45]
    np.testing.assert_allclose(q.lower, vnn_lower, atol=2e-7)
    np.testing.assert_allclose(q.upper, vnn_upper, atol=2e-7)
    assert np.all(q.lower.astype(np.float32) == q.lower)  # float32 values, as NeuroDiff holds
    assert q.raw_lower[0] == np.float32(55947.691)


def test_shipped_acas_pairs_load_and_are_float16_copies(tmp_path: Path) -> None:
    pairs = acas_pairs()
    assert len(pairs) == 45
    for name in ("1_1", "3_3", "5_9"):  # a sample: reading all 90 files is slow on 2 cores
        f = load_nnet(unpack(pairs[name][0], tmp_path))
        g = load_nnet(unpack(pairs[name][1], tmp_path))
        assert f.meta["header_entries_ignored"] == {
            "the input minimums": 2,
            "the input maximums": 2,
            "the means": 2,
            "the ranges": 2,
        }
        assert (f.meta["output_mean"], f.meta["output_range"]) == (35.1111111, 100.0)
        assert f.meta == {**g.meta, "source": f.meta["source"]}
        # g's weights are f's rounded to float16, written as text (1_1 exactly, most files as
        # the shortest decimal that reads back to the same float16, e.g. 0.07434): compare in
        # float16. Hidden layers are untouched by the folding of the normalisation.
        for lf, lg in zip(f.layers[1:-1], g.layers[1:-1], strict=True):
            np.testing.assert_array_equal(
                lg.weight.astype(np.float16), lf.weight.astype(np.float16)
            )
            assert not np.array_equal(lg.weight, lf.weight)


def test_shipped_mnist_pair_and_box(tmp_path: Path) -> None:
    spec = json.loads((NETWORKS / "mnist_400_x15.json").read_text())
    f, g = (load_nnet(unpack(NETWORKS / p, tmp_path)) for p in spec["files"])
    assert f.input_size == g.input_size == 784 and f.output_size == 10
    lo, hi = np.array(spec["lower"]), np.array(spec["upper"])
    free = np.flatnonzero(lo != hi)
    assert sorted(free.tolist()) == sorted(spec["free_pixels"]) and len(free) == 15
    assert np.all(lo[free] == 0.0) and np.all(hi[free] == 1.0)
    fixed = np.flatnonzero(lo == hi)
    np.testing.assert_array_equal(
        lo[fixed], np.float32(np.array(spec["image_0_255"])[fixed] / 255.0)
    )
    assert 0 <= spec["target"] < 10
