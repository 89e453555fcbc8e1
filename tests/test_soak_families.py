"""The soak's generator families and its exact rational check (issue 18, item 4).

Each family is aimed at one unsound shortcut; these tests plant that shortcut by hand (a
merge by relative tolerance, a reader that drops the ``.nnet`` clipping, a ``Cast`` to
FLOAT16 read as the identity) and check that the soak's checks catch it, so that they
catch it in the engine too. They hold before and after the engine's fixes.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from benchmarks import soak
from benchmarks.soak_families import FAMILIES, family_for, parse_families, run_case
from benchmarks.soak_nnet import _judge, _worst_excess
from benchmarks.soak_onnx import build_model, disagreement, onnx_case, run_onnxruntime
from exactcomp.domain import Box
from exactcomp.exact import exact_forward, exact_term_scale
from exactcomp.io.nnet import load_nnet
from exactcomp.network import Layer, Network
from exactcomp.testing.adversarial import near_dependent_case, near_duplicate_case
from exactcomp.testing.nnet_cases import nnet_case
from exactcomp.testing.rational import compare_exactly
from exactcomp.testing.soak_results import SoakOptions
from exactcomp.verify import EquivalenceStatus

TINY = SoakOptions(max_neurons=6, inputs=(1, 2), depth=(1, 2), time_limit=2.0)


def _slab_pair(delta: float) -> Network:
    """Two first-layer neurons on ``x in [0, 1]`` whose kinks are ``delta`` apart::

        x --1--> A = relu(x - 1)          (never positive on the box: max z_A = 0)
          --1--> B = relu(x - 1 + delta)  (positive on the slab (1 - delta, 1])
        y = 1e9 * B - 1e9 * A

    ``y(1) = 1e9 * delta``; merging B into A (their rows agree to ``delta`` relative) gives 0.
    """
    w = np.array([[1.0], [1.0]])
    return Network(
        (
            Layer(w, np.array([-1.0, -1.0 + delta]), relu=True),
            Layer(np.array([[-1e9, 1e9]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def _merged() -> Network:
    return Network(
        (
            Layer(np.array([[1.0]]), np.array([-1.0]), relu=True),
            Layer(np.array([[0.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def test_exact_forward_is_the_rational_value() -> None:
    f = _slab_pair(2.0**-30)
    assert exact_forward(f, [1.0]) == [Fraction(10**9, 2**30)]
    assert exact_forward(f, [0.5]) == [Fraction(0)]
    # s_0 = 1, s_1 = (2, 2 - 2^-30), s_2 = 1e9 * (4 - 2^-30)
    assert exact_term_scale(f, [1.0]) == [Fraction(10**9) * (4 - Fraction(1, 2**30))]


def test_compress_exact_flags_a_merge_by_relative_tolerance() -> None:
    f = _slab_pair(1e-10)
    pts = np.array([[0.0], [0.5], [1.0]])
    bad = compare_exactly(f, _merged(), pts)
    assert bad.excess > 0 and bad.x == [1.0]
    assert bad.diff == pytest.approx(1e9 * 1e-10, rel=1e-6)
    assert compare_exactly(f, f, pts).excess < 0  # no difference, nothing flagged


def test_compress_exact_allows_the_rounding_of_a_fold() -> None:
    """A fold that rounds one weight by one unit in the last place is not a finding."""
    f = _slab_pair(0.5)
    w = f.layers[1].weight.copy()
    w[0, 1] = np.nextafter(w[0, 1], np.inf)
    g = f.replace_layers((f.layers[0], Layer(w, f.layers[1].bias, False)))
    assert compare_exactly(f, g, np.array([[1.0], [0.75]])).excess < 0


@pytest.mark.parametrize("seed", range(6))
def test_near_duplicate_rows_agree_to_a_relative_tolerance_only(seed: int) -> None:
    """Every case holds two rows [w | b] that are near, not exact, positive multiples, and one
    of them is read with an outgoing weight of at least 1e6."""
    case = near_duplicate_case(seed, max_neurons=8)
    found = False
    for k, la in enumerate(case.network.layers[:-1]):
        aug = np.hstack([la.weight, la.bias[:, None]])
        for i in range(len(aug)):
            for j in range(len(aug)):
                if i == j or not aug[i].any() or not aug[j].any():
                    continue
                c = float(aug[j] @ aug[i] / (aug[i] @ aug[i]))
                err = np.abs(aug[j] - c * aug[i]).max() / np.abs(aug[j]).max()
                amplified = np.abs(case.network.layers[k + 1].weight[:, j]).max() >= 1e6
                found |= bool(c > 0 and 0 < err < 1e-7 and amplified)
    assert found


@pytest.mark.parametrize("seed", range(4))
def test_near_dependent_row_is_a_combination_up_to_a_tiny_perturbation(seed: int) -> None:
    """Some first-layer row is a combination of the others up to ``1e-13..1e-8`` relative
    (never exactly), and the next layer reads it with a weight of at least 1e6."""
    case = near_dependent_case(seed)
    w, nxt = case.network.layers[0].weight, case.network.layers[1].weight
    found = False
    for j in range(len(w)):
        others = np.delete(w, j, axis=0)
        if not w[j].any() or not others.size:
            continue
        coef = np.linalg.lstsq(others.T, w[j], rcond=None)[0]
        rel = np.abs(w[j] - coef @ others).max() / np.abs(w[j]).max()
        found |= bool(0 < rel < 1e-8 and np.abs(nxt[:, j]).max() >= 1e6)
    assert found


def test_nnet_reference_clipped_network_and_file_agree() -> None:
    case = nnet_case(0)
    assert case.placement == "across"
    ref = case.clipped()
    rng = np.random.default_rng(0)
    pts = case.box.sample(32, rng)
    for x in pts:
        want = [float(v) for v in case.reference(x)]
        assert np.allclose(ref.forward(x[None, :])[0], want, rtol=1e-9, atol=1e-9)


def test_nnet_check_flags_a_reader_that_drops_the_clipping(tmp_path) -> None:
    case = nnet_case(0)  # its box leaves the limits
    unclipped = load_nnet(case.write(tmp_path / "c.nnet"))  # the affine part only
    corners = np.array([case.box.lower, case.box.upper])
    excess, d, _ = _worst_excess(case, unclipped, corners, np.zeros(2))
    assert excess > 1e-3
    inside = np.clip(case.box.center, case.lower_limit, case.upper_limit)[None, :]
    assert _worst_excess(case, unclipped, inside, np.full(1, 1e-9))[0] <= 0

    class Equivalent:
        status = EquivalenceStatus.EQUIVALENT

    found = _judge(case, unclipped, corners, Equivalent(), 1e-6, np.zeros(2), "planted")
    assert [f.kind for f in found] == ["nnet-equivalent"]
    assert not _judge(case, case.clipped(), corners, Equivalent(), 1e-6, np.zeros(2), "ok")


def test_onnx_dormant_cast_is_invisible_on_the_unit_box_and_not_on_the_soak_box() -> None:
    case = next(c for c in map(onnx_case, range(40)) if c.kind == "dormant-f16")
    model = build_model(case)
    unit = Box.uniform(-1.0, 1.0, case.network.input_size).sample(64, np.random.default_rng(0))
    unit = unit.astype(np.float32).astype(np.float64)
    assert disagreement(case.network, unit, run_onnxruntime(model, unit))[0] <= 0
    corners = np.array([case.box.lower, case.box.upper]).astype(np.float32).astype(np.float64)
    assert disagreement(case.network, corners, run_onnxruntime(model, corners))[0] > 0


def test_family_selection() -> None:
    assert parse_families("all") == FAMILIES
    assert parse_families("nnet, onnx") == ("nnet", "onnx")
    with pytest.raises(ValueError, match="unknown family"):
        parse_families("nnet,bogus")
    assert [family_for(s, FAMILIES) for s in range(10)].count("random") == 5
    assert {family_for(s, ("onnx",)) for s in range(5)} == {"onnx"}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_runs_without_engine_errors(family: str) -> None:
    case_json, result = run_case(family, 1, TINY)
    assert result.family == family and case_json["family"] == family
    assert not result.errors, [f.detail for f in result.errors]
    assert result.neurons >= 1
    json.dumps(case_json)


def test_soak_reports_per_family_counts(tmp_path) -> None:
    argv = ["--cases", "4", "--family", "onnx,nnet", "--max-neurons", "5", "--inputs", "1,2"]
    rc = soak.main([*argv, "--time-limit", "2", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "summary.json").read_text())
    fams = doc["families"]
    assert set(fams) == {"onnx", "nnet"} and sum(v["cases"] for v in fams.values()) == 4
    assert all({"neurons", "pairs", "unsound"} <= set(v) for v in fams.values())
    assert rc == (1 if doc["unsound_total"] else 0)


def test_conv_residual_family_is_in_the_rotation_when_named() -> None:
    assert family_for(0, ("conv-residual",)) == "conv-residual"
    assert {family_for(s, ("onnx", "conv-residual")) for s in range(4)} == {"onnx", "conv-residual"}


def test_conv_onnx_cases_draw_every_aimed_feature() -> None:
    """Over 24 seeds the conv ONNX graphs draw each feature, stay small for the oracle, and
    the reader keeps their convolutions as structure (groups, asymmetric pads and
    channels-last inputs included)."""
    from benchmarks.soak_conv import FEATURES, conv_onnx_case
    from exactcomp.conv import ConvSpec

    seen: set[str] = set()
    specs = []
    for seed in range(1, 37):
        if seed % 3 == 0:
            continue
        oc = conv_onnx_case(seed)
        seen.update(oc.features)
        assert oc.case.network.input_size <= 16
        specs += [
            la.structure for la in oc.case.network.layers if isinstance(la.structure, ConvSpec)
        ]
    assert seen == {*FEATURES, "channels-last"}
    assert any(s.in_axes is not None for s in specs)
    assert any(s.groups > 1 for s in specs)
    assert any(s.pads[:2] != s.pads[2:] for s in specs)
    assert any(s.strides != (1, 1) and any(s.pads) for s in specs)
    assert any(s.dilations != (1, 1) for s in specs)


def test_conv_file_checks_flag_a_changed_network() -> None:
    """``onnx-load``: the network read differs from the file; ``onnx-written``: the
    compressed network written differs from the source. Neither fires on the true pair."""
    from types import SimpleNamespace

    from benchmarks.soak_conv import ConvOnnxCase, check_read, check_written, conv_onnx_case

    oc = conv_onnx_case(2)
    f = oc.case.network
    layers = list(f.layers)
    head = layers[-1]
    layers[-1] = Layer(head.weight, head.bias + 0.5, head.relu, head.structure)
    wrong = f.replace_layers(layers)
    assert check_read(oc) == []
    bad = ConvOnnxCase(oc.model, type(oc.case)(wrong, oc.case.box, 2), oc.features)
    assert [x.kind for x in check_read(bad)] == ["onnx-load"]
    c = SimpleNamespace(box=oc.case.box, seed=2, findings=[])
    check_written(c, f, f)
    assert c.findings == []
    check_written(c, wrong, f)
    assert [x.kind for x in c.findings] == ["onnx-written", "torch-written"]


def test_a_grouped_conv_with_every_channel_kept_compresses() -> None:
    """Soak seed 1028 (``conv``, ``group`` 2): the channel rewrite indexed the grouped
    kernel's axis 1 (c/groups wide) with all c input channels (IndexError)."""
    _, result = run_case("conv", 1028, SoakOptions())
    assert not result.errors and not result.unsound, [f.detail for f in result.findings]
    assert result.compressions == 1


def test_degenerate_cases_draw_every_feature_and_box_kind() -> None:
    """Over 60 seeds the degenerate family draws each feature and box kind, widths of 1, one
    input and one output; every layer built dead is dead (the oracle's exact ranges) and
    ``compress`` removes it whole, leaving zero-width layers; ``lattice`` plants ties that the
    weights alone decide (:mod:`exactcomp.stability.constants`)."""
    from exactcomp.rewrite import compress_network
    from exactcomp.stability import stable_neurons
    from exactcomp.stability.constants import layer_classes
    from exactcomp.testing.degenerate import BOX_KINDS, FEATURES, degenerate_case
    from exactcomp.testing.oracle import exact_analysis

    seen, kinds, emptied, ties = set(), set(), 0, 0
    for seed in range(60):
        dc = degenerate_case(seed, max_neurons=8)
        seen.update(dc.features)
        if "lattice" in dc.features:
            cls = layer_classes(dc.case.network)[1:-1]
            ties += any(c.constant.any() and not c.null.all() for c in cls)
        kinds.add(dc.box_kind)
        f = dc.case.network
        assert f.num_neurons <= 8 and len(f.layers) <= 7
        if "constant" in dc.features and seed < 30:
            exact = exact_analysis(f, dc.case.box)
            assert np.all(exact.ranges[0][1] < 0)  # the first layer dead: f is constant
            report = stable_neurons(f, dc.case.box, jobs=1, seed=seed)
            g = compress_network(f, report).network
            emptied += any(la.out_features == 0 for la in g.layers[:-1]) or g.num_neurons == 0
    assert seen == {*FEATURES, "lattice"} and kinds == set(BOX_KINDS) and emptied >= 2
    assert ties >= 3


def test_degenerate_file_checks_flag_a_changed_network(monkeypatch) -> None:
    """``file-written``: an emptied network (zero-width layers) written to ``.onnx``, ``.pt``
    and ``.nnet`` reads back equal; a reader that returned another network is flagged."""
    from exactcomp import api
    from exactcomp.testing.written_checks import check_files

    g = Network(
        (
            Layer(np.zeros((0, 2)), np.zeros(0), relu=True),
            Layer(np.zeros((2, 0)), np.array([1.0, -1.0]), relu=True),
            Layer(np.ones((1, 2)), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 2)
    assert check_files(box, g, 0) == ([], 0)  # .nnet: a dead neuron stands in for width 0
    shifted = g.replace_layers((*g.layers[:-1], Layer(np.ones((1, 2)), np.ones(1), relu=False)))
    monkeypatch.setattr(api, "load", lambda path: shifted)
    assert [x.kind for x in check_files(box, g, 0)[0]] == ["file-written"] * 3


# ----------------------------------------------------------------------------- readers
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit / torch.onnx.export
@pytest.mark.parametrize("seed", range(8))
def test_readers_family_is_clean(seed: int) -> None:
    """The ``readers`` family's cases (torch, TorchScript, ONNX, .nnet; heads; BatchNorm,
    conv) read and compress without a finding on the fixed code."""
    pytest.importorskip("torch")
    doc, result = run_case("readers", seed, TINY)
    assert doc["family"] == result.family == "readers"
    assert not result.findings, result.findings


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("seed", [187, 279, 1267])  # Gather; Slice cut in two; Slice of 1 input
def test_readers_family_reads_an_input_through_gather_or_slice(seed: int) -> None:
    """Seeds whose hand-written ONNX reads its input through ``Gather`` or ``Slice`` +
    ``Concat`` (nn4sys' pensieve layout, audit24) are drawn so and read without a finding."""
    pytest.importorskip("torch")
    from benchmarks.soak_hand_onnx import input_selection
    from benchmarks.soak_readers import reader_case

    assert input_selection(reader_case(seed)[0])
    doc, result = run_case("readers", seed, TINY)
    assert not result.findings, result.findings
    assert result.statuses.get("onnx-hand read") == 1


def test_reader_check_catches_a_dropped_head() -> None:
    """A reader that lost the Softmax head (the logits read as the output) is a ``read``
    finding; the same network with its head is not."""
    from exactcomp.testing.reader_checks import compare

    net = Network(
        (Layer(np.array([[1.0, -1.0], [2.0, 0.5]]), np.array([0.1, -0.2]), relu=False),),
        dtype="float64",
    )
    x = np.random.default_rng(0).uniform(-1, 1, (20, 2))
    z = net.forward(x)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    u = np.finfo(np.float64).eps / 2
    assert [f.kind for f in compare(net, x, p, u, "read", "no head")] == ["read"]
    with_head = Network(net.layers, dtype="float64", meta={"head": "softmax"})
    assert compare(with_head, x, p, u, "read", "softmax") == []


def test_joint_enumerations_stop_at_the_case_budget_and_are_counted() -> None:
    """``conv-lossy``/``conv-compress``: a case's exact ``max |f - g|`` enumerations share
    ``JOINT_REGIONS`` regions (seed 90010 spent 408 s in one stopped at 20,000); past them a
    check is a note, and the summary counts it. ``f``'s own analysis stops at ``F_REGIONS``."""
    from types import SimpleNamespace

    from benchmarks.soak_conv_lossy import F_REGIONS, _capped, _check_bound, _Joint
    from exactcomp.testing.oracle import LpBudget
    from exactcomp.testing.soak_results import CaseResult

    f = Network([Layer(np.ones((1, 1)), np.zeros(1), False)])
    box = Box(np.zeros(1), np.ones(1))
    c = SimpleNamespace(notes=[], findings=[], box=box, joint_lps=LpBudget(10**6))
    joint = _Joint()
    assert _check_bound(c, joint, f, f, 0.0, "quantize", 1.0) == 1
    assert joint.left == _Joint().left - 1 and not c.notes
    joint.left = 0
    assert _check_bound(c, joint, f, f, 0.0, "quantize", 1.0) == 0
    assert not c.findings and "oracle skipped" in c.notes[0]
    summary = soak.Summary()
    summary.add(CaseResult(1, 1, 1, "fast", {}, {}, (), notes=tuple(c.notes)))
    assert summary.checks_skipped == 1 and summary.oracle_skipped == 0
    assert _capped(SoakOptions()).max_regions == F_REGIONS


def two_networks_apart():
    """``f`` (2-4r-1) and ``g``, its copy with the output layer scaled by 1.1."""
    rng = np.random.default_rng(0)
    f = Network(
        [
            Layer(rng.normal(size=(4, 2)), rng.normal(size=4), True),
            Layer(rng.normal(size=(1, 4)), np.zeros(1), False),
        ]
    )
    g = f.replace_layers([f.layers[0], Layer(f.layers[1].weight * 1.1, np.zeros(1), False)])
    return f, g


def test_joint_enumerations_share_the_case_lp_budget() -> None:
    """A case's ``max |f - g|`` enumerations also share ``JOINT_LPS`` LPs (what their time is
    made of: conv-compress seed 6 spent 196 s in one enumeration of 13,752 regions, its four
    bounds past the soak's 300 s): each check spends its LPs there, and a check that would
    pass them is a note, after which the case checks no more bounds."""
    from types import SimpleNamespace

    from benchmarks.soak_conv_lossy import _check_bound, _Joint
    from exactcomp.testing.oracle import LpBudget

    f, g = two_networks_apart()
    c = SimpleNamespace(notes=[], findings=[], box=Box(-np.ones(2), np.ones(2)))
    c.joint_lps = LpBudget(10**6)
    assert _check_bound(c, _Joint(), f, g, np.inf, "quantize", 1.0) == 1
    one = c.joint_lps.spent
    assert one > 0 and not c.notes
    joint, c.joint_lps = _Joint(), LpBudget(one + one // 2)  # room for one check, not two
    assert _check_bound(c, joint, f, g, np.inf, "first", 1.0) == 1
    assert _check_bound(c, joint, f, g, np.inf, "second", 1.0) == 0
    assert joint.left == 0 and "second: oracle skipped" in c.notes[0] and "LPs" in c.notes[0]
    assert _check_bound(c, joint, f, g, np.inf, "third", 1.0) == 0  # the case's budget is spent
    assert not c.findings


def test_every_family_s_joint_enumerations_share_the_case_lp_budget() -> None:
    """The checker of every family (compression and equivalence checks) spends one
    ``JOINT_LPS`` budget per case (the ``conv`` family's seed 6: 250,000 LPs in three
    enumerations, past the soak's 300 s under load): past it, ``maxdiff`` is a note."""
    from exactcomp.testing.oracle import LpBudget
    from exactcomp.testing.random_networks import Case
    from exactcomp.testing.regions import JOINT_LPS
    from exactcomp.testing.soak_checks import Checker

    f, g = two_networks_apart()
    c = Checker(Case(f, Box(-np.ones(2), np.ones(2)), 0), SoakOptions(), "fast")
    assert c.joint_lps.total == JOINT_LPS
    exact = c.maxdiff(g, 0.0)
    one = c.joint_lps.spent
    assert exact is not None and one > 0 and not c.notes
    c.joint_lps = LpBudget(one + one // 2)
    assert c.maxdiff(g, 0.0).value == exact.value
    assert c.maxdiff(g, 0.0) is None and "oracle skipped" in c.notes[0]


def test_conv_residual_quantises_float32_graphs_in_their_own_graph() -> None:
    """Seed 24905 (a float32 conv graph, 8 bits): ``quantize`` of the file itself is written,
    read back and its bound checked against the exact maximum, with nothing found."""
    _, result = run_case("conv-residual", 24905, SoakOptions())
    assert result.lossy == 1 and result.refused == 0 and not result.findings
