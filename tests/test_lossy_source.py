"""The lossy commands never write a larger file of the input's function: with no lossy edit
(proven bound 0), a rewrite larger than the input of the same format is replaced by the input
itself, and the report says so (resnet_2b: ``compress --tol 0.05`` wrote 8.9 MB from 450 KB
for the same function, RESULTS.md "rn23").

Networks (one hidden ReLU layer)::

    test_tiny.onnx (MatMul/Add, 232 B):  x -> relu(w x + b) -> out     1 neuron, unstable
    tiny.pt (torch.save of a state_dict): 3 -> 4 ReLUs -> 2, every ReLU unstable on [-1,1]^3
                                          (rewritten: the file records its architecture)
    dead.onnx (written by exactcomp):     3 -> 4 ReLUs -> 2, neuron 0 stably inactive
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exactcomp import api
from exactcomp.cli import main
from exactcomp.io import write_source_instead
from exactcomp.lossy_result import LossyResult, least_bytes
from exactcomp.network import Layer, Network

TINY = Path(__file__).resolve().parents[1] / "models" / "real" / "small" / "test_tiny.onnx"


def _tiny_pt(path: Path) -> Path:
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save(seq.state_dict(), path)
    return path


def _run(argv: list) -> dict:
    report = Path(str(argv[argv.index("-o") + 1]) + ".json")
    assert main([str(a) for a in [*argv, "--report", report, "--quiet"]]) == 0
    return json.loads(report.read_text())


@pytest.mark.parametrize("command", [["compress", "--tol", "0.01"], ["quantize", "--tol", "0.01"]])
def test_no_lossy_edit_writes_the_onnx_input_itself(tmp_path, capsys, command) -> None:
    """test_tiny's one neuron is unstable and any edit costs more than 0.01: proven 0, and the
    Gemm chain written (462 B, 698 B quantised) was larger than the 232-byte input."""
    out = tmp_path / "t.onnx"
    doc = _run([command[0], TINY, "--box=-1,1", "-o", out, *command[1:]])
    assert doc["proven_max_abs_diff"] == 0
    assert out.read_bytes() == TINY.read_bytes()
    assert doc["bytes_before"] == doc["bytes_after"] == 232
    written = doc["written"]
    assert written["file"] == "source" and written["bytes"] == 232
    assert written["bytes_rewritten"] > 232
    assert doc["neurons_after"] == doc["neurons_before"] == 1
    assert doc["parameters_after"] == doc["parameters_before"]
    assert "size_warning" not in doc
    assert "the input itself is written" in capsys.readouterr().out
    np.testing.assert_array_equal(
        api.load(out).forward(np.eye(1)), api.load(TINY).forward(np.eye(1))
    )


def test_a_pt_is_rewritten_to_record_its_architecture(tmp_path) -> None:
    """A bare ``torch.save`` of a state_dict is smaller than the same network as exactcomp
    writes it, but the rewrite records the architecture the input's reading assumed: it is
    written, larger by that record, with the warning (no note read back)."""
    src, out = _tiny_pt(tmp_path / "tiny.pt"), tmp_path / "c.pt"
    doc = _run(["compress", src, "--box=-1,1", "-o", out, "--tol", "1e-9"])
    assert doc["proven_max_abs_diff"] == 0 and "written" not in doc
    assert doc["bytes_after"] == out.stat().st_size > src.stat().st_size
    assert "size_warning" in doc and "notes" not in api.load(out).meta


def test_a_lossy_edit_or_another_format_is_written_as_it_is(tmp_path, capsys) -> None:
    """Another suffix (a format change asked for): the rewrite is written, larger, with the
    warning. An 8-bit file larger than the float network ``quantize`` started from is not
    written: that network (here the input itself, claim 0) is (tests/test_float_candidate.py)."""
    out = tmp_path / "q.onnx"
    doc = _run(["quantize", TINY, "--box=-1,1", "-o", out, "--bits", "8"])
    assert doc["written_choice"]["written"] == "started from"
    assert (
        doc["written_choice"]["result_bytes"] > 232 and doc["written_choice"]["result_proven"] > 0
    )
    assert doc["proven_max_abs_diff"] == 0 and out.stat().st_size == doc["bytes_after"] <= 232
    assert "size_warning" not in doc
    capsys.readouterr()  # its note says the input was written; the .pt below must not
    out = tmp_path / "c.pt"
    doc = _run(["compress", TINY, "--box=-1,1", "-o", out, "--tol", "0.01"])
    assert doc["proven_max_abs_diff"] == 0 and "written" not in doc
    assert out.stat().st_size > 232 and "size_warning" in doc
    assert "the input itself" not in capsys.readouterr().out


def test_a_rewrite_no_larger_than_the_input_is_written(tmp_path) -> None:
    """The exact pass removes the dead neuron: the rewrite is smaller than the input (both
    written by exactcomp), so it is written, bound 0 and all."""
    w1 = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.5, 1.0]])
    b1 = np.array([-10.0, 0.1, 0.2, 0.3])  # neuron 0 <= -7 on [-1, 1]^3: dead
    w2 = np.array([[1.0, 2.0, -1.0, 0.5], [0.5, -1.0, 1.0, 2.0]])
    net = Network((Layer(w1, b1, True), Layer(w2, np.zeros(2), False)), dtype="float32")
    src, out = tmp_path / "dead.onnx", tmp_path / "c.onnx"
    api.save(net, src)
    doc = _run(["compress", src, "--box=-1,1", "-o", out, "--tol", "1e-9"])
    assert doc["proven_max_abs_diff"] == 0 and "written" not in doc
    assert doc["neurons_after"] == 3
    assert out.stat().st_size == doc["bytes_after"] < src.stat().st_size


def test_write_source_instead_only_replaces_a_larger_file_of_the_same_suffix(tmp_path) -> None:
    src = tmp_path / "a.onnx"
    src.write_bytes(b"x" * 10)
    big, small, other = tmp_path / "b.onnx", tmp_path / "c.onnx", tmp_path / "d.pt"
    big.write_bytes(b"y" * 11)
    small.write_bytes(b"y" * 10)
    other.write_bytes(b"y" * 11)
    assert write_source_instead(big, src) == 11 and big.read_bytes() == src.read_bytes()
    assert write_source_instead(small, src) is None and small.read_bytes() == b"y" * 10
    assert write_source_instead(other, src) is None and other.read_bytes() == b"y" * 11
    pt, pt2 = tmp_path / "a.pt", tmp_path / "b.pt"  # .pt files record their architecture
    pt.write_bytes(b"x" * 10)
    pt2.write_bytes(b"y" * 11)
    assert write_source_instead(pt2, pt) is None and pt2.read_bytes() == b"y" * 11
    assert write_source_instead(big, None) is None
    fresh = tmp_path / "e.onnx"  # a rewrite never written: its bytes at least 11, or 10
    assert write_source_instead(fresh, src, least=10) is None and not fresh.exists()
    assert write_source_instead(fresh, src, least=11) == 11 and fresh.read_bytes() == b"x" * 10


def test_least_bytes_counts_the_nonzero_weights_a_writer_stores() -> None:
    """A dense layer's nonzero entries (zeros may be stored sparsely), at the dtype's size."""
    w1 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    layers = (Layer(w1, np.ones(2), True), Layer(np.ones((1, 2)), np.zeros(1), False))
    assert least_bytes(Network(layers, dtype="float64")) == 4 * 8
    assert least_bytes(Network(layers, dtype="float32")) == 4 * 4


@pytest.mark.parametrize("unedited", [True, False])
def test_an_unedited_result_rounded_to_its_dtype_writes_the_input(tmp_path, unedited) -> None:
    """No lossy edit, but the exact pass's float64 folds rounded to float32 for writing, with
    a bound > 0 of that rounding (resnet_2b at load 2: 0.00047 for a 5.8 MB rewrite of a
    450 KB input): the input itself is written and claims 0. With an edit accepted (the
    network asked for), the rewrite is written, larger."""
    f = api.load(TINY)
    report = {"neurons_before": 1, "neurons_after": 1, "parameters_before": 2}
    report |= {"parameters_after": 2, "proven_max_abs_diff": 1e-6}
    result = LossyResult(f, f, None, 1e-6, 0.0, report, f, f, unedited)
    out = tmp_path / "u.onnx"
    result.save(out)
    assert (out.read_bytes() == TINY.read_bytes()) is unedited
    assert ("written" in report) is unedited
    assert report["proven_max_abs_diff"] == (0.0 if unedited else 1e-6)
    assert report["bytes_after"] == out.stat().st_size
