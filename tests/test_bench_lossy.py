"""The plumbing of ``python -m benchmarks lossy`` on real networks (issue 15, item 5).

A tiny shipped network (``models/real/small/vdp.onnx``: 3 inputs, 32-32 ReLUs, 3 outputs, over
its ``vdp_0.vnnlib`` box) stands in for the real networks of :data:`benchmarks.lossy.REAL`;
the rows' shape and meaning are checked against brute-force evaluation, never their timing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import lossy

SMALL = lossy.ROOT / "models" / "real" / "small"
VDP = lossy.RealModel(str(SMALL / "vdp.onnx"), str(SMALL / "vdp_0.vnnlib"), "argmin")


@pytest.fixture
def tiny_real(monkeypatch):
    """``vdp`` registered as a real network, with two tolerances, one width and short input
    splits (fewer, shorter rows)."""
    monkeypatch.setitem(lossy.REAL, "vdp", VDP)
    monkeypatch.setattr(lossy, "REAL_TOL_FRACTIONS", (0.0, 0.05))
    monkeypatch.setattr(lossy, "BITS", (4,))
    monkeypatch.setattr(lossy, "REAL_SPLIT_SECONDS", 0.5)
    return lossy.real_case("vdp")


def test_box_points_are_seeded_and_inside_every_box():
    from exactcomp.domain import Box

    boxes = [Box(np.zeros(2), np.ones(2)), Box(np.full(2, 5.0), np.full(2, 6.0))]
    x = lossy.box_points(boxes, 7, seed=3)
    assert x.shape == (7, 2)
    np.testing.assert_array_equal(x, lossy.box_points(boxes, 7, seed=3))
    inside = [((x >= b.lower) & (x <= b.upper)).all(1) for b in boxes]
    assert inside[0].sum() == 4 and inside[1].sum() == 3


def test_real_case_scales_the_tolerances_to_the_sampled_output_span(tiny_real):
    case = tiny_real
    y = case.f.forward(case.x)
    assert case.x.shape == (lossy.AGREEMENT_POINTS, 3)
    assert all(((case.x >= b.lower) & (case.x <= b.upper)).all(1).any() for b in case.boxes)
    assert case.tols == pytest.approx((0.0, 0.05 * (y.max() - y.min())))
    assert case.labels is None and case.advisory == "argmin"
    assert case.split_seconds == 0.5  # 3 inputs: the proofs may split


def test_real_rows_report_agreement_of_the_argmin_and_no_accuracy(tiny_real):
    case = tiny_real
    rows: list[dict] = []
    lossy.run_case(case, rows, time_limit=5.0)
    methods = [r["method"] for r in rows]
    assert methods == 2 * ["ours: compress", "magnitude (global)", "magnitude (neurons)"] + [
        "ours: quantize",
        "round-to-nearest",
    ]
    assert [r["setting"] for r in rows[:6:3]] == list(case.tols)
    base = case.f.forward(case.x).argmin(1)
    for r in rows:
        assert r["model"] == "vdp" and r["accuracy"] is None
        assert 0.0 <= r["agreement"] <= 1.0
        assert r["sampled"] <= r["proven"] + 1e-9  # a lower bound never above the proof
    ours = rows[3]  # compress at 5 % of the span: proven within it, agreement recomputed
    assert ours["proven"] <= case.tols[1] + 1e-12
    rtn = lossy.round_to_nearest(case.f, 4)
    agree = float((rtn.forward(case.x).argmin(1) == base).mean())
    assert rows[-1]["agreement"] == pytest.approx(agree)


def test_main_writes_lossy_real_with_notes_and_empty_accuracy(tiny_real, tmp_path):
    assert lossy.main(["--models", "vdp", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "lossy_real.json").read_text())
    assert len(rows) == 2 * 3 + 2 and all(r["accuracy"] is None for r in rows)
    md = (tmp_path / "lossy_real.md").read_text()
    assert "argmin" in md and "output span" in md
    assert (tmp_path / "lossy_real.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "lossy.json").exists()


def test_unknown_model_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exc:
        lossy.main(["--models", "no_such_net", "--out", "/nonexistent"])
    assert exc.value.code == 2
    assert "no_such_net" in capsys.readouterr().err
