"""``python -m benchmarks.cifar`` makes the CIFAR-10-sized network of RESULTS.md: the shape of
``cifar_base_kw`` (3,172 ReLUs, 105,966 parameters) read as convolutions, equal to onnxruntime
at the box's lowest and highest corners and three random vertices; the same seed gives the same file."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import cifar
from exactcomp.conv import ConvSpec
from exactcomp.domain import read_box_file
from exactcomp.io import load


def test_cifar_network_and_box(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model, box_path = cifar.write(tmp_path)
    net = load(str(model))
    box = read_box_file(box_path)
    assert net.describe() == "3072-2048r-1024r-100r-10"
    assert net.num_parameters == 105_966
    assert [type(la.structure) for la in net.layers[:2]] == [ConvSpec, ConvSpec]
    assert np.all(box.lower >= 0.0) and np.all(box.upper <= 1.0)
    assert np.all(box.upper - box.lower <= 2 * cifar.EPS + 1e-12)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, 2, size=(3, box.dim)).astype(bool)
    xs = np.vstack([box.lower, box.upper, np.where(pick, box.upper, box.lower)])
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for x in xs:
        got = sess.run(None, {"x": x.astype(np.float32).reshape(1, *cifar.SHAPE)})[0][0]
        np.testing.assert_allclose(net(x), got, rtol=1e-4, atol=1e-4)
    again, _ = cifar.write(tmp_path / "again")
    assert again.read_bytes() == model.read_bytes()
