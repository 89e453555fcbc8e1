"""The region (witness) search of a layer stops after ``_REGION_DRY`` searches that showed no
new sign; the neurons it leaves go on to the proof phases, and every verdict is still the
brute-force oracle's (:mod:`exactcomp.testing.oracle`). The search is replaced by a fake that
finds nothing (a "dry" layer, as layers 2 and 3 of mnist-net_256x6 prop_0_0.03 are), so the
count of searches is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.stability import layer as stability_layer
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case

SEEDS = [7, 31, 32]  # cases whose region search gets 3, 2 and 3 open neurons


class Searches:
    """Stands in for ``region_search``: logs ``(layer, neuron)`` per call, finds nothing; and
    records how many open neurons each layer's region search was given."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[int, int]] = []
        self.given: dict[int, int] = {}

        def search(net, box, k, bounds, verdicts, j, *rest):
            self.calls.append((k, j))
            return np.empty((0, box.dim))

        real = stability_layer.LayerRun._region_search

        def run(layer_run) -> None:
            self.given[layer_run.k] = int(layer_run.open_neurons().size)
            real(layer_run)

        monkeypatch.setattr(stability_layer, "region_search", search)
        monkeypatch.setattr(stability_layer.LayerRun, "_region_search", run)

    def per_layer(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for k, _ in self.calls:
            out[k] = out.get(k, 0) + 1
        return out


@pytest.mark.parametrize(("seed", "dry"), [(7, 1), (7, 2), (31, 1), (32, 1), (32, 2)])
def test_a_dry_layer_stops_after_dry_searches_and_stays_sound(monkeypatch, seed, dry):
    case = random_case(seed, max_neurons=12, nasty=False)
    exact = exact_analysis(case.network, case.box)
    monkeypatch.setattr(stability_layer, "_REGION_DRY", dry)
    searches = Searches(monkeypatch)
    report = stable_neurons(case.network, case.box, jobs=1)
    assert searches.given, "no layer reached the region search: pick another seed"
    assert max(searches.given.values()) > dry  # so that the stop is exercised
    for k, n in searches.given.items():
        assert searches.per_layer().get(k, 0) == min(n, dry), (k, n, searches.calls)
    assert report.stats.get("region_dry_stops", 0) == sum(n > dry for n in searches.given.values())
    assert exact.wrong_verdicts(report) == []


@pytest.mark.parametrize("seed", SEEDS)
def test_a_layer_that_keeps_showing_signs_searches_every_open_neuron(monkeypatch, seed):
    """When every search shows a new sign (``_shown`` grows at each look) the search is never
    stopped: each open neuron is searched once."""
    case = random_case(seed, max_neurons=12, nasty=False)
    monkeypatch.setattr(stability_layer, "_REGION_DRY", 1)
    searches = Searches(monkeypatch)
    looks = iter(range(10**6))
    monkeypatch.setattr(stability_layer.LayerRun, "_shown", lambda self: next(looks))
    report = stable_neurons(case.network, case.box, jobs=1)
    for k, n in searches.given.items():
        assert searches.per_layer().get(k, 0) == n
    assert "region_dry_stops" not in report.stats
