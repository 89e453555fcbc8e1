"""Linear-region counting against brute force, compression invariance, bounds, CLI errors.

Ground truth is the test oracle's enumeration of activation regions
(:func:`exactcomp.testing.oracle.enumerate_regions`: numpy + its own HiGHS LPs, no shared code).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

from exactcomp import api
from exactcomp.cli import main
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.regions import Plane, count_regions, serra_upper_bound, slice_cells
from exactcomp.regions.estimates import chao1, line_patterns, network_upper_bound
from exactcomp.regions.splitting import split_regions
from exactcomp.rewrite import Reason
from exactcomp.testing.oracle import enumerate_regions
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import Verdict

TOL = 1e-7


def _radius(a: np.ndarray, b: np.ndarray, box: Box) -> float:
    """The largest ball (2-norm, centre in the box) inside ``{a x <= b}``: 0 for a region
    without interior."""
    if not len(a):
        return np.inf
    n = box.dim
    norms = np.linalg.norm(a, axis=1)
    res = linprog(
        np.r_[np.zeros(n), -1.0],
        A_ub=np.hstack([a, norms[:, None]]),
        b_ub=b,
        bounds=[*zip(box.lower, box.upper, strict=True), (0, None)],
        method="highs",
    )
    assert res.status == 0, res.message
    return -float(res.fun)


def _oracle(net: Network, box: Box) -> int:
    """The oracle's regions with an interior. It keeps a branch when an LP optimum puts a
    neuron strictly on one side, which also keeps regions that only touch the box at a
    vertex (radius 0), so each region's inscribed ball is measured; one thinner than the
    counting tolerance (1e-7 relative, with a factor 10 of slack) is ambiguous and refused."""
    scale = max(1.0, float(np.max(np.abs([box.lower, box.upper]))))
    radii = [_radius(r.a_ub, r.b_ub, box) for r in enumerate_regions(net, box)]
    ambiguous = [r for r in radii if 0 < r / scale < 1e-6]
    assert not ambiguous, f"regions too thin to count either way: {ambiguous}"
    return sum(1 for r in radii if r > 0)


def _lp_count(net: Network, box: Box) -> int:
    stats, _ = split_regions(net, box, [], TOL, lambda p, x: None)
    return stats.regions


def _case(seed: int, inputs: tuple[int, int], neurons: int = 12):
    return random_case(
        seed, inputs=inputs, depth=(1, 3), width=(2, 7), max_neurons=neurons, nasty=False
    )


# --------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", range(12))
def test_polygon_splitting_equals_oracle_on_2_inputs(seed: int) -> None:
    case = _case(seed, (2, 2))
    rc = count_regions(case.network, case.box, samples=500, lines=3)
    assert rc.exact
    assert rc.regions == _oracle(case.network, case.box)
    assert rc.lower_bound <= rc.regions <= rc.upper_bound


@pytest.mark.parametrize("seed", range(12))
def test_lp_splitting_equals_oracle(seed: int) -> None:
    case = _case(100 + seed, (1, 4))
    assert _lp_count(case.network, case.box) == _oracle(case.network, case.box)


@pytest.mark.parametrize("seed", range(6))
def test_lp_and_polygon_counters_agree_on_2_inputs(seed: int) -> None:
    case = _case(200 + seed, (2, 2), neurons=20)
    assert _lp_count(case.network, case.box) == count_regions(case.network, case.box).regions


def test_polygons_tile_the_box_with_one_pattern_each() -> None:
    case = _case(7, (2, 2), neurons=16)
    cells = count_regions(case.network, case.box, keep_cells=True).cells
    area = float(np.prod(case.box.upper - case.box.lower))
    assert sum(c.area for c in cells) == pytest.approx(area, rel=1e-9)
    assert len({np.packbits(c.pattern).tobytes() for c in cells}) == len(cells)
    for c in cells:  # the centroid's pattern is the cell's
        x = c.vertices.mean(axis=0)
        zs = case.network.preactivations(x[None, :])
        got = np.concatenate(
            [z[0] > 0 for z, la in zip(zs, case.network.layers, strict=True) if la.relu]
        )
        assert np.array_equal(got, c.pattern)


def test_a_linear_layer_between_relu_layers() -> None:
    """2 -> 4r -> 3 (no ReLU) -> 4r -> 1: the middle layer is composed in, not split."""
    rng = np.random.default_rng(3)
    shapes = [(4, 2, True), (3, 4, False), (4, 3, True), (1, 4, False)]
    net = Network(
        tuple(Layer(rng.normal(size=(o, i)), rng.normal(size=o) * 0.3, r) for o, i, r in shapes)
    )
    box = Box.uniform(-1.0, 1.0, 2)
    truth = _oracle(net, box)
    assert count_regions(net, box).regions == truth
    assert _lp_count(net, box) == truth


# --------------------------------------------------------------------------- invariance
@pytest.mark.parametrize("seed", range(10))
def test_compression_preserves_the_count(seed: int) -> None:
    """Exact compression keeps the function and, on the box, the activation regions of every
    neuron it keeps: a stable neuron never splits a region. The one other kind of neuron it
    removes is an unstable one that nothing reads (its readers all proven inactive): it
    still splits activation regions of the original, with the same affine map on both
    sides, so the original is counted with those neurons ignored (fixed) as well."""
    case = _case(300 + seed, (2, 3), neurons=14)
    net, box = case.network, case.box
    res = api.compress(net, box, check=2000)
    code = {Verdict.ACTIVE: 1, Verdict.INACTIVE: 0}
    fixed = [
        np.array([code.get(Verdict(int(v)), -1) for v in ls.verdict], np.int8)
        for ls in res.stability.layers
    ]
    dead = 0
    for (k, j), fate in res.rewrite.neuron_map.items():
        r = net.relu_layers.index(k)
        if fate.reason == Reason.DEAD and fixed[r][j] < 0:
            fixed[r][j], dead = 0, dead + 1
    after = count_regions(res.network, box).regions
    assert count_regions(net, box, fixed=fixed).regions == after
    if dead == 0:
        assert count_regions(net, box).regions == after
    for how in ("bounds", "full"):
        counted = api.count_regions(net, box, samples=200, stability=how)
        assert counted.regions == count_regions(net, box).regions
        assert counted.upper_bound <= counted.upper_bound_original
        assert counted.regions <= counted.upper_bound


# --------------------------------------------------------------------------- bounds
def test_serra_bound_named_cases() -> None:
    # one layer: sum_{j <= n0} C(n1, j), exact for lines in general position
    assert serra_upper_bound(2, [4]) == 1 + 4 + 6
    # n0 = 1, widths 3, 3: j1 <= 1, j2 <= 1, so (1 + 3) * (1 + 3)
    assert serra_upper_bound(1, [3, 3]) == 16
    # a rank-1 layer: 4 parallel lines in the plane, at most 5 regions
    assert serra_upper_bound(2, [4], [1]) == 5


def test_rank_one_layer_is_tight() -> None:
    """Four parallel lines x0 + x1 = c across [-1, 1]^2 make exactly 5 regions."""
    w = np.ones((4, 2))
    b = -np.array([-1.2, -0.4, 0.4, 1.2])
    net = Network((Layer(w, b, True), Layer(np.ones((1, 4)), np.zeros(1), False)))
    box = Box.uniform(-1.0, 1.0, 2)
    rc = count_regions(net, box)
    assert rc.regions == 5 == network_upper_bound(net) == rc.upper_bound


def test_lines_count_exactly_in_one_dimension() -> None:
    """Along a line through a 1-input box the line counter is the exact 1-D count."""
    case = _case(11, (1, 1), neurons=12)
    lo, hi = float(case.box.lower[0]), float(case.box.upper[0])
    segs = line_patterns(case.network, np.array([lo]), np.array([1.0]), 0.0, hi - lo)
    assert len({s.tobytes() for s in segs}) == _lp_count(case.network, case.box)


def test_limit_gives_a_lower_bound() -> None:
    case = _case(5, (2, 2), neurons=16)
    full = count_regions(case.network, case.box)
    assert full.regions > 3
    part = count_regions(case.network, case.box, limit=3)
    assert (part.regions, part.exact, part.stopped) == (3, False, "limit")
    assert 3 <= part.lower_bound <= full.regions
    case = _case(109, (3, 3), neurons=12)
    part = count_regions(case.network, case.box, limit=3)
    assert (part.regions, part.exact, part.stopped) == (3, False, "limit")
    assert part.lps > 0


def test_chao1_named_cases() -> None:
    assert chao1(np.array([5, 5, 5])).value == 3.0  # no singletons: nothing unseen
    est = chao1(np.array([1, 1, 1, 1, 2, 3]))  # 4 singletons, 1 doubleton
    assert est.value == pytest.approx(6 + 4 * 3 / 4)
    assert est.low <= est.value <= est.high


@pytest.mark.parametrize("jobs", [2])
def test_jobs_give_the_same_count(jobs: int) -> None:
    case = _case(9, (2, 2), neurons=20)
    assert (
        count_regions(case.network, case.box, jobs=jobs).regions
        == count_regions(case.network, case.box).regions
    )
    case = _case(109, (3, 3), neurons=12)
    assert count_regions(case.network, case.box, jobs=jobs).regions == _oracle(
        case.network, case.box
    )


def test_slice_of_a_3_input_network_matches_a_2_input_restriction() -> None:
    case = _case(21, (3, 3), neurons=12)
    box = Box.uniform(-1.0, 1.0, 3)
    plane = Plane.axes(box, 0, 2)
    first = case.network.layers[0]
    w = first.weight[:, [0, 2]]
    b = first.bias + first.weight[:, 1] * box.center[1]
    restricted = Network((Layer(w, b, first.relu), *case.network.layers[1:]))
    square = Box.uniform(-1.0, 1.0, 2)
    assert len(slice_cells(case.network, box, plane)) == _oracle(restricted, square)


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def two_input(tmp_path: Path) -> Path:
    net = _case(4, (2, 2), neurons=12).network
    path = tmp_path / "two.pt"
    api.save(net, path)
    return path


@pytest.fixture
def one_input(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    net = Network.from_arrays(
        [rng.normal(size=(4, 1)), rng.normal(size=(1, 4))], [rng.normal(size=4), np.zeros(1)]
    )
    path = tmp_path / "one.pt"
    api.save(net, path)
    return path


def _one_line_error(capsys, argv: list[str], needle: str) -> None:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle.lower() in lines[0].lower(), lines[0]


def test_cli_counts_writes_report_and_plot(tmp_path: Path, two_input: Path, capsys) -> None:
    report, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["regions", two_input, "--box=-1,1", "--report", report, "--plot", png, "--graph"]
    assert main([str(a) for a in argv]) == 0
    doc = json.loads(report.read_text())
    for key in ("regions", "exact", "lower_bound", "upper_bound", "seconds", "lps"):
        assert key in doc
    assert doc["exact"] is True and isinstance(doc["regions"], int)
    assert doc["regions"] == _oracle(api.load(two_input), Box.uniform(-1, 1, 2))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["graph"]["components"] == 1 and doc["graph"]["nodes"] == doc["regions"]


def test_cli_empty_box(capsys, two_input: Path, tmp_path: Path) -> None:
    _one_line_error(capsys, ["regions", two_input, "--box=1,-1"], "inverted")
    _one_line_error(capsys, ["regions", two_input, "--box=0.5,0.5"], "no region has an interior")
    assert not list(tmp_path.glob("*.json"))


def test_cli_plane_on_one_input(capsys, one_input: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    argv = ["regions", one_input, "--box=-1,1", "--plot", png, "--plane", "0,1"]
    _one_line_error(capsys, argv, "2 or more inputs")
    _one_line_error(capsys, ["regions", one_input, "--box=-1,1", "--plot", png], "2-D slice")
    assert not png.exists()


def test_cli_bad_options(capsys, two_input: Path, tmp_path: Path) -> None:
    _one_line_error(capsys, ["regions", two_input, "--box=-1,1", "--limit", "0"], "--limit")
    _one_line_error(capsys, ["regions", two_input, "--box=-1,1", "--plane", "0,1"], "--plot")
    png = tmp_path / "p.png"
    argv = ["regions", two_input, "--box=-1,1", "--plot", png, "--plane", "0,0"]
    _one_line_error(capsys, argv, "must differ")
    _one_line_error(capsys, ["regions", two_input, "--box=-1,1", "--plot", "x.pdf"], "PNG")


# --------------------------------------------------------------------------- benchmark
def test_benchmark_pieces(tmp_path: Path) -> None:
    """The benchmark's trained 2-input network counts like the oracle, and its plot draws."""
    from benchmarks.regions import RegionRow, plot_regions, trained_2d

    net = trained_2d((4,))
    box = Box.uniform(-1.5, 2.5, 2)
    rc = api.count_regions(net, box, samples=500)
    assert rc.regions == _oracle(net, box)
    common = dict(neurons=8, lower_bound=5, estimate=6.0, log10_upper=2.0, seconds=0.1)
    common |= dict(count_seconds=0.05, regions_per_s=100.0, lps=0, jobs=1, exact=True, l1=0.0)
    rows = [
        RegionRow("digits-global", "a", domain="b", pct_removed=10.0, regions=-1,
                  log10_upper_original=3.0, **common),
        RegionRow("2d", "c", domain="d", pct_removed=20.0, regions=7,
                  log10_upper_original=2.5, **common),
    ]  # fmt: skip
    path = plot_regions(rows, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("seed", range(8))
def test_counters_on_nasty_networks(seed: int) -> None:
    """Ties at 0, flat box coordinates, huge weights: both counters still match the oracle
    (regions counted in the box's relative interior)."""
    case = random_case(
        1000 + seed, inputs=(1, 4), depth=(1, 3), width=(2, 6), max_neurons=12, nasty=True
    )
    truth = _oracle(case.network, case.box)
    assert _lp_count(case.network, case.box) == truth
    if case.box.dim == 2 and (case.box.upper > case.box.lower).all():
        assert count_regions(case.network, case.box, samples=100).regions == truth


def test_ctrl_c_gives_a_lower_bound(monkeypatch) -> None:
    """Ctrl-C in either counter stops it with the regions found so far (not exact)."""
    from exactcomp.regions import count as count_module

    def two_then_interrupt(net, box, fixed, tol, on_region, **kwargs):
        on_region(np.zeros(0, bool), box.center)
        on_region(np.zeros(0, bool), box.center)
        raise KeyboardInterrupt

    case = _case(109, (3, 3), neurons=12)
    monkeypatch.setattr(count_module, "split_regions", two_then_interrupt)
    rc = count_regions(case.network, case.box, samples=100)
    assert (rc.regions, rc.exact, rc.stopped) == (2, False, "interrupted")
    assert rc.lower_bound >= 2

    def cells_then_interrupt(net, items, fixed, tol):
        yield from []
        raise KeyboardInterrupt

    case = _case(9, (2, 2), neurons=12)
    monkeypatch.setattr(count_module.planar, "cells", cells_then_interrupt)
    rc = count_regions(case.network, case.box, samples=100)
    assert (rc.regions, rc.exact, rc.stopped) == (0, False, "interrupted")
    assert rc.lower_bound >= 1


def test_adjacency_graph() -> None:
    """Four parallel lines: 5 regions in a row (a path); a random partition is connected and
    every region has a neighbour."""
    from exactcomp.regions.graph import adjacency, graph_stats

    w, b = np.ones((4, 2)), -np.array([-1.2, -0.4, 0.4, 1.2])
    net = Network((Layer(w, b, True), Layer(np.ones((1, 4)), np.zeros(1), False)))
    box = Box.uniform(-1.0, 1.0, 2)
    plane = Plane.axes(box, 0, 1)
    cells = count_regions(net, box, keep_cells=True).cells
    stats = graph_stats(adjacency(net, cells, plane, box.lower, box.upper))
    assert (stats.nodes, stats.edges, stats.max_degree, stats.components) == (5, 4, 2, 1)
    case = _case(7, (2, 2), neurons=16)
    cells = count_regions(case.network, case.box, keep_cells=True).cells
    g = adjacency(case.network, cells, Plane.axes(case.box, 0, 1), case.box.lower, case.box.upper)
    stats = graph_stats(g)
    assert stats.nodes == len(cells) and stats.components == 1
    assert min(d for _, d in g.degree()) >= 1


# --------------------------------------------------------------------------- the LP fast path
def _small_box_case(seed: int, neurons: int = 14):
    """8-16 inputs, a box a tenth the size of the drawn one around a random point of it: many
    neurons stable or missing whole regions, which the settling, the learned conflicts and
    the witnesses act on."""
    case = random_case(
        seed, inputs=(8, 16), depth=(2, 3), width=(3, 7), max_neurons=neurons, nasty=False
    )
    rng = np.random.default_rng(seed + 1000)
    box = case.box
    centre = box.sample(1, rng)[0]
    half = 0.1 * (box.upper - box.lower)
    return case.network, Box(
        np.maximum(centre - half, box.lower), np.minimum(centre + half, box.upper)
    )


@pytest.mark.parametrize("seed", range(16))
def test_lp_splitting_equals_oracle_on_small_boxes_in_8_to_16_inputs(seed: int) -> None:
    net, box = _small_box_case(seed)
    fast, _ = split_regions(net, box, [], TOL, lambda p, x: None)
    plain, _ = split_regions(net, box, [], TOL, lambda p, x: None, settle=False, seeds=0)
    assert fast.regions == plain.regions == _oracle(net, box)
    assert fast.doubtful == plain.doubtful == 0


def test_settling_and_conflicts_save_lps_not_regions() -> None:
    """A 12-input network on a small box: the shortcuts must act (dual certificates reused,
    witnesses found, fewer LPs) and find the same regions, pattern for pattern."""
    rng = np.random.default_rng(7)
    sizes = (12, 10, 10, 1)
    layers = tuple(
        Layer(rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(size=o) * 0.05, k < 2)
        for k, (i, o) in enumerate(zip(sizes, sizes[1:], strict=False))
    )
    net = Network(layers)
    box = Box.uniform(-0.3, 0.3, 12)
    found: dict[str, set[bytes]] = {"fast": set(), "plain": set()}
    fast, _ = split_regions(
        net, box, [], TOL, lambda p, x: found["fast"].add(np.packbits(p).tobytes())
    )
    plain, _ = split_regions(
        net, box, [], TOL, lambda p, x: found["plain"].add(np.packbits(p).tobytes()),
        settle=False, seeds=0,
    )  # fmt: skip
    assert found["fast"] == found["plain"] and fast.regions == len(found["fast"]) > 50
    assert fast.refuted > 0 and fast.witnesses > 0
    assert fast.lps < plain.lps


@pytest.mark.parametrize("seed", range(3))
def test_jobs_split_the_lp_search_without_changing_the_count(seed: int) -> None:
    net, box = _small_box_case(100 + seed)
    truth = _oracle(net, box)
    assert count_regions(net, box, jobs=2, samples=50, lines=1).regions == truth


def test_draw_regions_on_a_slice() -> None:
    """Three inputs, the plane x2 = 0 through the box: the slice of four lines x0 + x1 = c
    is five regions in a row, the same graph as on the 2-input box; nothing drawn without a
    path (``regions.drawing``, what the CLI's --graph runs)."""
    from exactcomp.regions.drawing import draw_regions

    w, b = np.array([[1.0, 1.0, 0.0]] * 4), -np.array([-1.2, -0.4, 0.4, 1.2])
    net = Network((Layer(w, b, True), Layer(np.ones((1, 4)), np.zeros(1), False)))
    box = Box.uniform(-1.0, 1.0, 3)
    counted = count_regions(net, box)
    d = draw_regions(net, box, counted, Plane.axes(box, 0, 1), whole=False, graph=True)
    assert d.plot is None and d.graph is not None
    assert (d.graph["of"], d.graph["nodes"], d.graph["edges"]) == ("the slice", 5, 4)
    assert set(d.to_json()) == {"graph"} and len(d.lines) == 1


@pytest.mark.parametrize(
    "options", [[], ["--bounds-only"], ["--stability", "none"], ["--stability", "full"]]
)
def test_regions_refuses_a_layer_held_sparse_by_name(tmp_path, options, capsys) -> None:
    """A convolution too large to hold densely is a CSR layer; the region count and its bounds
    read dense matrices, and ``regions`` on the shipped Convnet_maxpool.onnx ended in a scipy
    traceback with exit code 1 (NOT_EQUIVALENT's) whatever the options (the sweep of issue
    15). Refused in one line, exit 2, nothing written; the API raises the same error."""
    import scipy.sparse as sp

    from exactcomp.errors import UnsupportedModelError

    w = sp.csr_matrix(np.array([[1.0, -1.0], [0.5, 1.0]]))
    net = Network(
        (Layer(w, np.array([0.0, -0.5]), True), Layer(np.ones((1, 2)), np.zeros(1), False)),
        dtype="float64",
    )
    with pytest.raises(UnsupportedModelError, match="sparse"):
        api.count_regions(net, Box.uniform(-1.0, 1.0, 2))
    model, report = tmp_path / "m.onnx", tmp_path / "r.json"
    api.save(Network.from_arrays([w.toarray(), np.ones((1, 2))], [[0.0, -0.5], [0.0]]), model)
    from exactcomp.io import load as io_load

    assert not any(la.sparse for la in io_load(model).layers)  # a small file reads dense
    import exactcomp.api.regions as regions_api

    real = regions_api.load
    with pytest.MonkeyPatch.context() as mp:  # read as the large conv file is: sparse
        mp.setattr(regions_api, "load", lambda *a, **k: net)
        code = main(["regions", str(model), "--box=-1,1", "--report", str(report), *options])
    assert regions_api.load is real
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "sparse" in err and not report.exists()
