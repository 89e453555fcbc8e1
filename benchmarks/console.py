"""Terminal output of the benchmarks: rich progress bars and result tables.

The library reports progress through :class:`exactcomp.progress.Progress`; :class:`RichProgress`
adapts that protocol to a two-level rich display (the benchmark's rows on top, the current
row's phase below) so a long grid shows both where it is and what the engine is doing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.box import SIMPLE_HEAD
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .rows import flatten


class RichProgress:
    """A rich display with an outer bar (benchmark rows) and an inner one (engine phases).

    It implements the :class:`exactcomp.progress.Progress` protocol for the inner bar, so it
    can be passed straight to ``compress`` or ``stable_neurons``. Use as a context manager.
    """

    def __init__(self, title: str, total: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self._outer: TaskID = self._bars.add_task(title, total=total, info="")
        self._inner: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    # -- outer bar: one step per benchmark row
    def row(self, label: str) -> None:
        """A new row starts: show its label on the outer bar."""
        self._bars.update(self._outer, info=label)

    def row_done(self) -> None:
        self._bars.advance(self._outer)

    # -- exactcomp.progress.Progress protocol (inner bar)
    def task(self, description: str, total: int) -> None:
        if self._inner is None:
            self._inner = self._bars.add_task(description, total=max(total, 1), info="")
        else:
            self._bars.reset(self._inner, description=description, total=max(total, 1), info="")

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        if self._inner is None:
            return
        if info is None:
            self._bars.advance(self._inner, steps)
        else:
            self._bars.update(self._inner, advance=steps, info=info)

    def note(self, message: str) -> None:
        self._bars.console.print(f"  {message}")


def print_rows(
    console: Console,
    title: str,
    rows: Sequence[Any],
    columns: Sequence[str] | None = None,
    compact: bool = False,
) -> None:
    """Print rows as a rich table (all flat columns, or just ``columns``).

    ``compact``: no vertical rules and no outer padding, so that short rows fit 80 columns."""
    if not rows:
        console.print(f"[yellow]{title}: no rows[/yellow]")
        return
    flat = [flatten(r) for r in rows]
    cols = list(columns) if columns else list(flat[0])
    if compact:
        table = Table(
            title=title, box=SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)
        )
    else:
        table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(c, overflow="fold")
    for row in flat:
        table.add_row(*(str(row.get(c, "")) for c in cols))
    console.print(table)
