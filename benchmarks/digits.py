"""The digits model grid: configurations, cached checkpoints, and test-set accuracy.

Training lives in ``models/train.py`` (owned by the models script); this module only names
the configurations the benchmarks need and asks that script for each checkpoint, which it
trains once and caches in ``models/`` under a name that encodes the configuration. The
test split is taken from the same script so that "accuracy" means the same thing in the
benchmark tables and in the shipped models' records.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from exactcomp.network import Network

REPO_ROOT = Path(__file__).resolve().parent.parent
N_INPUTS, N_CLASSES = 64, 10


@dataclass(frozen=True)
class ModelConfig:
    """One digits MLP: hidden widths, l1 penalty and seed (all a checkpoint depends on).

    ``epochs`` is ``None`` for the training script's default; tests set a tiny value.
    """

    hidden: tuple[int, ...]
    l1: float
    seed: int
    epochs: int | None = None

    def training(self) -> dict[str, int]:
        """Keyword arguments for ``models.train`` beyond hidden/l1/seed."""
        return {} if self.epochs is None else {"epochs": self.epochs}

    @property
    def arch(self) -> str:
        return "-".join(str(w) for w in (N_INPUTS, *self.hidden, N_CLASSES))

    @property
    def label(self) -> str:
        return f"{self.arch} l1={self.l1:g} s{self.seed}"


L1_GRID = (0.0, 1e-4, 5e-4, 1e-3)
SHIPPED = tuple(ModelConfig((100, 100), l1, 0) for l1 in (0.0, 1e-4, 5e-4))


def table_grid(quick: bool) -> tuple[ModelConfig, ...]:
    """The ``table`` grid: widths 25/50/100 x 2 layers x l1 x 3 seeds, plus 3x100 and 2x200.

    ``quick`` keeps a handful of small models (width 25, two l1 values, one seed, plus one
    shipped 100x100 model) so the run takes minutes on two cores.
    """
    if quick:
        return (
            ModelConfig((25, 25), 0.0, 0),
            ModelConfig((25, 25), 5e-4, 0),
            ModelConfig((50, 50), 1e-3, 0),
            ModelConfig((100, 100), 5e-4, 0),
        )
    grid = [ModelConfig((w, w), l1, s) for w in (25, 50, 100) for l1 in L1_GRID for s in (0, 1, 2)]
    grid += [ModelConfig(h, l1, 0) for h in ((100, 100, 100), (200, 200)) for l1 in L1_GRID]
    return tuple(grid)


def scaling_grid(quick: bool) -> tuple[ModelConfig, ...]:
    """Width sweep at depth 2 and depth sweep at width 50, all at l1 = 5e-4, seed 0."""
    widths = (25, 50) if quick else (25, 50, 100, 200)
    depths = (1, 2) if quick else (1, 2, 3, 4)
    configs = {ModelConfig((w, w), 5e-4, 0) for w in widths}
    configs |= {ModelConfig((50,) * d, 5e-4, 0) for d in depths}
    return tuple(sorted(configs, key=lambda c: (len(c.hidden), c.hidden)))


def _train_module() -> ModuleType:
    """``models/train.py``, imported from the repository root (it is not installed)."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("models.train")


def checkpoint(cfg: ModelConfig, directory: Path | None = None) -> Path:
    """The path of ``cfg``'s cached checkpoint, training it first if absent.

    ``directory`` defaults to ``models/`` (the training script's cache).
    """
    train = _train_module()
    return Path(
        train.checkpoint_path(cfg.hidden, cfg.l1, cfg.seed, directory=directory, **cfg.training())
    )


def is_cached(cfg: ModelConfig, directory: Path | None = None) -> bool:
    """Whether ``cfg``'s checkpoint is already cached (no training needed)."""
    train = _train_module()
    path = train.cache_path(cfg.hidden, cfg.l1, cfg.seed, directory=directory, **cfg.training())
    return Path(path).is_file()


def test_set() -> tuple[np.ndarray, np.ndarray]:
    """The digits test inputs (scaled to [0, 1]) and labels, as split by ``models/train.py``."""
    x, y = _train_module().load_split("test")
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def train_inputs() -> np.ndarray:
    """The digits training inputs (for engines that seed their witness search with data)."""
    x, _ = _train_module().load_split("train")
    return np.asarray(x, dtype=np.float64)


def accuracy(net: Network, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Test accuracy of ``net`` (float64 forward pass) and its predicted labels."""
    pred = np.argmax(net.forward(x), axis=1)
    return float(np.mean(pred == y)), pred
