"""``compress --tol`` runs the exact passes first (issue 15 item 1).

``api.compress_lossy`` (and ``compress(tol=number)``, ``exactcomp compress --tol``) first
compresses exactly (``api.compress``: stability proofs and the rewrite), then searches on that
network, and proves the claim against it; it equals the original on the domain. The oracle
:func:`exactcomp.testing.max_output_difference` gives the exact ``max |f - g|`` against the
*original*.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp import api
from exactcomp.approx import compress_lossy as search_only
from exactcomp.domain import Box
from exactcomp.errors import InvalidOptionError
from exactcomp.network import Network
from exactcomp.quantization import quantize
from exactcomp.testing import max_output_difference

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def stable_pair() -> Network:
    """``2-4r-1`` on ``[-1, 1]^2``: a stably inactive neuron, a stably active one and two
    unstable ones::

        x1, x2 --> n0 = relu(x1 + x2 + 3)   >= 1: stably active (kept: no layer before it
               \\-> n1 = relu(x1 - x2 - 3)   <= -1: stably inactive (removed)   to fold into)
               \\-> n2 = relu(x1), n3 = relu(x2 - 0.2)   unstable
        y = n0 + 2 n1 + n2 - n3

    The exact pass leaves ``2-3r-1``: at tol 0 the result has 3 neurons, not 4."""
    w0 = np.array([[1.0, 1.0], [1.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
    b0 = np.array([3.0, -3.0, 0.0, -0.2])
    w1 = np.array([[1.0, 2.0, 1.0, -1.0]])
    return Network.from_arrays([w0, w1], [b0, np.zeros(1)], dtype="float64")


def active_layer() -> Network:
    """``2-2r-3r-1`` on ``[-1, 1]^2`` whose first layer is stably active (``x + 3 >= 2``)::

        x --> relu(x1 + 3), relu(x2 + 3) --> 3 ReLUs (unstable) --> y

    The exact pass folds the first layer into the second: ``2-3r-1``, one layer fewer."""
    w0 = np.eye(2)
    b0 = np.array([3.0, 3.0])
    w1 = np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, -0.7]])
    b1 = np.array([0.1, -3.2, 3.5])
    w2 = np.array([[1.0, -0.8, 0.6]])
    return Network.from_arrays([w0, w1, w2], [b0, b1, np.zeros(1)], dtype="float64")


def test_tol_zero_removes_the_stable_neurons_the_search_alone_keeps():
    f = stable_pair()
    res = api.compress_lossy(f, BOX, 0.0, time_limit=20.0)
    before = search_only(f, BOX, 0.0, time_limit=20.0)  # the search on the original
    assert before.network.num_neurons == 4  # what tol 0 did before
    assert res.network.num_neurons == api.compress(f, BOX).network.num_neurons == 3
    doc = res.report
    assert doc["exact_pass"]["neurons_removed"] == 1
    assert doc["exact_pass"]["parameters_removed"] > 0
    assert doc["exact_pass"]["seconds"] >= 0.0
    assert doc["exact_pass"]["check_points"] >= 2000  # its re-check: the floor at least
    assert doc["lossy_search"] == {"neurons_removed": 0, "parameters_removed": 0}
    assert (doc["neurons_before"], doc["neurons_after"]) == (4, 3)
    assert doc["parameters_before"] == 13  # the original's nonzero ones, not the exact pass's
    assert doc["parameters_after"] == 13 - doc["exact_pass"]["parameters_removed"]
    assert res.proven == 0.0
    assert max_output_difference(f, res.network, BOX).value <= 1e-12


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tol", [0.05, 0.3])
def test_within_tol_against_the_original_by_the_oracle(seed, tol):
    """Random ``2-6r-6r-2`` with a stably inactive and a stably active neuron planted in each
    hidden layer: the exact pass removes them, the search goes on from there, and the exact
    max against the *original* is within the proven bound, itself within tol."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(6, 2)), rng.normal(size=(6, 6)), rng.normal(size=(2, 6))]
    bs = [rng.normal(size=6) * 0.3, rng.normal(size=6) * 0.3, np.zeros(2)]
    for k in (0, 1):  # row 0 inactive, row 1 active on the box: a bias of -50 / +50
        width = 2 if k == 0 else 6
        ws[k][0], ws[k][1] = np.full(width, 0.1), np.full(width, 0.1)
        bs[k][0], bs[k][1] = -50.0, 50.0
    f = Network.from_arrays(ws, bs, dtype="float64")
    res = api.compress_lossy(f, BOX, tol, time_limit=20.0)
    assert res.report["exact_pass"]["neurons_removed"] >= 4
    assert res.reference is not None and res.reference.num_neurons <= f.num_neurons - 4
    assert res.proven <= tol + 1e-12
    exact = max_output_difference(f, res.network, BOX).value
    assert exact <= res.proven + 1e-9
    assert res.sampled <= exact + 1e-9  # sampled against the original


def test_compose_with_quantize_when_the_exact_pass_drops_a_layer(tmp_path):
    """``compress --tol`` then ``quantize``: the quantised network has the exact pass's
    architecture (one layer fewer) and is proven against its network, which equals ``f`` on
    the box; the oracle against the original agrees, and the ONNX file reads back."""
    f = active_layer()
    pruned = api.compress_lossy(f, BOX, 0.05, time_limit=20.0)
    assert len(pruned.reference.layers) == 2
    res = quantize(pruned, BOX, bits=4)
    assert len(res.network.layers) == 2
    assert res.report["neurons_before"] == f.num_neurons
    exact = max_output_difference(f, res.network, BOX).value
    assert exact <= res.proven + 1e-9
    res.save(tmp_path / "q.onnx")
    assert api.load(tmp_path / "q.onnx").num_neurons == res.network.num_neurons


def test_compress_with_a_number_tol_is_the_same_path():
    res = api.compress(stable_pair(), BOX, tol=0.0)
    assert res.report["exact_pass"]["neurons_removed"] == 1


@pytest.mark.parametrize("tol", [-0.5, "x", float("nan")])
def test_bad_tol_is_refused_before_any_work(tol):
    calls = []

    def exact(*args, **kwargs):
        calls.append(1)
        raise AssertionError("the exact pass ran")

    with pytest.raises(InvalidOptionError, match="--tol must be"):
        search_only(stable_pair(), BOX, tol, exact=exact)
    with pytest.raises(InvalidOptionError, match="--tol must be"):
        api.compress_lossy(stable_pair(), BOX, tol)
    assert not calls


@pytest.mark.parametrize("exact_seconds", [5.0, 40.0, 200.0])
def test_one_deadline_the_search_ends_before_the_final_reserve(monkeypatch, exact_seconds):
    """The fake clock: an exact pass of ``exact_seconds`` and a greedy search that spends all
    it is given. The sampling starts by ``(1 - FINAL_SHARE) * time_limit`` after the start
    whenever the exact pass leaves the search at least ``SEARCH_FLOOR`` of the time, else
    the search gets that floor; the result is still within tol by the oracle."""
    from exactcomp import approx
    from exactcomp.testing.clock import FakeClock

    clock = FakeClock().install(monkeypatch)
    start, limit = clock.now, 90.0
    real_search, real_sampled = approx.search, approx.sampled_max_difference
    given, sampled_at = [], []

    def slow_exact(*args, **kw):
        out = api.compress(*args, **kw)
        clock.advance(exact_seconds)
        return out

    def spending_search(*args, time_limit, **kw):
        given.append(time_limit)
        out = real_search(*args, time_limit=time_limit, **kw)
        clock.advance(time_limit)
        return out

    def sampled(*args, **kw):
        sampled_at.append(clock.now)
        return real_sampled(*args, **kw)

    monkeypatch.setattr(approx, "search", spending_search)
    monkeypatch.setattr(approx, "sampled_max_difference", sampled)
    f = stable_pair()
    res = search_only(f, BOX, 0.5, time_limit=limit, exact=slow_exact, split_seconds=0.0)
    floor = approx.SEARCH_FLOOR * limit
    if exact_seconds + floor <= (1 - approx.FINAL_SHARE) * limit:
        assert sampled_at[0] - start <= (1 - approx.FINAL_SHARE) * limit + 1e-9
    else:  # the exact pass overran into the search's time: the search keeps its floor
        assert sampled_at[0] - start <= exact_seconds + floor + 1e-9
        assert floor - approx.LP_SECONDS / 2 <= given[0] <= floor  # less the LP's reserve
    assert max_output_difference(f, res.network, BOX).value <= 0.5 + 1e-9


@pytest.mark.parametrize("load_seconds", [6.0, 70.0])
def test_the_cli_counts_the_load_in_the_time_limit(tmp_path, monkeypatch, load_seconds):
    """``compress --tol`` in the CLI: the search gets ``TIME_LIMIT`` less what loading the
    model took (the fake clock: a load of ``load_seconds``), never less than half of it."""
    from exactcomp import approx, io
    from exactcomp.cli import main
    from exactcomp.testing.clock import FakeClock

    clock = FakeClock().install(monkeypatch)
    model = tmp_path / "f.onnx"
    io.save(stable_pair(), model)
    real_load, real_lossy = api.load, api.compress_lossy
    given = []

    def slow_load(*args, **kw):
        clock.advance(load_seconds)
        return real_load(*args, **kw)

    def lossy(*args, time_limit, **kw):
        given.append(time_limit)
        return real_lossy(*args, time_limit=time_limit, **kw)

    monkeypatch.setattr(api, "load", slow_load)
    monkeypatch.setattr(api, "compress_lossy", lossy)
    out = tmp_path / "g.onnx"
    assert main(["compress", str(model), "--box=-1,1", "--tol", "0.5", "-o", str(out)]) == 0
    assert given == [max(approx.TIME_LIMIT - load_seconds, approx.TIME_LIMIT / 2)]
