"""Ctrl-C: nothing half-written; with ``--partial`` a valid, still exact network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exactcomp import cli
from exactcomp.api import compress
from exactcomp.domain import Box
from exactcomp.io import load, save
from exactcomp.stability.layer import LayerRun
from exactcomp.verdicts import Verdict

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "models" / "digits_64-100-100-10_l1-5e-04_s0.pt"


def _interrupt_at_layer(monkeypatch, k_stop: int) -> None:
    real = LayerRun.classify

    def classify(self):
        if self.k == k_stop:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(LayerRun, "classify", classify)


def test_partial_compression_is_exact_and_uses_only_earlier_verdicts(monkeypatch) -> None:
    _interrupt_at_layer(monkeypatch, 1)
    net = load(DIGITS)
    res = compress(net, (0.0, 1.0), partial=True, check=5000)
    assert res.report["interrupted"] is True
    layer1 = res.stability.layers[1]
    assert (layer1.verdict == Verdict.UNDECIDED).all()
    assert res.stability.layers[0].count(Verdict.INACTIVE) > 0
    assert res.network.num_neurons < net.num_neurons
    x = Box.uniform(0, 1, 64).sample(5000, np.random.default_rng(0))
    np.testing.assert_allclose(res.network(x), net(x), atol=1e-9)


def test_interrupt_without_partial_writes_nothing(monkeypatch, tmp_path, capsys) -> None:
    _interrupt_at_layer(monkeypatch, 1)
    out = tmp_path / "small.pt"
    code = cli.main(
        [
            "compress",
            str(DIGITS),
            "--box",
            "0,1",
            "-o",
            str(out),
            "--quiet",
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 130
    assert list(tmp_path.iterdir()) == []
    assert "nothing was written" in capsys.readouterr().err


def test_partial_flag_writes_a_valid_network(monkeypatch, tmp_path) -> None:
    _interrupt_at_layer(monkeypatch, 1)
    out = tmp_path / "small.pt"
    assert (
        cli.main(["compress", str(DIGITS), "--box", "0,1", "-o", str(out), "--quiet", "--partial"])
        == 130  # interrupted, though a (still exact) network is written (issue 18, item 10)
    )
    g, f = load(out), load(DIGITS)
    x = Box.uniform(0, 1, 64).sample(2000, np.random.default_rng(1))
    np.testing.assert_allclose(g(x), f(x), atol=1e-4)


#: The CLI in a child process whose analysis announces itself on stderr, then waits for a
#: signal: the parent interrupts it exactly while it is analysing (an event, not a sleep).
_CHILD = """
import signal, sys
from exactcomp import cli
from exactcomp.stability.layer import LayerRun

def classify(self):
    sys.stderr.write("analysing\\n")
    sys.stderr.flush()
    signal.pause()  # the parent's SIGINT arrives here
    raise AssertionError("no SIGINT came")

LayerRun.classify = classify
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_sigint_leaves_no_file(tmp_path) -> None:
    """A real SIGINT to the CLI process while its analysis runs."""
    model = tmp_path / "model.pt"
    save(load(DIGITS), model)
    out = tmp_path / "small.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "compress", str(model), "--box", "0,1", "-o", str(out)]
        + ["--jobs", "1", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # a test run started in the background of a non-interactive shell inherits SIGINT
        # ignored, and Python then keeps it ignored: restore the default for the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # blocks until the analysis has started
    assert line == "analysing\n", line + proc.stderr.read()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_ctrl_c_inside_a_solver_callback_is_not_swallowed(monkeypatch) -> None:
    """HiGHS turns an exception raised in a Python callback into a plain "Solve error"; a
    Ctrl-C arriving while HiGHS runs (here: inside our incumbent callback) must still stop the
    analysis, as a KeyboardInterrupt once the run returns."""
    from exactcomp.bounds import interval_bounds
    from exactcomp.milp import build_prefix_model, highs

    net = load(DIGITS)
    box = Box.uniform(0, 1, net.input_size)
    model, zk = build_prefix_model(net, box, 1, interval_bounds(net, box))
    milp, _ = highs.compile_model(model, model.x, zk)

    real = highs._incumbent_input

    def interrupted(event, x_cols):  # a real Ctrl-C while HiGHS calls back into Python
        os.kill(os.getpid(), signal.SIGINT)
        return real(event, x_cols)

    monkeypatch.setattr(highs, "_incumbent_input", interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        highs.solve_question(milp, highs.Question(0, 1, 1e-6, "optimal", 30.0))


#: The CLI in a child process that stops, waiting for a signal, once a question has come back
#: from a worker process (the pool started at the first MILP questions): the parent's SIGTERM
#: then arrives while the workers solve the questions sent ahead (an event, not a sleep).
_WORKERS_CHILD = """
import signal, sys
from exactcomp import cli
from exactcomp.stability import milp_phase

milp_phase._START_AFTER_SECONDS = 0.0
milp_phase._MIN_QUESTIONS_FOR_WORKERS = 1
milp_phase._MANY_QUESTIONS = 1
real = milp_phase.Workers.result

def result(self, fut):
    answer = real(self, fut)
    if answer is not None:
        sys.stderr.write("answered by a worker\\n")
        sys.stderr.flush()
        signal.pause()  # the parent's SIGTERM arrives here
    return answer

milp_phase.Workers.result = result
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_the_workers_cleanly_and_writes_nothing(tmp_path) -> None:
    """SIGTERM (``timeout``) while worker processes solve MILPs: exit code 143 and one line;
    no traceback, no "leaked semaphore" warning of the resource tracker (the workers' and
    this process's semaphores are released), no output file, and no worker left running
    (one would hold the stderr pipe open: ``communicate`` would time out)."""
    model = tmp_path / "model.pt"
    save(load(DIGITS), model)
    out = tmp_path / "small.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKERS_CHILD, "compress", str(model), "--box", "0,1"]
        + ["-o", str(out), "--jobs", "2", "--method", "naive", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # blocks until a worker has answered
    assert line == "answered by a worker\n", line + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err == "exactcomp: terminated (SIGTERM); nothing was written\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_sigterm_inside_a_solver_callback_is_not_swallowed(monkeypatch) -> None:
    """As a Ctrl-C: a SIGTERM handled in Python (the CLI's raises ``Terminated``) that arrives
    inside our incumbent callback stops the analysis once the HiGHS run returns."""
    from exactcomp.bounds import interval_bounds
    from exactcomp.errors import Terminated
    from exactcomp.milp import build_prefix_model, highs

    net = load(DIGITS)
    box = Box.uniform(0, 1, net.input_size)
    model, zk = build_prefix_model(net, box, 1, interval_bounds(net, box))
    milp, _ = highs.compile_model(model, model.x, zk)
    real = highs._incumbent_input

    def terminated(event, x_cols):  # a real SIGTERM while HiGHS calls back into Python
        os.kill(os.getpid(), signal.SIGTERM)
        return real(event, x_cols)

    def raise_terminated(signum, _frame):
        raise Terminated(signum)

    monkeypatch.setattr(highs, "_incumbent_input", terminated)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with pytest.raises(Terminated):
            highs.solve_question(milp, highs.Question(0, 1, 1e-6, "optimal", 30.0))
    finally:
        signal.signal(signal.SIGTERM, previous)
