"""``compress --verify`` proves what ``compress``'s re-check accepted as float64 rounding, and
``exactcomp verify --tol`` with the reported allowance reaches the same verdict.

A fold whose float64 rounding is large in absolute terms::

    x in [1e6, 2e6] --[1; 3], ReLU (both active)--> (x, 3x) --[1, 1e8/3]--> f = x + 3 fl(1e8/3) x

Both neurons are stably active, so ``compress`` merges the two layers into one weight
``fl(1 + 3 fl(1e8/3)) = 100000001`` where the exact product is ``100000000.99999999627``: the
compressed network differs from the original by an exact ``3.7e-9 x`` (7.5e-3 at ``x = 2e6``),
far above ``verify``'s least tolerance (1e-6), within the re-check's allowance for outputs of
2e14 (``check_rel * 2e14`` = 2e7).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

import exactcomp
from exactcomp import cli
from exactcomp.api.checking import compress_verified, verification_tolerance
from exactcomp.api.sampling import SampleCheck
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Network
from exactcomp.report import read_document
from exactcomp.tolerances import DEFAULT, check_allowance

BOX = Box(np.array([1e6]), np.array([2e6]))


def _net() -> Network:
    w0, w1 = np.array([[1.0], [3.0]]), np.array([[1.0, 1e8 / 3]])
    return Network.from_arrays([w0, w1], [np.zeros(2), np.zeros(1)], dtype="float64")


def _exact(net: Network, x: float) -> Fraction:
    return exact_forward(net, np.array([x]))[0]


def test_compress_verify_proves_the_rounding_allowance() -> None:
    net = _net()
    done = compress_verified(net, BOX, verify=True, jobs=1)
    g = done.written
    assert g.describe() == "1-1"
    moved = abs(_exact(g, 2e6) - _exact(net, 2e6))
    check = done.compression.report["check"]
    allowance = check["rounding_allowance"]
    assert Fraction(DEFAULT.equivalence) < moved <= Fraction(allowance)
    # the re-check's own formula at the largest output it saw (near x = 2e6, where
    # f = 2.00000002e14) and the domain's largest terms (the same, at x = 2e6)
    assert check_allowance(DEFAULT, 1.98e14, 0.0) < allowance
    assert allowance <= check_allowance(DEFAULT, 2.00000002e14, 2.00000002e14) * (1 + 1e-6)
    assert done.ok and done.rounding_tol == allowance
    assert done.verdict.tol == allowance
    # exactcomp verify with the reported tolerance: the same verdict; with its default: the
    # difference, confirmed exactly
    same = exactcomp.verify_equivalence(net, g, BOX, tol=allowance)
    assert same.status.name == "EQUIVALENT"
    strict = exactcomp.verify_equivalence(net, g, BOX)
    assert strict.status.name == "NOT_EQUIVALENT"
    x = strict.counterexample.x
    assert abs(_exact(g, x[0]) - _exact(net, x[0])) > Fraction(strict.tol)


def test_exact_compressions_keep_the_default_tolerance() -> None:
    """Where the re-check saw no difference above the default, the default is proven."""
    check = SampleCheck(points=10, max_abs_diff=0.0, float32_max_deviation=0.0, allowance=5.0)
    assert verification_tolerance(1e-6, check) == 1e-6
    check = SampleCheck(points=10, max_abs_diff=1e-6, float32_max_deviation=0.0, allowance=5.0)
    assert verification_tolerance(1e-6, check) == 1e-6
    check = SampleCheck(points=10, max_abs_diff=2e-6, float32_max_deviation=0.0, allowance=5.0)
    assert verification_tolerance(1e-6, check) == 5.0
    net = Network.from_arrays(
        [np.array([[1.0, -1.0], [0.5, 2.0]]), np.array([[1.0, 1.0]])],
        [np.array([0.25, -10.0]), np.zeros(1)],
        dtype="float64",
    )  # the second neuron is inactive on [0,1]^2: removed exactly
    done = compress_verified(net, Box(np.zeros(2), np.ones(2)), verify=True, jobs=1)
    assert done.compression.report["check"]["max_abs_diff"] == 0.0
    assert done.ok and done.verdict.tol == DEFAULT.equivalence


def test_cli_reports_the_allowance_it_verified(tmp_path, capsys) -> None:
    src, out, rep = tmp_path / "f.onnx", tmp_path / "g.onnx", tmp_path / "r.json"
    exactcomp.save(_net(), src)
    args = ["compress", str(src), "-o", str(out), "--box-file", str(tmp_path / "box.json")]
    (tmp_path / "box.json").write_text('{"lower": [1e6], "upper": [2e6]}')
    assert cli.main([*args, "--verify", "--report", str(rep), "--quiet", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "within the rounding allowance 2e+07" in printed
    allowance = read_document(rep, "compress")["check"]["rounding_allowance"]
    tol = f"{allowance!r}"
    assert (
        cli.main(["verify", str(src), str(out), "--box", "1e6,2e6", "--tol", tol, "--quiet"]) == 0
    )
