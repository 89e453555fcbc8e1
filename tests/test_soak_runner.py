"""The soak runner always ends with a summary (soak19): a case past ``--case-seconds`` is
stopped and counted as timed out, replayable; the summary is on disk after every case.

The case functions below stand in for :func:`benchmarks.soak_families.run_case`; they run in
the soak's worker process (pickled by name), so they are module-level. None of them sleeps:
the slow one blocks on an event nobody sets, and the time-out kills it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from benchmarks import soak, soak_worker
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions, method_for

SLOW_SEED = 2


def _result(family: str, seed: int, findings: tuple[Finding, ...] = ()) -> CaseResult:
    return CaseResult(seed, 3, 1, method_for(seed), {}, {}, findings, seconds=0.01, family=family)


def blocking_run(family: str, seed: int, opts: SoakOptions) -> tuple[dict, CaseResult]:
    """Case ``SLOW_SEED`` never ends (and starts a child that would outlive a plain kill
    of the worker); every other case answers at once."""
    if seed == SLOW_SEED:
        block = "import threading; threading.Event().wait()"
        child = subprocess.Popen([sys.executable, "-c", block], stdin=subprocess.DEVNULL)
        (Path(os.environ["SOAK19_OUT"]) / "child.pid").write_text(str(child.pid))
        threading.Event().wait()
    return {"family": family, "seed": seed}, _result(family, seed)


def watching_run(family: str, seed: int, opts: SoakOptions) -> tuple[dict, CaseResult]:
    """A case that reads the summary on disk: it must already count every earlier case
    (an ``error`` finding when it does not)."""
    path = Path(os.environ["SOAK19_OUT"]) / "summary.json"
    seen = json.loads(path.read_text())["cases"] if path.exists() else 0
    expected = seed - int(os.environ["SOAK19_SEED"])
    bad = () if seen == expected else (Finding("error", f"summary had {seen} of {expected}"),)
    return {"family": family, "seed": seed}, _result(family, seed, bad)


def raising_run(family: str, seed: int, opts: SoakOptions) -> tuple[dict, CaseResult]:
    """A case function that raises on seed 1 (an engine bug the checks did not catch)."""
    if seed == 1:
        raise ValueError("planted failure")
    return {"family": family, "seed": seed}, _result(family, seed)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_blocking_case_is_stopped_and_reported_as_timed_out(tmp_path, monkeypatch) -> None:
    """Case 2 of 4 blocks: the run still ends, with the other three checked, case 2 counted
    as timed out in its family with a command that replays it alone, and exit code 3; the
    process the case started is killed with it."""
    monkeypatch.setenv("SOAK19_OUT", str(tmp_path))
    argv = ["--cases", "4", "--seed", "0", "--family", "nnet", "--case-seconds", "1"]
    rc = soak.main([*argv, "--out", str(tmp_path)], run=blocking_run)
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert rc == 3 and doc["complete"]
    assert doc["cases"] == 3 and doc["timed_out_total"] == 1 and doc["unsound_total"] == 0
    fam = doc["families"]["nnet"]
    assert fam["timed_out"] == 1 and fam["cases"] == 3 and fam["max_seconds"] < 1.0
    (t,) = doc["timed_out"]
    assert t["family"] == "nnet" and t["seed"] == SLOW_SEED
    assert f"--cases 1 --seed {SLOW_SEED} --family nnet" in t["replay"]
    assert not (tmp_path / "failures").exists()  # not unsound, and not an engine error
    assert not _running(int((tmp_path / "child.pid").read_text()))


def test_the_summary_is_on_disk_after_every_case(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOAK19_OUT", str(tmp_path))
    monkeypatch.setenv("SOAK19_SEED", "10")
    argv = ["--cases", "3", "--seed", "10", "--family", "random", "--out", str(tmp_path)]
    assert soak.main(argv, run=watching_run) == 0
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["cases"] == 3 and doc["errors"] == 0 and doc["timed_out_total"] == 0


def test_a_case_that_raises_is_an_error_and_the_run_goes_on(tmp_path) -> None:
    argv = ["--cases", "3", "--seed", "0", "--family", "random", "--out", str(tmp_path)]
    assert soak.main(argv, run=raising_run) == 3
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["cases"] == 3 and doc["errors"] == 1 and doc["unsound_total"] == 0
    saved = json.loads((tmp_path / "failures" / "case-1.json").read_text())
    assert "planted failure" in saved["result"]["findings"][0]["detail"]


def test_a_worker_that_will_not_start_ends_the_run_with_a_summary(tmp_path, monkeypatch) -> None:
    """The case after the first cannot get a worker (an import error, the files edited under
    the run): the run stops there, still with its summary: one case, ``stopped``, exit 3."""

    def run(self, family, seed, opts, limit):
        if seed > 0:
            raise RuntimeError("the soak worker did not start (exit code 1)")
        return blocking_run(family, seed, opts)

    monkeypatch.setattr(soak_worker.CaseWorker, "run", run)
    argv = ["--cases", "3", "--seed", "0", "--family", "nnet", "--out", str(tmp_path)]
    assert soak.main(argv) == 3
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["cases"] == 1 and not doc["complete"]
    assert doc["stopped"].startswith("stopped before case 1: the soak worker did not start")
