"""The IR: construction checks, evaluation, shape facts."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.errors import InvalidNetworkError
from exactcomp.network import Layer, Network


def tiny() -> Network:
    r"""x (2) -> 2 ReLU -> 1 output.

    ::

        x0 --1--> n0 = relu(x0 - x1)     --1-->
        x1 --1--> n1 = relu(x0 + x1 - 1) --2--> y = n0 + 2 n1 + 0.5
    """
    return Network.from_arrays(
        [np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[1.0, 2.0]])],
        [np.array([0.0, -1.0]), np.array([0.5])],
    )


def test_forward_matches_hand_computation() -> None:
    net = tiny()
    x = np.array([[2.0, 1.0], [0.0, 0.0], [0.2, 0.9]])
    expected = np.array([[1.0 + 2 * 2.0 + 0.5], [0.5], [0.0 + 2 * 0.1 + 0.5]])
    np.testing.assert_allclose(net.forward(x), expected, atol=1e-15)
    np.testing.assert_allclose(net(x[0]), expected[0])


def test_preactivations_and_shape_facts() -> None:
    net = tiny()
    z = net.preactivations(np.array([[0.2, 0.9]]))
    np.testing.assert_allclose(z[0], [[-0.7, 0.1]], atol=1e-15)
    assert net.relu_layers == (0,)
    assert net.hidden_widths == (2,)
    assert net.num_neurons == 2
    assert net.num_parameters == 4 + 2 + 2 + 1
    assert net.describe() == "2-2r-1"


def test_layers_are_immutable_float64_copies() -> None:
    w = np.ones((2, 2), dtype=np.float32)
    layer = Layer(w, np.zeros(2), relu=True)
    w[0, 0] = 5.0
    assert layer.weight.dtype == np.float64 and layer.weight[0, 0] == 1.0
    with pytest.raises(ValueError):
        layer.weight[0, 0] = 3.0


@pytest.mark.parametrize(
    ("weights", "biases", "message"),
    [
        ([np.ones((2, 3)), np.ones((1, 3))], [np.zeros(2), np.zeros(1)], "expects 3 inputs"),
        ([np.ones((2, 3))], [np.zeros(3)], "bias has 3 entries"),
        ([np.full((2, 3), np.nan)], [np.zeros(2)], "NaN or inf"),
        ([np.ones((2, 3))], [np.array([0.0, np.inf])], "NaN or inf"),
        ([], [], "no layers"),
    ],
)
def test_invalid_networks_are_clear_errors(weights, biases, message) -> None:
    with pytest.raises(InvalidNetworkError, match=message):
        Network.from_arrays(weights, biases)


def test_wrong_input_size_is_a_clear_error() -> None:
    with pytest.raises(InvalidNetworkError, match="expects 2 features"):
        tiny().forward(np.zeros((4, 3)))


def test_forward_in_chunks_gives_the_same_values(monkeypatch):
    """A batch evaluated in chunks of rows (:data:`~exactcomp.network.FORWARD_CHUNK`, set
    small) is the batch evaluated at once, bit for bit, and keeps its shape."""
    import exactcomp.network as network_module

    rng = np.random.default_rng(3)
    ws = [rng.normal(size=(7, 3)), rng.normal(size=(2, 7))]
    net = Network.from_arrays(ws, [rng.normal(size=7), rng.normal(size=2)])
    x = rng.normal(size=(50, 3))
    whole = net.forward(x)
    monkeypatch.setattr(network_module, "FORWARD_CHUNK", 7 * 4)  # 4 rows per chunk
    chunked = net.forward(x)
    assert chunked.shape == (50, 2)
    np.testing.assert_array_equal(chunked, whole)
