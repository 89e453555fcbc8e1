"""verify_equivalence against brute force on tiny networks (1-2 inputs).

The oracle is independent of the verifier: a dense grid (257 points per input) and the exact
maximum of ``||f - g||_inf`` by enumerating the joint activation regions (one LP each,
:func:`exactcomp.testing.oracle.max_output_difference`). The soundness rule: never EQUIVALENT
when the oracle finds a difference above ``tol``; every counterexample is real.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import network_and_box

from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import grid_check, max_output_difference
from exactcomp.verify import EquivalenceStatus, verify_equivalence

TOL = 1e-4


def _variant(net: Network, kind: str, size: float, rng: np.random.Generator) -> Network:
    """A network equal to ``net`` (``same``, ``permuted``, ``split``: one neuron halved and
    its outgoing weights doubled) or changed by ``size`` (``weight``, ``bias``,
    ``split+bias``)."""
    layers = list(net.layers)
    if kind == "same":
        return net
    if kind == "permuted":
        prev = None
        for k, layer in enumerate(layers):
            w, b = layer.weight, layer.bias
            if prev is not None:
                w = w[:, prev]
            prev = None
            if layer.relu and k < len(layers) - 1:
                prev = rng.permutation(layer.out_features)
                w, b = w[prev], b[prev]
            layers[k] = Layer(w, b, layer.relu)
        return net.replace_layers(layers)
    if kind.startswith("split"):  # relu(z) = 2 relu(z / 2): equal, but no neuron matches
        k = int(rng.integers(len(layers) - 1))
        j = int(rng.integers(layers[k].out_features))
        w, b = layers[k].weight.copy(), layers[k].bias.copy()
        w[j], b[j] = w[j] / 2, b[j] / 2
        w_next = layers[k + 1].weight.copy()
        w_next[:, j] *= 2
        layers[k] = Layer(w, b, layers[k].relu)
        layers[k + 1] = Layer(w_next, layers[k + 1].bias, layers[k + 1].relu)
        if kind == "split":
            return net.replace_layers(layers)
        kind = "bias"
    k = int(rng.integers(len(layers)))
    w, b = layers[k].weight.copy(), layers[k].bias.copy()
    if kind == "weight":
        w[rng.integers(w.shape[0]), rng.integers(w.shape[1])] += size
    else:
        b[rng.integers(b.size)] += size
    layers[k] = Layer(w, b, layers[k].relu)
    return net.replace_layers(layers)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    case=network_and_box(inputs=(1, 2), max_neurons=6, depth=(1, 2), width=(1, 3)),
    kind=st.sampled_from(["same", "permuted", "split", "weight", "bias", "split+bias"]),
    size=st.sampled_from([1e-6, 1e-3, 0.1, 1.0]),
    seed=st.integers(0, 3),
)
def test_verdict_agrees_with_brute_force(case, kind, size, seed) -> None:
    f, box = case
    g = _variant(f, kind, size, np.random.default_rng(seed))
    res = verify_equivalence(f, g, box, tol=TOL, time_limit=20)
    exact = max_output_difference(f, g, box, floor=TOL / 2).value
    grid = grid_check(f, box, g=g, per_dim=257 if box.dim == 1 else 65).max_difference
    if max(exact, grid) > TOL:
        assert res.status is not EquivalenceStatus.EQUIVALENT, res.summary()
    if res.status is EquivalenceStatus.EQUIVALENT:
        assert max(exact, grid) <= res.upper_bound + 1e-9
        assert res.upper_bound <= TOL
    if res.status is EquivalenceStatus.NOT_EQUIVALENT:
        ce = res.counterexample
        assert box.contains(ce.x[None, :], atol=0.0)[0]
        assert np.abs(f.forward(ce.x) - g.forward(ce.x)).max() > TOL
        assert ce.difference <= exact + 1e-9  # nobody beats the exact maximum
    assert res.lower_bound <= max(exact, grid) + 1e-9
    if exact > 2 * TOL:  # a clear difference must be found, not left UNKNOWN
        assert res.status is EquivalenceStatus.NOT_EQUIVALENT, res.summary()
