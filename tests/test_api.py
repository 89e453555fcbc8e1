"""The public API: compress, then verify with the compression's own (re-proven) certificates."""

from __future__ import annotations

import re

import numpy as np
import pytest

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


def test_a_pair_of_per_feature_arrays_is_a_domain() -> None:
    """Issue 18, item 9: ``(lo, hi)`` arrays (the README's form) were refused."""
    import pytest

    from exactcomp.api import as_domain
    from exactcomp.errors import InvalidDomainError

    lo, hi = np.array([-1.0, 0.0, 0.0, 0.5]), np.array([1.0, 1.0, 2.0, 0.5])
    for domain in ((lo, hi), [lo, hi], (lo.tolist(), hi.tolist()), (-1.0, hi)):
        (box,) = as_domain(domain, 4)
        np.testing.assert_array_equal(box.upper, hi)
    assert as_domain((-1.0, hi), 4)[0].lower.tolist() == [-1.0] * 4
    with pytest.raises(InvalidDomainError, match="3 coordinates but the network has 4"):
        as_domain((lo[:3], hi[:3]), 4)
    with pytest.raises(InvalidDomainError, match="inverted"):
        as_domain((hi, lo), 4)
    net = _deep_sparse()
    res = exactcomp.compress(net, (lo, hi), check=500)
    same = exactcomp.compress(net, Box(lo, hi), check=500)
    assert res.network.describe() == same.network.describe()


def test_check_must_be_at_least_one() -> None:
    import pytest

    from exactcomp.errors import InvalidOptionError

    for check in (0, -3):
        with pytest.raises(InvalidOptionError, match="re-check points"):
            exactcomp.compress(_deep_sparse(), (0.0, 1.0), check=check)


def test_rounding_bound_encloses_the_float32_rounding_of_a_network() -> None:
    """:func:`~exactcomp.tolerances.stored_rounding_bound` is a proof: on a network with large
    weights, rounding to float32 moves the outputs by at most the bound (dense sampling and
    the box's corners), with the actual rounding errors and with the generic ``u|w|`` ones."""
    from exactcomp.api import rounding_bound, stored

    rng = np.random.default_rng(7)
    sizes = [3, 12, 12, 2]
    ws = [rng.normal(size=(o, i)) * 300 for i, o in zip(sizes, sizes[1:], strict=False)]
    bs = [rng.normal(size=o) * 100 for o in sizes[1:]]
    exact = Network.from_arrays(ws, bs, dtype="float32")  # float64 weights, a float32 file
    written = stored(exact)
    box = Box(np.array([-1.0, 0.0, -2.0]), np.array([1.0, 0.5, 2.0]))
    corners = np.array(np.meshgrid(*zip(box.lower, box.upper, strict=True))).reshape(3, -1).T
    x = np.vstack([box.sample(20_000, rng), corners])
    seen = np.abs(exact(x) - written(x)).max()
    assert seen > 0
    tight, generic = rounding_bound(written, box, exact), rounding_bound(written, box)
    assert seen <= tight <= generic
    assert generic < 1e-3 * np.abs(exact(x)).max()  # a rounding-sized bound, not a vacuous one
    assert rounding_bound(exact, box) == 0.0  # not representable in float32: nothing to bound
    assert exactcomp.api.default_tolerance(exact, box) == 1e-6
    assert exactcomp.api.default_tolerance(written, box, exact) == 2 * tight


def test_verdict_bounds_never_read_minus_zero() -> None:
    """``[0, -0]`` in the summary and ``-0.0`` in the report (issue 18, item 10)."""
    from exactcomp.report import to_json_text
    from exactcomp.verify.result import EquivalenceResult, EquivalenceStatus

    res = EquivalenceResult(EquivalenceStatus.EQUIVALENT, "linf", 1e-6, -0.0, -0.0)
    assert "in [0, 0]" in res.summary()
    assert np.copysign(1.0, res.to_json()["upper_bound"]) == 1.0
    doc = {"a": -0.0, "b": [1.0, -0.0], "c": {"d": np.float64(-0.0)}, "x": np.array([-0.0])}
    assert "-0.0" not in to_json_text(doc)


def test_compress_verified_is_what_compress_verify_runs() -> None:
    """The written network (float32: rounded folded weights) is proven, with every claim
    re-checked; without ``verify`` only the dtype is recorded."""
    from exactcomp import api

    net = _deep_sparse()
    net32 = Network(net.layers, dtype="float32", meta=dict(net.meta))
    box = Box.uniform(-1.0, 1.0, 4)
    plain = api.compress_verified(net32, box, check=2000)
    assert plain.verdict is None and plain.ok and plain.written.dtype == "float32"
    assert plain.compression.report["dtype_written"] == "float32"
    assert "verification" not in plain.compression.report
    done = api.compress_verified(net32, box, verify=True, check=2000)
    assert done.ok, (done.verdict.summary(), done.recheck.summary())
    assert done.recheck.ok and done.verdict.status.name == "EQUIVALENT"
    assert done.rounding_tol is not None and done.rounding_tol >= 1e-6
    report = done.compression.report
    assert report["certificates"]["failures"] == 0
    assert report["certificates"]["seconds"] >= 0.0
    assert report["verification"]["status"] == "EQUIVALENT"
    exact = api.compress_verified(net, box, verify=True, dtype="float64", check=2000)
    assert exact.written.dtype == "float64" and exact.ok


def test_verify_with_certificates_returns_the_recheck() -> None:
    from exactcomp import api

    net = _deep_sparse()
    box = Box.uniform(-1.0, 1.0, 4)
    res = exactcomp.compress(net, box, check=2000)
    done = api.verify_with_certificates(
        net, res.network, box, certificates=res.stability, time_limit=60
    )
    assert done.recheck is not None and done.recheck.ok
    assert done.result.status.name == "EQUIVALENT"
    alone = api.verify_with_certificates(net, res.network, box, time_limit=60)
    assert alone.recheck is None and alone.result.status.name == "EQUIVALENT"


def test_api_options_out_of_range_are_input_errors() -> None:
    """``count_regions(seed=-1)`` raised numpy's ValueError and ``samples=-1`` was accepted
    (only the CLI checked them)."""
    import pytest

    from exactcomp.errors import InvalidOptionError

    net = Network.from_arrays([np.array([[1.0, -1.0]]), np.array([[1.0]])], [np.zeros(1), [0.0]])
    for option in ({"seed": -1}, {"samples": -1}, {"lines": -2}):
        with pytest.raises(InvalidOptionError, match=f"--{next(iter(option))} must be >= 0"):
            exactcomp.count_regions(net, (-1.0, 1.0), **option)


@pytest.mark.parametrize("suffix", [".pt", ".onnx", ".nnet"])
def test_save_refuses_the_file_the_network_was_read_from(tmp_path, suffix) -> None:
    """``exactcomp.save(net, path)`` overwrote the file ``net`` was loaded from (the CLI
    refuses that, the API did not): a compressed copy saved over its original loses the
    original. Refused by default, naming the path (also through another spelling or a
    symlink, and for a network derived from the one read); ``overwrite=True`` writes."""
    from exactcomp.errors import OutputPathError

    path = tmp_path / f"m{suffix}"
    exactcomp.save(_deep_sparse(), path, domain=(0.0, 1.0))
    before = path.read_bytes()
    net = exactcomp.load(path)
    small = exactcomp.compress(net, (0.0, 1.0), jobs=1, check=100).network
    link = tmp_path / f"link{suffix}"
    link.symlink_to(path)
    for target in (path, tmp_path / "." / path.name, link):
        for g in (net, small):
            with pytest.raises(OutputPathError, match=re.escape(str(path))) as info:
                exactcomp.save(g, target, domain=(0.0, 1.0))
            assert "overwrite=True" in str(info.value)
            assert path.read_bytes() == before
    if suffix != ".nnet":  # a quantised copy (integer ONNX, or dequantised weights) likewise
        quantised = exactcomp.quantize(net, (0.0, 1.0), bits=8)
        with pytest.raises(OutputPathError, match="overwrite=True"):
            quantised.save(path)
        assert path.read_bytes() == before
    exactcomp.save(small, tmp_path / f"other{suffix}", domain=(0.0, 1.0))  # elsewhere: fine
    exactcomp.save(small, path, domain=(0.0, 1.0), overwrite=True)
    x = Box.uniform(0.0, 1.0, net.input_size).sample(500, np.random.default_rng(0))
    np.testing.assert_allclose(exactcomp.load(path)(x), net(x), atol=1e-5)
