"""The CLI end to end on small networks: files written, reports, exit codes of ``verify``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import exactcomp.api.checking
from exactcomp import cli
from exactcomp.cli.common import tol_hint
from exactcomp.domain import Box
from exactcomp.io import load, save
from exactcomp.network import Network

REPORT_KEYS = {"neurons_before", "neurons_after", "seconds", "layers"}
LAYER_KEYS = {
    "width_before",
    "width_after",
    "stably_active",
    "stably_inactive",
    "unstable",
    "undecided",
}


def _sparse_mlp(seed: int = 0) -> Network:
    """6 -> 12 -> 12 -> 3 with l1-like sparse weights and negative biases: many stable neurons."""
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for n_in, n_out in [(6, 12), (12, 12), (12, 3)]:
        w = rng.normal(size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.4)
        ws.append(w)
        bs.append(rng.normal(size=n_out) - 0.5)
    return Network.from_arrays(ws, bs)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    save(_sparse_mlp(), path)
    return path


def test_compress_writes_model_and_report(model_path, tmp_path, capsys) -> None:
    out, rep = tmp_path / "small.pt", tmp_path / "report.json"
    code = cli.main(
        [
            "compress",
            str(model_path),
            "--box",
            "0,1",
            "-o",
            str(out),
            "--report",
            str(rep),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    doc = json.loads(rep.read_text())
    assert REPORT_KEYS <= doc.keys()
    assert all(LAYER_KEYS <= layer.keys() for layer in doc["layers"])
    assert doc["neurons_after"] < doc["neurons_before"]
    assert sum(r["undecided"] for r in doc["layers"]) == 0
    f, g = load(model_path), load(out)
    x = Box.uniform(0, 1, 6).sample(20_000, np.random.default_rng(3))
    np.testing.assert_allclose(g(x), f(x), atol=1e-5)  # float32 storage
    # only the two outputs were created next to the input
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "report.json", "small.pt"]
    assert "->" in capsys.readouterr().out


def test_compress_to_onnx_and_verify(model_path, tmp_path, capsys) -> None:
    out = tmp_path / "small.onnx"
    assert (
        cli.main(
            ["compress", str(model_path), "--box", "0,1", "-o", str(out), "--quiet", "--verify"]
        )
        == 0
    )
    assert "EQUIVALENT" in capsys.readouterr().out
    assert (
        cli.main(["verify", str(model_path), str(out), "--box", "0,1", "--quiet", "--tol", "1e-5"])
        == 0
    )


def test_verify_not_equivalent_saves_a_real_counterexample(model_path, tmp_path, capsys) -> None:
    f = load(model_path)
    layer = f.layers[-1]
    g = f.replace_layers(
        [*f.layers[:-1], type(layer)(layer.weight, layer.bias + [0, 0, 0.01], layer.relu)]
    )
    other, ce = tmp_path / "other.pt", tmp_path / "ce.json"
    save(g, other)
    code = cli.main(
        [
            "verify",
            str(model_path),
            str(other),
            "--box",
            "0,1",
            "--counterexample",
            str(ce),
            "--quiet",
        ]
    )
    assert code == 1
    doc = json.loads(ce.read_text())
    x = np.array(doc["x"])
    assert Box.uniform(0, 1, 6).contains(x).all()
    assert np.abs(load(model_path)(x) - load(other)(x)).max() > 1e-6
    assert "NOT_EQUIVALENT" in capsys.readouterr().out


def test_verify_unknown_exit_code(model_path, monkeypatch, capsys) -> None:
    real = exactcomp.api.verify_equivalence

    def unknown(*args, **kwargs):
        kwargs["time_limit"] = 1e-9
        res = real(*args, **kwargs)
        return type(res)(**{**res.__dict__, "status": type(res.status)["UNKNOWN"]})

    monkeypatch.setattr(exactcomp.api.checking, "verify_equivalence", unknown)
    assert cli.main(["verify", str(model_path), str(model_path), "--box", "0,1", "--quiet"]) == 3


def test_stability_report_lists_every_neuron(model_path, tmp_path, capsys) -> None:
    rep = tmp_path / "stab.json"
    assert (
        cli.main(["stability", str(model_path), "--box", "0,1", "--report", str(rep), "--quiet"])
        == 0
    )
    doc = json.loads(rep.read_text())
    assert [len(layer["verdicts"]) for layer in doc["layers"]] == [12, 12]
    assert doc["complete"] is True


def test_stability_budget_passes_a_deadline(model_path, tmp_path, capsys, monkeypatch) -> None:
    """``stability --budget S``: the analysis gets the deadline ``start + S`` (a budget that
    is ample changes nothing); a budget that is not a positive number is refused (exit 2)."""
    import exactcomp.api

    seen: list[float | None] = []
    real = exactcomp.api.stable_neurons

    def spy(*args, **kwargs):
        seen.append(kwargs.get("deadline"))
        return real(*args, **kwargs)

    monkeypatch.setattr(exactcomp.api, "stable_neurons", spy)
    rep = tmp_path / "stab.json"
    argv = ["stability", str(model_path), "--box", "0,1", "--quiet", "--report", str(rep)]
    assert cli.main([*argv, "--budget", "600"]) == 0
    assert len(seen) == 1 and seen[0] is not None
    assert json.loads(rep.read_text())["complete"] is True
    assert cli.main([*argv[:-2], "--budget", "0"]) == 2
    assert "--budget must be > 0" in capsys.readouterr().err


def test_compress_budget_keeps_what_is_not_proven(model_path, tmp_path, capsys) -> None:
    """``compress --budget S`` gives the analysis the deadline ``start + S``: with a budget
    spent at once only the cheapest claims stand, the rest is kept, and what is written is
    still the same function (the re-check passes, exit 0); an ample budget compresses as
    without it."""
    import exactcomp

    base = ["compress", str(model_path), "--box", "0,1", "--quiet"]
    full, tight = tmp_path / "full.pt", tmp_path / "tight.pt"
    assert cli.main([*base, "-o", str(full), "--budget", "600"]) == 0
    assert cli.main([*base, "-o", str(tight), "--budget", "1e-9"]) == 0
    f, a, b = (exactcomp.load(p) for p in (model_path, full, tight))
    assert a.num_neurons <= b.num_neurons <= f.num_neurons
    x = np.random.default_rng(0).random((500, f.input_size))
    assert np.allclose(f.forward(x), b.forward(x), atol=1e-5)


@pytest.mark.parametrize("command", [["compress", "--tol", "0.1"], ["quantize", "--bits", "8"]])
def test_the_lossy_commands_budget_is_their_time_limit(
    model_path, tmp_path, monkeypatch, capsys, command
) -> None:
    """``compress --tol`` and ``quantize`` with ``--budget S``: the search is given S seconds
    in all (less the model's load, never under S / 2) instead of the default 90; a budget
    that is not positive is refused by name."""
    from exactcomp import api

    given = []
    for name in ("compress_lossy", "quantize"):
        real = getattr(api, name)

        def spy(*args, time_limit, _real=real, **kw):
            given.append(time_limit)
            return _real(*args, time_limit=time_limit, **kw)

        monkeypatch.setattr(api, name, spy)
    argv = [command[0], str(model_path), *command[1:], "--box", "0,1", "--quiet"]
    assert cli.main([*argv, "-o", str(tmp_path / "l.onnx"), "--budget", "30"]) == 0
    assert 15.0 <= given[0] <= 30.0
    assert cli.main([*argv, "-o", str(tmp_path / "m.onnx"), "--budget", "-1"]) == 2
    assert "--budget must be > 0" in capsys.readouterr().err


def test_box_forms_agree(model_path, tmp_path) -> None:
    np.save(tmp_path / "box.npy", np.array([np.zeros(6), np.ones(6)]))
    np.save(tmp_path / "data.npy", np.vstack([np.zeros(6), np.ones(6), np.full(6, 0.5)]))
    outs = []
    for i, opt in enumerate(
        [
            ["--box", "0,1"],
            ["--box-file", str(tmp_path / "box.npy")],
            ["--box-from-data", str(tmp_path / "data.npy")],
        ]
    ):
        out = tmp_path / f"s{i}.pt"
        assert cli.main(["compress", str(model_path), *opt, "-o", str(out), "--quiet"]) == 0
        outs.append(load(out).describe())
    assert len(set(outs)) == 1


def test_in_memory_module_through_the_api() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    res = exactcomp.compress(module, (0.0, 1.0), check=2000)
    x = Box.uniform(0, 1, 3).sample(500, np.random.default_rng(0))
    with torch.no_grad():
        expected = module(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(res.network(x), expected, atol=1e-5)
    np.testing.assert_allclose(
        res.to_module()(torch.as_tensor(x, dtype=torch.float32)).detach().double().numpy(),
        expected,
        atol=1e-5,
    )


@pytest.mark.parametrize("dtype", ["input", "float64"])
def test_verify_proves_the_file_that_is_written(
    model_path, tmp_path, dtype, capsys, monkeypatch
) -> None:
    """--verify is about the written file: float32 storage of folded weights is what gets
    proven by default; --dtype float64 writes (and proves) exactly the analysed network."""
    import exactcomp.api.checking as ec_api

    proven: list = []
    real = ec_api.verify_equivalence

    def spy(f, g, *a, **kw):
        proven.append(g)
        return real(f, g, *a, **kw)

    monkeypatch.setattr(ec_api, "verify_equivalence", spy)
    out, rep = tmp_path / "small.pt", tmp_path / "report.json"
    args = ["compress", str(model_path), "--box", "0,1", "-o", str(out), "--report", str(rep)]
    code = cli.main([*args, "--quiet", "--verify", "--verify-tol", "1e-5", "--dtype", dtype])
    assert code == 0, capsys.readouterr().out
    doc = json.loads(rep.read_text())
    written = load(out)
    expected = "float32" if dtype == "input" else "float64"
    assert doc["dtype_written"] == expected == written.dtype
    assert doc["verification"]["status"] == "EQUIVALENT"
    # the file holds exactly the weights of the network that was verified
    assert len(proven) == 1
    for a, b in zip(written.layers, proven[0].layers, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)


def test_verify_with_the_compress_report_as_certificates(model_path, tmp_path, capsys) -> None:
    """``verify --certificates`` re-proves the compressor's claims and uses them; a report
    with a false claim is not used (the claim fails its re-check); bad files are clear errors."""
    out, rep = tmp_path / "small.pt", tmp_path / "rep.json"
    args = ["compress", str(model_path), "--box", "0,1", "-o", str(out), "--quiet"]
    assert cli.main([*args, "--report", str(rep), "--dtype", "float64"]) == 0
    doc = json.loads(rep.read_text())
    claims = sum(v in ("inactive", "active") for row in doc["layers"] for v in row["verdicts"])
    assert claims > 0
    capsys.readouterr()
    verify = ["verify", str(model_path), str(out), "--box", "0,1", "--quiet"]
    assert cli.main([*verify, "--certificates", str(rep)]) == 0
    text = capsys.readouterr().out
    assert f"all {claims} stability claims re-checked" in text and "EQUIVALENT" in text
    # a false claim: a neuron seen positive at the box's corner claimed INACTIVE
    f = load(model_path)
    k = doc["layers"][0]["layer"]
    z = f.preactivations(np.ones((1, f.input_size)))[k][0]
    j = int(np.argmax(z))
    assert z[j] > 0
    doc["layers"][0]["verdicts"][j] = "inactive"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    cli.main([*verify, "--certificates", str(bad)])
    assert "certificates not used" in capsys.readouterr().out
    for broken in ("{}", '{"layers": [{"layer": 0, "verdicts": ["active"]}]}', "not json"):
        bad.write_text(broken)
        assert cli.main([*verify, "--certificates", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "bad.json" in err and "Traceback" not in err
    assert cli.main([*verify, "--certificates", str(tmp_path / "missing.json")]) == 2
    assert "no such certificate file" in capsys.readouterr().err


def test_negative_box_bounds_are_accepted(model_path, tmp_path, capsys) -> None:
    """``--box -1,1`` (issue 18, item 7): argparse took "-1,1" for an option."""
    rep = tmp_path / "stab.json"
    argv = ["stability", str(model_path), "--box", "-1,1", "--report", str(rep), "--quiet"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert cli.main(["stability", str(model_path), "--box", "-1,-0.5", "--quiet"]) == 0
    assert json.loads(rep.read_text())["neurons"] == 24


def _bn_like(path: Path, scale: float) -> None:
    """A float32 ``state_dict`` of 4 -> 16 -> 16 -> 3 whose first layer carries a folded
    BatchNorm: weights and bias ``scale`` times larger than usual (running variance 0.01 makes
    scale 10 per unit of gamma), so most first-layer neurons are stably active and are folded
    into the next layer; rounding the folded float64 weights to float32 then moves the outputs
    by about ``1e-8 * scale``: above the old fixed tolerance of 1e-6 at scale 300."""
    torch.manual_seed(0)
    seq = torch.nn.Sequential(
        torch.nn.Linear(4, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )
    with torch.no_grad():
        seq[0].weight.mul_(scale)
        seq[0].bias.fill_(scale)
    torch.save(seq.state_dict(), path)


def test_verify_default_passes_an_exact_float32_compression(tmp_path, capsys) -> None:
    """Issue 18, item 8: with a fixed 1e-6 this failed (NOT_EQUIVALENT at 4.2e-6: float32
    rounding of the folded weights). The default now allows twice the proven rounding bound."""
    model, out, rep = tmp_path / "bn.pt", tmp_path / "small.pt", tmp_path / "r.json"
    _bn_like(model, 300.0)
    args = ["compress", str(model), "--box=-1,1", "-o", str(out), "--report", str(rep)]
    assert cli.main([*args, "--verify", "--quiet", "--check", "2000"]) == 0, capsys.readouterr()
    doc = json.loads(rep.read_text())
    assert doc["dtype_written"] == "float32"
    assert doc["check"]["stored_dtype_max_deviation"] > 1e-6  # the old default's failure
    ver = doc["verification"]
    assert ver["status"] == "EQUIVALENT" and ver["upper_bound"] <= ver["tol"]
    # `exactcomp verify` on the written file passes by default too
    assert cli.main(["verify", str(model), str(out), "--box=-1,1", "--quiet"]) == 0


@pytest.mark.parametrize("scale", [100.0, 300.0])
def test_a_failed_verify_suggests_a_tolerance_that_works(tmp_path, scale, capsys) -> None:
    """At ``--verify-tol 1e-6`` the BatchNorm-like model fails (UNKNOWN below the solver margin
    at scale 100, NOT_EQUIVALENT at 300); the message names a value, and that value works."""
    model, out = tmp_path / "bn.pt", tmp_path / "small.pt"
    _bn_like(model, scale)
    args = ["compress", str(model), "--box=-1,1", "-o", str(out), "--verify", "--quiet"]
    args += ["--check", "2000"]
    assert cli.main([*args, "--verify-tol", "1e-6"]) in (1, 3)
    text = capsys.readouterr().out
    assert not out.exists()
    m = re.search(r"--verify-tol ([0-9.e+-]+)", text.replace("\n", " "))
    assert m, text
    assert cli.main([*args, "--verify-tol", m.group(1)]) == 0, capsys.readouterr().out
    assert out.exists()


def test_quiet_prints_no_table(model_path, tmp_path, capsys) -> None:
    """``--quiet`` (issue 18, item 10): no progress and no table, only the final lines."""
    args = ["compress", str(model_path), "--box", "0,1", "-o", str(tmp_path / "s.pt")]
    assert cli.main([*args, "--quiet", "--check", "500"]) == 0
    quiet = capsys.readouterr().out
    assert "wrote" in quiet and "undecided" not in quiet and "proofs" not in quiet
    assert cli.main(["stability", str(model_path), "--box", "0,1", "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "proofs" not in quiet and "24 neurons" in quiet
    assert cli.main(["stability", str(model_path), "--box", "0,1"]) == 0
    assert "proofs" in capsys.readouterr().out


def test_verify_prints_the_counterexample(model_path, tmp_path, capsys) -> None:
    """``verify`` said it prints the counterexample; it only saved it (issue 18, item 10)."""
    f = load(model_path)
    layer = f.layers[-1]
    g = f.replace_layers(
        [*f.layers[:-1], type(layer)(layer.weight, layer.bias + [0, 0, 0.01], layer.relu)]
    )
    other = tmp_path / "other.pt"
    save(g, other)
    assert cli.main(["verify", str(model_path), str(other), "--box", "0,1", "--quiet"]) == 1
    text = capsys.readouterr().out
    m = re.search(r"counterexample: x = \[([^\]]*)\]", text)
    assert m, text
    x = np.array([float(v) for v in m.group(1).split(",")])
    assert x.shape == (6,) and Box.uniform(0, 1, 6).contains(x).all()
    assert "original(x)" in text and "other(x)" in text and "difference" in text


def test_verify_arguments_have_help(capsys) -> None:
    assert cli.main(["verify", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the reference network" in text
    assert "the network to compare with it" in text
    assert "linf: max |f - g| <= tol" in text and "top1:" in text


def test_tables_fit_80_columns() -> None:
    """Issue 18, item 10: at 80 columns the tables squeezed every number to an ellipsis."""
    import io

    from rich.console import Console

    from exactcomp.cli.tables import compression_table, stability_table

    proofs = {"interval": 120, "linear": 300, "lp": 40, "milp": 17, "witness": 400}
    row = {
        "layer": 0,
        "width_before": 1024,
        "width_after": 999,
        "stably_active": 123,
        "stably_inactive": 456,
        "unstable": 345,
        "undecided": 100,
        "proofs": proofs,
        "verdicts": [],
    }
    doc = {
        "architecture_before": "784-1024r-1024r-10",
        "architecture_after": "784-999r-1000r-10",
        "neurons_before": 2048,
        "neurons_after": 1999,
        "seconds": 1234.5,
        "layers": [row, {**row, "layer": 2}],
    }
    for table in (compression_table(doc), stability_table(doc)):
        console = Console(width=80, file=io.StringIO(), record=True)
        console.print(table)
        text = console.export_text()
        assert all(len(line) <= 80 for line in text.splitlines())
        assert "…" not in text
        for word in ("layer", "width", "active", "inactive", "unstable", "undecided", "proofs"):
            assert word in text
        for token in [f"{k}:{v}" for k, v in proofs.items()] + ["1024", "456"]:
            assert token in text, token


def _unknown(cause: str, upper: float = float("inf")):
    from exactcomp.verify.result import EquivalenceResult, EquivalenceStatus

    return EquivalenceResult(EquivalenceStatus.UNKNOWN, "linf", 1e-6, upper, 0.0, cause=cause)


def test_the_advice_after_unknown_matches_its_cause() -> None:
    """More --time-limit is advised only when time could decide it."""
    assert "more --time-limit" in tol_hint(_unknown(""), "--tol")
    assert "re-proven in time" in tol_hint(_unknown("claims"), "--tol")
    structural = tol_hint(_unknown("structure"), "--tol")
    assert "will not help" in structural and "give more" not in structural
    assert tol_hint(_unknown("", 3e-6), "--tol") == "--tol 5e-06 would be proven"


def test_verify_prints_the_structural_advice(model_path, monkeypatch, capsys) -> None:
    from exactcomp.api import Verification

    monkeypatch.setattr(
        exactcomp.api,
        "verify_with_certificates",
        lambda *a, **k: Verification(_unknown("structure")),
    )
    assert cli.main(["verify", str(model_path), str(model_path), "--box", "0,1", "--quiet"]) == 3
    out = capsys.readouterr().out
    assert "will not help" in out and "give more --time-limit" not in out


def test_compress_verify_out_of_time_advises_what_compress_can_do(
    model_path, tmp_path, monkeypatch, capsys
) -> None:
    """compress's --time-limit is per MILP and its proof's seconds follow from the analysis:
    "give more --time-limit" (what cifar_deep_kw printed, audit22) would not help; the advice
    is the path that does: write with --report, then ``verify --certificates``."""
    import exactcomp.api.checking

    monkeypatch.setattr(exactcomp.api.checking, "verify_equivalence", lambda *a, **k: _unknown(""))
    out = tmp_path / "small.pt"
    argv = ["compress", str(model_path), "--box", "0,1", "-o", str(out), "--verify", "--quiet"]
    assert cli.main(argv) == 3
    text = " ".join(capsys.readouterr().out.split())
    assert "nothing written" in text and not out.exists()
    assert "give more --time-limit" not in text
    assert "verify MODEL OUT --certificates R.json --time-limit S" in text


def test_verify_notes_a_default_tolerance_large_next_to_the_outputs(tmp_path, capsys) -> None:
    """ACAS Xu 1_1 over prop_1: the default tolerance (twice the proven float32 rounding bound,
    about 1.5) dwarfs the outputs' span there (about 0.01), so a copy with output 0 moved by
    0.5 passes under it: the note says so; with --tol it is refuted."""
    acas = Path(__file__).resolve().parents[1] / "models" / "real" / "acasxu"
    f = load(acas / "ACASXU_run2a_1_1_batch_2000.onnx")
    last = f.layers[-1]
    moved = tmp_path / "moved.onnx"
    bias = last.bias + np.eye(last.out_features)[0] * 0.5
    save(f.replace_layers([*f.layers[:-1], type(last)(last.weight, bias, False)]), moved)
    args = ["verify", str(acas / "ACASXU_run2a_1_1_batch_2000.onnx"), str(moved)]
    args += ["--vnnlib", str(acas / "prop_1.vnnlib"), "--quiet"]
    assert cli.main(args) == 0
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "is large next to the original's outputs" in text and "give --tol" in text
    assert cli.main([*args, "--tol", "0.01"]) == 1
    assert "is large next" not in capsys.readouterr().out


def test_verify_report_holds_the_verdict_bounds_and_inputs(model_path, tmp_path, capsys) -> None:
    """``verify --report`` (every other command had one): the verdict, the tolerance, the
    proven upper and the best lower bound, the counterexample and where it was written, the
    two models and the domain; a brute-force sample never exceeds the proven bound."""
    f = load(model_path)
    layer = f.layers[-1]
    g = f.replace_layers(
        [*f.layers[:-1], type(layer)(layer.weight, layer.bias + [0, 0, 0.01], layer.relu)]
    )
    other, rep, ce = tmp_path / "other.pt", tmp_path / "v.json", tmp_path / "ce.json"
    save(g, other)
    args = ["verify", str(model_path), str(other), "--box", "0,1", "--quiet"]
    assert cli.main([*args, "--report", str(rep), "--counterexample", str(ce)]) == 1
    doc = json.loads(rep.read_text())
    assert doc["kind"] == "verify" and doc["verdict"] == "NOT_EQUIVALENT"
    assert doc["original"] == str(model_path) and doc["other"] == str(other)
    assert doc["domain"]["boxes"] == 1 and doc["domain"]["lower"] == [[0.0] * 6]
    assert doc["mode"] == "linf" and doc["outputs"] is None and doc["tol_default"]
    assert doc["counterexample"]["written_to"] == str(ce)
    assert doc["lower_bound"] == doc["counterexample"]["difference"] > doc["tol"]
    x = Box.uniform(0, 1, 6).sample(20_000, np.random.default_rng(5))
    sampled = float(np.abs(f(x) - g(x)).max())
    assert doc["upper_bound"] is None or doc["upper_bound"] >= sampled - 1e-9
    assert doc["seconds"] >= 0
    # EQUIVALENT: the proven upper bound within tol, no counterexample
    assert cli.main([*args[:2], str(model_path), *args[3:], "--report", str(rep)]) == 0
    doc = json.loads(rep.read_text())
    assert doc["verdict"] == "EQUIVALENT" and doc["counterexample"] is None
    assert doc["upper_bound"] <= doc["tol"]
    # --outputs and --tol are recorded as given
    assert cli.main([*args, "--report", str(rep), "--outputs", "0,1", "--tol", "0.5"]) == 0
    doc = json.loads(rep.read_text())
    assert doc["outputs"] == [0, 1] and doc["tol"] == 0.5 and not doc["tol_default"]
    capsys.readouterr()


@pytest.mark.parametrize("clash", ["model", "other", "counterexample"])
def test_verify_report_never_overwrites_an_input_or_the_counterexample(
    model_path, tmp_path, clash, capsys
) -> None:
    other = tmp_path / "other.pt"
    save(load(model_path), other)
    ce = tmp_path / "ce.json"
    target = {"model": model_path, "other": other, "counterexample": ce}[clash]
    before = target.read_bytes() if target.exists() else None
    args = ["verify", str(model_path), str(other), "--box", "0,1", "--quiet"]
    code = cli.main([*args, "--counterexample", str(ce), "--report", str(target)])
    assert code == 2
    assert (target.read_bytes() if target.exists() else None) == before
    assert str(target) in capsys.readouterr().err.replace("\n", "")


def test_verify_computes_the_default_tolerance_once(model_path, tmp_path, monkeypatch) -> None:
    """Without ``--tol`` the default (a proven rounding bound: bounds on the whole network)
    was computed twice, once for the note on a large default and once for the proof; the
    note now reads the tolerance the verdict used."""
    calls = []
    real = exactcomp.api.checking.default_tolerance

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(exactcomp.api.checking, "default_tolerance", counted)
    monkeypatch.setattr(exactcomp.api, "default_tolerance", counted)
    rep = tmp_path / "v.json"
    args = ["verify", str(model_path), str(model_path), "--box", "0,1", "--quiet"]
    assert cli.main([*args, "--report", str(rep)]) == 0
    assert len(calls) == 1
    assert json.loads(rep.read_text())["tol"] == real(load(model_path), Box.uniform(0, 1, 6))


def test_verify_finds_a_missing_other_before_reading_the_original(
    model_path, tmp_path, monkeypatch, capsys
) -> None:
    """``verify BIG.onnx missing.onnx`` read BIG first: 62 s on cifar_base_kw (at load 6)
    before "model file 'missing.onnx' not found" (the sweep of issue 15). OTHER is read
    first now, so a missing one costs nothing."""
    import exactcomp.api

    read = []
    real = exactcomp.api.load

    def recorded(path, **kwargs):
        read.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(exactcomp.api, "load", recorded)
    missing = tmp_path / "missing.pt"
    assert cli.main(["verify", str(model_path), str(missing), "--box", "0,1", "--quiet"]) == 2
    assert read == [str(missing)] and "missing.pt" in capsys.readouterr().err


def test_an_unknown_against_a_smaller_other_advises_certificates(
    model_path, tmp_path, monkeypatch, capsys
) -> None:
    """``verify NET.onnx c.onnx`` of ACAS Xu 1_1 against its own exact compression, without
    certificates, is UNKNOWN in 10 s with the advice "--tol 700 would be proven" (outputs span
    0.009 there), while ``--certificates`` (compress's report) proves it in seconds (the
    sweep of issue 15): with OTHER smaller and no certificates, the advice names them."""
    from exactcomp.api import Verification

    small, rep = tmp_path / "small.pt", tmp_path / "r.json"
    args = ["--box", "0,1", "--quiet"]
    assert (
        cli.main(["compress", str(model_path), "-o", str(small), "--report", str(rep), *args]) == 0
    )
    capsys.readouterr()
    monkeypatch.setattr(
        exactcomp.api, "verify_with_certificates", lambda *a, **k: Verification(_unknown("", 700.0))
    )
    assert cli.main(["verify", str(model_path), str(small), *args]) == 3
    out = " ".join(capsys.readouterr().out.split())
    assert "--certificates" in out and "--report" in out
    assert cli.main(["verify", str(model_path), str(model_path), *args]) == 3  # same size
    assert "--certificates" not in capsys.readouterr().out
    assert cli.main(["verify", str(model_path), str(small), *args, "--certificates", str(rep)]) == 3
    assert "give that run's" not in capsys.readouterr().out
