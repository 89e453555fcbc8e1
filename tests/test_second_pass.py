"""``compress --tol`` gives time back to the exact pass (:mod:`exactcomp.second_pass`): where
the first exact pass was cut short, a second one decides what it left, and the claim holds
against the original. Ground truth: the exact maximum difference by region enumeration
(:func:`exactcomp.testing.max_output_difference`)."""

from __future__ import annotations

import time

import numpy as np

import exactcomp
from exactcomp import approx
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.testing import max_output_difference

BOX = Box(np.array([-1.0]), np.array([1.0]))
FAST = {"time_limit": 30.0, "tighten_seconds": 0.0, "split_seconds": 0.0}


def _abs_gate() -> Network:
    r"""``c = relu(a + b - 1.5)`` with ``a = relu(x)``, ``b = relu(-x)``: ``a + b = |x| <= 1``,
    so ``c`` is 0 on ``[-1, 1]``, which interval bounds (``a + b`` in ``[0, 2]``) do not
    prove and linear bounds do::

        x -+-> a = relu(x)  ---+--> c = relu(a + b - 1.5) --3--+
           +-> b = relu(-x) ---+--> e = relu(a - b + 0.2) --1--+--> y
           +-> d = relu(x + 0.5) ------------------------ 1 ---+
    """
    w1 = np.array([[1.0], [-1.0], [1.0]], np.float32)
    b1 = np.array([0.0, 0.0, 0.5], np.float32)
    w2 = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    b2 = np.array([-1.5, 0.2, 0.0], np.float32)
    w3 = np.array([[3.0, 1.0, 1.0]], np.float32)
    return Network.from_arrays([w1, w2, w3], [b1, b2, np.zeros(1, np.float32)], dtype="float32")


def _cut_first(calls: list) -> object:
    """The exact compression, its first call cut short (its deadline past: only what interval
    bounds and witnesses settle is decided, the rest kept, still exact)."""

    def exact(f, boxes, *, deadline, analysis_end):
        calls.append(f.num_neurons)
        if len(calls) == 1:
            deadline = analysis_end = time.perf_counter() - 1.0
        return exactcomp.compress(f, boxes, deadline=deadline, analysis_end=analysis_end)

    return exact


def test_the_first_pass_leaves_the_gate_undecided() -> None:
    f = _abs_gate()
    done = exactcomp.compress(f, BOX, deadline=time.perf_counter() - 1.0)
    assert done.stability.stats["undecided"] >= 1 and done.network.num_neurons == f.num_neurons
    assert exactcomp.compress(f, BOX).network.num_neurons == f.num_neurons - 1


def test_a_second_pass_removes_what_the_first_left_and_the_claim_holds() -> None:
    """The first pass keeps ``c`` (undecided); the second, run on its network before the
    search, proves it inactive: the result has no ``c``, and the claim bounds the exact
    difference (fails on code without the second pass: one exact call, ``c`` kept)."""
    f, calls = _abs_gate(), []
    res = approx.compress_lossy(f, BOX, 1e-9, exact=_cut_first(calls), **FAST)
    assert calls[:2] == [6, 6]  # exact passes on f and on the first's network (unchanged)
    later = res.report["exact_pass"]["later_passes"]
    assert later[0]["neurons_removed"] == 1 and later[0]["gap"] == 0.0
    assert res.network.num_neurons <= f.num_neurons - 1
    truth = max_output_difference(f, res.network, BOX).value
    assert truth <= res.proven <= 1e-9


def test_the_search_time_given_back_when_no_edit_is_proven(monkeypatch) -> None:
    """Without the early round (``left_undecided`` says no), a search that proves no edit
    leaves its time to a second pass after it: ``c`` goes all the same, the claim holds."""
    monkeypatch.setattr(approx, "left_undecided", lambda done: False)
    f, calls = _abs_gate(), []
    res = approx.compress_lossy(f, BOX, 1e-9, exact=_cut_first(calls), **FAST)
    assert res.network.num_neurons <= f.num_neurons - 1
    truth = max_output_difference(f, res.network, BOX).value
    assert truth <= res.proven <= 1e-9
    if len(calls) == 2:  # the search proved no edit: the pass after it removed c
        assert res.report["exact_pass"]["later_passes"][0]["neurons_removed"] == 1


def test_no_second_pass_where_the_first_decided_everything() -> None:
    f, calls = _abs_gate(), []

    def exact(f, boxes, *, deadline, analysis_end):
        calls.append(f.num_neurons)
        return exactcomp.compress(f, boxes, deadline=deadline, analysis_end=analysis_end)

    res = approx.compress_lossy(f, BOX, 1e-9, exact=exact, **FAST)
    assert calls[0] == 6 and len(calls) <= 2  # after the search: nothing more to remove
    assert "later_passes" not in res.report["exact_pass"]
    assert max_output_difference(f, res.network, BOX).value <= res.proven
