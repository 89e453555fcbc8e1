"""exactcomp: make trained ReLU networks smaller without changing the function they compute.

Public API (see the README): :func:`compress`, :func:`stable_neurons`,
:func:`verify_equivalence`, :func:`load`, :func:`save`, and the types they return.
Imports are lazy so that ``import exactcomp`` stays cheap (torch, pyomo load on first use).
"""

from __future__ import annotations

from typing import Any


def _skip_pyomo_scipy_hook() -> None:
    """Stop Pyomo from importing ``scipy.stats`` (about 1 s) when scipy is first imported.

    Pyomo registers a callback that imports several scipy submodules as soon as scipy is
    imported by anyone; exactcomp uses none of them, and at 1 s it was a third of the
    command line's start-up. The attribute is private: if Pyomo renames it, nothing breaks,
    the start-up is just slower. It must run before anything imports scipy, hence here.
    """
    try:
        from pyomo.common import dependencies
    except ImportError:  # pyomo missing: the error surfaces where pyomo is really needed
        return
    indicator = getattr(dependencies, "scipy_available", None)
    if hasattr(indicator, "_callback"):
        indicator._callback = None


_skip_pyomo_scipy_hook()
__version__ = "0.1.0"
__all__ = [
    "Box",
    "Network",
    "Tolerances",
    "RegionCount",
    "compress",
    "count_regions",
    "load",
    "quantize",
    "save",
    "stable_neurons",
    "verify_equivalence",
]

_LAZY = {
    "compress": "api",
    "count_regions": "api",
    "RegionCount": "regions",
    "load": "api",
    "quantize": "api",
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
