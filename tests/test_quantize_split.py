"""``quantize --tol`` on few inputs: the bit choice proven by input splitting (issue 15).

The network is a tiny deep ``f`` on two inputs, quantised per layer::

    x (2 inputs) -> [8 ReLU] -> [8 ReLU] -> [8 ReLU] -> 2 outputs    f
    x            -> [the same, each layer at its chosen bits]          g

Before, the widths were chosen by the symbolic bound and the joint LP only, looser than the
truth, so wider grids were kept. Now, on at most ``SPLIT_MAX_INPUTS`` inputs,
:func:`exactcomp.rewrite.bitwidths.narrow_with_split` narrows them under the input splitting
proof. Ground truth: the exact ``max |f - g|`` of the region-enumeration oracle.
"""

from __future__ import annotations

import pytest
from strategies import gaussian_mlp

from exactcomp import quantization
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.testing import max_output_difference

BOX = Box.uniform(-1.0, 1.0, 2)
FAST = {"tighten_seconds": 0.0, "lp_seconds": 2.0, "split_seconds": 2.0}


def _net(seed: int, widths=(2, 8, 8, 8, 2)) -> Network:
    return gaussian_mlp(seed, widths, scaled=True)


def _storage(res: quantization.LossyResult) -> int:
    return sum(layer["bits"] for layer in res.report["layers"])


def test_split_proof_chooses_fewer_bits_and_the_claim_holds(monkeypatch):
    f, tol = _net(0), 0.2
    monkeypatch.setattr(quantization, "SPLIT_SEARCH_SECONDS", 0.0)  # the choice before
    before = quantization.quantize(f, BOX, tol=tol, **FAST)
    monkeypatch.setattr(quantization, "SPLIT_SEARCH_SECONDS", 20.0)
    after = quantization.quantize(f, BOX, tol=tol, **FAST)
    assert _storage(after) < _storage(before)
    exact = max_output_difference(f, after.network, BOX).value
    assert exact <= after.proven + 1e-9
    assert after.proven <= tol


@pytest.mark.parametrize("seed", [1, 2])
def test_split_choice_is_never_below_the_exact_max(seed):
    f = _net(seed)
    res = quantization.quantize(f, BOX, tol=0.05, **FAST)
    assert res.proven <= 0.05
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


def test_many_inputs_do_not_take_the_split_search(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("narrow_with_split ran on 13 inputs")

    monkeypatch.setattr(quantization, "narrow_with_split", refuse)
    f = _net(3, widths=(13, 6, 2))
    res = quantization.quantize(f, Box.uniform(0.0, 1.0, 13), tol=0.05, **FAST)
    assert res.proven <= 0.05
