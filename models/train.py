"""Train small ReLU MLPs on scikit-learn's digits with an l1 penalty, deterministically.

Exact compression only finds something to remove when many neurons are stably inactive or
active over the input domain, and plain training leaves almost none: an l1 penalty on the
weights is what makes them appear (Serra et al., CPAIOR 2020). This script trains the models
the tests, the README and the benchmarks use, offline (``load_digits`` ships with
scikit-learn), on two CPU cores in seconds, and bit-for-bit the same for the same
configuration.

Data: the 1,797 8x8 digit images, pixels divided by 16 so that every input lies in [0, 1]
(the box ``[0, 1]^64`` then contains all real inputs), split once into 75% train / 25% test,
stratified, with ``SPLIT_SEED`` (the split does not change with the model's seed, so models of
different seeds are scored on the same test set).

Loss: mean cross-entropy + ``l1 * sum(|W|)`` over all weight matrices (not biases), minimised
with Adam on mini-batches.

Usage (from the repository root)::

    python -m models.train --hidden 100 100 --l1 5e-4 --seed 0   # one model (cached)
    python -m models.train --shipped                            # re-create the shipped set
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODELS_DIR = Path(__file__).resolve().parent
SPLIT_SEED = 0
TEST_FRACTION = 0.25
N_INPUTS, N_CLASSES = 64, 10

#: Training defaults; a checkpoint name mentions a setting only when it differs from these.
DEFAULT_EPOCHS = 60
DEFAULT_LR = 2e-3
DEFAULT_BATCH = 32

#: The models committed to the repository (64-100-100-10, seed 0).
SHIPPED_L1 = (0.0, 1e-4, 5e-4)
SHIPPED_HIDDEN = (100, 100)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a trained model depends on (the cache key)."""

    hidden: tuple[int, ...] = SHIPPED_HIDDEN
    l1: float = 5e-4
    seed: int = 0
    epochs: int = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    batch_size: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden widths must be positive integers, got {self.hidden}")
        if self.l1 < 0 or not math.isfinite(self.l1):
            raise ValueError(f"l1 must be a finite number >= 0, got {self.l1}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs, batch_size and lr must be positive")

    @property
    def arch(self) -> str:
        return "-".join(str(w) for w in (N_INPUTS, *self.hidden, N_CLASSES))

    @property
    def name(self) -> str:
        """File stem, e.g. ``digits_64-100-100-10_l1-5e-04_s0``."""
        stem = f"digits_{self.arch}_l1-{self.l1:.0e}_s{self.seed}"
        if self.epochs != DEFAULT_EPOCHS:
            stem += f"_e{self.epochs}"
        if self.lr != DEFAULT_LR:
            stem += f"_lr{self.lr:g}"
        if self.batch_size != DEFAULT_BATCH:
            stem += f"_b{self.batch_size}"
        return stem

    def command(self) -> str:
        """The command line that trains this model."""
        cmd = f"python -m models.train --hidden {' '.join(map(str, self.hidden))}"
        cmd += f" --l1 {self.l1:g} --seed {self.seed}"
        if self.epochs != DEFAULT_EPOCHS:
            cmd += f" --epochs {self.epochs}"
        if self.lr != DEFAULT_LR:
            cmd += f" --lr {self.lr:g}"
        if self.batch_size != DEFAULT_BATCH:
            cmd += f" --batch-size {self.batch_size}"
        return cmd


# --------------------------------------------------------------------------- data
def load_split(which: str) -> tuple[np.ndarray, np.ndarray]:
    """The digits ``"train"`` or ``"test"`` split: inputs in [0, 1] (float32) and labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if which not in ("train", "test"):
        raise ValueError(f"which must be 'train' or 'test', got {which!r}")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return (x_tr, y_tr) if which == "train" else (x_te, y_te)


# --------------------------------------------------------------------------- training
@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded, single-threaded, deterministic torch; the caller's settings are restored after."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.set_num_threads(threads)


def build_mlp(hidden: Sequence[int]) -> nn.Sequential:
    """``Linear, ReLU, ..., Linear`` for 64 inputs and 10 classes (state_dict keys 0, 2, 4...)."""
    widths = [N_INPUTS, *hidden, N_CLASSES]
    modules: list[nn.Module] = []
    for i in range(len(widths) - 1):
        modules.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``x`` whose arg-max output is the label ``y``."""
    with torch.no_grad():
        pred = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).argmax(1)
    return float((pred.numpy() == y).mean())


def train_mlp(
    hidden: Sequence[int] = SHIPPED_HIDDEN,
    l1: float = 5e-4,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[nn.Sequential, float]:
    """Train one digits MLP; returns the model (float32, eval mode) and its test accuracy.

    The result depends only on the arguments: the initialisation and the batch order come
    from ``seed``, and torch runs single-threaded with deterministic algorithms inside.
    """
    cfg = TrainConfig(tuple(hidden), l1, seed, epochs, lr, batch_size)
    x_tr, y_tr = load_split("train")
    x_te, y_te = load_split("test")
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    with _deterministic(cfg.seed):
        model = build_mlp(cfg.hidden)
        weights = [m.weight for m in model if isinstance(m, nn.Linear)]
        optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        loss_fn = nn.CrossEntropyLoss()
        order = torch.Generator().manual_seed(cfg.seed)
        model.train()
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(xt), generator=order)
            for start in range(0, len(xt), cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                loss = loss_fn(model(xt[idx]), yt[idx])
                if cfg.l1 > 0:
                    loss = loss + cfg.l1 * sum(w.abs().sum() for w in weights)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        model.eval()
    return model, accuracy(model, x_te, y_te)


# --------------------------------------------------------------------------- the cache
def cache_path(
    hidden: Sequence[int] = SHIPPED_HIDDEN,
    l1: float = 5e-4,
    seed: int = 0,
    directory: Path | None = None,
    **training: int | float,
) -> Path:
    """Where the checkpoint of this configuration lives (it may not exist yet)."""
    cfg = TrainConfig(tuple(hidden), l1, seed, **training)  # type: ignore[arg-type]
    return (directory or MODELS_DIR) / f"{cfg.name}.pt"


def checkpoint_path(
    hidden: Sequence[int] = SHIPPED_HIDDEN,
    l1: float = 5e-4,
    seed: int = 0,
    directory: Path | None = None,
    **training: int | float,
) -> Path:
    """The checkpoint (a float32 ``state_dict``) of this configuration, trained only if absent."""
    path = cache_path(hidden, l1, seed, directory, **training)
    if not path.is_file():
        cfg = TrainConfig(tuple(hidden), l1, seed, **training)  # type: ignore[arg-type]
        model, _ = train_mlp(**asdict(cfg))
        save_state_dict(model, path)
    return path


def save_state_dict(model: nn.Module, path: Path) -> None:
    """Write ``model.state_dict()`` atomically (no half-written checkpoint in the cache), with
    the ReLU pattern recorded the way :func:`exactcomp.io.torch_io.save_torch` records it, so
    exactcomp reads the architecture instead of assuming it."""
    from exactcomp.io.atomic import atomic_open
    from exactcomp.io.torch_state import METADATA_KEY

    state = model.state_dict()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    state._metadata[METADATA_KEY] = {"relu": [True] * (len(linears) - 1) + [False]}
    with atomic_open(path) as handle:
        torch.save(state, handle)


def train_shipped(directory: Path | None = None) -> list[dict[str, object]]:
    """(Re-)train the shipped models, write them and their records (models.json, MODELS.md)."""
    directory = directory or MODELS_DIR
    records = []
    for l1 in SHIPPED_L1:
        cfg = TrainConfig(SHIPPED_HIDDEN, l1, 0)
        model, test_acc = train_mlp(**asdict(cfg))
        path = directory / f"{cfg.name}.pt"
        save_state_dict(model, path)
        x_tr, y_tr = load_split("train")
        records.append(
            {
                "file": path.name,
                "architecture": cfg.arch,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
                "dtype": "float32",
                "test_accuracy": round(test_acc, 6),
                "train_accuracy": round(accuracy(model, x_tr, y_tr), 6),
                "n_test": int(len(load_split("test")[1])),
                "command": cfg.command(),
                "interval_stable_per_layer": interval_stability(path),
            }
        )
        print(f"{path.name}: test accuracy {test_acc:.4f}", file=sys.stderr)
    write_records(records, directory)
    return records


def interval_stability(path: Path) -> list[dict[str, int]]:
    """Per hidden layer, the neurons that interval bounds alone prove stable over [0, 1]^64.

    A cheap lower bound on what the stability engine finds; recorded to show what l1 buys.
    """
    from exactcomp.bounds.interval import interval_bounds
    from exactcomp.domain import Box
    from exactcomp.io import load

    net = load(path)
    bounds = interval_bounds(net, Box(np.zeros(N_INPUTS), np.ones(N_INPUTS)))
    return [
        {
            "width": int(net.layers[k].out_features),
            "inactive": int((bounds[k][1] <= 0).sum()),
            "active": int((bounds[k][0] >= 0).sum()),
        }
        for k in net.relu_layers
    ]


def write_records(records: list[dict[str, object]], directory: Path) -> None:
    """Write ``models.json`` (machine-readable) and ``MODELS.md`` (the same, for people)."""
    from exactcomp.io.atomic import atomic_write

    text = json.dumps({"split": _split_facts(), "models": records}, indent=2) + "\n"
    atomic_write(directory / "models.json", lambda f: f.write(text.encode()))
    rows = "\n".join(
        f"| `{r['file']}` | {r['architecture']} | {r['l1']:g} | {r['seed']} | "
        f"{100 * float(r['test_accuracy']):.2f}% | {100 * float(r['train_accuracy']):.2f}% | "
        f"{_stable_cell(r)} | `{r['command']}` |"
        for r in records
    )
    md = _MODELS_MD.format(rows=rows, **_split_facts())
    atomic_write(directory / "MODELS.md", lambda f: f.write(md.encode()))


def _stable_cell(record: dict[str, object]) -> str:
    layers = record.get("interval_stable_per_layer") or []
    return " / ".join(f"{la['inactive']} off, {la['active']} on" for la in layers)  # type: ignore[index,union-attr]


def _split_facts() -> dict[str, object]:
    return {
        "dataset": "sklearn.datasets.load_digits, pixels / 16 (inputs in [0, 1])",
        "test_fraction": TEST_FRACTION,
        "split_seed": SPLIT_SEED,
        "n_train": int(len(load_split("train")[1])),
        "n_test": int(len(load_split("test")[1])),
        "epochs": DEFAULT_EPOCHS,
        "lr": DEFAULT_LR,
        "batch_size": DEFAULT_BATCH,
    }


_MODELS_MD = """# Shipped models

Small ReLU MLPs trained on scikit-learn's `load_digits` by `models/train.py`, committed so that
the quick start, the tests and the benchmarks need no training. Each file is a float32
`state_dict` of `nn.Sequential(Linear(64, 100), ReLU(), Linear(100, 100), ReLU(), Linear(100, 10))`
(keys `0.weight`, `0.bias`, `2.weight`, `2.bias`, `4.weight`, `4.bias`).

| file | architecture | l1 | seed | test accuracy | train accuracy | proven stable by interval bounds (layer 1 / layer 2) | command |
|---|---|---|---|---|---|---|---|
{rows}

Data: {dataset}; a stratified split with `test_size={test_fraction}` and
`random_state={split_seed}` ({n_train} train, {n_test} test images), the same for every seed.
Training: Adam (lr {lr}), batch {batch_size}, {epochs} epochs, loss = mean cross-entropy +
l1 * sum |W| over all weight matrices; seeded, single-threaded, deterministic algorithms.
The l1 penalty is what makes exact compression possible: with l1 = 0 almost no neuron is
stable over `[0, 1]^64`. The "proven stable" column counts the hidden neurons (of 100 per
layer) that plain interval bounds already prove stably inactive ("off") or stably active ("on")
over `[0, 1]^64`; the MILP-based stability engine proves more.

Re-create all of them (and this file and `models.json`) with `python -m models.train --shipped`;
train any other configuration with e.g. `python -m models.train --hidden 50 50 --l1 1e-3 --seed 2`
(cached in `models/` under a name that encodes the configuration). `tests/test_models.py` checks
that each file loads and that its recorded test accuracy matches a recomputation.
"""


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.train", description="Train l1-regularised digits MLPs."
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=list(SHIPPED_HIDDEN))
    parser.add_argument("--l1", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--directory", type=Path, default=MODELS_DIR, help="cache directory")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--shipped", action="store_true", help="re-create the shipped models")
    args = parser.parse_args(argv)
    if args.shipped:
        train_shipped(args.directory)
        return 0
    training = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
    path = cache_path(args.hidden, args.l1, args.seed, args.directory, **training)
    if args.force and path.is_file():
        path.unlink()
    path = checkpoint_path(args.hidden, args.l1, args.seed, args.directory, **training)
    model = build_mlp(args.hidden)
    model.load_state_dict(torch.load(path, weights_only=True))
    x_te, y_te = load_split("test")
    print(json.dumps({"checkpoint": str(path), "test_accuracy": accuracy(model, x_te, y_te)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
