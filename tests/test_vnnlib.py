"""The VNN-LIB reader: boxes from every shipped property, disjunctions, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exactcomp.errors import InputFileError, InvalidDomainError
from exactcomp.io.vnnlib import parse_sexprs, parse_vnnlib, read_vnnlib

REAL = Path(__file__).resolve().parents[1] / "models" / "real"

# file -> (inputs, outputs, output constraints)
SHIPPED = {
    "acasxu/prop_1.vnnlib": (5, 5, 1),
    "acasxu/prop_2.vnnlib": (5, 5, 4),
    "acasxu/prop_3.vnnlib": (5, 5, 4),
    "acasxu/prop_4.vnnlib": (5, 5, 4),
    "mnistfc/prop_0_0.03.vnnlib": (784, 10, 9),
    "mnistfc/prop_1_0.05.vnnlib": (784, 10, 9),
    "small/cartpole_case_safe_14.vnnlib": (4, 2, 1),
    "small/vdp_0.vnnlib": (3, 3, 5),
    "small/tll_property_N8_0.vnnlib": (2, 1, 1),
    "conv/Convnet_avgpool_prop_0_0.02.vnnlib": (784, 10, 9),
    "conv/cifar_base_kw-img2908-eps0.019869281045751634.vnnlib": (3072, 10, 9),
    "conv/cifar_base_kw-img4549-eps0.00392156862745098.vnnlib": (3072, 10, 9),
    "conv/Convnet_maxpool_prop_0_0.004.vnnlib": (784, 10, 9),
    "conv/marabou_conv_mp1_box_0.02.vnnlib": (192, 5, 1),
    "eran/mnist_spec_idx_1013_eps_0.01500.vnnlib": (784, 10, 9),
    "eran/mnist_spec_idx_186_eps_0.01500.vnnlib": (784, 10, 9),
}


def test_every_shipped_file_is_listed():
    found = {str(p.relative_to(REAL)) for p in REAL.rglob("*.vnnlib")}
    assert found == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_properties(name):
    n_in, n_out, n_constraints = SHIPPED[name]
    spec = read_vnnlib(REAL / name, n_inputs=n_in)
    assert len(spec.boxes) == 1
    assert spec.box.dim == n_in == spec.n_inputs
    assert spec.n_outputs == n_out
    assert spec.output_constraints == n_constraints
    assert np.all(spec.box.lower <= spec.box.upper)


def test_acasxu_prop1_values():
    box = read_vnnlib(REAL / "acasxu/prop_1.vnnlib").box
    np.testing.assert_array_equal(box.lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(box.upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])


def test_acasxu_prop4_has_a_degenerate_coordinate():
    box = read_vnnlib(REAL / "acasxu/prop_4.vnnlib").box
    assert box.lower[2] == box.upper[2] == 0.0


def test_mnist_boxes_are_clipped_balls():
    box = read_vnnlib(REAL / "mnistfc/prop_1_0.05.vnnlib").box
    assert box.lower.min() >= 0.0 and box.upper.max() <= 1.0
    width = box.upper - box.lower
    assert width.max() <= 0.1 + 1e-6 and width.min() >= 0.0  # values are float32 decimals


def test_reversed_strict_equal_and_negative_literal_forms():
    spec = parse_vnnlib(
        """
        (declare-const X_0 Real) (declare-const X_1 Real) (declare-const X_2 Real)
        (declare-const Y_0 Real)
        (assert (<= 0.5 X_0)) (assert (>= 2 X_0))     ; c <= X, c >= X
        (assert (and (< X_1 1e-1) (> X_1 (- 0.25))))  ; strict, SMT-LIB negative literal
        (assert (= X_2 3))
        (assert (<= Y_0 0))
        """
    )
    np.testing.assert_array_equal(spec.box.lower, [0.5, -0.25, 3.0])
    np.testing.assert_array_equal(spec.box.upper, [2.0, 0.1, 3.0])
    assert spec.output_constraints == 1


def test_repeated_bounds_intersect():
    spec = parse_vnnlib(
        "(declare-const X_0 Real)(assert (<= X_0 1))(assert (<= X_0 0.5))"
        "(assert (>= X_0 -1))(assert (>= X_0 -2))"
    )
    assert spec.box.lower[0] == -1.0 and spec.box.upper[0] == 0.5


DISJUNCTION = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_1 -1))
(assert (<= X_1 1))
(assert (or
    (and (>= X_0 0) (<= X_0 1) (>= Y_0 Y_1))
    (and (>= X_0 2) (<= X_0 3) (<= X_1 0.5))
))
"""


def test_disjunction_gives_several_boxes():
    spec = parse_vnnlib(DISJUNCTION, n_inputs=2)
    assert len(spec.boxes) == 2
    np.testing.assert_array_equal(spec.boxes[0].lower, [0, -1])
    np.testing.assert_array_equal(spec.boxes[0].upper, [1, 1])
    np.testing.assert_array_equal(spec.boxes[1].lower, [2, -1])
    np.testing.assert_array_equal(spec.boxes[1].upper, [3, 0.5])
    assert spec.output_constraints == 1
    hull = spec.hull()
    np.testing.assert_array_equal(hull.lower, [0, -1])
    np.testing.assert_array_equal(hull.upper, [3, 1])
    with pytest.raises(InvalidDomainError, match="2 input boxes"):
        _ = spec.box


def test_output_only_disjunction_keeps_one_box():
    text = DISJUNCTION.replace("(>= X_0 2) (<= X_0 3) (<= X_1 0.5)", "(>= Y_1 0)")
    text = text.replace("(>= X_0 0) (<= X_0 1) ", "")
    text += "(assert (>= X_0 0))(assert (<= X_0 1))"
    spec = parse_vnnlib(text)
    assert len(spec.boxes) == 1 and spec.output_constraints == 2


def test_nested_disjunctions():
    base = "(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
    outputs_only = base + "(assert (and (>= X_0 0) (<= X_0 1) (or (>= Y_0 0) (>= Y_1 0))))"
    spec = parse_vnnlib(outputs_only)
    assert len(spec.boxes) == 1 and spec.output_constraints == 2
    with pytest.raises(InvalidDomainError, match="nested"):
        parse_vnnlib(base + "(assert (and (<= X_0 1) (or (>= X_0 0) (>= X_0 0.5))))")


def test_no_input_bounds_is_a_clear_error():
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= Y_0 1))"
    with pytest.raises(InvalidDomainError, match="no input bounds"):
        parse_vnnlib(text)


def test_missing_bound_names_the_variable():
    text = (
        "(declare-const X_0 Real)(declare-const X_1 Real)"
        "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))"
    )
    with pytest.raises(InvalidDomainError, match=r"upper bound for X_1"):
        parse_vnnlib(text)


def test_input_count_must_match_the_network():
    with pytest.raises(InvalidDomainError, match="784 inputs"):
        read_vnnlib(REAL / "acasxu/prop_1.vnnlib", n_inputs=784)


@pytest.mark.parametrize(
    "text",
    [
        "(assert (<= X_0 1)",  # unclosed
        "(assert (<= X_0 1)))",  # extra ')'
        "X_0",  # atom at top level
        "(declare-const X_0 Real)(frobnicate X_0)",  # unknown command
        "(declare-const X_0 Real)(assert (foo X_0 1))",  # unknown operator
        "(declare-const Z_0 Real)",  # unknown variable kind
    ],
)
def test_malformed_files(text):
    with pytest.raises(InputFileError):
        parse_vnnlib(text)


@pytest.mark.parametrize(
    "constraint", ["(<= X_0 X_1)", "(<= X_0 Y_0)", "(<= (+ X_0 X_1) 1)", "(<= 0 1)"]
)
def test_non_box_constraints_are_refused(constraint):
    text = (
        "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)"
        "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))"
        f"(assert {constraint})"
    )
    with pytest.raises(InvalidDomainError, match="box constraints"):
        parse_vnnlib(text)


def test_contradictory_bounds():
    with pytest.raises(InvalidDomainError, match="contradictory"):
        parse_vnnlib("(declare-const X_0 Real)(assert (>= X_0 1))(assert (<= X_0 0))")


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_vnnlib(tmp_path / "nope.vnnlib")


def test_tokenizer_nests_and_drops_comments():
    assert parse_sexprs("(a (b c) ; comment (x\n d)") == [["a", ["b", "c"], "d"]]


@pytest.mark.parametrize("nan", ["nan", "NaN", "(- nan)"])
def test_a_nan_bound_is_refused_not_dropped(nan):
    """``(<= X_0 nan)`` used to vanish (``min(1, nan)`` is 1): the box then silently ignored
    a bound the file gives. It is an error naming the constraint."""
    text = (
        "(declare-const X_0 Real)\n"
        "(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
        f"(assert (<= X_0 {nan}))\n"
    )
    with pytest.raises(InvalidDomainError, match="not a number"):
        parse_vnnlib(text, 1)
