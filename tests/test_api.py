"""The public API: compress, then verify with the compression's own (re-proven) certificates."""

from __future__ import annotations

import numpy as np

import exactcomp
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.verdicts import Verdict


def _deep_sparse(seed: int = 4) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [4, 10, 10, 10, 2]
    ws = [
        rng.normal(size=(o, i)) * (rng.random((o, i)) < 0.5)
        for i, o in zip(sizes, sizes[1:], strict=False)
    ]
    bs = [rng.normal(size=o) - 0.3 for o in sizes[1:]]
    return Network.from_arrays(ws, bs)


def test_verify_with_certificates_proves_the_compression() -> None:
    net = _deep_sparse()
    box = Box.uniform(-1.0, 1.0, 4)
    res = exactcomp.compress(net, box, check=5000)
    assert res.network.num_neurons < net.num_neurons
    eq = exactcomp.verify_equivalence(
        net, res.network, box, certificates=res.stability, time_limit=60
    )
    assert eq.status.name == "EQUIVALENT"


def test_certificates_never_hide_a_difference() -> None:
    net = _deep_sparse()
    box = Box.uniform(-1.0, 1.0, 4)
    res = exactcomp.compress(net, box, check=5000)
    # drop one UNSTABLE neuron of the first layer from the original: a real change
    ls = res.stability.layers[0]
    j = int(ls.indices(Verdict.UNSTABLE)[0])
    l0, l1 = net.layers[0], net.layers[1]
    keep = np.arange(l0.out_features) != j
    g = net.replace_layers(
        [
            Layer(l0.weight[keep], l0.bias[keep], True),
            Layer(l1.weight[:, keep], l1.bias, l1.relu),
            *net.layers[2:],
        ]
    )
    eq = exactcomp.verify_equivalence(net, g, box, certificates=res.stability, time_limit=60)
    if eq.status.name == "NOT_EQUIVALENT":
        x = eq.counterexample.x
        assert np.abs(net(x) - g(x)).max() > 1e-6
    else:  # dropping it may not change the output (a dead path); then it must not be claimed different
        assert eq.status.name in ("EQUIVALENT", "UNKNOWN")
        xs = box.sample(20000, np.random.default_rng(0))
        if eq.status.name == "EQUIVALENT":
            assert np.abs(net(xs) - g(xs)).max() <= 1e-6


def test_too_large_fails_early_with_an_estimate() -> None:
    import pytest

    from exactcomp.api import check_memory, memory_estimate
    from exactcomp.errors import ResourceLimitError

    net = _deep_sparse()
    need = memory_estimate(net)
    check_memory(net, available=4 * need)  # fits
    with pytest.raises(ResourceLimitError, match="GiB"):
        check_memory(net, available=need)
