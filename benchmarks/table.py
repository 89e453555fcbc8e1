"""``table``: the exact-compression results table on the digits grid.

For every configuration of the grid: get the cached checkpoint (training it if needed),
compress it over [0,1]^64, evaluate original and compressed networks on the test set (the
accuracies must be equal, and so must every prediction), and prove the two networks
equivalent with ``verify_equivalence``. A row that fails records the error instead of
stopping the grid, so one bad model cannot hide the others' figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.domain import Box

from .console import RichProgress
from .digits import N_INPUTS, ModelConfig, accuracy, checkpoint, is_cached, test_set
from .measure import layer_counts, milp_count, proof_counts, verify_boxes
from .rows import TableRow


@dataclass(frozen=True)
class TableOptions:
    """Engine options shared by every row of the grid."""

    method: str = "fast"
    time_limit: float = 10.0
    jobs: int | None = None
    verify_time_limit: float = 60.0
    verify_tol: float | None = None  # None: the library's default
    check_points: int = 100_000
    models_dir: Path | None = None  # None: the training script's cache, models/


def run_table(
    configs: tuple[ModelConfig, ...],
    opts: TableOptions,
    bars: RichProgress,
    on_row: Callable[[list], None] | None = None,
) -> list:
    """Compress and verify each configuration; one :class:`TableRow` each.

    ``on_row`` receives the rows so far after each one (the CLI saves them, so a long grid
    that is stopped keeps every row it finished).
    """
    x_test, y_test = test_set()
    rows = []
    for cfg in configs:
        bars.row(cfg.label)
        try:
            rows.append(_one_row(cfg, opts, x_test, y_test, bars))
        except Exception as exc:  # a failed row is a result too; keep going
            rows.append(_error_row(cfg, f"{type(exc).__name__}: {exc}"))
        bars.row_done()
        if on_row is not None:
            on_row(rows)
    return rows


def _one_row(
    cfg: ModelConfig,
    opts: TableOptions,
    x_test: np.ndarray,
    y_test: np.ndarray,
    bars: RichProgress,
) -> TableRow:
    from exactcomp.api import compress, load

    cached = is_cached(cfg, opts.models_dir)
    bars.task(f"{'loading' if cached else 'training'} {cfg.label}", 1)
    original = load(checkpoint(cfg, opts.models_dir))
    bars.advance()
    box = Box.uniform(0.0, 1.0, N_INPUTS)
    result = compress(
        original,
        box,
        method=opts.method,
        time_limit=opts.time_limit,
        jobs=opts.jobs,
        check=opts.check_points,
        progress=bars,
    )
    small = result.network
    acc_before, pred_before = accuracy(original, x_test, y_test)
    acc_after, pred_after = accuracy(small, x_test, y_test)
    acc_f32 = _torch_accuracy(result.to_module(), x_test, y_test)
    bars.task("verifying equivalence", 1)
    ver = verify_boxes(
        original,
        small,
        (box,),
        time_limit=opts.verify_time_limit,
        tol=opts.verify_tol,
        certificates=result.stability,
    )
    bars.advance()
    before, after = original.num_neurons, small.num_neurons
    return TableRow(
        arch=cfg.arch,
        l1=cfg.l1,
        seed=cfg.seed,
        acc_before=acc_before,
        acc_after=acc_after,
        acc_after_f32=acc_f32,
        test_mismatches=int(np.count_nonzero(pred_before != pred_after)),
        neurons_before=before,
        neurons_after=after,
        params_before=original.num_parameters,
        params_after=small.num_parameters,
        pct_removed=100.0 * (before - after) / before if before else 0.0,
        layers=layer_counts(result.stability, result.report),
        seconds=float(result.seconds),
        milps=milp_count(result.stability),
        verdict=ver.verdict,
        verify_seconds=ver.seconds,
        verify_bound=ver.upper_bound,
        verify_tol=ver.tol,
        verify_note=ver.note[:200],
        proofs={k: v for k, v in proof_counts(result.stability).items() if v},
    )


def _torch_accuracy(module, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the compressed ``torch.nn.Sequential`` a user would deploy (float32)."""
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return float(np.mean(out.argmax(1).numpy() == y))


def _error_row(cfg: ModelConfig, message: str) -> TableRow:
    nan = math.nan
    return TableRow(
        arch=cfg.arch,
        l1=cfg.l1,
        seed=cfg.seed,
        acc_before=nan,
        acc_after=nan,
        acc_after_f32=nan,
        test_mismatches=-1,
        neurons_before=sum(cfg.hidden),
        neurons_after=-1,
        params_before=-1,
        params_after=-1,
        pct_removed=nan,
        layers=(),
        seconds=nan,
        milps=-1,
        verdict="ERROR",
        verify_seconds=nan,
        verify_bound=nan,
        error=message.splitlines()[0][:300] if message else "error",
    )


TABLE_COLUMNS = (
    "arch",
    "l1",
    "seed",
    "acc_before",
    "acc_after",
    "acc_after_f32",
    "test_mismatches",
    "neurons_before",
    "neurons_after",
    "pct_removed",
    "params_before",
    "params_after",
    "layer_active",
    "layer_inactive",
    "layer_undecided",
    "seconds",
    "milps",
    "verdict",
    "verify_seconds",
    "verify_tol",
    "verify_note",
    "error",
)
