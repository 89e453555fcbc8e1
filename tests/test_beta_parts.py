"""The batched ReLU-split trees grown in several processes (:mod:`exactcomp.bab.beta_parts`).

- on random depth-3-4 networks, the trees dealt to 2 parts right after their first round
  claim exactly what one process claims, every claim is true per the exact oracle, and the
  bounds of the trees left open contain the exact range;
- a part whose worker fails (a broken pool, a pool that cannot start) is grown in this
  process, with the same answer;
- the ``fast`` engine with ``jobs=2``, the trees spread to a real 2-process pool, keeps the
  verdicts of ``jobs=1`` and of the exact oracle;
- a network pickles (the worker processes get it), metadata included.
"""

from __future__ import annotations

import pickle
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from exactcomp.bab import beta_parts
from exactcomp.bab import relu as relu_bab
from exactcomp.bab.beta_parts import Spread
from exactcomp.bab.beta_tree import prove_signs_beta
from exactcomp.bounds import linear_bounds
from exactcomp.stability import stable_neurons
from exactcomp.stability.milp_phase import Workers
from exactcomp.testing.oracle import exact_analysis, exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import Verdict


def _here(fn, *args):
    """A worker that runs the part at once, in this process."""
    fut: Future = Future()
    fut.set_result(fn(*args))
    return fut


def _broken(fn, *args):
    fut: Future = Future()
    fut.set_exception(BrokenProcessPool("a worker died"))
    return fut


def _claims(res):
    return res.inactive.copy(), res.active.copy()


def _cases():
    for seed in range(8):
        case = random_case(60 + seed, depth=(3, 4), width=(3, 5), inputs=(2, 4), max_neurons=16)
        yield seed, case.network, case.box


@pytest.mark.parametrize("submit", [_here, _broken, lambda fn, *a: None])
def test_two_parts_claim_what_one_process_claims(submit):
    dealt, claims = 0, 0
    real = Spread.resume

    def counting(self, *args):
        nonlocal dealt
        dealt += 1
        return real(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Spread, "resume", counting)
        for seed, net, box in _cases():
            exact = exact_preactivation_ranges(net, box)
            pre = linear_bounds(net, box)
            for k in range(1, len(net.layers)):
                n = net.layers[k].out_features
                ask = (net, box, k, pre, np.arange(n), np.zeros(n, int))
                one = prove_signs_beta(*ask, batch=4)
                two = prove_signs_beta(*ask, batch=4, spread=Spread(2, submit, after=2))
                same = zip(_claims(one), _claims(two), strict=True)
                assert all((a == b).all() for a, b in same), (seed, k)
                claims += int(two.inactive.sum() + two.active.sum())
                lo, hi = exact[k]
                assert (hi[two.inactive] <= 1e-9).all() and (lo[two.active] >= -1e-9).all()
                assert (lo >= two.lower - 1e-9).all() and (hi <= two.upper + 1e-9).all()
    assert dealt > 0 and claims > 0  # the cases do deal trees to parts, and prove


def test_a_pool_that_cannot_start_leaves_the_trees_here(monkeypatch):
    def fail(self):
        raise OSError("no processes")

    monkeypatch.setattr(Workers, "_start", fail)
    with Workers(2) as workers:
        spread = workers.spread()
        assert spread is not None and spread.submit(len, ()) is None
        assert workers.broken and workers.spread() is None
    with Workers(1) as workers:
        assert workers.spread() is None  # jobs=1: today's one process


def test_a_network_pickles_with_its_metadata():
    net = next(_cases())[1]
    net = type(net)(net.layers, net.dtype, {"format": "onnx"})
    back = pickle.loads(pickle.dumps(net))
    assert back.meta == {"format": "onnx"} and len(back.layers) == len(net.layers)
    assert all((a.weight == b.weight).all() for a, b in zip(back.layers, net.layers, strict=True))


def test_the_engine_with_two_jobs_keeps_the_verdicts(monkeypatch):
    """A real spawn pool: the parts are pickled to a worker process and back."""
    monkeypatch.setattr(relu_bab, "BATCHED_FIRST", True)
    monkeypatch.setattr(relu_bab, "BATCHED_MIN_QUESTIONS", 1)
    monkeypatch.setattr("exactcomp.bab.split.MAX_INPUTS", 0)  # ReLU splits on any input size
    monkeypatch.setattr(beta_parts, "SPREAD_AFTER", 2)
    dealt = 0
    real = Spread.resume

    def counting(self, *args):
        nonlocal dealt
        dealt += 1
        return real(self, *args)

    monkeypatch.setattr(Spread, "resume", counting)
    remote = 0
    real_answer = beta_parts._answer

    def answer(fut, job):
        nonlocal remote
        remote += fut is not None and fut.exception() is None  # a worker's answer
        return real_answer(fut, job)

    monkeypatch.setattr(beta_parts, "_answer", answer)
    for seed in (62, 64, 66):
        case = random_case(seed, depth=(3, 4), width=(3, 5), inputs=(2, 4), max_neurons=16)
        truth = exact_analysis(case.network, case.box)
        one = stable_neurons(case.network, case.box, jobs=1)
        two = stable_neurons(case.network, case.box, jobs=2)
        assert truth.wrong_verdicts(two) == [], seed
        for a, b in zip(one.layers, two.layers, strict=True):
            assert (a.verdict == b.verdict).all(), seed
        assert sum(int((ls.verdict != Verdict.UNDECIDED).sum()) for ls in two.layers) > 0
    assert dealt > 0 and remote > 0
