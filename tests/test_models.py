"""The shipped digits models load, match their records, and the training script is
deterministic and caches by configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exactcomp.bounds.interval import interval_bounds
from exactcomp.domain import Box
from exactcomp.io import load
from models import train

RECORDS = json.loads((train.MODELS_DIR / "models.json").read_text())["models"]


def test_the_shipped_set_is_recorded() -> None:
    assert sorted(r["l1"] for r in RECORDS) == sorted(train.SHIPPED_L1)
    assert all(r["architecture"] == "64-100-100-10" and r["seed"] == 0 for r in RECORDS)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["file"])
def test_shipped_model_matches_its_record(record: dict) -> None:
    path = train.MODELS_DIR / record["file"]
    assert path == train.cache_path(record["hidden"], record["l1"], record["seed"])
    net = load(path)
    assert net.describe() == "64-100r-100r-10" and net.dtype == "float32"

    x_te, y_te = train.load_split("test")
    assert len(y_te) == record["n_test"]
    module = train.build_mlp(record["hidden"])
    module.load_state_dict(torch.load(path, weights_only=True))
    assert round(train.accuracy(module.eval(), x_te, y_te), 6) == record["test_accuracy"]
    # The float64 IR agrees with the float32 module (at most a near-tie may flip).
    acc64 = float(np.mean(np.argmax(net.forward(x_te), axis=1) == y_te))
    assert abs(acc64 - record["test_accuracy"]) <= 1 / len(y_te) + 1e-9
    assert record["test_accuracy"] >= 0.90
    assert record["interval_stable_per_layer"] == train.interval_stability(path)


def test_l1_makes_neurons_stable() -> None:
    """Interval bounds alone already prove a good share of l1 = 5e-4 neurons stable."""
    box = Box(np.zeros(64), np.ones(64))

    def stable_share(l1: float) -> float:
        net = load(train.cache_path((100, 100), l1, 0))
        bounds = interval_bounds(net, box)
        stable = sum(int(((lo >= 0) | (hi <= 0)).sum()) for lo, hi in bounds[:-1])
        return stable / net.num_neurons

    assert stable_share(5e-4) >= 0.25
    assert stable_share(5e-4) > stable_share(1e-4) > stable_share(0.0)


def test_split_is_fixed_and_scaled() -> None:
    x_tr, y_tr = train.load_split("train")
    x_te, y_te = train.load_split("test")
    assert x_tr.shape == (1347, 64) and x_te.shape == (450, 64)
    assert x_tr.dtype == np.float32 and 0 <= x_tr.min() and x_tr.max() <= 1
    assert set(np.unique(y_te)) == set(range(10))
    np.testing.assert_array_equal(train.load_split("test")[0], x_te)
    with pytest.raises(ValueError):
        train.load_split("validation")


def test_training_is_deterministic_and_leaves_torch_settings_alone() -> None:
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    a, acc_a = train.train_mlp(hidden=(8,), l1=1e-3, seed=4, epochs=1)
    b, acc_b = train.train_mlp(hidden=(8,), l1=1e-3, seed=4, epochs=1)
    c, _ = train.train_mlp(hidden=(8,), l1=1e-3, seed=5, epochs=1)
    assert acc_a == acc_b
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a[0].weight, c[0].weight)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_checkpoint_is_trained_once_then_cached(tmp_path: Path, monkeypatch) -> None:
    kwargs = {"hidden": (6,), "l1": 1e-3, "seed": 1, "directory": tmp_path, "epochs": 1}
    expected = tmp_path / "digits_64-6-10_l1-1e-03_s1_e1.pt"
    assert train.cache_path(**kwargs) == expected and not expected.exists()
    path = train.checkpoint_path(**kwargs)
    assert path == expected and load(path).describe() == "64-6r-10"

    def no_training(*args, **kw):
        raise AssertionError("a cached checkpoint must not be retrained")

    monkeypatch.setattr(train, "train_mlp", no_training)
    assert train.checkpoint_path(**kwargs) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [expected.name]


def test_names_encode_the_configuration() -> None:
    cfg = train.TrainConfig((100, 100), 5e-4, 0)
    assert cfg.name == "digits_64-100-100-10_l1-5e-04_s0"
    assert cfg.command() == "python -m models.train --hidden 100 100 --l1 0.0005 --seed 0"
    other = train.TrainConfig((50, 50, 50), 1e-3, 2, lr=1e-3, batch_size=64)
    assert other.name == "digits_64-50-50-50-10_l1-1e-03_s2_lr0.001_b64"
    with pytest.raises(ValueError):
        train.TrainConfig((0,), 1e-3, 0)
