"""``python -m benchmarks regions``: linear-region counts, their cost, and compressibility.

Three suites, one row each (:class:`RegionRow`):

* ``2d``: exact counts (polygon splitting) for 2-input networks of growing size, trained
  on two moons by scikit-learn (deterministic seeds, no downloads) and random ones, with
  seconds and regions per second; the box is the data's bounding box;
* ``digits-global``: the digits grid over ``[0, 1]^64``: bounds and the estimate (an exact
  count is out of reach there);
* ``digits-local``: exact counts (LP splitting) on boxes of radius 0.02 around test points.

Every row carries the share of neurons exact compression removes on its box, so the table
and the plot set expressiveness (regions) against compressibility (neurons removed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exactcomp import api
from exactcomp.domain import Box
from exactcomp.network import Network

from .digits import ModelConfig, checkpoint, test_set

RADIUS = 0.02


@dataclass
class RegionRow:
    suite: str
    network: str
    l1: float
    domain: str
    neurons: int
    pct_removed: float
    regions: int
    exact: bool
    lower_bound: int
    estimate: float
    log10_upper: float
    log10_upper_original: float
    seconds: float
    count_seconds: float
    regions_per_s: float
    lps: int
    jobs: int
    stopped: str = ""
    note: str = ""


REGION_COLUMNS = (
    "suite",
    "network",
    "l1",
    "domain",
    "neurons",
    "pct_removed",
    "regions",
    "exact",
    "lower_bound",
    "estimate",
    "log10_upper",
    "log10_upper_original",
    "seconds",
    "count_seconds",
    "regions_per_s",
    "lps",
    "jobs",
)


@dataclass(frozen=True)
class RegionOptions:
    quick: bool
    jobs: int
    time_limit: float
    limit: int
    points: int
    only: str = ""
    suite: str = "all"
    stability: str = "full"


def moons(seed: int = 0, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles with Gaussian noise (sklearn's ``make_moons``)."""
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=0.2, random_state=seed)


def trained_2d(hidden: tuple[int, ...], seed: int = 0) -> Network:
    """A 2-input ReLU MLP trained on two moons by scikit-learn (lbfgs, seconds)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = moons(seed)
    clf = MLPClassifier(hidden, activation="relu", solver="lbfgs", max_iter=400, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    weights = [w.T for w in clf.coefs_]
    biases = list(clf.intercepts_)
    return Network.from_arrays(weights, biases, dtype="float64")


def save_moons(path: str | Path = "models/moons_2-16-16-1.pt") -> Path:
    """Write the README's example: the 2-16-16-1 network trained on two moons (float64)."""
    net = trained_2d((16, 16))
    api.save(net, path)
    return Path(path)


def random_2d(hidden: tuple[int, ...], seed: int = 0) -> Network:
    """A 2-input ReLU MLP with He-scaled Gaussian weights and N(0, 0.25) biases."""
    rng = np.random.default_rng(seed)
    sizes = (2, *hidden, 2)
    weights = [
        rng.normal(size=(o, i)) * math.sqrt(2.0 / i) for i, o in zip(sizes, sizes[1:], strict=False)
    ]
    biases = [rng.normal(size=o) * 0.5 for o in sizes[1:]]
    return Network.from_arrays(weights, biases, dtype="float64")


def _log10(v: int) -> float:
    return math.log10(v) if v > 0 else 0.0


def _row(suite, name, l1, domain, rc, jobs, note="") -> RegionRow:
    pct = 100.0 * (1.0 - rc.neurons_after / rc.neurons) if rc.neurons else 0.0
    est = rc.estimate.value if rc.estimate is not None else math.nan
    return RegionRow(
        suite=suite,
        network=name,
        l1=l1,
        domain=domain,
        neurons=rc.neurons,
        pct_removed=round(pct, 2),
        regions=rc.regions if rc.stopped != "not counted" else -1,
        exact=rc.exact,
        lower_bound=rc.lower_bound,
        estimate=est,
        log10_upper=_log10(rc.upper_bound),
        log10_upper_original=_log10(rc.upper_bound_original),
        seconds=round(rc.seconds, 4),
        count_seconds=round(rc.count_seconds, 4),
        regions_per_s=round(rc.rate, 1) if rc.regions and rc.stopped != "not counted" else 0.0,
        lps=rc.lps,
        jobs=jobs,
        stopped=rc.stopped or "",
        note=note,
    )


def suite_2d(opts: RegionOptions, bars: Any, rows: list[RegionRow], on_row=None) -> None:
    """Exact counts on 2-input networks (trained and random), jobs 1 and ``opts.jobs``."""
    x, _ = moons()
    pad = 0.25
    box = Box(x.min(axis=0) - pad, x.max(axis=0) + pad)
    sizes = [(16, 16), (32, 32), (64, 64)] if opts.quick else [
        (16, 16), (32, 32), (64, 64), (128, 128), (64, 64, 64), (100, 100, 100)
    ]  # fmt: skip
    for kind, make in (("trained", trained_2d), ("random", random_2d)):
        for hidden in sizes:
            net = make(hidden)
            name = f"{kind} {net.describe()}"
            if opts.only not in name:
                continue
            bars.row(name)
            for jobs in sorted({1, opts.jobs}):
                rc = api.count_regions(
                    net,
                    box,
                    jobs=jobs,
                    limit=opts.limit,
                    stability=opts.stability,
                    time_limit=opts.time_limit,
                    progress=bars,
                )
                rows.append(_row("2d", name, 0.0, "moons box", rc, jobs))
                if on_row is not None:
                    on_row(rows)
            bars.row_done()


def digits_grid(quick: bool) -> tuple[ModelConfig, ...]:
    """Widths x depths x l1 (seed 0): 2 hidden layers of 25, 50 or 100 and 3 of 50; quick:
    the three shipped 100x100 models."""
    if quick:
        return tuple(ModelConfig((100, 100), l1, 0) for l1 in (0.0, 1e-4, 5e-4))
    hidden = ((25, 25), (50, 50), (100, 100), (50, 50, 50))
    return tuple(ModelConfig(h, l1, 0) for h in hidden for l1 in (0.0, 1e-4, 5e-4, 1e-3))


def suite_digits(opts: RegionOptions, bars: Any, rows: list[RegionRow], on_row=None) -> None:
    """Bounds over [0, 1]^64 and exact counts on small boxes around test points."""
    xs, _ = test_set()
    for cfg in digits_grid(opts.quick):
        if opts.only not in cfg.label:
            continue
        bars.row(cfg.label)
        net = api.load(checkpoint(cfg))
        whole = Box.uniform(0.0, 1.0, net.input_size)
        rc = api.count_regions(
            net,
            whole,
            exact=False,
            stability=opts.stability,
            time_limit=opts.time_limit,
            jobs=opts.jobs,
            progress=bars,
        )
        rows.append(_row("digits-global", cfg.arch, cfg.l1, "[0,1]^64", rc, opts.jobs))
        for i in range(opts.points):
            box = Box(np.clip(xs[i] - RADIUS, 0, 1), np.clip(xs[i] + RADIUS, 0, 1))
            rc = api.count_regions(
                net, box, limit=opts.limit, time_limit=opts.time_limit, jobs=opts.jobs,
                samples=2000, lines=5, progress=bars, stability=opts.stability,
            )  # fmt: skip
            rows.append(
                _row("digits-local", cfg.arch, cfg.l1, f"test {i} +-{RADIUS}", rc, opts.jobs)
            )
            if on_row is not None:
                on_row(rows)
        bars.row_done()


def run_regions(opts: RegionOptions, bars: Any, on_row=None) -> list[RegionRow]:
    """The suites asked for (``opts.suite``: all, 2d or digits), 2-D first; ``on_row(rows)``
    after each row (to save partial results)."""
    rows: list[RegionRow] = []
    if opts.suite in ("all", "2d"):
        suite_2d(opts, bars, rows, on_row)
    if opts.suite in ("all", "digits"):
        suite_digits(opts, bars, rows, on_row)
    return rows


def row_count(opts: RegionOptions) -> int:
    """How many networks the run visits (for the outer progress bar)."""
    n2d = (3 if opts.quick else 6) * 2 if opts.suite in ("all", "2d") else 0
    return n2d + (len(digits_grid(opts.quick)) if opts.suite in ("all", "digits") else 0)


def plot_regions(rows: Sequence[RegionRow], path: Path) -> Path:
    """Expressiveness against compressibility: regions (log10) vs % neurons removed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    glob = [r for r in rows if r.suite == "digits-global"]
    for r in glob:
        x = r.pct_removed
        ax1.plot([x, x], [_log10(r.lower_bound), r.log10_upper_original], color="0.8", lw=1)
    if glob:
        ax1.scatter([r.pct_removed for r in glob], [r.log10_upper_original for r in glob],
                    marker="v", label="upper bound (Serra et al.), original", color="C3")  # fmt: skip
        ax1.scatter([r.pct_removed for r in glob], [r.log10_upper for r in glob],
                    marker="v", label="upper bound, compressed", color="C1")  # fmt: skip
        ax1.scatter([r.pct_removed for r in glob], [_log10(r.lower_bound) for r in glob],
                    marker="^", label="lower bound (samples + lines)", color="C0")  # fmt: skip
    ax1.set_xlabel("% neurons removed by exact compression on [0,1]^64")
    ax1.set_ylabel("log10 regions")
    ax1.set_title("digits over [0,1]^64: bounds")
    if not glob:  # a 2-D run: regions against size instead, trained vs random
        for n, kind in enumerate(("trained", "random")):
            sel = [r for r in rows if r.suite == "2d" and r.network.startswith(kind)]
            sel = sorted((r for r in sel if r.jobs == sel[0].jobs), key=lambda r: r.neurons)
            ax1.plot([r.neurons for r in sel], [_log10(r.regions) for r in sel], "o-",
                     color=f"C{n + 4}", label=f"{kind}: exact count")  # fmt: skip
            ax1.plot([r.neurons for r in sel], [r.log10_upper for r in sel], "v:",
                     color=f"C{n + 4}", label=f"{kind}: upper bound, compressed")  # fmt: skip
        ax1.set_xlabel("ReLU neurons")
        ax1.set_title("2-input networks on the moons box")
    ax1.legend(fontsize=7)
    local = [r for r in rows if r.suite in ("digits-local", "2d") and r.jobs == rows[0].jobs]
    groups = sorted({(r.suite, r.l1) for r in local})
    for n, (suite, l1) in enumerate(groups):
        sel = [r for r in local if (r.suite, r.l1) == (suite, l1) and r.regions > 0]
        label = f"digits l1={l1:g}" if suite == "digits-local" else "2-D networks"
        ax2.scatter([r.pct_removed for r in sel], [_log10(r.regions) for r in sel],
                    color=f"C{n}", label=label, s=14)  # fmt: skip
    ax2.set_xlabel("% neurons removed by exact compression on the box")
    ax2.set_ylabel("log10 regions (exact count)")
    ax2.set_title("exact counts: small digits boxes, 2-D networks")
    ax2.legend(fontsize=7)
    fig.suptitle("expressiveness against compressibility")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
