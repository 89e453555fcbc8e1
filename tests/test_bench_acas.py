"""``python -m benchmarks acas``: the box it gives each run, its rows and its console table.

The units are the point: VNN-COMP's ACAS Xu properties are in normalised input units, so the
``.nnet`` is read with ``units="normalised"``, and the box is cut to the file's input limits
(property 1's ``X_0 <= 0.679857769`` is 2.9e-10 above the file's maximum ``(60760 - 19791.091)
/ 60261``). One real run (4_5, property 3: 0 undecided and EQUIVALENT in about 2 s) checks the
harness end to end.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import acas
from benchmarks import neurodiff as nd
from exactcomp.io.nnet import load_nnet, nnet_input_limits


@pytest.fixture(scope="module")
def nnet_1_1(tmp_path_factory):
    return nd.unpack(acas.nnet_path("1_1"), tmp_path_factory.mktemp("acas"))


def test_prop_1_box_is_cut_to_the_file_limits(nnet_1_1):
    lo, hi = acas.box_within_limits(nnet_1_1, acas.PROPS_DIR / "prop_1.vnnlib")
    limits = nnet_input_limits(load_nnet(nnet_1_1, units="normalised"))
    assert hi[0] == limits.upper[0] == (60760.0 - 19791.091) / 60261.0
    assert 0.679857769 - hi[0] == pytest.approx(2.9e-10, rel=0.02)
    assert lo == [0.6, -0.5, -0.5, 0.45, -0.5] and hi[1:] == [0.5, 0.5, 0.5, -0.45]
    assert np.all(limits.lower <= lo)


def test_every_property_box_lies_within_the_limits(nnet_1_1):
    for prop in (1, 2, 3, 4):
        lo, hi = acas.box_within_limits(nnet_1_1, acas.PROPS_DIR / f"prop_{prop}.vnnlib")
        assert all(a <= b for a, b in zip(lo, hi, strict=True))


def test_selection_and_summary():
    parser = acas.build_parser()
    runs = acas.selected(parser.parse_args(["--every", "5", "--props", "3,4"]))
    assert [n for n, _ in runs[::2]] == [
        "1_1",
        "1_6",
        "2_2",
        "2_7",
        "3_3",
        "3_8",
        "4_4",
        "4_9",
        "5_5",
    ]
    assert len(acas.selected(parser.parse_args([]))) == 180
    with pytest.raises(SystemExit):
        acas.selected(parser.parse_args(["--nets", "6_1"]))
    row = {"network": "5_9", "prop": 2, "status": "ok", "wall_s": 31.0, "cpu_s": 30.0}
    row |= {"load": 2.0, "undecided": 0, "neurons_before": 300, "neurons_after": 120}
    row |= {"bab_nodes": 123456, "verdict": "EQUIVALENT", "meets": False}
    late = acas.summary([row, {**row, "wall_s": 12.0, "meets": True, "undecided": 3}])
    assert (late["runs"], late["meeting"], late["over_target_s"], late["undecided_runs"]) == (
        2,
        1,
        1,
        1,
    )
    assert late["max_wall_s"] == 31.0 and late["slowest"][0] == "5_9 prop_2 31.0 s"
    assert len(acas.format_row(row)) <= 80 and len(acas.HEADER) <= 80
    timeout = {**row, **acas._nothing(), "status": "timeout", "wall_s": 120.0}
    assert "timeout" in acas.format_row(timeout) and len(acas.format_row(timeout)) <= 80
    assert "| 5_9 | 2 | 0 | 120 (300) |" in acas.markdown([{**row, **acas._nothing(), **row}])


def test_one_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "acas.json"
    args = ["acas", "--nets", "4_5", "--props", "3", "--out", str(out)]
    from benchmarks.cli import main

    assert main(args) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines() if not line.startswith("wrote")) <= 80
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok" and row["undecided"] == 0 and row["verdict"] == "EQUIVALENT"
    assert row["neurons_before"] == 300 and 0 < row["neurons_after"] < 300
    assert row["cpu_s"] > 0 and math.isfinite(row["wall_s"])
    assert (tmp_path / "acas.md").read_text().startswith("| network | prop |")
