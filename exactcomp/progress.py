"""A minimal progress protocol, so that long computations can report without knowing the UI.

Library code receives a :class:`Progress` (default: :data:`SILENT`) and calls ``task`` /
``advance``; the CLI passes one backed by ``rich``. No global state.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receiver of progress events."""

    def task(self, description: str, total: int) -> None:
        """A new phase starts with ``total`` steps."""

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        """``steps`` more steps of the current phase are done; ``info`` is a short status."""

    def note(self, message: str) -> None:
        """A one-line message worth showing (not an error)."""


class _Silent:
    def task(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        pass

    def note(self, message: str) -> None:
        pass


SILENT: Progress = _Silent()
