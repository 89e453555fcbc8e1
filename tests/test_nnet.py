"""The .nnet reader: normalisation folded exactly, clipping limits enforced, bad files refused.

The fixture ``tests/data/tiny.nnet`` is written by :func:`nnet_text` from the hand-picked
weights below (``test_fixture_is_regenerable`` keeps the two in sync). Its network::

    x (3, raw units) -> normalise -> 4 ReLU -> 3 ReLU -> 2 -> de-normalise -> y (raw units)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.errors import InputFileError, InvalidDomainError, InvalidNetworkError
from exactcomp.io.nnet import check_nnet_box, load_nnet, nnet_input_limits

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "tiny.nnet"

W = [
    np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0], [-1.0, 0.25, 2.0], [3.0, 0.0, -1.0]]),
    np.array([[1.0, -1.0, 0.5, 0.0], [0.5, 0.5, -1.0, 1.0], [-2.0, 1.0, 0.0, 0.25]]),
    np.array([[1.0, 2.0, -1.0], [-0.5, 1.0, 1.5]]),
]
B = [np.array([0.1, -0.2, 0.0, 0.5]), np.array([0.0, 0.3, -0.1]), np.array([0.05, -0.05])]
MINS = np.array([0.0, -3.0, 10.0])
MAXS = np.array([100.0, 3.0, 20.0])
MEANS = np.array([50.0, 0.0, 15.0, 7.5])  # last entry: output mean
RANGES = np.array([100.0, 6.0, 10.0, 20.0])  # last entry: output range


def nnet_text(weights, biases, mins, maxs, means, ranges) -> str:
    """A .nnet file for the given raw (unfolded) weights and normalisation."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    row = lambda v: ",".join(repr(float(x)) for x in v) + ","  # noqa: E731
    lines = [
        "// tiny test network for exactcomp (hand-picked weights)",
        f"{len(weights)},{sizes[0]},{sizes[-1]},{max(sizes)},",
        row(sizes).replace(".0", ""),
        "0,",
        row(mins),
        row(maxs),
        row(means),
        row(ranges),
    ]
    for w, b in zip(weights, biases, strict=True):
        lines += [row(r) for r in w]
        lines += [row([v]) for v in b]
    return "\n".join(lines) + "\n"


def reference(x: np.ndarray) -> np.ndarray:
    """What an .nnet consumer computes (clipping, normalisation, ReLU net, de-normalisation)."""
    h = (np.clip(x, MINS, MAXS) - MEANS[:3]) / RANGES[:3]
    for k, (w, b) in enumerate(zip(W, B, strict=True)):
        h = h @ w.T + b
        if k < len(W) - 1:
            h = np.maximum(h, 0.0)
    return h * RANGES[3] + MEANS[3]


def test_fixture_is_regenerable():
    assert FIXTURE.read_text() == nnet_text(W, B, MINS, MAXS, MEANS, RANGES)


def test_folded_network_equals_reference_inside_limits():
    net = load_nnet(FIXTURE)
    assert net.describe() == "3-4r-3r-2"
    assert net.meta["format"] == "nnet"
    x = Box(MINS, MAXS).sample(500, np.random.default_rng(0))
    np.testing.assert_allclose(net.forward(x), reference(x), rtol=1e-12, atol=1e-12)


def test_clipping_is_not_modelled_outside_limits():
    """Outside [min, max] the file clips and the affine IR does not: documented, and checked."""
    net = load_nnet(FIXTURE)
    x = np.array([[150.0, 0.0, 15.0]])
    assert not np.allclose(net.forward(x), reference(x))
    with pytest.raises(InvalidDomainError, match=r"input 0 .* upper bound 150.0 .* maximum 100.0"):
        check_nnet_box(net, Box(np.array([0.0, -1, 10]), np.array([150.0, 1, 20])))
    with pytest.raises(InvalidDomainError, match="input limits"):
        load_nnet(FIXTURE, box=Box(np.array([0.0, -4, 10]), np.array([1.0, 1, 20])))


def test_input_limits_and_box_inside():
    limits = nnet_input_limits(FIXTURE)
    np.testing.assert_array_equal(limits.lower, MINS)
    np.testing.assert_array_equal(limits.upper, MAXS)
    net = load_nnet(FIXTURE, box=Box(np.array([10.0, -1, 11]), np.array([20.0, 1, 12])))
    assert nnet_input_limits(net).dim == 3


def test_limits_of_foreign_network_is_an_error():
    from exactcomp.network import Network

    net = Network.from_arrays([np.eye(2)], [np.zeros(2)])
    with pytest.raises(InvalidDomainError, match="not read from a .nnet"):
        nnet_input_limits(net)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", InputFileError, "ends early"),
        ("// only a comment\n", InputFileError, "ends early"),
        ("2,3,2,4,\n3,4,banana,\n", InputFileError, "not a number"),
        ("1.5,3,2,4,\n", InputFileError, "positive integer"),
    ],
)
def test_malformed_files(tmp_path, text, error, match):
    p = tmp_path / "bad.nnet"
    p.write_text(text)
    with pytest.raises(error, match=match):
        load_nnet(p)


def test_truncated_and_overlong_files(tmp_path):
    good = FIXTURE.read_text()
    p = tmp_path / "cut.nnet"
    p.write_text(good[: len(good) // 2].rsplit("\n", 1)[0] + "\n")
    with pytest.raises(InputFileError, match="ends early"):
        load_nnet(p)
    p.write_text(good + "1.0,\n")
    with pytest.raises(InputFileError, match="left over"):
        load_nnet(p)


def test_inconsistent_sizes_and_zero_range(tmp_path):
    p = tmp_path / "bad.nnet"
    text = nnet_text(W, B, MINS, MAXS, MEANS, RANGES).replace("3,3,2,4,", "3,3,5,4,", 1)
    p.write_text(text)
    with pytest.raises(InvalidNetworkError, match="layer sizes"):
        load_nnet(p)
    p.write_text(nnet_text(W, B, MINS, MAXS, MEANS, np.array([100.0, 0.0, 10.0, 20.0])))
    with pytest.raises(InvalidNetworkError, match="range of input 1 is zero"):
        load_nnet(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_nnet(tmp_path / "nope.nnet")


# --- the domain meets the network: inside the limits exact, outside refused (issue 18 #2) ----

INSIDE = Box(np.array([0.0, -3.0, 12.0]), np.array([40.0, 3.0, 20.0]))  # touches the limits
OUTSIDE = Box(np.array([0.0, -3.5, 12.0]), np.array([40.0, 3.0, 20.0]))  # input 1 below -3


def _edge_points(box: Box, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform points of ``box`` plus its vertices (where the limits are touched)."""
    d = box.dim
    corners = np.array([[(v >> i) & 1 for i in range(d)] for v in range(2**d)], dtype=float)
    vertices = box.lower + corners * (box.upper - box.lower)
    return np.vstack([box.sample(n, rng), vertices])


def test_compress_inside_limits_equals_file_semantics():
    """Compressed over a box within the limits, the result computes what an .nnet consumer
    computes (clipping included) everywhere on the box, its faces and vertices included."""
    from exactcomp.api import compress

    result = compress(FIXTURE, INSIDE, time_limit=5.0, check=2000, jobs=1)
    x = _edge_points(INSIDE, 2000, np.random.default_rng(1))
    np.testing.assert_allclose(result.network.forward(x), reference(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("entry", ["compress", "stable_neurons", "recheck"])
def test_box_outside_limits_is_refused(entry):
    """Outside the limits the file clips and the folded network does not: every API entry
    refuses the domain (before the fix, ``compress`` returned a network exact only on part of it)."""
    from exactcomp import api

    x = np.array([[20.0, -3.5, 15.0]])
    assert not np.allclose(load_nnet(FIXTURE).forward(x), reference(x))  # it would matter
    with pytest.raises(
        InvalidDomainError, match=r"input 1 .*lower bound -3.5 .*minimum -3.*raw units"
    ):
        if entry == "compress":
            api.compress(FIXTURE, OUTSIDE, check=10, jobs=1)
        elif entry == "stable_neurons":
            api.stable_neurons(FIXTURE, [INSIDE, OUTSIDE], jobs=1)
        else:
            api.recheck_certificates(FIXTURE, api.stable_neurons(FIXTURE, INSIDE, jobs=1), OUTSIDE)


def test_verify_refuses_a_box_outside_either_networks_limits():
    """``verify`` said EQUIVALENT for a network that differs from the file outside its limits;
    the .nnet may be either argument."""
    from exactcomp.api import verify_equivalence
    from exactcomp.network import Network

    net = load_nnet(FIXTURE)
    plain = Network(net.layers, dtype=net.dtype)  # the same folded weights, no limits
    for f, g in ((FIXTURE, plain), (plain, FIXTURE)):
        with pytest.raises(InvalidDomainError, match="input 1"):
            verify_equivalence(f, g, OUTSIDE, time_limit=5.0)
    assert verify_equivalence(plain, FIXTURE, INSIDE, time_limit=5.0).status.name == "EQUIVALENT"


def test_cli_box_outside_limits_one_line_exit_2(tmp_path, capsys):
    import json

    from exactcomp.cli import main

    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lower": OUTSIDE.lower.tolist(), "upper": OUTSIDE.upper.tolist()}))
    out = tmp_path / "small.onnx"
    code = main(["compress", str(FIXTURE), "--box-file", str(box), "-o", str(out), "--jobs", "1"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2
    assert len(lines) == 1 and "raw units" in lines[0] and "input 1" in lines[0], lines
    assert not out.exists()


# --- header lines with extra trailing entries (issue 14) ------------------------------------


def _with_extra_header_entries(text: str) -> str:
    """NeuroDiff's ACAS Xu files list more entries than needed on the header lines (7
    minimums for 5 inputs); here two more on each of the min, max, mean and range lines."""
    lines = text.splitlines()
    for k in range(4, 8):  # after the comment, header, sizes and flag lines
        lines[k] += "-7.0,99.0,"
    return "\n".join(lines) + "\n"


def test_header_lines_with_extra_entries_read_first_n(tmp_path):
    p = tmp_path / "extra.nnet"
    p.write_text(_with_extra_header_entries(FIXTURE.read_text()))
    net = load_nnet(p)
    x = Box(MINS, MAXS).sample(300, np.random.default_rng(2))
    np.testing.assert_allclose(net.forward(x), reference(x), rtol=1e-12, atol=1e-12)
    assert net.meta["input_min"] == MINS.tolist()
    assert net.meta["header_entries_ignored"] == {
        "the input minimums": 2,
        "the input maximums": 2,
        "the means": 2,
        "the ranges": 2,
    }
    assert load_nnet(FIXTURE).meta["header_entries_ignored"] == {}


def test_header_line_with_too_few_entries(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    lines[4] = "0.0,-3.0,"  # two minimums for three inputs
    p = tmp_path / "short.nnet"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputFileError, match="line 5: 2 numbers for the input minimums, expected 3"
    ):
        load_nnet(p)


def test_minimum_above_maximum(tmp_path):
    p = tmp_path / "bad.nnet"
    p.write_text(nnet_text(W, B, MINS, np.array([100.0, -4.0, 20.0]), MEANS, RANGES))
    with pytest.raises(InvalidNetworkError, match="input 1 has minimum -3.0 above its maximum"):
        load_nnet(p)


# --- a real network: ACAS Xu 1_1 as an .nnet, and a VNN-LIB box in normalised units --------

REAL = Path(__file__).resolve().parents[1] / "models" / "real" / "acasxu"
# The public ACAS Xu .nnet header (Julian and Katz): limits, means and ranges of the 5 inputs,
# then the output's mean and range. The ONNX graph holds the network between the two.
ACAS_MINS = np.array([0.0, -3.141593, -3.141593, 100.0, 0.0])
ACAS_MAXS = np.array([60760.0, 3.141593, 3.141593, 1200.0, 1200.0])
ACAS_MEANS = np.array([19791.091, 0.0, 0.0, 650.0, 600.0, 7.5188840201005975])
ACAS_RANGES = np.array([60261.0, 6.28318530718, 6.28318530718, 1100.0, 1200.0, 373.94992])


@pytest.fixture(scope="module")
def acas(tmp_path_factory):
    """ACAS Xu 1_1 written as an .nnet (the shipped ONNX weights, the public header) and the
    ONNX network it came from."""
    from exactcomp.io import load

    onnx_net = load(REAL / "ACASXU_run2a_1_1_batch_2000.onnx")
    ws = [layer.weight.astype(np.float64) for layer in onnx_net.layers]
    bs = [layer.bias.astype(np.float64) for layer in onnx_net.layers]
    path = tmp_path_factory.mktemp("acas") / "acas_1_1.nnet"
    path.write_text(nnet_text(ws, bs, ACAS_MINS, ACAS_MAXS, ACAS_MEANS, ACAS_RANGES))
    return path, onnx_net


def test_acas_nnet_equals_onnx_with_normalisation(acas, tmp_path):
    """Raw in, raw out: the .nnet read here is the ONNX network between the file's
    normalisation and de-normalisation, also when its header lines carry NeuroDiff-style
    extra entries."""
    path, onnx_net = acas
    x = Box(ACAS_MINS, ACAS_MAXS).sample(400, np.random.default_rng(3))
    want = (
        onnx_net.forward(((x - ACAS_MEANS[:5]) / ACAS_RANGES[:5]).astype(np.float32))
        * ACAS_RANGES[5]
        + ACAS_MEANS[5]
    )
    np.testing.assert_allclose(load_nnet(path).forward(x), want, rtol=1e-5, atol=1e-3)
    extra = tmp_path / "extra.nnet"
    extra.write_text(_with_extra_header_entries(path.read_text()))
    np.testing.assert_array_equal(load_nnet(extra).forward(x), load_nnet(path).forward(x))


def test_acas_vnnlib_box_in_normalised_units_is_refused(acas, tmp_path, capsys):
    """The issue's case: a VNN-LIB box in normalised units given with an ACAS Xu .nnet leaves
    the limits of input 3 (v_own >= 100 ft/s); refused with one line that says the units.
    The same box mapped to raw units lies within the limits and is accepted."""
    from exactcomp.api import bind_domain
    from exactcomp.cli import main
    from exactcomp.io.vnnlib import read_vnnlib

    path, _ = acas
    out = tmp_path / "small.onnx"
    argv = ["compress", str(path), "--vnnlib", str(REAL / "prop_1.vnnlib"), "-o", str(out)]
    code = main(argv + ["--jobs", "1"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert "input 3" in lines[0] and "minimum 100" in lines[0] and "raw units" in lines[0]
    assert not out.exists()
    (norm,) = read_vnnlib(REAL / "prop_1.vnnlib", 5).boxes
    raw = Box(
        norm.lower * ACAS_RANGES[:5] + ACAS_MEANS[:5], norm.upper * ACAS_RANGES[:5] + ACAS_MEANS[:5]
    )
    # rho's upper bound, 0.679857769 normalised, is 60760 + 5e-6 ft raw: strictly refused too
    with pytest.raises(
        InvalidDomainError, match=r"input 0 .* upper bound 60760.0000\d+ .* 60760.0"
    ):
        bind_domain(raw, load_nnet(path))
    inside = Box(np.maximum(raw.lower, ACAS_MINS), np.minimum(raw.upper, ACAS_MAXS))
    assert bind_domain(inside, load_nnet(path)) == (inside,)


@pytest.mark.parametrize(
    ("mins", "means", "match"),
    [
        (np.array([np.nan, -3.0, 10.0]), MEANS, "limit is NaN"),
        (MINS, np.array([50.0, np.inf, 15.0, 7.5]), "not finite"),
    ],
)
def test_non_finite_header(tmp_path, mins, means, match):
    """A NaN limit would let every box pass the limits check (comparisons with NaN are False)."""
    p = tmp_path / "bad.nnet"
    p.write_text(nnet_text(W, B, mins, MAXS, means, RANGES))
    with pytest.raises(InvalidNetworkError, match=match):
        load_nnet(p)


# --- normalised units: load_nnet(units="normalised"), --nnet-units (issue 14) -----------------
LIM_LO, LIM_HI = (MINS - MEANS[:3]) / RANGES[:3], (MAXS - MEANS[:3]) / RANGES[:3]


def reference_normalised(xn: np.ndarray) -> np.ndarray:
    """The stored network: normalised inputs to normalised outputs (no clip, no de-norm)."""
    h = xn
    for k, (w, b) in enumerate(zip(W, B, strict=True)):
        h = h @ w.T + b
        if k < len(W) - 1:
            h = np.maximum(h, 0.0)
    return h


def test_normalised_units_are_the_stored_network():
    net = load_nnet(FIXTURE, units="normalised")
    assert net.meta["units"] == "normalised" and load_nnet(FIXTURE).meta["units"] == "raw"
    for k, layer in enumerate(net.layers):  # no folding: the file's numbers as they are
        np.testing.assert_array_equal(layer.weight, W[k])
        np.testing.assert_array_equal(layer.bias, B[k])
    xn = Box(LIM_LO, LIM_HI).sample(500, np.random.default_rng(1))
    np.testing.assert_allclose(net.forward(xn), reference_normalised(xn), rtol=0, atol=1e-15)
    raw = xn * RANGES[:3] + MEANS[:3]  # the same points in raw units, through the folded net
    y = load_nnet(FIXTURE).forward(raw)
    np.testing.assert_allclose(net.forward(xn) * RANGES[3] + MEANS[3], y, rtol=1e-12, atol=1e-12)


def test_normalised_limits_are_translated_and_enforced():
    """min = [0, -3, 10], max = [100, 3, 20], mean = [50, 0, 15], range = [100, 6, 10]:
    the normalised limits are [-0.5, -0.5, -0.5] .. [0.5, 0.5, 0.5]."""
    net = load_nnet(FIXTURE, units="normalised")
    limits = nnet_input_limits(net)
    np.testing.assert_array_equal(limits.lower, [-0.5, -0.5, -0.5])
    np.testing.assert_array_equal(limits.upper, [0.5, 0.5, 0.5])
    load_nnet(FIXTURE, units="normalised", box=Box.uniform(-0.5, 0.5, 3))  # the limits: fine
    with pytest.raises(InvalidDomainError, match=r"input 1 .* 0.6 .* maximum 0.5.*normalised"):
        check_nnet_box(net, Box(np.array([0.0, 0, 0]), np.array([0.1, 0.6, 0.1])))
    raw_box = Box(np.array([10.0, -1, 11]), np.array([20.0, 1, 12]))  # fine in raw units only
    load_nnet(FIXTURE, box=raw_box)
    with pytest.raises(InvalidDomainError, match="input 0"):
        load_nnet(FIXTURE, units="normalised", box=raw_box)
    with pytest.raises(ValueError, match="units"):
        load_nnet(FIXTURE, units="scaled")


def test_negative_range_swaps_the_normalised_limits(tmp_path):
    path = tmp_path / "neg.nnet"
    path.write_text(nnet_text(W, B, MINS, MAXS, MEANS, RANGES * np.array([-1, 1, 1, 1])))
    limits = nnet_input_limits(load_nnet(path, units="normalised"))
    np.testing.assert_array_equal(limits.lower, [-0.5, -0.5, -0.5])
    np.testing.assert_array_equal(limits.upper, [0.5, 0.5, 0.5])


def test_api_and_cli_nnet_units(tmp_path, capsys):
    """g = f with output 1's last bias moved by 0.25 (normalised units; 5.0 in raw units, range
    20): on output 0 they are equal, on output 1 they differ by exactly 0.25 normalised."""
    import json

    from exactcomp import api
    from exactcomp.cli import main

    g_path = tmp_path / "g.nnet"
    b2 = [B[0], B[1], B[2] + np.array([0.0, 0.25])]
    g_path.write_text(nnet_text(W, b2, MINS, MAXS, MEANS, RANGES))
    box = Box.uniform(-0.5, 0.5, 3)
    res = api.verify_equivalence(
        FIXTURE, g_path, box, tol=0.3, time_limit=10.0, nnet_units="normalised"
    )
    assert res.status.name == "EQUIVALENT" and abs(res.upper_bound - 0.25) < 1e-6
    res = api.verify_equivalence(
        FIXTURE, g_path, box, tol=0.2, time_limit=10.0, nnet_units="normalised"
    )
    assert res.status.name == "NOT_EQUIVALENT"
    assert abs(res.lower_bound - 0.25) < 1e-9
    with pytest.raises(InvalidDomainError, match="input 0"):  # the same box in raw units
        api.verify_equivalence(FIXTURE, g_path, box, tol=0.3, time_limit=10.0)
    box_file = tmp_path / "box.json"
    box_file.write_text(json.dumps({"lower": [-0.5] * 3, "upper": [0.5] * 3}))
    args = ["verify", str(FIXTURE), str(g_path), "--box-file", str(box_file), "--quiet"]
    assert main([*args, "--nnet-units", "normalised", "--tol", "0.3"]) == 0
    capsys.readouterr()
    assert main([*args, "--tol", "0.3"]) == 2  # raw units: the box leaves the limits
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "raw units" in lines[0], lines
