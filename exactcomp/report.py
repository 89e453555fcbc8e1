"""Human-facing output: rich tables, a rich-backed progress display, and JSON files.

Kept out of the API so that library users get plain data and the CLI decides how to show it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _RichProgress
from rich.table import Table

from .io.atomic import atomic_write


class RichProgress:
    """A :class:`exactcomp.progress.Progress` shown as a live rich progress bar (on stderr)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar = _RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def task(self, description: str, total: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[-1].total)
        self._task = self._bar.add_task(description, total=max(total, 0), info="")

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        if self._task is None:
            return
        self._bar.update(self._task, advance=steps, info=info or "")

    def note(self, message: str) -> None:
        self._bar.console.print(message)


def compression_table(doc: dict) -> Table:
    """Per hidden layer: width before/after, verdict counts and proof kinds."""
    t = _table(
        f"exactcomp: {doc['architecture_before']} -> {doc['architecture_after']}",
        ("layer", "width", "after", "active", "inactive", "unstable", "undecided", "proofs"),
    )
    for row in doc["layers"]:
        t.add_row(*_layer_cells(row, with_after=True))
    t.add_section()
    t.add_row(
        "total",
        str(doc["neurons_before"]),
        str(doc["neurons_after"]),
        *[str(sum(r[k] for r in doc["layers"])) for k in _COUNTS],
        f"{doc['seconds']:.2f} s",
    )
    return t


def lossy_table(doc: dict) -> Table:
    """Per layer what a lossy command did, and the proven/sampled totals in the caption."""
    t = Table(
        title=f"{doc['command']}: proven max |f - g| <= {doc['proven_max_abs_diff']:.4g} "
        f"(tol {doc['tol']}), sampled {doc['sampled_max_abs_diff']:.4g}",
        caption=f"neurons {doc['neurons_before']} -> {doc['neurons_after']}, parameters "
        f"{doc['parameters_before']} -> {doc['parameters_after']}",
    )
    keys = [k for k in doc["layers"][0] if k != "layer"] if doc["layers"] else []
    for c in ["layer", *keys]:
        t.add_column(c)
    for row in doc["layers"]:
        t.add_row(*(_cell(row[k]) for k in ["layer", *keys]))
    return t


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def stability_table(doc: dict) -> Table:
    """The classification only (``exactcomp stability``)."""
    t = _table(
        "exactcomp: neuron stability",
        ("layer", "width", "active", "inactive", "unstable", "undecided", "proofs"),
    )
    for row in doc["layers"]:
        t.add_row(*_layer_cells(row, with_after=False))
    return t


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table that reads at 80 columns: no vertical rules, numbers never squeezed, and the
    proofs (the last column) wrapped between its ``kind:count`` entries."""
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in columns[:-1]:
        t.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    t.add_column(columns[-1], justify="left", overflow="fold")
    return t


_COUNTS = ("stably_active", "stably_inactive", "unstable", "undecided")


def _layer_cells(row: dict, *, with_after: bool) -> list[str]:
    proofs = " ".join(f"{k}:{v}" for k, v in row["proofs"].items() if v)
    cells = [str(row["layer"]), str(row["width_before"])]
    if with_after:
        cells.append(str(row["width_after"]))
    return cells + [str(row[k]) for k in _COUNTS] + [proofs]


def stability_doc(
    report: Any, seconds: float, *, cluster: str | None = None, notes: Any = ()
) -> dict:
    """A JSON-able summary of a :class:`~exactcomp.verdicts.StabilityReport`; ``cluster``: the
    Dask scheduler address the MILPs were sent to, if any; ``notes``: the model reader's notes
    (``Network.meta["notes"]``)."""
    from .verdicts import Verdict

    layers = []
    for ls in report.layers:
        layers.append(
            {
                "layer": ls.layer,
                "width_before": ls.width,
                "stably_active": ls.count(Verdict.ACTIVE),
                "stably_inactive": ls.count(Verdict.INACTIVE),
                "unstable": ls.count(Verdict.UNSTABLE),
                "undecided": ls.count(Verdict.UNDECIDED),
                "proofs": ls.proof_counts(),
                "verdicts": [Verdict(int(v)).name.lower() for v in ls.verdict],
            }
        )
    return {
        "neurons": report.num_neurons,
        "seconds": round(seconds, 4),
        "complete": report.complete,
        "cluster": cluster,
        "layers": layers,
        "stats": {k: float(v) for k, v in report.stats.items()},
        "notes": list(notes),
    }


def regions_table(doc: dict) -> Table:
    """The result of ``exactcomp regions``: the count and each bound, labelled with its kind."""
    t = Table(title="exactcomp regions")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("kind")
    kind = "exact" if doc["exact"] else f"lower bound ({doc['stopped'] or 'doubtful LP'})"
    t.add_row("regions", f"{doc['regions']:,}", f"{kind}, {doc['method']}")
    t.add_row("lower bound", f"{doc['lower_bound']:,}", doc["lower_bound_kind"])
    est = doc["estimate"]
    if est is not None:
        t.add_row(
            "estimate",
            f"{est['value']:,.0f}",
            f"{est['method']}, {est['confidence']:.0%} interval "
            f"[{est['low']:,.0f}, {est['high']:,.0f}]",
        )
    for key, what in (("upper_bound", "stable neurons removed"), ("upper_bound_original", "")):
        v = doc[key]
        shown = f"{v:,}" if v < 10**15 else f"{float(v):.3e}"
        t.add_row(key.replace("_", " "), shown, "Serra et al. 2018 " + what)
    t.add_row("neurons fixed", f"{doc['fixed_neurons']} of {doc['neurons']}", "proven stable")
    rate = doc["regions_per_second"]
    t.add_row(
        "time",
        f"{doc['seconds']:.3f} s",
        f"count {doc['count_seconds']:.3f} s: {doc['lps']} LPs, {rate or 0:,.0f} regions/s",
    )
    return t


def to_json_text(doc: dict) -> str:
    """``doc`` as indented JSON text (numpy scalars/arrays, enums and mappings allowed)."""
    return json.dumps(_no_negative_zero(doc), indent=2, default=_jsonable) + "\n"


def write_json(path: str | Path, doc: dict | str) -> None:
    """Write ``doc`` (a dict, or JSON text from :func:`to_json_text`) atomically."""
    text = doc if isinstance(doc, str) else to_json_text(doc)
    atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def _no_negative_zero(obj: Any) -> Any:
    """``obj`` with every float ``-0.0`` written as ``0.0`` (a bound of ``-0.0`` reads as a
    sign error to a person; the two are the same number)."""
    import numpy as np

    if isinstance(obj, (float, np.floating)):
        return float(obj) + 0.0
    if isinstance(obj, np.ndarray):
        return _no_negative_zero(obj.tolist())
    if isinstance(obj, dict):
        return {k: _no_negative_zero(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_negative_zero(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
