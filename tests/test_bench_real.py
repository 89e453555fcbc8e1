"""``python -m benchmarks real``: both engines in child processes, the budget, the rows.

The engines run on a toy network whose answer a dense grid gives; the budget is exercised
with a stand-in ``exactcomp`` tree whose ``compress`` blocks on a pipe that is never written
(no sleeping, no timing). Nothing here judges speed.
"""

from __future__ import annotations

import dataclasses
import io
import math
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from benchmarks.console import RichProgress, print_rows
from benchmarks.engines import (
    PREVIOUS_COMMIT,
    REPO_ROOT,
    CaseSpec,
    ChildResult,
    Engine,
    current_engine,
    previous_engine,
    run_case,
)
from benchmarks.networks import RealNetwork, real_networks
from benchmarks.real import RealOptions, engines_markdown, run_real, to_row
from benchmarks.rows import RealConsoleRow
from exactcomp.domain import Box
from exactcomp.io import load

SMALL = REPO_ROOT / "models" / "real" / "small" / "test_small.onnx"


def _has_previous_commit() -> bool:
    probe = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{PREVIOUS_COMMIT}^{{commit}}"],
        capture_output=True,
    )
    return probe.returncode == 0


def _grid_signs(path: Path, lo: float, hi: float) -> tuple[int, int, int]:
    """(active, inactive, unstable) of every ReLU neuron on a dense grid of ``[lo, hi]``."""
    net = load(str(path))
    x = np.linspace(lo, hi, 20001).reshape(-1, 1)
    active = inactive = unstable = 0
    for layer, z in zip(net.layers, net.preactivations(x), strict=True):
        for col in z.T if layer.relu else ():
            pos, neg = bool((col > 0).any()), bool((col < 0).any())
            active += pos and not neg
            inactive += neg and not pos
            unstable += pos and neg
    return active, inactive, unstable


def test_both_engines_agree_with_the_grid_on_a_toy_network(tmp_path: Path) -> None:
    """test_small (1-2r-2r-1, hand-made weights) over x in [-1, 1], in both engines::

    x -> 2 ReLU -> 2 ReLU -> y      every neuron settled; the compressed copy EQUIVALENT
    """
    if not _has_previous_commit():
        pytest.skip("not a git checkout with the previous engine's commit")
    prop = tmp_path / "box.vnnlib"
    prop.write_text(
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
        "(assert (>= X_0 -1.0))\n(assert (<= X_0 1.0))\n(assert (>= Y_0 0.0))\n"
    )
    net = RealNetwork("test_small", SMALL, (prop,))
    bars = RichProgress("test", 2, console=Console(file=io.StringIO(), width=100))
    with previous_engine() as previous:
        assert (Path(previous.root) / "exactcomp" / "api.py").is_file()
        assert not (Path(previous.root) / "exactcomp" / "bab").exists()  # before branch and bound
        rows = run_real(
            [(net, str(prop))], RealOptions(budget=60.0), bars, [previous, current_engine()]
        )
    assert [r.engine for r in rows] == ["previous", "current"]
    want = _grid_signs(SMALL, -1.0, 1.0)
    for row in rows:
        assert row.status == "ok" and row.error == "", row
        assert (row.active, row.inactive, row.unstable, row.undecided) == (*want, 0)
        assert row.verdict == "EQUIVALENT"
        assert row.neurons_before == 4 and row.cpu_seconds >= 0
    assert rows[0].bab_nodes == -1  # the previous engine has no branch-and-bound counter
    assert rows[1].bab_nodes >= 0


def _stand_in_tree(root: Path, stubborn: bool) -> Engine:
    """An ``exactcomp`` whose ``compress`` blocks; ``stubborn``: it also ignores Ctrl-C."""
    pkg = root / "exactcomp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "domain.py").write_text("class Box:\n    def __init__(self, lo, hi):\n        pass\n")
    (pkg / "verdicts.py").write_text("Proof = Verdict = ()\n")
    (pkg / "api.py").write_text(
        textwrap.dedent(
            f"""
            import os

            def load(path):
                return path

            def compress(net, boxes, **options):
                r, w = os.pipe()  # nobody writes: read blocks until a signal
                while True:
                    try:
                        os.read(r, 1)
                    except KeyboardInterrupt:
                        if not {stubborn}:
                            raise
            """
        )
    )
    return Engine("previous", root)


@pytest.mark.parametrize("stubborn", [False, True])
def test_a_case_over_its_budget_did_not_finish(tmp_path: Path, stubborn: bool) -> None:
    """The child's Ctrl-C at the budget, or the parent's stop after the grace: never a hang."""
    engine = _stand_in_tree(tmp_path, stubborn)
    spec = CaseSpec(str(SMALL), (Box.uniform(-1.0, 1.0, 1),), "fast", 10.0, 1, 0.2, 5.0, None)
    # the stubborn child is stopped by the parent 2 s after its budget; the other one stops
    # itself at its budget (its grace is long enough never to be needed)
    res = run_case(engine, spec, grace=2.0 if stubborn else 60.0, poll=0.05)
    if stubborn:
        assert res.status == "did not finish"
        assert res.doc.get("stage") in (None, "started")
    else:
        assert res.status.startswith("error: KeyboardInterrupt")
        assert res.doc.get("stage") == "started"
    row = to_row(RealNetwork("stand_in", SMALL, ()), "box", 1, "previous", res)
    assert row.status == "did not finish" and row.verdict == "did not finish"
    assert row.error == "" and math.isnan(row.seconds)
    if stubborn:
        assert row.verify_note == "compress stopped 2 s late"
    else:  # the stand-in's frame where the Ctrl-C landed
        assert row.verify_note.startswith("Ctrl-C at the budget landed in exactcomp/api.py:")


def _doc(**extra) -> dict:
    base = dict(
        stage="compressed",
        seconds=3.0,
        cpu_seconds=2.0,
        interrupted=True,
        neurons_before=300,
        neurons_after=250,
        parameters_before=13305,
        parameters_after=11000,
        bytes_after=50000,
        milps=12,
        bab_nodes=-1,
        active=10,
        inactive=140,
        unstable=100,
        undecided=50,
        proofs={"lp": 150, "none": 50},
    )
    return {**base, **extra}


def test_rows_say_how_far_a_case_got() -> None:
    net = RealNetwork("acasxu_1_1", SMALL, ())
    stopped = to_row(net, "prop_1", 1, "previous", ChildResult("did not finish", _doc(), 99.0))
    assert stopped.status == "did not finish" and stopped.verdict == "did not finish"
    assert stopped.undecided == 50 and stopped.pct_stable == 50.0
    done = _doc(stage="verified", verdict="EQUIVALENT", verify_seconds=1.0, verify_tol=1e-6)
    budget = to_row(net, "prop_1", 1, "previous", ChildResult("ok", done, 9.0))
    assert budget.status == "budget" and budget.verdict == "EQUIVALENT"
    failed = to_row(
        net, "prop_1", 1, "previous", ChildResult("error: UnsupportedModelError: MaxPool", {}, 1.0)
    )
    assert failed.status == "error" and "MaxPool" in failed.error and failed.verdict == "ERROR"


def test_the_console_table_fits_80_columns() -> None:
    net = RealNetwork("convnet_maxpool_long_name", SMALL, ())
    doc = _doc(stage="verified", verdict="UNKNOWN", verify_seconds=1.0, neurons_before=23328)
    doc.update(neurons_after=23328, seconds=12345.6, milps=123456, bab_nodes=1234567)
    rows = [
        to_row(
            net, "cifar_base_kw-img2908-eps0.019869281045751634", 1, e, ChildResult("ok", doc, 1)
        )
        for e in ("previous", "current")
    ]
    out = io.StringIO()
    print_rows(
        Console(file=out, width=200), "real", [RealConsoleRow.of(r) for r in rows], compact=True
    )
    lines = out.getvalue().splitlines()
    assert max(len(ln.rstrip()) for ln in lines) <= 80, out.getvalue()
    assert sum("prev" in ln for ln in lines) == 1  # one line per row: nothing folded


def test_the_added_networks_are_listed_with_their_properties() -> None:
    nets = {n.name: n for n in real_networks()}
    for name in ("acasxu_1_2", "acasxu_2_1", "acasxu_3_3"):
        assert [p.name for p in nets[name].props] == [f"prop_{i}.vnnlib" for i in (1, 2, 3, 4)]
    assert len(nets["eran_9x200"].props) == 2 and nets["eran_9x200"].large


def test_the_side_by_side_table_pairs_the_engines_of_each_case() -> None:
    net = RealNetwork("acasxu_1_1", SMALL, ())
    done = _doc(stage="verified", verdict="EQUIVALENT", verify_seconds=1.0, verify_tol=1e-6)
    cur = {**done, "interrupted": False, "undecided": 0, "bab_nodes": 1989, "milps": 0}
    rows = [
        to_row(net, "prop_1", 1, "previous", ChildResult("ok", done, 9.0)),
        to_row(net, "prop_1", 1, "current", ChildResult("ok", cur, 9.0)),
        to_row(net, "prop_2", 1, "previous", ChildResult("error: OSError: x|y", {}, 1.0)),
    ]
    text = engines_markdown([dataclasses.asdict(r) for r in rows])
    lines = text.splitlines()
    assert len(lines) == 4 and len({ln.count("|") for ln in lines}) == 1
    assert "| acasxu_1_1 | prop_1 | 50* / 0 | 3.0 / 3.0 | 2.0 / 2.0 | 12 / 0 | 1989 |" in text
    assert "| prop_2 | - / - | - / - |" in lines[3] and "error: OSError: x/y / -" in lines[3]
