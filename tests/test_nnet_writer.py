"""The .nnet writer: exact (every number read back bit for bit), the same function as the
network written, in the units it was read in; what the format cannot hold is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from test_nnet import FIXTURE, INSIDE, MAXS, MINS, RANGES, B, W, reference

from exactcomp.domain import Box
from exactcomp.errors import OutputPathError
from exactcomp.io import save
from exactcomp.io.nnet import load_nnet
from exactcomp.network import Layer, Network


def _header(path) -> list[list[float]]:
    """The min, max, mean and range lines of a .nnet file."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("//")]
    return [[float(v) for v in ln.split(",") if v.strip()] for ln in lines[3:7]]


def test_raw_units_are_written_with_the_identity_normalisation(tmp_path):
    """A network read in raw units is written with means 0, ranges 1 and the file's own
    limits: a consumer computes the same raw function, its clipping included."""
    net = load_nnet(FIXTURE)
    out = tmp_path / "out.nnet"
    save(net, out)
    lo, hi, mean, rng = _header(out)
    assert lo == list(MINS) and hi == list(MAXS)
    assert mean == [0.0] * 4 and rng == [1.0] * 4
    back = load_nnet(out)
    for a, b in zip(back.layers, net.layers, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)
    x = Box(MINS, MAXS).sample(300, np.random.default_rng(0))
    np.testing.assert_allclose(back.forward(x), reference(x), rtol=1e-12, atol=1e-12)


def test_normalised_units_are_written_under_the_files_own_header(tmp_path):
    net = load_nnet(FIXTURE, units="normalised")
    out = tmp_path / "out.nnet"
    save(net, out)
    assert _header(out) == _header(FIXTURE)
    back = load_nnet(out, units="normalised")
    for k, layer in enumerate(back.layers):
        np.testing.assert_array_equal(layer.weight, W[k])
        np.testing.assert_array_equal(layer.bias, B[k])
    assert back.meta["output_range"] == RANGES[3]


def test_width_zero_layers_and_a_last_relu_keep_the_function(tmp_path):
    """The format has no width-0 layer and no ReLU on the last layer: one dead neuron
    (``relu(0) = 0``) and an identity layer stand in, exactly; limits from the domain."""
    rng = np.random.default_rng(1)
    net = Network(
        (
            Layer(rng.normal(size=(3, 2)), rng.normal(size=3), relu=True),
            Layer(np.zeros((0, 3)), np.zeros(0), relu=True),
            Layer(np.zeros((2, 0)), rng.normal(size=2), relu=True),
        )
    )
    box = Box(np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    out = tmp_path / "out.nnet"
    save(net, out, boxes=[box])
    lo, hi, _, _ = _header(out)
    assert lo == [-1.0, 0.0] and hi == [1.0, 2.0]
    back = load_nnet(out)
    assert back.describe() == "2-3r-1r-2r-2"
    x = box.sample(200, rng)
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


def test_no_limits_without_a_domain(tmp_path):
    net = Network.from_arrays([np.array([[2.0, -1.0]])], [np.array([0.5])])
    out = tmp_path / "out.nnet"
    save(net, out)
    lo, hi, _, _ = _header(out)
    assert lo == [-np.inf] * 2 and hi == [np.inf] * 2
    np.testing.assert_array_equal(load_nnet(out).layers[0].weight, [[2.0, -1.0]])


def test_a_hidden_layer_without_relu_is_refused_and_nothing_written(tmp_path):
    net = Network(
        (
            Layer(np.eye(2), np.zeros(2), relu=False),
            Layer(np.eye(2), np.zeros(2), relu=False),
        )
    )
    out = tmp_path / "out.nnet"
    with pytest.raises(OutputPathError, match="layer 0 has no ReLU"):
        save(net, out)
    assert list(tmp_path.iterdir()) == []


def test_cli_compress_writes_an_nnet(tmp_path, capsys):
    """``compress model.nnet ... -o small.nnet``: the file written computes the input file's
    function (clipping included) on the box."""
    import json

    from exactcomp.cli import main

    out, box = tmp_path / "small.nnet", tmp_path / "box.json"
    box.write_text(json.dumps(INSIDE.to_json()))
    rc = main(["compress", str(FIXTURE), "--box-file", str(box), "-o", str(out), "--jobs", "1"])
    assert rc == 0, capsys.readouterr().err
    x = INSIDE.sample(500, np.random.default_rng(2))
    np.testing.assert_allclose(load_nnet(out).forward(x), reference(x), rtol=1e-9, atol=1e-9)
