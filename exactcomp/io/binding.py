"""Binding what a user passes to the networks and boxes the engines take: a model-like (a
:class:`~exactcomp.network.Network`, a ``torch.nn.Module`` or a path) to a network, and a
domain-like (a box, a union of boxes, a ``(lo, hi)`` pair) to boxes checked against the
file each network came from. Every API entry (:mod:`exactcomp.api`, :mod:`exactcomp.approx`)
binds its inputs here.

Once per command. An entry that calls another (``compress --tol``: the lossy search calls
``compress``, which calls ``stable_neurons``) passes its :class:`BoundBoxes` down; they name
the networks (by identity) whose files were checked on them, so :func:`bind_domain` checks
only a network not among them (a rewritten network, another model). The check is the same,
run once instead of once per entry (onnxruntime on the probe points of every box: 1.9-17 s
of ``compress --tol`` on the sparse conv networks, three times; RESULTS.md "budget17").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..domain import Box
from ..errors import InvalidDomainError
from ..network import Network
from . import check_source
from . import load as load_file

__all__ = ["BoundBoxes", "DomainLike", "ModelLike", "as_domain", "bind_domain", "load"]

ModelLike = Any  # Network | torch.nn.Module | str | Path
DomainLike = Any  # Box | Sequence[Box] | tuple[float, float]


def load(model: ModelLike, *, trust_pickle: bool = False, nnet_units: str = "raw") -> Network:
    """Load a model (path, ``nn.Module`` or Network) into the float64 IR.

    ``nnet_units``: for a ``.nnet`` file, ``"raw"`` (inputs and outputs in the file's units)
    or ``"normalised"`` (the stored network; the box is then in normalised units)."""
    if isinstance(model, Network):
        return model
    return load_file(model, trust_pickle=trust_pickle, nnet_units=nnet_units)


def as_domain(domain: DomainLike, n_inputs: int) -> tuple[Box, ...]:
    """Normalise the accepted domain forms to a tuple of boxes of the right size.

    Accepted: a :class:`Box`; a non-empty sequence of boxes (their union); a pair ``(lo, hi)``
    of numbers (``[lo, hi]^n``) or of per-feature arrays of length ``n``."""
    if isinstance(domain, Box):
        boxes: tuple[Box, ...] = (domain,)
    elif (
        isinstance(domain, (tuple, list))
        and len(domain) == 2
        and not any(isinstance(v, Box) for v in domain)
    ):
        lo, hi = (_bound_array(v, n_inputs) for v in domain)
        boxes = (Box(lo, hi),)
    elif isinstance(domain, Sequence) and domain and all(isinstance(b, Box) for b in domain):
        boxes = tuple(domain)
    else:
        raise InvalidDomainError(
            "the domain must be a Box, a sequence of Boxes, or a pair (lo, hi) of numbers or "
            f"per-feature arrays; got {type(domain).__name__}"
        )
    for b in boxes:
        b.check_size(n_inputs)
    return boxes


class BoundBoxes(tuple):
    """Boxes that :func:`bind_domain` returned: a tuple of :class:`Box` that also names the
    networks (``checked``, compared by identity) whose source files were checked on them.

    It pickles as a plain tuple (a worker process checks again, never trusts a copy)."""

    checked: tuple[Network, ...]

    def __new__(cls, boxes: tuple[Box, ...], checked: tuple[Network, ...]) -> BoundBoxes:
        obj = super().__new__(cls, boxes)
        obj.checked = checked
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (tuple(self),))


def bind_domain(domain: DomainLike, *nets: Network) -> BoundBoxes:
    """The boxes of ``domain`` for ``nets`` (same input size), each network checked against
    the file it was read from on those boxes (:func:`exactcomp.io.check_source`): refused where
    a file is exact only on part of the input space and a box leaves it, or where the file
    computes something else somewhere on the domain. Every API entry binds its domain here;
    a network already checked on these very boxes (``domain`` a :class:`BoundBoxes` naming
    it) is not checked again."""
    boxes = as_domain(domain, nets[0].input_size)
    done = domain.checked if isinstance(domain, BoundBoxes) else ()
    for net in nets:
        if not any(net is seen for seen in done):
            check_source(net, boxes)
    return BoundBoxes(boxes, (*done, *(n for n in nets if not any(n is s for s in done))))


def _bound_array(value: Any, n_inputs: int) -> np.ndarray:
    """One side of a ``(lo, hi)`` domain: a number (every feature) or a per-feature array."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidDomainError(
            f"a (lo, hi) domain needs numbers or arrays of numbers, got {type(value).__name__}"
        ) from None
    if arr.ndim == 0:
        return np.full(n_inputs, float(arr))
    return arr.reshape(-1)
