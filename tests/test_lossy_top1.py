r"""``compress --tol-mode top1``: the predicted class proven unchanged on the domain (issue 15).

The tiny network ``TWO`` (2 inputs, 4 ReLUs, 2 outputs)::

    x0 --+--[ x0 + x1        ]r--+--> f0 = h0 + 0.3 h2 + 0.05 h3 + 0.5
         |--[ x0 - x1        ]r--|
    x1 --+--[ 0.5 x0 + 0.2 x1 + 0.1 ]r--+--> f1 = h1 - 0.2 h2 + 0.01 h3
            [ 0.01 x0 + 0.02 x1 ]r

On ``SMALL = [0.4, 0.6] x [0.1, 0.3]`` every ReLU is active and
``f0 - f1 = 2 x1 + 0.5 + 0.5 h2 + 0.04 h3 > 0``: the class is 0 everywhere, with exact margin
the grid minimum at the corner ``(0.4, 0.1)``. On ``WIDE = [-1, 1]^2`` the class changes
(``f1 > f0`` at ``(1, -1)``, ``f0 > f1`` at ``(0, 0)``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from exactcomp import api
from exactcomp.cli import main
from exactcomp.domain import Box
from exactcomp.errors import InvalidOptionError
from exactcomp.network import Network
from exactcomp.verify.margin import class_margin

TWO = Network.from_arrays(
    [
        np.array([[1.0, 1.0], [1.0, -1.0], [0.5, 0.2], [0.01, 0.02]]),
        np.array([[1.0, 0.0, 0.3, 0.05], [0.0, 1.0, -0.2, 0.01]]),
    ],
    [np.array([0.0, 0.0, 0.1, 0.0]), np.array([0.5, 0.0])],
)
SMALL = Box(np.array([0.4, 0.1]), np.array([0.6, 0.3]))
WIDE = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _grid(box: Box, n: int = 201) -> np.ndarray:
    a, b = (np.linspace(box.lower[i], box.upper[i], n) for i in range(2))
    return np.stack(np.meshgrid(a, b), axis=-1).reshape(-1, 2)


def test_margin_is_proven_below_the_exact_margin():
    y = TWO.forward(_grid(SMALL))
    exact = float((y[:, 0] - y[:, 1]).min())
    got = class_margin(TWO, SMALL, seconds=5.0)
    assert got.label == 0 and 0 < got.margin <= exact + 1e-9
    assert got.margin >= exact - 1e-6  # all ReLUs stable: the bound is exact up to padding
    assert class_margin(TWO, SMALL, rule="argmin").label == 1
    assert not class_margin(TWO, WIDE, seconds=5.0).proven


def test_top1_compression_keeps_the_class_on_a_grid():
    res = api.compress(TWO, [SMALL], tol_mode="top1", time_limit=20.0)
    rep = res.report
    x = _grid(SMALL)
    assert (res.network.forward(x).argmax(axis=1) == TWO.forward(x).argmax(axis=1)).all()
    y = TWO.forward(x)
    assert rep["tol_mode"] == "top1" and rep["classes"] == [0]
    assert 0 < rep["margin_proven_min"] <= float((y[:, 0] - y[:, 1]).min()) + 1e-9
    assert rep["tol"] < rep["margin_proven_min"] / 2
    assert rep["proven_max_abs_diff"] <= rep["tol"] and rep["top1_proven"] is True
    assert rep["parameters_after"] < rep["parameters_before"]  # a tolerance ~0.3 buys something


def test_user_tol_caps_the_top1_tolerance():
    res = api.compress_lossy(TWO, [SMALL], 1e-3, tol_mode="top1", time_limit=20.0)
    assert res.report["tol"] == 1e-3 and res.report["tol_requested"] == 1e-3
    assert res.report["top1_proven"] is True


def test_top1_on_a_box_where_the_class_changes_is_refused():
    with pytest.raises(InvalidOptionError, match="not proven constant on box 0"):
        api.compress_lossy(TWO, [WIDE], None, tol_mode="top1")
    with pytest.raises(InvalidOptionError, match="--tol-mode must be"):
        api.compress_lossy(TWO, [SMALL], 0.1, tol_mode="top5")


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "two.onnx"
    api.save(TWO, path)
    return path


@pytest.fixture
def small_box(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"lower": SMALL.lower.tolist(), "upper": SMALL.upper.tolist()}))
    return path


def test_cli_top1_writes_the_claim(tmp_path, model, small_box, capsys):
    out, rep = tmp_path / "c.onnx", tmp_path / "c.json"
    argv = ["compress", model, "--box-file", small_box, "--tol-mode", "top1", "-o", out]
    assert main([str(a) for a in [*argv, "--report", rep]]) == 0
    doc = json.loads(rep.read_text())
    assert doc["top1_proven"] is True and doc["margin_proven_min"] > 0
    assert "class proven unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--box", "-1,1", "--tol-mode", "top1"], "not proven constant on box 0"),
        (["--box", "0,1", "--tol-mode", "top5"], "--tol-mode"),
    ],
)
def test_cli_top1_refusals_are_one_line_exit_2_no_file(tmp_path, model, capsys, extra, needle):
    out = tmp_path / "c.onnx"
    assert main(["compress", str(model), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not out.exists()


def _random_net(seed: int = 4) -> Network:
    """A seeded ``2-8r-8r-2`` network whose class is 0 on all of ``WIDE`` (grid margin 1.10)
    with unstable ReLUs: the LP margin is negative, the stability engine proves 0.5 / 0.7 /
    0.85 of the sampled one."""
    rng = np.random.default_rng(seed)
    widths = (2, 8, 8, 2)
    ws = [rng.normal(size=(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return Network.from_arrays(ws, [rng.normal(size=b) * 0.3 for b in widths[1:]])


def test_the_engine_proves_a_margin_the_lp_cannot():
    net = _random_net()
    y = net.forward(_grid(WIDE))
    exact = float((y[:, 0] - y[:, 1]).min())
    assert not class_margin(net, WIDE, seconds=2.0).proven
    got = class_margin(net, WIDE, seconds=2.0, milp_seconds=20.0)
    assert got.label == 0 and 0.5 * exact < got.margin <= exact
    res = api.compress_lossy(net, [WIDE], None, tol_mode="top1", time_limit=20.0)
    x = _grid(WIDE)
    assert (res.network.forward(x).argmax(axis=1) == 0).all()
    assert res.report["top1_proven"] is True
    assert res.report["margin_proven_min"] <= exact


def test_quantize_top1_keeps_the_class_on_a_grid(tmp_path, model, small_box):
    res = api.quantize(TWO, [SMALL], tol_mode="top1")
    x = _grid(SMALL)
    assert (res.network.forward(x).argmax(axis=1) == 0).all()
    assert (
        res.report["top1_proven"] is True
        and res.report["tol"] < res.report["margin_proven_min"] / 2
    )
    out = tmp_path / "q.onnx"
    argv = ["quantize", model, "--box-file", small_box, "--tol-mode", "top1", "-o", out]
    assert main([str(a) for a in argv]) == 0 and out.exists()
