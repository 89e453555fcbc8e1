"""The CLI's human-facing output: rich tables of each command's document, and a rich-backed
progress display.

Kept out of the API (and out of :mod:`exactcomp.report`, which holds every JSON document) so
that library users get plain data and the CLI decides how to show it. Each table reads the
content of the document the command writes (:mod:`exactcomp.report`), never the API's objects.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _RichProgress
from rich.table import Table
from rich.text import Text


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


# Short console headers for the per-layer keys of a lossy report (the JSON keeps the long ones).
_LOSSY_HEADERS = {
    "neurons_to_constant": "const",
    "neurons_refitted": "refit",
    "neurons_merged": "merged",
    "weights_zeroed": "zeroed",
    "amplification": "amplif.",
    "entropy_bits": "entropy",
}


def lossy_table(doc: dict) -> Group:
    """Per layer what a lossy command did (at 80 columns), under a line with the proven and
    sampled totals and above one with the sizes (and the ``strategy`` that won, for ``compress
    --tol``) and, with ``--data``, the agreement and accuracies."""
    caption = (
        f"neurons {doc['neurons_before']} -> {doc['neurons_after']}, parameters "
        f"{doc['parameters_before']} -> {doc['parameters_after']}"
        + (f" ({doc['strategy']})" if "strategy" in doc else "")
    )
    if doc.get("agreement") is not None:
        caption += f"\nagreement {100 * doc['agreement']:.2f} % on {doc['data_points']} inputs"
    if doc.get("accuracy_before") is not None:
        caption += (
            f", accuracy {100 * doc['accuracy_before']:.2f} -> {100 * doc['accuracy_after']:.2f} %"
        )
    keys = [k for k in doc["layers"][0] if k != "layer"] if doc["layers"] else []
    t = _table(None, ("layer", *(_LOSSY_HEADERS.get(k, k) for k in keys), ""))
    for row in doc["layers"]:
        t.add_row(*(_cell(row[k]) for k in ["layer", *keys]), "")
    tol = "" if doc["tol"] is None else f" (tol {doc['tol']})"  # quantize --bits: none
    title = (
        f"{doc['command']}: proven max |f - g| <= {doc['proven_max_abs_diff']:.4g}{tol}, "
        f"sampled {doc['sampled_max_abs_diff']:.4g}"
    )
    return Group(Text(title, style="bold"), t, Text(caption))


def _cell(v: Any) -> str:
    if v is None:  # not applicable to this layer (e.g. the entropy of a float32 layer)
        return "-"
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


def _table(title: str | None, columns: tuple[str, ...]) -> Table:
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
        t.add_row(key.replace("_", " "), count_text(v), "Serra et al. 2018 " + what)
    t.add_row("neurons fixed", f"{doc['fixed_neurons']} of {doc['neurons']}", "proven stable")
    rate = doc["regions_per_second"]
    t.add_row(
        "time",
        f"{doc['seconds']:.3f} s",
        f"count {doc['count_seconds']:.3f} s: {doc['lps']} LPs, {rate or 0:,.0f} regions/s",
    )
    return t


def count_text(v: float | int) -> str:
    """A count or bound as ``12,345``, or from 1e15 on as ``d.ddde+k``; an int may lie beyond
    float64 (conv networks' region bounds), so it is read from its digits."""
    if v < 10**15:
        return f"{v:,}"
    if not isinstance(v, int):
        return f"{v:.3e}"
    digits = str(v)
    return f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
