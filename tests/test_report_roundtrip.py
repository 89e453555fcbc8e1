"""Every JSON document exactcomp writes is read back equal, and readers refuse what is not one.

One tiny network drawn below is compressed, analysed, region-counted and quantised; each
document is written with :func:`exactcomp.report.write_document` and read with
:func:`~exactcomp.report.read_document` (or a typed reader on top of it)::

    x0 ──┬─ z0 = x0 + x1 - 3   (inactive on [0,1]^2: max is -1)
    x1 ──┼─ z1 = x0 + 2        (active: min is 2)
         └─ z2 = x0 - x1       (unstable)
                 └── y = z0 + z1 + z2
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from exactcomp import api, cli
from exactcomp.domain import Box
from exactcomp.errors import InputFileError
from exactcomp.network import Network
from exactcomp.report import (
    KINDS,
    VERSION,
    counterexample_doc,
    document_text,
    read_certificates,
    read_counterexample,
    read_document,
    read_stability,
    stability_doc,
    to_json_text,
    verify_doc,
    write_document,
)
from exactcomp.verdicts import Proof, Verdict
from exactcomp.verify.result import Counterexample

BOX = Box.uniform(0.0, 1.0, 2)


def tiny() -> Network:
    w = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, -1.0]])
    b = np.array([-3.0, 2.0, 0.0])
    return Network.from_arrays([w, np.ones((1, 3))], [b, np.zeros(1)], dtype="float64")


def _normal(kind: str, doc: dict) -> dict:
    """What a reader must give back: the content as JSON sees it, after the envelope."""
    return {"kind": kind, "version": VERSION, **json.loads(to_json_text(doc))}


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    from exactcomp.approx import compress_lossy
    from exactcomp.quantization import quantize

    net = tiny()
    compressed = api.compress(net, BOX, check=2000, jobs=1)
    report = api.stable_neurons(net, BOX, jobs=1)
    regions = api.count_regions(net, BOX)
    ce = Counterexample(np.array([0.25, -0.0]), np.array([1.5]), np.array([1.25]), 0.25, "milp")
    return {
        "compress": compressed.report,
        "stability": stability_doc(report, 0.5, notes=("a note",), proof_per_neuron=True),
        "counterexample": counterexample_doc(ce),
        "verify": verify_doc(
            api.verify_equivalence(net, net, BOX, time_limit=10.0),
            0.5,
            {"original": "a.pt", "other": "b.pt", "domain": {"boxes": 1}, "outputs": None},
        ),
        "regions": regions.to_json(),
        "quantize": quantize(net, BOX, bits=8).report,
        "lossy": compress_lossy(net, BOX, 0.5).report,
        "benchmark-spec": {"model": "m.pt", "domain": {"kind": "uniform", "lo": 0, "hi": 1}},
    }


def test_every_kind_is_tested(documents) -> None:
    assert set(documents) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_write_then_read_gives_the_document_back(documents, kind, tmp_path) -> None:
    path = tmp_path / f"{kind}.json"
    write_document(path, kind, documents[kind])
    got = read_document(path, kind)
    assert got == _normal(kind, documents[kind])
    assert list(got)[:2] == ["kind", "version"]
    # the text rendered ahead of writing is the same document
    write_document(path, kind, document_text(kind, documents[kind]))
    assert read_document(path, kind) == got


def test_stability_reads_back_verdicts_and_proofs(tmp_path) -> None:
    net = tiny()
    report = api.stable_neurons(net, BOX, jobs=1)
    assert [Verdict(int(v)) for v in report.layers[0].verdict] == [
        Verdict.INACTIVE,
        Verdict.ACTIVE,
        Verdict.UNSTABLE,
    ]
    path = tmp_path / "s.json"
    write_document(path, "stability", stability_doc(report, 1.0, proof_per_neuron=True))
    back = read_stability(path)
    for a, b in zip(report.layers, back.layers, strict=True):
        assert a.layer == b.layer
        np.testing.assert_array_equal(a.verdict, b.verdict)
        np.testing.assert_array_equal(a.proof, b.proof)
    assert dict(back.stats) == {k: float(v) for k, v in report.stats.items()}
    assert back.layers[0].proof[2] == Proof.WITNESS
    # without the per-neuron proofs: verdicts only
    write_document(path, "stability", stability_doc(report, 1.0))
    assert not read_stability(path).layers[0].proof.any()


def test_certificates_keep_only_the_stable_claims(documents, tmp_path) -> None:
    path = tmp_path / "c.json"
    write_document(path, "compress", documents["compress"])
    certs = read_certificates(path, tiny())
    assert [Verdict(int(v)) for v in certs.layers[0].verdict] == [
        Verdict.INACTIVE,
        Verdict.ACTIVE,
        Verdict.UNDECIDED,
    ]
    other = Network.from_arrays([np.ones((4, 2)), np.ones((1, 4))], [np.zeros(4), np.zeros(1)])
    with pytest.raises(InputFileError, match="does not match the network"):
        read_certificates(path, other)


def test_counterexample_reads_back_as_arrays(documents, tmp_path) -> None:
    path = tmp_path / "ce.json"
    write_document(path, "counterexample", documents["counterexample"])
    ce = read_counterexample(path)
    np.testing.assert_array_equal(ce["x"], [0.25, 0.0])
    assert ce["x"].dtype == np.float64 and ce["difference"] == 0.25


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"layers": []}', 'no "kind"'),
        ('{"kind": "regions", "version": 1}', "'regions' document, expected stability or compress"),
        ('{"kind": "stability", "version": 2, "layers": []}', "of version 2"),
        ('{"kind": "stability", "layers": []}', "of version None"),
        ("[1, 2]", 'no "kind"'),
        ("not json", "not a JSON document"),
        ('{"kind": "stability", "version": 1, "layers": [{"layer": 0}]}', "per-neuron verdicts"),
        ('{"kind": "stability", "version": 1, "layers": [{"layer": 0, "verdicts": ["x"]}]}', "x"),
    ],
)
def test_readers_refuse_with_one_line(tmp_path, text, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputFileError) as info:
        read_stability(path)
    assert message in str(info.value) and "bad.json" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_document(tmp_path / "none.json", "regions")


def test_unknown_kind_is_a_bug_not_a_document(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown document kind"):
        write_document(tmp_path / "x.json", "summary", {})


def test_cli_refuses_certificates_of_another_kind(documents, tmp_path, capsys) -> None:
    model, rep = tmp_path / "m.pt", tmp_path / "regions.json"
    api.save(tiny(), model)
    write_document(rep, "regions", documents["regions"])
    argv = ["verify", str(model), str(model), "--box", "0,1", "--certificates", str(rep)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "regions.json" in err and "expected stability or compress" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_the_lossy_table_names_the_winning_strategy():
    """``compress --tol`` reports which candidate won; the console table says it too."""
    from rich.console import Console

    from exactcomp.cli.tables import lossy_table

    doc = {
        "command": "compress",
        "tol": 1.0,
        "proven_max_abs_diff": 0.5,
        "sampled_max_abs_diff": 0.25,
        "neurons_before": 3,
        "neurons_after": 2,
        "parameters_before": 10,
        "parameters_after": 6,
        "layers": [{"layer": 1, "removed": 4, "entropy_bits": None}],
    }
    console = Console(width=80, record=True)
    console.print(lossy_table({**doc, "strategy": "magnitude"}))
    assert "None" not in console.export_text(clear=False)  # a key that does not apply reads "-"
    assert "parameters 10 -> 6 (magnitude)" in " ".join(console.export_text().split())
    console.print(lossy_table(doc))
    assert "(magnitude)" not in console.export_text()


def test_the_lossy_table_fits_80_columns_and_gives_the_data_figures():
    """The long per-layer keys get short headers; ``--data`` adds agreement and accuracies."""
    from rich.console import Console

    from exactcomp.cli.tables import lossy_table

    row = {
        "layer": 0,
        "neurons_to_constant": 13,
        "neurons_refitted": 0,
        "neurons_merged": 2,
        "weights_zeroed": 1236,
        "amplification": 0.06844,
        "charged": 7.988,
    }
    doc = {
        "command": "compress",
        "tol": 1.0,
        "proven_max_abs_diff": 0.9999,
        "sampled_max_abs_diff": 0.4971,
        "neurons_before": 200,
        "neurons_after": 187,
        "parameters_before": 17610,
        "parameters_after": 15687,
        "strategy": "search",
        "layers": [row, {**row, "layer": 1}],
        "agreement": 0.9978,
        "data_points": 450,
        "accuracy_before": 0.9756,
        "accuracy_after": 0.9733,
    }
    console = Console(width=80, record=True)
    console.print(lossy_table(doc))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "agreement 99.78 % on 450 inputs, accuracy 97.56 -> 97.33 %" in text
    assert "const" in text and "1236" in text


def test_regions_table_shows_an_upper_bound_beyond_float() -> None:
    """``regions`` on the shipped conv network (marabou_conv_mp1) ended in OverflowError: its
    Serra upper bound is an int beyond float64, which the table converted to float."""
    from rich.console import Console

    from exactcomp.cli.tables import regions_table

    doc = {
        "exact": False,
        "stopped": "bounds only",
        "method": "none",
        "regions": 3,
        "lower_bound": 3,
        "lower_bound_kind": "distinct patterns",
        "estimate": None,
        "upper_bound": 12345 * 10**996,
        "upper_bound_original": 10**1200,
        "fixed_neurons": 1,
        "neurons": 9,
        "seconds": 0.1,
        "count_seconds": 0.0,
        "lps": 0,
        "regions_per_second": None,
    }
    console = Console(width=80, record=True)
    console.print(regions_table(doc))
    text = console.export_text()
    assert "1.234e+1000" in text and "1.000e+1200" in text
