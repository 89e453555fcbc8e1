"""The dense real networks added for ``benchmarks real`` (issue 14) read exactly.

ACAS Xu 1_2, 2_1, 3_3 (VNN-COMP 2021 ``acasxu``, 6 x 50) and ERAN's ``mnist_relu_9_200``
(VNN-COMP 2021 ``eran``: ``Sub 0``/``Div 1``, 8 x 200 hidden ReLUs and a ReLU on the 10
outputs). Ground truth: onnxruntime on the original file at the corners, face points and centre
of the properties' boxes (``probe_points``), not only at random interior points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exactcomp.io import load
from exactcomp.io.onnx_check import probe_points
from exactcomp.io.vnnlib import read_vnnlib

REAL = Path(__file__).resolve().parents[1] / "models" / "real"
CASES = [
    *(
        (f"acasxu/ACASXU_run2a_{ij}_batch_2000.onnx", f"acasxu/prop_{p}.vnnlib")
        for ij in ("1_2", "2_1", "3_3")
        for p in (1, 4)
    ),
    ("eran/mnist_relu_9_200.onnx", "eran/mnist_spec_idx_1013_eps_0.01500.vnnlib"),
    ("eran/mnist_relu_9_200.onnx", "eran/mnist_spec_idx_186_eps_0.01500.vnnlib"),
]


@pytest.mark.parametrize(("model", "prop"), CASES)
def test_added_network_equals_onnxruntime_at_box_corners(model: str, prop: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    net = load(str(REAL / model))
    (box,) = read_vnnlib(REAL / prop, net.input_size).boxes
    x = probe_points(box, 4, np.random.default_rng(0))
    x = x[np.unique(np.r_[0:2, np.linspace(0, len(x) - 1, 24).astype(int)])]  # lo, hi, spread
    x = x.astype(np.float32)
    sess = ort.InferenceSession(str(REAL / model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    want = np.concatenate(
        [sess.run(None, {inp.name: r.reshape(shape)})[0].reshape(1, -1) for r in x]
    )
    np.testing.assert_allclose(net.forward(x.astype(np.float64)), want, rtol=1e-4, atol=1e-4)


def test_eran_9x200_classifies_its_properties_images_as_their_labels() -> None:
    """Each box's centre is classified as the label its property protects (9 and 2)."""
    net = load(str(REAL / "eran/mnist_relu_9_200.onnx"))
    assert net.describe() == "784" + "-200r" * 8 + "-10r" and net.num_neurons == 1610
    for prop, label in (("1013", 9), ("186", 2)):
        path = REAL / f"eran/mnist_spec_idx_{prop}_eps_0.01500.vnnlib"
        (box,) = read_vnnlib(path, 784).boxes
        assert np.all(box.upper - box.lower <= 0.03 + 1e-7)  # 8 decimals in the file
        centre = ((box.lower + box.upper) / 2).reshape(1, -1)
        assert int(np.argmax(net.forward(centre)[0])) == label
