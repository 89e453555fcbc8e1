"""exactcomp: make trained ReLU networks smaller without changing the function they compute.

Public API (see the README): :func:`compress`, :func:`stable_neurons`,
:func:`verify_equivalence`, :func:`load`, :func:`save`, and the types they return.
Imports are lazy so that ``import exactcomp`` stays cheap (torch, pyomo load on first use).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "Box",
    "Network",
    "Tolerances",
    "compress",
    "load",
    "save",
    "stable_neurons",
    "verify_equivalence",
]

_LAZY = {
    "compress": "api",
    "load": "api",
    "save": "api",
    "stable_neurons": "api",
    "verify_equivalence": "api",
    "Box": "domain",
    "Network": "network",
    "Tolerances": "tolerances",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'exactcomp' has no attribute {name!r}")
