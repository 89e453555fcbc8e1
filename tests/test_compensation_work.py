"""The domain moments' bounded work (:mod:`exactcomp.rewrite.compensation`, "Work"): each layer
takes the first points that keep it within ``MOMENTS_WORK`` multiply-adds, no chunk is added
past the deadline, and ``quantize`` gives them ``COMPENSATION_SHARE`` of its time. The moments
are checked against brute force over exactly the points each layer took; the quantised
network's claim stays a proof whatever they are."""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp, jacobian_moment

from exactcomp import quantization
from exactcomp.approx import COMPENSATION_SHARE
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite import compensation
from exactcomp.rewrite.compensation import (
    COMPENSATION_POINTS,
    MOMENTS_WORK,
    Compensation,
    point_counts,
)
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock


def _inputs(f: Network, x: np.ndarray) -> list[np.ndarray]:
    """Each layer's input at the points ``x`` (rows), in float64."""
    out, a = [], x
    for layer in f.layers:
        out.append(a)
        a = a @ layer.weight.T + layer.bias
        if layer.relu:
            a = np.maximum(a, 0.0)
    return out


def test_layers_up_to_1024_wide_keep_every_point_and_wider_ones_are_capped():
    """``8 -> 1024 -> 1024 -> 10``: all 8,192 points (the moments as before);
    ``8 -> 2048 -> 3072 -> 1024 -> 10`` (resnet_2b's widths): every layer within
    ``MOMENTS_WORK`` multiply-adds, counts never growing with depth."""
    narrow = Network.from_arrays(
        [np.zeros((1024, 8)), np.zeros((1024, 1024)), np.zeros((10, 1024))],
        [np.zeros(1024), np.zeros(1024), np.zeros(10)],
    )
    assert point_counts(narrow, COMPENSATION_POINTS) == [COMPENSATION_POINTS] * 3
    widths = [8, 2048, 3072, 1024, 10]
    ws = [np.zeros((o, i)) for i, o in zip(widths, widths[1:], strict=False)]
    wide = Network.from_arrays(ws, [np.zeros(w.shape[0]) for w in ws])
    counts = point_counts(wide, COMPENSATION_POINTS)
    assert counts == sorted(counts, reverse=True) and counts[0] == COMPENSATION_POINTS
    for n, (i, o) in zip(counts, zip(widths, widths[1:], strict=False), strict=True):
        assert n * (i * i + i * o) <= MOMENTS_WORK
    assert counts[1] == MOMENTS_WORK // (2048 * (2048 + 3072))  # 1,638 of 8,192
    assert counts[2] == MOMENTS_WORK // (3072 * (3072 + 1024))  # 1,365


def test_capped_moments_are_those_of_the_first_points(monkeypatch):
    """``3 -> 6 -> 5 -> 2`` with a small work budget (1,000) and chunks of 8 rows: layer
    costs 27, 66 and 35 a point give 37, 15 and 15 points (partial chunks); the Jacobian
    steps cost 70 and 132 a row: 8 rows (the first chunk) for layer 1, 7 for layer 0."""
    monkeypatch.setattr(compensation, "MOMENTS_WORK", 1000)
    monkeypatch.setattr(compensation, "MOMENTS_MIN_POINTS", 4)
    monkeypatch.setattr(compensation, "JACOBIAN_POINTS", 8)
    f = gaussian_mlp(3, (3, 6, 5, 2), scaled=True)
    x = Box.uniform(-1.0, 1.0, 3).sample(300, np.random.default_rng(1))
    assert point_counts(f, len(x)) == [37, 15, 15]
    comp = Compensation.of_points(f, x)
    for k, (a, n) in enumerate(zip(_inputs(f, x), [37, 15, 15], strict=True)):
        np.testing.assert_allclose(comp.centre[k], a[:n].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(comp.covariance[k], np.cov(a[:n], rowvar=False), atol=1e-12)
        spread = np.abs(a[:n] - a[:n].mean(axis=0)).max(axis=0)
        np.testing.assert_allclose(comp.spread[k], spread, atol=1e-12)
    np.testing.assert_allclose(comp.moment[2], np.eye(2))
    np.testing.assert_allclose(comp.moment[1], jacobian_moment(f, x[:8], 1), atol=1e-12)
    np.testing.assert_allclose(comp.moment[0], jacobian_moment(f, x[:7], 0), atol=1e-12)


def test_past_the_deadline_only_the_first_chunk_counts(monkeypatch):
    """The deadline already past (fake clock): the moments of the first 1,024 points alone,
    and no Jacobian carried down (no rounding search: None below the last layer)."""
    clock = FakeClock().install(monkeypatch)
    f = gaussian_mlp(2, (2, 4, 3, 2), scaled=True)
    x = Box.uniform(-1.0, 1.0, 2).sample(3000, np.random.default_rng(2))
    comp = Compensation.of_points(f, x, deadline=clock.now)
    for k, a in enumerate(_inputs(f, x)):
        first = a[: compensation.JACOBIAN_POINTS]
        np.testing.assert_allclose(comp.centre[k], first.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(comp.covariance[k], np.cov(first, rowvar=False), atol=1e-12)
    assert comp.moment[0] is None and comp.moment[1] is None
    later = Compensation.of_points(f, x, deadline=clock.now + 1.0)  # time never passes
    np.testing.assert_allclose(later.centre[1], _inputs(f, x)[1].mean(axis=0), atol=1e-12)
    assert later.moment[0] is not None


@pytest.mark.parametrize("work", [1000, 10**6])
def test_quantize_gives_the_moments_their_share_and_proves_its_claim(monkeypatch, work):
    """``quantize`` hands the moments ``t0 + COMPENSATION_SHARE * time_limit``; with moments
    from few points (``MOMENTS_WORK`` 1,000) or all, the claim bounds the exact difference."""
    clock = FakeClock().install(monkeypatch)
    monkeypatch.setattr(compensation, "MOMENTS_WORK", work)
    real, given = quantization.domain_compensation, []

    def recorded(net, boxes, deadline=None):
        given.append(deadline)
        return real(net, boxes, deadline)

    monkeypatch.setattr(quantization, "domain_compensation", recorded)
    f, box = gaussian_mlp(1, (2, 4, 8, 3, 2), scaled=True), Box.uniform(-1.0, 1.0, 2)
    start = clock.now
    res = quantization.quantize(f, box, bits=4, time_limit=90.0, lp_seconds=0.0, split_seconds=0.0)
    assert given == [start + COMPENSATION_SHARE * 90.0]
    assert max_output_difference(f, res.network, box).value <= res.proven + 1e-9
