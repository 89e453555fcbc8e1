"""The soak's ``lattice`` family (red25): its generator, its exact check of the weight-read
facts, and its planted bugs; the checks bite on a fact planted wrong by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from benchmarks.soak_families import FAMILIES, run_case
from benchmarks.soak_lattice import planted
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import constants
from exactcomp.testing import lattice_cases
from exactcomp.testing.lattice_cases import lattice_case, structure_findings
from exactcomp.testing.soak_results import SoakOptions

TINY = SoakOptions(time_limit=2.0)


def _tie_net() -> Network:
    """A unit and its opposite, the next ReLU reading the first alone: ``z = relu(x) =
    x/2 + |x|/2 >= 0`` (a tie on ``x <= 0``), which the identity proves (floor 0)::

        x --+1--> u = relu(x)  --1--> z = u + 0 v  (relu)  --1--> y
          --−1--> v = relu(−x) --0-->
    """
    return Network(
        (
            Layer(np.array([[1.0], [-1.0]]), np.zeros(2), relu=True),
            Layer(np.array([[1.0, 0.0]]), np.zeros(1), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def test_lattice_is_a_family() -> None:
    assert "lattice" in FAMILIES


def test_lattice_cases_exercise_the_identity() -> None:
    """Over a few seeds the generator yields floors, ceilings and opposites, and every fact
    holds exactly (the engine's facts on its own cases)."""
    floors = ceilings = opposites = 0
    for seed in range(40):
        case = lattice_case(seed)
        assert case.network.num_neurons <= 16
        for cls in constants.layer_classes(case.network):
            floors += int(np.isfinite(cls.floor).sum())
            ceilings += int(np.isfinite(cls.ceiling).sum())
            opposites += int((cls.opposite >= 0).sum())
        pts = np.array([case.box.lower, case.box.upper])
        assert structure_findings(case.network, case.box, pts, seed) == []
    assert floors > 20 and ceilings > 20 and opposites > 100


def test_structure_check_bites_on_a_wrong_floor(monkeypatch) -> None:
    """The identity's floor 0 holds; a floor of ``0.5`` (``z = 0`` on ``x <= 0``) is
    reported by the exact check."""
    net, box = _tie_net(), Box(np.array([-1.0]), np.array([1.0]))
    real = constants.layer_classes

    def wrong(n):
        out = real(n)
        floor = out[1].floor.copy()
        assert floor[0] == 0.0  # the identity's floor
        floor[0] = 0.5
        return [out[0], replace(out[1], floor=floor), *out[2:]]

    assert structure_findings(net, box, np.array([[0.0]]), 0) == []
    monkeypatch.setattr(lattice_cases, "layer_classes", wrong)
    found = structure_findings(net, box, np.array([[0.0]]), 0)
    assert found and "floor" in found[0]


def test_planted_changes_the_network() -> None:
    net = _tie_net()
    for seed in range(3):
        what, bad = planted(net, seed, 1e-6)
        x = np.array([[0.75], [-0.5]])
        assert what.startswith("planted")
        assert not np.array_equal(bad.forward(x), net.forward(x))


def test_lattice_cases_run_clean() -> None:
    for seed in (0, 1, 2):
        _, result = run_case("lattice", seed, TINY)
        assert result.family == "lattice"
        assert [f for f in result.findings if f.kind != "unstable"] == []
        assert result.equivalences >= 1


def test_the_lower_bound_check_bites(monkeypatch) -> None:
    """``verify``'s lower bound above the oracle's exact maximum is an ``equiv-lower``
    finding (a lower bound of 1 planted on a network compared with itself: max 0)."""
    from exactcomp.testing import soak_checks
    from exactcomp.testing.random_networks import Case
    from exactcomp.testing.soak_checks import Checker

    net, box = _tie_net(), Box(np.array([-1.0]), np.array([1.0]))
    c = Checker(Case(net, box, 0), TINY, "fast")
    c.equivalence(net, "itself")
    assert c.findings == []
    real = soak_checks.verify_equivalence
    monkeypatch.setattr(
        soak_checks, "verify_equivalence", lambda *a, **k: replace(real(*a, **k), lower_bound=1.0)
    )
    c.equivalence(net, "itself")
    assert [f.kind for f in c.findings] == ["equiv-lower"]
