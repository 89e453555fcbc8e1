"""Boxes and the readers that build them; every bad box is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exactcomp.bounds import interval_bounds
from exactcomp.domain import Box, box_from_data, parse_box_string, read_box_file
from exactcomp.errors import InputFileError, InvalidDomainError
from exactcomp.network import Network


def test_parse_box_string() -> None:
    b = parse_box_string("0,1", 3)
    np.testing.assert_array_equal(b.lower, [0, 0, 0])
    np.testing.assert_array_equal(b.upper, [1, 1, 1])
    assert parse_box_string(" -2.5 , 3e-1 ", 1).upper[0] == 0.3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1", "LO,HI"),
        ("a,b", "LO,HI"),
        ("1,0", "inverted"),
        ("0,nan", "non-finite"),
        ("0,inf", "non-finite"),
    ],
)
def test_bad_box_strings(text: str, message: str) -> None:
    with pytest.raises(InvalidDomainError, match=message):
        parse_box_string(text, 2)


def test_degenerate_box_is_allowed_but_empty_is_not() -> None:
    assert Box([1.0, 0.0], [1.0, 2.0]).dim == 2
    with pytest.raises(InvalidDomainError, match="empty"):
        Box([], [])
    with pytest.raises(InvalidDomainError, match="coordinates but the network has 3"):
        Box.uniform(0, 1, 2).check_size(3)


def test_box_files(tmp_path) -> None:
    npy = tmp_path / "b.npy"
    np.save(npy, np.array([[0.0, -1.0], [1.0, 1.0]]))
    assert read_box_file(npy).lower.tolist() == [0.0, -1.0]
    js = tmp_path / "b.json"
    js.write_text(json.dumps({"lower": [0, 0], "upper": [1, 2]}))
    assert read_box_file(js).upper.tolist() == [1.0, 2.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"low": [0]}))
    with pytest.raises(InvalidDomainError, match="lower"):
        read_box_file(bad)
    with pytest.raises(InputFileError, match="not found"):
        read_box_file(tmp_path / "missing.json")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 2)))
    with pytest.raises(InvalidDomainError, match=r"\(2, n\)"):
        read_box_file(tmp_path / "wrong.npy")


def test_box_from_data(tmp_path) -> None:
    data = np.array([[0.0, 5.0], [2.0, -1.0], [1.0, 0.0]])
    np.save(tmp_path / "d.npy", data)
    b = box_from_data(tmp_path / "d.npy")
    assert b.lower.tolist() == [0.0, -1.0] and b.upper.tolist() == [2.0, 5.0]


def test_sampling_stays_inside() -> None:
    b = Box([0.0, -1.0, 2.0], [1.0, 1.0, 2.0])
    x = b.sample(1000, np.random.default_rng(0))
    assert b.contains(x).all()


def test_interval_bounds_enclose_samples() -> None:
    rng = np.random.default_rng(1)
    net = Network.from_arrays(
        [rng.normal(size=(8, 3)), rng.normal(size=(8, 8)), rng.normal(size=(2, 8))],
        [rng.normal(size=8), rng.normal(size=8), rng.normal(size=2)],
    )
    box = Box([-1.0, 0.0, 0.5], [1.0, 0.0, 2.0])
    bounds = interval_bounds(net, box)
    for (lo, hi), z in zip(bounds, net.preactivations(box.sample(5000, rng)), strict=True):
        assert (z >= lo).all() and (z <= hi).all()
