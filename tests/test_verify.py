"""verify_equivalence on named pairs: known equal, known different, and solver failures.

Every NOT_EQUIVALENT answer is checked here again, independently: the counterexample lies in
the box and the networks' own float64 forward passes differ there by more than ``tol``.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.errors import InvalidNetworkError, InvalidOptionError
from exactcomp.network import Layer, Network
from exactcomp.testing.random_networks import gaussian_mlp as mlp
from exactcomp.verify import EquivalenceStatus, equivalence, phases, verify_equivalence
from exactcomp.verify.solve import ObjectiveSolver

EQ, NEQ, UNK = (
    EquivalenceStatus.EQUIVALENT,
    EquivalenceStatus.NOT_EQUIVALENT,
    EquivalenceStatus.UNKNOWN,
)


def permuted(net: Network, seed: int) -> Network:
    """The same function with the hidden neurons of every layer permuted (not the outputs)."""
    rng = np.random.default_rng(seed)
    layers, prev = [], None
    for k, layer in enumerate(net.layers):
        w, b = layer.weight, layer.bias
        if prev is not None:
            w = w[:, prev]
        if layer.relu and k < len(net.layers) - 1:
            perm = rng.permutation(layer.out_features)
            w, b, prev = w[perm], b[perm], perm
        else:
            prev = None
        layers.append(Layer(w, b, layer.relu))
    return net.replace_layers(layers)


def with_dead_neuron(net: Network) -> Network:
    """``net`` plus one neuron in the first hidden layer that is off on ``[0, 1]^n``::

    x --(w = -1, b = -0.5)--> relu (always 0 on the box) --(w = 5)--> next layer
    """
    l0, l1 = net.layers[0], net.layers[1]
    w0 = np.vstack([l0.weight, -np.ones(l0.in_features)])
    b0 = np.append(l0.bias, -0.5)
    w1 = np.hstack([l1.weight, np.full((l1.out_features, 1), 5.0)])
    return net.replace_layers((Layer(w0, b0, True), Layer(w1, l1.bias, l1.relu), *net.layers[2:]))


def split_neuron(net: Network, j: int = 0) -> Network:
    """Neuron ``j`` of the first layer replaced by half its pre-activation, outgoing weight
    doubled: ``relu(z) = 2 relu(z / 2)``. Same function, but no neuron matches ``f``'s, so
    only the MILP can prove it."""
    l0, l1 = net.layers[0], net.layers[1]
    w0, b0, w1 = l0.weight.copy(), l0.bias.copy(), l1.weight.copy()
    w0[j] /= 2
    b0[j] /= 2
    w1[:, j] *= 2
    return net.replace_layers((Layer(w0, b0, True), Layer(w1, l1.bias, l1.relu), *net.layers[2:]))


def bump_network(net: Network, center: np.ndarray, radius: float, height: float) -> Network:
    """``net`` plus ``height * relu(1 - |x - center|_1 / radius)``: differs from ``net`` only
    in a tiny L1 ball (2-hidden-layer nets)::

        x -> [net's layer 0 | relu(x - c), relu(c - x)] -> [net's layer 1 | relu(1 - sum/r)]
          -> net's output + height * bump
    """
    n = net.input_size
    l0, l1, l2 = net.layers
    eye = np.eye(n)
    w0 = np.vstack([l0.weight, eye, -eye])
    b0 = np.concatenate([l0.bias, -center, center])
    h0, h1 = l0.out_features, l1.out_features
    w1 = np.zeros((h1 + 1, h0 + 2 * n))
    w1[:h1, :h0] = l1.weight
    w1[h1, h0:] = -1.0 / radius
    b1 = np.append(l1.bias, 1.0)
    w2 = np.hstack([l2.weight, np.full((l2.out_features, 1), height)])
    return net.replace_layers((Layer(w0, b0, True), Layer(w1, b1, True), Layer(w2, l2.bias, False)))


def assert_real_counterexample(res, f: Network, g: Network, box: Box, tol: float) -> None:
    assert res.status is NEQ
    ce = res.counterexample
    assert box.contains(ce.x[None, :])[0]
    diff = np.abs(f.forward(ce.x) - g.forward(ce.x)).max()
    assert diff > tol
    assert np.allclose(ce.f_x, f.forward(ce.x)) and np.allclose(ce.g_x, g.forward(ce.x))
    assert res.lower_bound >= diff - 1e-12


# ----------------------------------------------------------------------------- known equal
@pytest.mark.parametrize("mode", ["linf", "top1"])
def test_permuted_copy_is_equivalent(mode: str) -> None:
    f = mlp([3, 8, 8, 2], seed=1)
    res = verify_equivalence(f, permuted(f, seed=2), Box.uniform(-1, 1, 3), mode=mode)
    assert res.status is EQ, res.summary()
    assert res.upper_bound <= res.tol
    assert res.counterexample is None


def test_extra_dead_neuron_is_equivalent() -> None:
    f = mlp([3, 6, 6, 2], seed=3)
    res = verify_equivalence(f, with_dead_neuron(f), Box.uniform(0, 1, 3))
    assert res.status is EQ, res.summary()


def test_split_neuron_is_proven_by_the_milp(monkeypatch) -> None:
    monkeypatch.setattr(phases, "SPLIT_MAX_INPUTS", 0)  # input splitting would prove it
    f = mlp([2, 6, 6, 2], seed=4)
    res = verify_equivalence(f, split_neuron(f), Box.uniform(-1, 1, 2), tol=1e-4, time_limit=60)
    assert res.status is EQ, res.summary()
    assert res.milps >= 1
    assert res.upper_bound <= 1e-4


def test_relu_after_the_output_layer() -> None:
    f = mlp([2, 5, 3], seed=5)
    f = f.replace_layers((f.layers[0], Layer(f.layers[1].weight, f.layers[1].bias, True)))
    res = verify_equivalence(f, permuted(f, seed=6), Box.uniform(-1, 1, 2))
    assert res.status is EQ, res.summary()


# ----------------------------------------------------------------------------- known different
def test_perturbed_weight_is_found() -> None:
    f = mlp([3, 8, 8, 2], seed=7)
    w = f.layers[2].weight.copy()
    w[0, 3] += 0.05
    g = f.replace_layers((*f.layers[:2], Layer(w, f.layers[2].bias, False)))
    box = Box.uniform(-1, 1, 3)
    res = verify_equivalence(f, g, box)
    assert_real_counterexample(res, f, g, box, res.tol)


def test_removed_unstable_neuron_is_found() -> None:
    f = mlp([3, 8, 8, 2], seed=8)
    box = Box.uniform(-1, 1, 3)
    z = f.preactivations(box.sample(2000, np.random.default_rng(0)))[0]
    j = int(np.flatnonzero((z.min(axis=0) < 0) & (z.max(axis=0) > 0))[0])
    l0, l1 = f.layers[0], f.layers[1]
    keep = np.arange(l0.out_features) != j
    g = f.replace_layers(
        (
            Layer(l0.weight[keep], l0.bias[keep], True),
            Layer(l1.weight[:, keep], l1.bias, True),
            f.layers[2],
        )
    )
    res = verify_equivalence(f, g, box)
    assert_real_counterexample(res, f, g, box, res.tol)


def test_difference_in_a_tiny_region_is_found_by_the_milp() -> None:
    """The networks differ only in an L1 ball of radius 0.05 around an interior point of
    [0, 1]^4 (volume ~4e-6): sampling misses it, the MILP must find it."""
    f = mlp([4, 6, 6, 2], seed=9)
    c = np.array([0.31, 0.62, 0.47, 0.55])
    g = bump_network(f, c, radius=0.05, height=0.5)
    box = Box.uniform(0, 1, 4)
    assert np.abs(f.forward(c) - g.forward(c)).max() == pytest.approx(0.5)
    res = verify_equivalence(f, g, box, tol=1e-4, time_limit=60)
    assert_real_counterexample(res, f, g, box, 1e-4)
    assert res.counterexample.source == "milp"


def test_difference_on_a_corner_is_found() -> None:
    """A bias shift that shows only where x0 + x1 > 1.9 (a corner of [0, 1]^2)."""
    f = mlp([2, 6, 6, 2], seed=10)
    g = bump_network(f, np.array([1.0, 1.0]), radius=0.1, height=0.3)
    box = Box.uniform(0, 1, 2)
    res = verify_equivalence(f, g, box)
    assert_real_counterexample(res, f, g, box, res.tol)


# ----------------------------------------------------------------------------- soundness
class _Fake:
    """A solver answer that proves nothing (what a time-out looks like)."""

    def __init__(self, condition) -> None:
        self.termination_condition = condition
        self.incumbent_objective = None
        self.objective_bound = None


@pytest.mark.parametrize("condition", ["maxTimeLimit", "unknown", "error", "iterationLimit"])
def test_solver_without_proof_gives_unknown(monkeypatch, condition: str) -> None:
    from pyomo.contrib.solver.common.results import TerminationCondition as TC

    monkeypatch.setattr(ObjectiveSolver, "_run", lambda self, t, o: _Fake(TC[condition]))
    monkeypatch.setattr(phases, "SPLIT_MAX_INPUTS", 0)  # input splitting would prove it
    f = mlp([2, 6, 6, 2], seed=4)
    res = verify_equivalence(f, split_neuron(f), Box.uniform(-1, 1, 2), tol=1e-4, time_limit=20)
    assert res.status is UNK, res.summary()
    assert res.upper_bound > res.tol  # only the differential bound, which proves nothing here
    assert res.counterexample is None


def test_tol_below_the_solver_margin_is_never_proven_by_the_milp() -> None:
    f = mlp([2, 6, 6, 2], seed=4)
    res = verify_equivalence(f, split_neuron(f), Box.uniform(-1, 1, 2), tol=1e-7)
    assert res.status is UNK
    assert "margin" in res.reason


# ----------------------------------------------------------------------------- top1
def _affine_net(w: np.ndarray, b: np.ndarray) -> Network:
    """A one-hidden-layer net whose outputs are ``w x + b`` on the box (hidden ReLU stays on)."""
    n = w.shape[1]
    # hidden: relu(x + 10) = x + 10 on [-1, 1]^n, output: w (h - 10) + b
    return Network.from_arrays([np.eye(n), w], [np.full(n, 10.0), b - w @ np.full(n, 10.0)])


def test_top1_scaled_outputs_are_equivalent_but_not_in_linf() -> None:
    f = mlp([2, 6, 6, 3], seed=11)
    l2 = f.layers[2]
    g = f.replace_layers((*f.layers[:2], Layer(2 * l2.weight, 2 * l2.bias, False)))
    box = Box.uniform(-1, 1, 2)
    assert verify_equivalence(f, g, box, mode="linf").status is NEQ
    res = verify_equivalence(f, g, box, mode="top1", tol=1e-4)
    assert res.status is EQ, res.summary()


def test_top1_swapped_classes_differ() -> None:
    """f = (x, -x), g = (-x, x) on [-1, 1]: they disagree everywhere except at x = 0."""
    f = _affine_net(np.array([[1.0], [-1.0]]), np.zeros(2))
    g = _affine_net(np.array([[-1.0], [1.0]]), np.zeros(2))
    res = verify_equivalence(f, g, Box.uniform(-1, 1, 1), mode="top1")
    assert res.status is NEQ
    ce = res.counterexample
    assert np.argmax(f.forward(ce.x)) != np.argmax(g.forward(ce.x))


def test_top1_tie_in_f_broken_by_g_is_not_a_counterexample() -> None:
    """f = (x, -x) ties only at x = 0; g = (x + 1e-9, -x) picks class 0 there, which is one
    of f's tied top classes: no counterexample (here g also agrees everywhere else)."""
    f = _affine_net(np.array([[1.0], [-1.0]]), np.zeros(2))
    g = _affine_net(np.array([[1.0], [-1.0]]), np.array([1e-9, 0.0]))
    res = verify_equivalence(f, g, Box.uniform(-1, 1, 1), mode="top1", tol=1e-6)
    assert res.status is EQ, res.summary()


def test_top1_small_shift_of_the_boundary_is_found() -> None:
    """g = (x + 0.1, -x) moves the decision boundary to x = -0.05: on (-0.05, 0) f says
    class 1 and g class 0, by up to 0.1 > tol."""
    f = _affine_net(np.array([[1.0], [-1.0]]), np.zeros(2))
    g = _affine_net(np.array([[1.0], [-1.0]]), np.array([0.1, 0.0]))
    res = verify_equivalence(f, g, Box.uniform(-1, 1, 1), mode="top1", tol=1e-3)
    assert res.status is NEQ
    x = res.counterexample.x
    assert -0.05 < x[0] < 0.0


# ----------------------------------------------------------------------------- input errors
def test_mismatched_sizes_are_a_clear_error() -> None:
    with pytest.raises(InvalidNetworkError, match="not comparable"):
        verify_equivalence(mlp([2, 3, 2], 0), mlp([3, 3, 2], 0), Box.uniform(0, 1, 2))
    with pytest.raises(InvalidNetworkError, match="not comparable"):
        verify_equivalence(mlp([2, 3, 2], 0), mlp([2, 3, 3], 0), Box.uniform(0, 1, 2))


@pytest.mark.parametrize(
    "kwargs", [{"mode": "l2"}, {"tol": -1.0}, {"tol": float("nan")}, {"time_limit": 0}]
)
def test_bad_options_are_clear_errors(kwargs) -> None:
    f = mlp([2, 3, 2], 0)
    with pytest.raises(InvalidOptionError):
        verify_equivalence(f, f, Box.uniform(0, 1, 2), **kwargs)


def test_result_summary_and_json() -> None:
    f = mlp([2, 4, 2], 0)
    res = verify_equivalence(f, f, Box.uniform(0, 1, 2))
    assert res.summary().startswith("EQUIVALENT")
    doc = res.to_json()
    assert doc["status"] == "EQUIVALENT" and doc["counterexample"] is None
    assert set(res.timings) >= {"sampling", "total"}


# ----------------------------------------------------------------------------- decision rules
def test_decision_rules_of_the_solver_answer() -> None:
    """``decide`` maps a HiGHS answer for ``min -phi`` to proven / found / undecided; only a
    cut-off with nothing left, or an optimum whose bound clears the margin, proves."""
    from pyomo.contrib.solver.common.results import TerminationCondition as TC

    from exactcomp.verify.solve import Decision, decide

    p, t, mu = 0.9, 1.1, 0.1  # prove at phi <= 0.9, find at phi >= 1.1, margin 0.1
    assert decide(TC.provenInfeasible, None, None, p, t, mu) == (Decision.PROVEN, p + mu)
    assert decide(TC.objectiveLimit, None, None, p, t, mu) == (Decision.PROVEN, p + mu)
    assert decide(TC.objectiveLimit, -1.5, None, p, t, mu)[0] is Decision.FOUND
    assert decide(TC.objectiveLimit, -1.0, None, p, t, mu)[0] is Decision.UNDECIDED
    assert decide(TC.convergenceCriteriaSatisfied, -0.5, -0.5, p, t, mu) == (
        Decision.PROVEN,
        p + mu,
    )
    d, bound = decide(TC.convergenceCriteriaSatisfied, -1.0, -1.0, p, t, mu)
    assert d is Decision.UNDECIDED and bound == pytest.approx(1.1)
    for cond in (TC.maxTimeLimit, TC.unknown, TC.error, TC.iterationLimit, TC.interrupted):
        assert decide(cond, None, None, p, t, mu) == (Decision.UNDECIDED, np.inf)
        assert decide(cond, -0.2, -0.3, p, t, mu)[0] is Decision.UNDECIDED
        assert decide(cond, -2.0, -3.0, p, t, mu)[0] is Decision.FOUND


def test_an_unsound_bound_upstream_gives_unknown_not_equivalent(monkeypatch) -> None:
    """If a bound or verdict fed to the proof were wrong (a bug elsewhere), the sampled
    consistency check catches it: UNKNOWN, never EQUIVALENT."""

    real = equivalence.proven_encoding

    def too_tight(net, box, tol, time_limit):
        bounds, verdicts = real(net, box, tol, time_limit)
        lo, hi = bounds[0]
        return [(lo, np.minimum(hi, lo + 1e-3)), *bounds[1:]], verdicts

    monkeypatch.setattr(equivalence, "proven_encoding", too_tight)
    f = mlp([3, 8, 8, 2], seed=1)
    res = verify_equivalence(f, permuted(f, seed=2), Box.uniform(-1, 1, 3))
    assert res.status is UNK
    assert "internal check failed" in res.reason


def test_top1_persistent_tie_is_never_a_counterexample() -> None:
    """f ties classes 0 and 1 everywhere (identical output rows); g = (x, 0) on [0, 1] always
    picks class 0 (or ties at x = 0), one of f's top classes. No counterexample exists, so
    the answer must not be NOT_EQUIVALENT (the pair MILP cannot exclude the tie exactly, so
    UNKNOWN is allowed; see exactcomp.verify.formulation)."""
    f = _affine_net(np.array([[0.0], [0.0]]), np.zeros(2))
    g = _affine_net(np.array([[1.0], [0.0]]), np.zeros(2))
    res = verify_equivalence(f, g, Box.uniform(0, 1, 1), mode="top1", tol=1e-4, time_limit=10)
    assert res.status is not NEQ, res.summary()


# ----------------------------------------------------------------------------- run options
class _Recorder:
    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.steps = 0

    def task(self, description: str, total: int) -> None:
        self.tasks.append(description)

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        self.steps += steps

    def note(self, message: str) -> None:
        pass


def test_progress_reports_the_phases(monkeypatch) -> None:
    monkeypatch.setattr(phases, "SPLIT_MAX_INPUTS", 0)  # the MILP path's phases
    f = mlp([2, 6, 6, 2], seed=4)
    rec = _Recorder()
    verify_equivalence(f, split_neuron(f), Box.uniform(-1, 1, 2), tol=1e-4, progress=rec)
    assert rec.tasks == [
        "sampling",
        "bounds and stable neurons",
        "differential bounds",
        "gradient search",
        "milp",
    ]
    assert rec.steps > 0


def test_no_gradient_search_once_the_time_is_up(monkeypatch) -> None:
    """The fake clock: differential bounds that spend the whole run's time leave the gradient
    search nothing (it once spent 8.9 s past the limit on its forward passes alone); the
    answer is UNKNOWN, out of time."""
    from exactcomp.testing.clock import FakeClock
    from exactcomp.verify import differential

    monkeypatch.setattr(phases, "SPLIT_MAX_INPUTS", 0)
    clock = FakeClock().install(monkeypatch)
    real = differential.bound_differences

    def slow(*args, **kw):
        out = real(*args, **kw)
        clock.advance(100.0)
        return out

    monkeypatch.setattr(differential, "bound_differences", slow)
    f = mlp([2, 6, 6, 2], seed=4)
    rec = _Recorder()
    res = verify_equivalence(
        f, split_neuron(f), Box.uniform(-1, 1, 2), tol=1e-4, progress=rec, time_limit=10
    )
    assert "differential bounds" in rec.tasks and "gradient search" not in rec.tasks
    assert res.status is EquivalenceStatus.UNKNOWN and "time" in res.summary()


def test_data_rows_are_tried_first() -> None:
    """A difference confined to a tiny ball is found by sampling when a data row lies in it."""
    f = mlp([4, 6, 6, 2], seed=9)
    c = np.array([0.31, 0.62, 0.47, 0.55])
    g = bump_network(f, c, radius=0.05, height=0.5)
    data = np.vstack([np.full(4, 0.5), c + 0.001])
    res = verify_equivalence(f, g, Box.uniform(0, 1, 4), data=data)
    assert res.status is NEQ and res.counterexample.source == "sampling"


def test_same_seed_same_result() -> None:
    f = mlp([3, 8, 8, 2], seed=7)
    w = f.layers[2].weight.copy()
    w[0, 3] += 0.05
    g = f.replace_layers((*f.layers[:2], Layer(w, f.layers[2].bias, False)))
    box = Box.uniform(-1, 1, 3)
    a, b = (verify_equivalence(f, g, box, seed=3) for _ in range(2))
    assert np.array_equal(a.counterexample.x, b.counterexample.x)


def test_affine_networks_without_hidden_layers() -> None:
    """Two single affine layers: the differential bound is exact linear algebra."""
    w, b = np.array([[1.0, -2.0], [0.5, 0.25]]), np.array([0.1, -0.3])
    f = Network((Layer(w, b, False),), dtype="float64")
    g = Network((Layer(w * (1 + 1e-12), b, False),), dtype="float64")
    box = Box.uniform(-1, 1, 2)
    assert verify_equivalence(f, g, box).status is EQ
    h = Network((Layer(w, b + [0.0, 1e-3], False),), dtype="float64")
    assert_real_counterexample(verify_equivalence(f, h, box), f, h, box, 1e-6)


def test_permuted_copy_links_every_hidden_neuron() -> None:
    f = mlp([3, 8, 8, 2], seed=1)
    res = verify_equivalence(f, permuted(f, seed=2), Box.uniform(-1, 1, 3))
    assert res.links == f.num_neurons and res.milps == 0
    assert res.to_json()["links"] == f.num_neurons


def test_float64_rounding_never_makes_a_counterexample():
    """``f = 1e20 relu(x + 1) - 1e20 relu(x) - 1e20`` is exactly 0 on [1, 2], but its float64
    forward pass rounds ``x + 1`` and then multiplies the rounding by 1e20 (about 1e4). A
    difference seen only in float64 is not a counterexample: it is confirmed exactly."""
    f = Network(
        (
            Layer(np.array([[1.0], [1.0]]), np.array([1.0, 0.0]), relu=True),
            Layer(np.array([[1e20, -1e20]]), np.array([-1e20]), relu=False),
        )
    )
    g = Network((Layer(np.zeros((1, 1)), np.zeros(1), relu=False),))
    box = Box(np.array([1.0]), np.array([2.0]))
    x = np.linspace(1, 2, 101).reshape(-1, 1)
    assert np.abs(f.forward(x)).max() > 1.0  # float64 sees a large difference
    res = verify_equivalence(f, g, box, tol=1e-6, time_limit=20)
    assert res.status is not EquivalenceStatus.NOT_EQUIVALENT
    assert res.counterexample is None


def test_default_tol_is_read_from_the_tolerances() -> None:
    """``Tolerances.equivalence`` is the default ``tol`` (it used to be a hard-coded 1e-6)."""
    from dataclasses import replace

    from exactcomp.tolerances import DEFAULT

    f = mlp([2, 4, 2], seed=1)
    res = verify_equivalence(
        f, f, Box.uniform(-1, 1, 2), tolerances=replace(DEFAULT, equivalence=1e-3)
    )
    assert res.tol == 1e-3
    assert verify_equivalence(f, f, Box.uniform(-1, 1, 2)).tol == DEFAULT.equivalence


@pytest.mark.parametrize("tol", ["x", None, -1.0, float("nan"), [0.1]])
def test_a_tol_that_is_not_a_number_is_an_input_error(tol) -> None:
    from exactcomp.errors import InvalidOptionError
    from exactcomp.verify.run import check_arguments

    f = mlp([2, 3, 1], seed=0)
    with pytest.raises(InvalidOptionError, match="tol must be a finite number"):
        check_arguments(f, f, Box.uniform(-1, 1, 2), "linf", tol, 10.0)
