"""The real VNN-COMP 2021 ``oval21`` network ``cifar_base_kw`` (trained; issue 19, target 2).

Read from ``models/real/conv`` as two convolutions and two dense layers::

    x (3 x 32 x 32) -> Conv 8 x (4x4, stride 2, pad 1) -> Relu -> Conv 16 x (4x4/2/1) -> Relu
    -> Flatten -> Gemm 1024 -> 100 -> Relu -> Gemm 100 -> 10

Ground truth: onnxruntime on the original file at the lowest and highest corners of a VNN-LIB
robustness box, face points and random vertices. No analysis runs here (that is the benchmark's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exactcomp.conv import ConvSpec
from exactcomp.io import load
from exactcomp.io.onnx_check import probe_points
from exactcomp.io.vnnlib import read_vnnlib

REAL = Path(__file__).resolve().parents[1] / "models" / "real" / "conv"
PROP = "cifar_base_kw-img4549-eps0.00392156862745098"


def test_cifar_base_kw_reads_as_convolutions_equal_to_onnxruntime() -> None:
    ort = pytest.importorskip("onnxruntime")
    path = REAL / "cifar_base_kw.onnx"
    net = load(str(path))
    assert net.describe() == "3072-2048r-1024r-100r-10"
    assert net.num_parameters == 8 * 48 + 8 + 16 * 128 + 16 + 100 * 1024 + 100 + 10 * 100 + 10
    assert [type(la.structure) for la in net.layers[:2]] == [ConvSpec, ConvSpec]
    prop = read_vnnlib(REAL / f"{PROP}.vnnlib", 3072)
    (box,) = prop.boxes
    # radius 1/255 in pixels, divided by the normalisation std 0.225 (clipped at the image range)
    assert np.all(box.upper - box.lower <= 2 * 0.00392156862745098 / 0.225 + 1e-6)
    x = probe_points(box, 3, np.random.default_rng(0))  # lo, hi, random corners, faces, ...
    x = x[np.unique(np.r_[0:4, np.linspace(0, len(x) - 1, 12).astype(int)])]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    want = np.concatenate(
        [sess.run(None, {name: r.reshape(1, 3, 32, 32).astype(np.float32)})[0] for r in x]
    )
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-4, atol=1e-4)
    # the property's image is classified as its label (output 1 beats the other nine)
    centre = ((box.lower + box.upper) / 2).reshape(1, -1)
    assert int(np.argmax(net.forward(centre)[0])) == 1
