"""Bad input through the CLI: a one-line message naming the problem, exit code 2, no output file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from exactcomp.cli import main


def _mlp_state(n_in: int = 3, width: int = 4, n_out: int = 2) -> dict:
    torch.manual_seed(0)
    seq = torch.nn.Sequential(
        torch.nn.Linear(n_in, width), torch.nn.ReLU(), torch.nn.Linear(width, n_out)
    )
    return seq.state_dict()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.save(_mlp_state(), path)
    return path


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _assert_clear_error(capsys, argv, needle: str, out: Path | None) -> None:
    code, err = _run(capsys, argv)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert needle.lower() in lines[0].lower(), lines[0]
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}*")), "a temporary file was left behind"


def test_missing_file(tmp_path, capsys) -> None:
    out = tmp_path / "o.pt"
    _assert_clear_error(
        capsys, ["compress", tmp_path / "nope.pt", "--box", "0,1", "-o", out], "not found", out
    )


def test_not_a_checkpoint(tmp_path, capsys) -> None:
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"this is not a checkpoint at all")
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", bad, "--box", "0,1", "-o", out], "checkpoint", out)


def test_pickle_without_trust(tmp_path, capsys) -> None:
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2)), pickled)
    out = tmp_path / "o.pt"
    _assert_clear_error(
        capsys, ["compress", pickled, "--box", "0,1", "-o", out], "--trust-pickle", out
    )


def test_unsupported_layer_is_named(tmp_path, capsys) -> None:
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.GELU()), pickled)
    out = tmp_path / "o.pt"
    _assert_clear_error(
        capsys, ["compress", pickled, "--trust-pickle", "--box", "0,1", "-o", out], "GELU", out
    )


def test_nan_weights(tmp_path, capsys) -> None:
    state = _mlp_state()
    state["0.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", path, "--box", "0,1", "-o", out], "NaN", out)


def test_mismatched_layer_sizes(tmp_path, capsys) -> None:
    state = _mlp_state()
    state["2.weight"] = torch.zeros(2, 7)
    path = tmp_path / "mismatch.pt"
    torch.save(state, path)
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", path, "--box", "0,1", "-o", out], "inputs", out)


def test_box_of_wrong_length(model, tmp_path, capsys) -> None:
    bf = tmp_path / "box.json"
    bf.write_text(json.dumps({"lower": [0, 0], "upper": [1, 1]}))
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", model, "--box-file", bf, "-o", out], "3 inputs", out)


@pytest.mark.parametrize(
    ("box", "needle"), [("1,0", "inverted"), ("0,nan", "non-finite"), ("0", "LO,HI")]
)
def test_bad_box(model, tmp_path, capsys, box, needle) -> None:
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", model, f"--box={box}", "-o", out], needle, out)


def test_empty_box_file(model, tmp_path, capsys) -> None:
    bf = tmp_path / "box.json"
    bf.write_text(json.dumps({"lower": [], "upper": []}))
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", model, "--box-file", bf, "-o", out], "empty", out)


def test_no_domain_given(model, tmp_path, capsys) -> None:
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", model, "-o", out], "domain", out)


def test_vnnlib_without_input_bounds(model, tmp_path, capsys) -> None:
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= Y_0 1.0))\n")
    out = tmp_path / "o.pt"
    _assert_clear_error(capsys, ["compress", model, "--vnnlib", spec, "-o", out], "X_0", out)


def test_output_equal_to_input(model, capsys) -> None:
    before = model.read_bytes()
    _assert_clear_error(capsys, ["compress", model, "--box", "0,1", "-o", model], "input", None)
    assert model.read_bytes() == before


def test_output_directory_missing(model, tmp_path, capsys) -> None:
    out = tmp_path / "no" / "such" / "dir" / "o.pt"
    _assert_clear_error(capsys, ["compress", model, "--box", "0,1", "-o", out], "director", None)
    assert not out.exists()


def test_output_directory_not_writable(model, capsys) -> None:
    out = Path("/proc/exactcomp-test-output.pt")  # not writable, even for root
    _assert_clear_error(capsys, ["compress", model, "--box", "0,1", "-o", out], "writ", None)


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_time_limit_not_positive(model, tmp_path, capsys, limit) -> None:
    out = tmp_path / "o.pt"
    _assert_clear_error(
        capsys,
        ["compress", model, "--box", "0,1", "-o", out, f"--time-limit={limit}"],
        "time-limit",
        out,
    )


def test_verify_wrong_input_size(model, tmp_path, capsys) -> None:
    other = tmp_path / "other.pt"
    torch.save(_mlp_state(n_in=5), other)
    _assert_clear_error(capsys, ["verify", model, other, "--box", "0,1"], "input", None)


def test_unknown_option_is_one_line(model, capsys) -> None:
    code, err = _run(capsys, ["compress", model, "--frobnicate"])
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_data_file_missing(model, tmp_path, capsys) -> None:
    out = tmp_path / "o.pt"
    _assert_clear_error(
        capsys,
        ["compress", model, "--box", "0,1", "-o", out, "--data", tmp_path / "x.npy"],
        "not found",
        out,
    )


def test_unknown_output_suffix_is_refused_before_the_analysis(model, tmp_path, capsys, monkeypatch):
    """``-o x.bin`` used to fail only after the whole analysis (issue 18, item 10)."""
    import exactcomp.api.checking

    def no_analysis(*args, **kwargs):
        raise AssertionError("the analysis ran before the output path was checked")

    monkeypatch.setattr(exactcomp.api.checking, "compress", no_analysis)
    out = tmp_path / "x.bin"
    argv = ["compress", model, "--box", "0,1", "-o", out]
    _assert_clear_error(capsys, argv, "unknown file type '.bin'", out)


@pytest.mark.parametrize("command", ["compress", "stability", "quantize"])
def test_out_of_memory_is_one_line_and_exit_2(model, tmp_path, capsys, monkeypatch, command):
    """nn4sys' normal_100 ran the reader out of memory: a traceback and exit 1 (audit22)."""
    import exactcomp.io.torch_io

    def exhausted(*args, **kwargs):
        raise MemoryError("Out of memory in matmul")

    monkeypatch.setattr(exactcomp.io.torch_io, "load_torch", exhausted)
    out = tmp_path / "o.onnx"
    argv = [command, model, "--box", "0,1"] + (["--bits", "8"] if command == "quantize" else [])
    argv += [] if command == "stability" else ["-o", out]
    _assert_clear_error(capsys, argv, "out of memory (Out of memory in matmul)", out)


@pytest.mark.parametrize("check", ["0", "-5"])
def test_check_must_be_positive(model, tmp_path, capsys, check) -> None:
    out = tmp_path / "o.pt"
    argv = ["compress", model, "--box", "0,1", "-o", out, "--check", check]
    _assert_clear_error(capsys, argv, "--check must be > 0", out)


def test_ctrl_c_with_partial_says_interrupted_and_exits_130(model, tmp_path, capsys, monkeypatch):
    """Issue 18, item 10: with ``--partial`` a Ctrl-C wrote the network and exited 0 without
    saying it was interrupted. Now: written (still exact), "interrupted" said, exit 130."""
    from exactcomp.io import load
    from exactcomp.stability.layer import LayerRun

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(LayerRun, "classify", interrupted)
    out = tmp_path / "o.pt"
    code = main([str(a) for a in ["compress", model, "--box", "0,1", "-o", out, "--partial"]])
    captured = capsys.readouterr()
    assert code == 130
    assert "interrupted" in captured.err and "--partial" in captured.err
    assert out.exists() and load(out).describe() == load(model).describe()  # nothing proven


# ---------------------------------------------------------------- a new user's review (user14)
@pytest.mark.parametrize("command", ["compress", "stability", "quantize"])
def test_empty_data_file_is_refused(model, tmp_path, capsys, command) -> None:
    """``--data`` holding no samples ended in a numpy traceback (reshape of size 0)."""
    import numpy as np

    data = tmp_path / "x.npy"
    np.save(data, np.zeros((0, 3)))
    out = tmp_path / "o.pt"
    argv = [command, model, "--box", "0,1", "--data", data]
    argv += [] if command == "stability" else ["-o", out]
    argv += ["--bits", "8"] if command == "quantize" else []
    _assert_clear_error(capsys, argv, "no samples", out)


@pytest.mark.parametrize("command", ["quantize", "compress"])
def test_labels_not_matching_data_are_refused_before_the_work(
    model, tmp_path, capsys, monkeypatch, command
) -> None:
    """``--labels`` of another length than ``--data`` ended in a numpy traceback after the
    whole lossy search; ``--labels`` without ``--data`` was silently ignored."""
    import numpy as np

    import exactcomp.approx

    def no_work(*args, **kwargs):
        raise AssertionError("the lossy work ran before --data/--labels were checked")

    # both commands build their charger with approx.original_charger
    monkeypatch.setattr(exactcomp.approx, "Charger", no_work)
    data, labels = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(data, np.random.default_rng(0).random((10, 3)))
    np.save(labels, np.zeros(5, dtype=np.int64))
    out = tmp_path / "o.pt"
    lossy = ["--bits", "8"] if command == "quantize" else ["--tol", "0.5"]
    argv = [command, model, "--box", "0,1", "-o", out, *lossy]
    _assert_clear_error(capsys, argv + ["--data", data, "--labels", labels], "labels", out)
    _assert_clear_error(capsys, argv + ["--labels", labels], "--data", out)
    np.save(data, np.random.default_rng(0).random((10, 2)))
    _assert_clear_error(capsys, argv + ["--data", data], "3 features", out)


MOONS = Path(__file__).resolve().parents[1] / "models" / "moons_2-16-16-1.pt"
TINY_NNET = Path(__file__).resolve().parent / "data" / "tiny.nnet"


def test_regions_negative_seed_is_refused(capsys) -> None:
    """``regions --seed -1`` ended in numpy's traceback (a negative seed)."""
    _assert_clear_error(
        capsys, ["regions", MOONS, "--box=-1.5,2.5", "--seed", "-1"], "--seed", None
    )


def test_two_outputs_on_one_path_are_refused(model, tmp_path, capsys) -> None:
    """``regions --plot p.png --report p.png`` wrote the plot, then the report over it (exit 0);
    ``compress -o o.pt --report o.pt`` was refused as if o.pt were an input file."""
    png = tmp_path / "p.png"
    argv = ["regions", MOONS, "--box=-1.5,2.5", "--plot", png, "--report", png]
    _assert_clear_error(capsys, argv, "another output", png)
    out = tmp_path / "o.pt"
    argv = ["compress", model, "--box", "0,1", "-o", out, "--report", out]
    _assert_clear_error(capsys, argv, "another output", out)


def test_regions_reads_nnet_units(tmp_path, capsys) -> None:
    """``regions --nnet-units normalised`` was accepted and ignored: the box was read in raw
    units, so a box in normalised units was refused as outside the file's limits."""
    report = tmp_path / "r.json"
    argv = ["regions", TINY_NNET, "--box=-0.4,0.4", "--nnet-units", "normalised"]
    code, err = _run(capsys, argv + ["--report", report, "--quiet"])
    assert code == 0, err
    assert json.loads(report.read_text())["regions"] >= 1


def test_no_output_overwrites_a_domain_or_certificate_file(model, tmp_path, capsys) -> None:
    """``stability --vnnlib p.vnnlib --report p.vnnlib`` (or ``--box-file``) and
    ``verify --certificates r.json --counterexample r.json`` overwrote that input file."""
    import numpy as np

    spec = tmp_path / "p.vnnlib"
    spec.write_text(
        "".join(f"(declare-const X_{i} Real)\n" for i in range(3))
        + "".join(f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n" for i in range(3))
    )
    box = tmp_path / "box.npy"
    np.save(box, np.array([[0.0] * 3, [1.0] * 3]))
    small, cert = tmp_path / "small.pt", tmp_path / "r.json"
    assert main([str(a) for a in ["compress", model, "--box", "0,1", "-o", small]]) == 0
    assert main([str(a) for a in ["stability", model, "--box", "0,1", "--report", cert]]) == 0
    capsys.readouterr()
    cases = [
        (["stability", model, "--vnnlib", spec, "--report", spec], spec),
        (["stability", model, "--box-file", box, "--report", box], box),
        (
            [
                "verify",
                model,
                small,
                "--box",
                "0,2",
                "--certificates",
                cert,
                "--counterexample",
                cert,
            ],
            cert,
        ),
    ]
    for argv, victim in cases:
        before = victim.read_bytes()
        _assert_clear_error(capsys, argv, "input file", None)
        assert victim.read_bytes() == before, argv


@pytest.mark.parametrize(
    "option", [["--time-limit", "-1"], ["--jobs", "0"], ["--verify"], ["--dtype", "float64"]]
)
def test_compress_tol_refuses_the_exact_options_it_ignored(model, tmp_path, capsys, option):
    """``compress --tol`` went to the lossy search before any option of exact compression was
    read: ``--time-limit -1`` and ``--jobs 0`` passed, ``--verify`` and ``--dtype float64``
    had no effect, all silently (exit 0)."""
    out = tmp_path / "o.pt"
    argv = ["compress", model, "--box", "0,1", "-o", out, "--tol", "0.5", *option]
    _assert_clear_error(capsys, argv, option[0], out)


@pytest.mark.parametrize("lossy", [["quantize", "--bits", "8"], ["compress", "--tol", "0.5"]])
def test_lossy_commands_say_what_the_reader_assumed(model, tmp_path, capsys, lossy) -> None:
    """``quantize`` and ``compress --tol`` of a bare state_dict printed no ``note:`` line and
    their reports had no ``notes``, as ``compress`` and ``stability`` have (README)."""
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    argv = [lossy[0], model, "--box", "0,1", "-o", out, *lossy[1:], "--report", report]
    assert main([str(a) for a in argv]) == 0
    assert "note: architecture assumed from a state_dict" in capsys.readouterr().out
    assert "state_dict" in json.loads(report.read_text())["notes"][0]


@pytest.mark.parametrize("lossy", [["quantize", "--bits", "8"], ["compress", "--tol", "0.5"]])
def test_lossy_commands_show_progress(model, tmp_path, capsys, lossy) -> None:
    """``quantize`` and ``compress --tol`` printed nothing until the end (93 s for the README's
    ``compress --tol 1.0``); now each phase shows on the progress display, unless --quiet."""
    argv = [lossy[0], model, "--box", "0,1", "-o", tmp_path / "o.onnx", *lossy[1:]]
    assert main([str(a) for a in argv]) == 0
    assert "final proof" in capsys.readouterr().out
    assert main([str(a) for a in [*argv, "--quiet"]]) == 0
    assert "final proof" not in capsys.readouterr().out


def test_tables_fit_80_columns(tmp_path, capsys) -> None:
    """Piped output is 120 columns wide (so that plain lines do not wrap); the tables filled
    it: the regions table was 100 columns, compress's 104. They now fit 80, wrapping cells."""
    runs = [
        ["regions", MOONS, "--box=-1.5,2.5"],
        ["stability", MOONS, "--box=-1.5,2.5"],
        ["compress", MOONS, "--box=-1.5,2.5", "-o", tmp_path / "s.pt"],
        ["quantize", MOONS, "--box=-1.5,2.5", "-o", tmp_path / "q.onnx", "--bits", "8"],
    ]
    for argv in runs:
        assert main([str(a) for a in argv]) == 0
        out = capsys.readouterr().out
        lines = [ln for ln in out.splitlines() if not re.search(r"\d:\d\d:\d\d", ln)]
        table = [ln for ln in lines if any(c in ln for c in "│─━┃")]  # no progress bars
        assert table, out
        assert max(len(ln.rstrip()) for ln in table) <= 80, out


@pytest.mark.parametrize("option", ["--box-file", "--box-from-data", "--data"])
def test_npy_of_strings_is_refused(model, tmp_path, capsys, option) -> None:
    """A ``.npy`` of strings as the box or data ended in numpy's traceback (float conversion)."""
    import numpy as np

    bad = tmp_path / "s.npy"
    np.save(bad, np.array([["a", "b", "c"], ["d", "e", "f"]]))
    out = tmp_path / "o.pt"
    argv = ["compress", model, "-o", out, option, bad] + (
        [] if "box" in option else ["--box", "0,1"]
    )
    _assert_clear_error(capsys, argv, "must hold numbers", out)


def test_lossy_output_larger_than_the_input_is_said(model, tmp_path, capsys) -> None:
    """``quantize`` of the shipped marabou_conv_mp1.onnx wrote 543,233 bytes from 18,784 (the
    dense matrices of its convolutions) and only the byte counts said so; ``compress`` warns."""
    out, report = tmp_path / "q.pt", tmp_path / "r.json"
    argv = ["quantize", model, "--box", "0,1", "-o", out, "--bits", "8", "--report", report]
    assert main([str(a) for a in argv]) == 0
    assert out.stat().st_size > model.stat().st_size  # float32 weights and the layout, again
    assert "warning: the file written" in capsys.readouterr().out
    assert "larger than the input" in json.loads(report.read_text())["size_warning"]


def test_compress_output_larger_than_an_onnx_input_is_said(tmp_path, capsys) -> None:
    """The shipped test_tiny.onnx (MatMul/Add, 232 bytes) compressed to a 462-byte Gemm chain
    with no word (the sweep of issue 15); now the input itself is written (the same function
    in fewer bytes, RESULTS.md "rn23"), and with ``--dtype float64`` (a format asked for)
    the larger rewrite is written with a warning, in the report too."""
    tiny = Path(__file__).resolve().parents[1] / "models" / "real" / "small" / "test_tiny.onnx"
    out, report = tmp_path / "c.onnx", tmp_path / "r.json"
    argv = ["compress", tiny, "--box=-1,1", "-o", out, "--report", report, "--quiet"]
    assert main([str(a) for a in argv]) == 0
    assert out.read_bytes() == tiny.read_bytes()
    doc = json.loads(report.read_text())
    assert doc["written"]["bytes_rewritten"] > doc["written"]["bytes"] == 232
    assert "size_warning" not in doc and "the input itself" in capsys.readouterr().out
    assert main([str(a) for a in [*argv, "--dtype", "float64"]]) == 0
    assert out.stat().st_size > tiny.stat().st_size
    assert "warning: the file written" in capsys.readouterr().out
    assert "larger than the input" in json.loads(report.read_text())["size_warning"]


def test_quiet_leaves_out_the_vnnlib_note(model, tmp_path, capsys) -> None:
    """``--quiet`` prints only the final lines (README), but the note that a VNN-LIB file's
    output constraints are ignored was printed still; reader notes were already left out."""
    spec = tmp_path / "p.vnnlib"
    spec.write_text(
        "".join(
            f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n"
            for i in range(3)
        )
        + "(declare-const Y_0 Real)\n(assert (<= Y_0 1.0))\n"
    )
    argv = ["stability", model, "--vnnlib", spec]
    assert main([str(a) for a in argv]) == 0
    assert "output constraint" in capsys.readouterr().out
    assert main([str(a) for a in [*argv, "--quiet"]]) == 0
    out = capsys.readouterr().out
    assert "output constraint" not in out and "note:" not in out


def test_a_directory_as_report_path_suggests_no_checkpoint_name(model, tmp_path, capsys) -> None:
    """``--report DIR`` (or ``--plot``, ``--counterexample``) suggested 'DIR/small.pt'."""
    argv = ["compress", model, "--box", "0,1", "-o", tmp_path / "o.pt", "--report", tmp_path]
    _assert_clear_error(capsys, argv, "is a directory", None)
    argv = ["stability", model, "--box", "0,1", "--report", tmp_path]
    code, err = _run(capsys, argv)
    assert code == 2 and "small.pt" not in err and "a file name inside it" in err


def test_plot_is_written_atomically(tmp_path, capsys, monkeypatch) -> None:
    """``regions --plot`` saved the PNG straight to its path (matplotlib's ``savefig``): a
    failure or Ctrl-C midway left half a PNG. Now a temporary file, then the rename."""
    import matplotlib.figure

    def half_then_interrupt(self, fname, **kwargs):
        if isinstance(fname, (str, Path)):
            Path(fname).write_bytes(b"\x89PNG half")
        else:
            fname.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_then_interrupt)
    png = tmp_path / "p.png"
    code = main([str(a) for a in ["regions", MOONS, "--box=-1.5,2.5", "--plot", png, "--quiet"]])
    assert code == 130
    assert not png.exists() and not list(tmp_path.glob(".p.png*"))


def test_regions_quiet_prints_one_line(capsys) -> None:
    """``--quiet`` prints no table, only the final lines (README); ``regions --quiet`` printed
    its whole table. Now one line with the count and the bounds, as ``stability --quiet``."""
    assert main([str(a) for a in ["regions", MOONS, "--box=-1.5,2.5", "--quiet"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "│" not in lines[0], lines
    assert lines[0].startswith("166 regions (exact)") and "16,577" in lines[0]
