"""MILPs on a Dask cluster (``cluster=``, ``--cluster``): the same verdicts as one process.

The cluster tests start their own ``LocalCluster`` (two spawned worker processes, one thread
each; once per module: most of the time is their start-up) and skip when the ``cluster`` extra
(``distributed``) is not installed. A scheduler that cannot be reached is a clear error before
any work (:class:`InvalidOptionError`, exit code 2); a cluster that fails *during* the analysis
is dropped with a note and the remaining MILPs are answered in-process (tested with a client
whose futures fail, so the failure point is exact).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exactcomp import cli
from exactcomp.api import compress
from exactcomp.bab import relu, split
from exactcomp.errors import InvalidOptionError
from exactcomp.io import save
from exactcomp.milp.highs import solve_question
from exactcomp.stability import milp_phase, stable_neurons
from exactcomp.testing.random_networks import random_case

FIELDS = ("verdict", "proof", "witness_pos", "witness_neg", "lower", "upper")
# Layers that need several MILPs: seed 21 with the per-neuron ``leo`` method (8 MILPs), and
# a wider seed 22 with ``fast`` (6 MILPs), which settles most small cases without any MILP
# (LP bounds with ideal cuts).
CASES = [
    (21, "leo", dict(max_neurons=12, depth=(2, 3), width=(4, 6))),
    (22, "fast", dict(max_neurons=60, width=(16, 24))),
]


def _case(seed: int, **kw):
    kw = {"max_neurons": 40, "depth": (2, 3), "width": (8, 14), **kw}
    return random_case(seed, nasty=False, **kw)


def _assert_same(a, b) -> None:
    assert a.stats["milps"] == b.stats["milps"]
    for la, lb in zip(a.layers, b.layers, strict=True):
        for name in FIELDS:
            assert np.array_equal(getattr(la, name), getattr(lb, name)), name
    assert np.array_equal(a.witnesses, b.witnesses)


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch, tmp_path: Path, capfd) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(milp_phase, "_CONNECT_SECONDS", 1.0)
    case = _case(21, max_neurons=12, depth=(2, 3), width=(4, 6))
    with pytest.raises(InvalidOptionError, match="cannot reach the Dask scheduler"):
        stable_neurons(case.network, case.box, cluster="tcp://127.0.0.1:1")
    with pytest.raises(InvalidOptionError, match="scheduler address"):
        stable_neurons(case.network, case.box, cluster="")
    model = tmp_path / "net.onnx"
    save(case.network, model)
    code = cli.main(["stability", str(model), "--box", "0,1", "--cluster", "tcp://127.0.0.1:1"])
    err = capfd.readouterr().err
    assert code == 2
    assert "exactcomp: error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'" in err


def test_without_dask_cluster_is_a_one_line_error(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # ``import distributed`` fails
    model = tmp_path / "net.onnx"
    save(_case(21, max_neurons=12, depth=(2, 3), width=(4, 6)).network, model)
    for command in (["stability"], ["compress", "-o", str(tmp_path / "small.onnx")]):
        argv = [command[0], str(model), *command[1:], "--box", "0,1", "--cluster", "tcp://s:8786"]
        code = cli.main(argv + ["--quiet"])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2
        assert len(lines) == 1, lines
        assert "pip install 'exactcomp[cluster]'" in lines[0]
    assert not (tmp_path / "small.onnx").exists()


def test_exactcomp_does_not_import_dask_without_cluster(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    save(_case(21, max_neurons=12, depth=(2, 3), width=(4, 6)).network, model)
    code = (
        "import sys\n"
        "from exactcomp.cli import main\n"
        f"assert main(['stability', {str(model)!r}, '--box', '0,1', '--jobs', '1', '--quiet']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------- a cluster failing midway
class _Future:
    def __init__(self, compute, fail: bool) -> None:
        self._compute, self._fail = compute, fail

    def result(self, timeout=None):
        if self._fail:
            raise OSError("Stream is closed")  # what a lost scheduler connection raises
        return self._compute()

    def cancel(self) -> None:
        pass


class _FailingClient:
    """A stand-in ``distributed.Client`` that answers (in-process, lazily) until its
    ``fail_at``-th submitted question (``0``: its first scatter fails)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.submitted, self.closed = fail_at, 0, False

    def scatter(self, data, broadcast=False, hash=True):
        if self.fail_at == 0:
            raise OSError("No valid workers found")
        return data

    def nthreads(self) -> dict:
        return {"tcp://w1": 1, "tcp://w2": 1}

    def submit(self, fn, milp, q, pure=True):
        assert fn is solve_question and not pure
        self.submitted += 1
        return _Future(lambda: fn(milp, q), fail=self.submitted >= self.fail_at)

    def close(self, timeout=None) -> None:
        self.closed = True


class _Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def task(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.mark.parametrize("fail_at", [0, 3])
def test_a_failing_cluster_falls_back_in_process(monkeypatch, fail_at: int) -> None:
    case = _case(21, max_neurons=12, depth=(2, 3), width=(4, 6))
    one = stable_neurons(case.network, case.box, method="leo", jobs=1)
    client = _FailingClient(fail_at)
    monkeypatch.setattr(milp_phase, "connect", lambda address: client)
    notes = _Notes()
    rep = stable_neurons(case.network, case.box, method="leo", cluster="tcp://s:1", progress=notes)
    _assert_same(one, rep)
    assert rep.stats["cluster_failed"] == 1
    assert rep.stats["cluster_milps"] == max(0, fail_at - 1)
    assert client.closed
    assert (
        len(notes.notes) == 1 and "answering the remaining MILPs in this process" in notes.notes[0]
    )


# ------------------------------------------------- a real local cluster (started once)
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c


@pytest.mark.parametrize(("seed", "method", "kw"), CASES)
def test_cluster_gives_the_single_process_result(cluster, monkeypatch, seed, method, kw) -> None:
    monkeypatch.setattr(split, "MAX_INPUTS", 0)  # input splits would leave no MILP to send
    monkeypatch.setattr(relu, "RELU_SPLITS", False)  # nor ReLU splits
    case = _case(seed, **kw)
    one = stable_neurons(case.network, case.box, method=method, jobs=1, time_limit=5.0)
    assert one.stats["milps"] >= 6
    many = stable_neurons(
        case.network, case.box, method=method, cluster=cluster.scheduler_address, time_limit=5.0
    )
    _assert_same(one, many)
    assert many.stats["cluster_milps"] == many.stats["milps"]  # every answer came from it
    assert many.stats["cluster_failed"] == 0


def test_reports_record_the_cluster(cluster, tmp_path: Path, capsys) -> None:
    case = _case(21, max_neurons=12, depth=(2, 3), width=(4, 6))
    address = cluster.scheduler_address
    result = compress(case.network, case.box, method="leo", cluster=address, check=200)
    assert result.report["cluster"] == address
    assert compress(case.network, case.box, jobs=1, check=200).report["cluster"] is None
    model, rep = tmp_path / "net.onnx", tmp_path / "stability.json"
    save(case.network, model)
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lower": case.box.lower.tolist(), "upper": case.box.upper.tolist()}))
    argv = ["stability", model, "--box-file", box, "--method", "leo", "--cluster", address]
    code = cli.main([str(a) for a in argv + ["--report", rep, "--quiet"]])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(rep.read_text())
    assert doc["cluster"] == address
    assert doc["stats"]["cluster_milps"] == doc["stats"]["milps"] > 0
