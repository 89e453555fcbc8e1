"""Smoke tests of the benchmark harness: one tiny model through ``table``, the writers, the
plots on fake rows, the method comparison, and the budget that stops a slow method.

They check the harness's code paths, never speed (timings are only recorded, not judged).
"""

from __future__ import annotations

import io
import json
import math
import sys
import types

import numpy as np
import pytest
from rich.console import Console

from benchmarks.console import RichProgress
from benchmarks.digits import ModelConfig
from benchmarks.isolate import MethodSpec, run_isolated
from benchmarks.methods import _compare
from benchmarks.networks import uniform_domain
from benchmarks.plots import plot_l1, plot_proofs, plot_scaling
from benchmarks.rows import LayerCounts, MethodRow, TableRow, write_rows
from exactcomp.verdicts import LayerStability, Proof, StabilityReport, Verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quiet_bars(total: int) -> RichProgress:
    return RichProgress("test", total, console=Console(file=io.StringIO(), width=100))


def _table_row(arch: str, l1: float, seed: int, removed: float, acc: float) -> TableRow:
    return TableRow(
        arch=arch,
        l1=l1,
        seed=seed,
        acc_before=acc,
        acc_after=acc,
        acc_after_f32=acc,
        test_mismatches=0,
        neurons_before=50,
        neurons_after=-1 if math.isnan(removed) else int(50 * (1 - removed / 100)),
        params_before=4000,
        params_after=3000,
        pct_removed=removed,
        layers=(LayerCounts(25, 20, 1, 4, 20, 0), LayerCounts(25, 21, 0, 4, 21, 0)),
        seconds=1.5,
        milps=3,
        verdict="EQUIVALENT",
        verify_seconds=0.5,
        verify_bound=0.0,
    )


def _method_row(method: str, width: int, depth: int, seconds: float, status: str = "ok"):
    return MethodRow(
        network=f"w{width}d{depth}",
        domain="[0,1]^n",
        method=method,
        status=status,
        neurons=width * depth,
        seconds=seconds if status == "ok" else math.nan,
        milps=10.0 if status == "ok" else math.nan,
        active=1.0,
        inactive=2.0,
        unstable=3.0,
        undecided=0.0,
        proofs={"interval": 3, "milp": 1, "witness": 3} if status == "ok" else {},
        width=width,
        depth=depth,
    )


def _report(verdicts: list[int]) -> StabilityReport:
    base = LayerStability.undecided(0, len(verdicts))
    ls = LayerStability(
        layer=0,
        verdict=np.asarray(verdicts, dtype=np.int8),
        proof=np.full(len(verdicts), Proof.MILP, dtype=np.int8),
        lower=base.lower,
        upper=base.upper,
        witness_pos=base.witness_pos,
        witness_neg=base.witness_neg,
    )
    return StabilityReport((ls,), np.zeros((0, 1)), stats={"milps": 2})


def test_plots_write_pngs_from_fake_rows(tmp_path):
    rows = [
        _table_row(a, l1, s, removed=100 * l1 * 500, acc=0.95 - l1)
        for a in ("64-25-25-10", "64-50-50-10")
        for l1 in (0.0, 1e-4, 1e-3)
        for s in (0, 1)
    ]
    rows.append(_table_row("64-25-25-10", 5e-4, 0, math.nan, math.nan))  # failed row: skipped
    scaling = [
        _method_row(m, w, d, s)
        for m, s in (("naive", 10.0), ("leo", 3.0), ("fast", 0.5))
        for w, d in ((25, 2), (50, 2), (50, 1), (50, 3))
    ] + [_method_row("naive", 100, 2, 0.0, status="did not finish in 5 s")]
    paths = [
        plot_l1(rows, tmp_path / "l1.png"),
        plot_scaling(scaling, tmp_path / "scaling.png"),
        plot_proofs(scaling, tmp_path / "proofs.png", ("network", "method")),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_write_rows_csv_json_markdown(tmp_path):
    rows = [_table_row("64-25-25-10", 0.0, 0, 10.0, 0.9)]
    rows.append(_table_row("64-25-25-10", 1e-4, 0, math.nan, 0.9))
    csv_path, json_path, md_path = write_rows(rows, tmp_path, "t", {"command": "x"})
    header = csv_path.read_text().splitlines()[0].split(",")
    assert "layer_inactive" in header and "verdict" in header
    doc = json.loads(json_path.read_text())
    assert doc["meta"]["command"] == "x"
    assert doc["rows"][1]["pct_removed"] is None  # NaN is written as null, never a number
    assert doc["rows"][0]["layers"][0]["inactive"] == 4
    assert md_path.read_text().startswith("| arch |")


def test_compare_fills_speedups_and_stable_set_agreement():
    same = [Verdict.ACTIVE, Verdict.INACTIVE, Verdict.UNSTABLE]
    other = [Verdict.ACTIVE, Verdict.UNSTABLE, Verdict.UNSTABLE]
    results = {
        "naive": (_method_row("naive", 3, 1, 10.0), _report(same)),
        "leo": (_method_row("leo", 3, 1, 4.0), _report(other)),
        "fast": (_method_row("fast", 3, 1, 0.5), _report(same)),
    }
    rows = {r.method: r for r in _compare(results)}
    assert rows["fast"].speedup_vs_naive == pytest.approx(20.0)
    assert rows["fast"].speedup_vs_leo == pytest.approx(8.0)
    assert rows["fast"].same_as == "naive:yes leo:CONTRADICTION (1 neurons)"
    assert rows["naive"].speedup_vs_naive == pytest.approx(1.0)


def test_compare_tells_a_time_out_from_a_contradiction():
    """A neuron one method left undecided (time-out) is not a disagreement."""
    decided = [Verdict.ACTIVE, Verdict.INACTIVE, Verdict.UNSTABLE]
    timed_out = [Verdict.ACTIVE, Verdict.UNDECIDED, Verdict.UNSTABLE]
    results = {
        "naive": (_method_row("naive", 3, 1, 10.0), _report(timed_out)),
        "fast": (_method_row("fast", 3, 1, 0.5), _report(decided)),
    }
    rows = {r.method: r for r in _compare(results)}
    assert rows["fast"].same_as == "naive:yes where both decided (1 undecided in one)"


def test_compare_leaves_unfinished_methods_without_figures():
    results = {
        "naive": (_method_row("naive", 3, 1, 0.0, status="did not finish in 1 s"), None),
        "fast": (_method_row("fast", 3, 1, 0.5), _report([Verdict.ACTIVE])),
    }
    rows = {r.method: r for r in _compare(results)}
    assert math.isnan(rows["fast"].speedup_vs_naive)
    assert rows["fast"].same_as == ""


def test_isolated_run_past_its_budget_did_not_finish(tmp_path):
    spec = MethodSpec(
        model=str(tmp_path / "never-read.pt"),
        domain=uniform_domain(0.0, 1.0),
        method="naive",
        time_limit=1.0,
    )
    # The child cannot even import torch in 0.05 s: it must be stopped and reported as such.
    outcome = run_isolated(spec, budget=0.05)
    assert outcome.status == "did not finish"
    assert outcome.report is None


def test_isolated_run_returns_the_verdicts_and_proofs_of_an_in_process_run():
    """The child's answer crosses processes as a report document: verdicts and each
    neuron's proof kind arrive unchanged."""
    from pathlib import Path

    from exactcomp.api import load, stable_neurons

    model = Path(__file__).resolve().parents[1] / "models" / "moons_2-16-16-1.pt"
    spec = MethodSpec(
        model=str(model), domain=uniform_domain(-1.5, 2.5), method="fast", time_limit=5.0, jobs=1
    )
    outcome = run_isolated(spec, budget=600.0)
    assert outcome.status == "ok", outcome.status
    here = stable_neurons(load(model), (-1.5, 2.5), time_limit=5.0, jobs=1)
    assert outcome.seconds >= 0 and outcome.report.stats["milps"] == here.stats["milps"]
    for a, b in zip(outcome.report.layers, here.layers, strict=True):
        assert a.layer == b.layer
        np.testing.assert_array_equal(a.verdict, b.verdict)
        np.testing.assert_array_equal(a.proof, b.proof)


def test_soak_subcommand_delegates(monkeypatch):
    from benchmarks.cli import main

    seen = []
    fake = types.ModuleType("benchmarks.soak")
    fake.main = lambda argv: seen.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "benchmarks.soak", fake)
    assert main(["soak", "--cases", "3"]) == 0
    assert seen == [["--cases", "3"]]


def test_table_on_one_tiny_model(tmp_path):
    from benchmarks.table import TableOptions, run_table

    cfg = ModelConfig((6, 6), 1e-3, 0, epochs=2)
    opts = TableOptions(
        time_limit=2.0, jobs=1, verify_time_limit=5.0, check_points=1000, models_dir=tmp_path
    )
    with _quiet_bars(1) as bars:
        rows = run_table((cfg,), opts, bars)
    (row,) = rows
    assert row.error == ""
    assert row.arch == "64-6-6-10"
    assert row.acc_before == row.acc_after and row.test_mismatches == 0
    assert 0.0 <= row.acc_after_f32 <= 1.0
    assert row.neurons_before == 12 and 0 <= row.neurons_after <= 12
    assert sum(lc.width_before for lc in row.layers) == 12
    # The harness records whatever the verifier proves within its budget; it must never be
    # a refutation of an exact compression.
    assert row.verdict in ("EQUIVALENT", "UNKNOWN")
    assert list(tmp_path.glob("digits_64-6-6-10_*.pt"))  # cached where we asked, not models/


def test_markdown_block_is_regenerated_between_markers(tmp_path):
    from benchmarks.results_md import END, START, regenerate

    rows = [_table_row("64-25-25-10", 0.0, s, 10.0, 0.9) for s in (0, 1)]
    write_rows(rows, tmp_path, "table_quick", {"command": "python -m benchmarks table --quick"})
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Results\n\nhand-written\n\n{START}\nold\n{END}\n\nmore hand-written\n")
    text = regenerate(md, tmp_path)
    assert "hand-written" in text and "more hand-written" in text and "old" not in text
    assert "`python -m benchmarks table --quick`" in text
    assert "| 64-25-25-10 | 0 | 2 |" in text  # the summary groups the two seeds


def test_quick_runs_write_where_git_ignores_them(tmp_path) -> None:
    """``python -m benchmarks table --quick`` overwrote committed files under
    ``benchmarks/results/`` (issue 18, item 10); now only an explicit ``--out`` does."""
    import shutil
    import subprocess

    from benchmarks.cli import DEFAULT_OUT, REPO_ROOT, build_parser, output_dir

    parse = build_parser().parse_args
    quick = output_dir(parse(["table", "--quick"]))
    assert quick != DEFAULT_OUT and DEFAULT_OUT not in quick.parents
    assert output_dir(parse(["table"])) == DEFAULT_OUT
    assert output_dir(parse(["scaling", "--quick", "--out", str(tmp_path)])) == tmp_path
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        return  # not a checkout: nothing for git to ignore
    probe = quick.relative_to(REPO_ROOT) / "table_quick.csv"
    ignored = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(probe)])
    assert ignored.returncode == 0, f"{probe} is not ignored by git"


def test_help_lists_every_command_main_runs():
    """``python -m benchmarks --help`` left out ``lossy``, which the README documents and
    ``main`` runs (its arguments pass through, as ``soak``'s)."""
    import re
    from pathlib import Path

    from benchmarks.cli import build_parser, main

    source = Path(main.__code__.co_filename).read_text()
    dispatched = set(re.findall(r'argv\[0\] == "(\w+)"', source))
    assert "lossy" in dispatched
    text = build_parser().format_help()
    for command in dispatched:
        assert command in text, command
