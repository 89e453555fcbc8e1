"""``count_regions``: linear regions of a network on a box or a plane."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..domain import Box
from ..errors import (
    InvalidDomainError,
    InvalidOptionError,
    UnsupportedModelError,
)
from ..io.binding import DomainLike, ModelLike, bind_domain, load
from ..network import Network
from ..progress import SILENT, Progress
from ..regions import RegionCount
from ..rewrite import compress_network
from ..stability import stable_neurons as _stable_neurons
from ..tolerances import DEFAULT, Tolerances
from ..verify import EquivalenceStatus as EquivalenceStatus
from .compressing import check_options


def count_regions(
    model: ModelLike,
    domain: DomainLike,
    *,
    limit: int | None = None,
    jobs: int | None = 1,
    exact: bool = True,
    stability: str = "bounds",
    method: str = "fast",
    time_limit: float = 10.0,
    samples: int = 20_000,
    lines: int = 20,
    keep_cells: bool = False,
    seed: int = 0,
    trust_pickle: bool = False,
    progress: Progress = SILENT,
    tol: Tolerances = DEFAULT,
) -> RegionCount:
    """Count the activation regions (nonempty interior) of ``model`` over one box.

    The neurons proven stable on the box are fixed first: they never split a region, and the
    upper bound is also taken on the network exactly compressed without them. ``stability``
    picks the proofs: ``"bounds"`` (interval and linear bounds: milliseconds), ``"full"``
    (:func:`stable_neurons` with ``method``: LPs and MILPs too, what ``compress`` removes) or
    ``"none"``. ``limit`` (or Ctrl-C) stops the count, which is then a lower bound
    (``exact`` False). ``exact=False`` gives bounds and the estimate only. ``jobs``: worker
    processes for the 2-input counter. See :mod:`exactcomp.regions`.
    """
    from ..regions import count_regions as _count
    from ..regions.fixed import bound_verdicts, fixed_signs
    from ..rewrite import fold_active, merge_duplicates, merge_linear, remove_inactive

    t0 = time.perf_counter()
    net = load(model, trust_pickle=trust_pickle)
    sparse = [k for k, la in enumerate(net.layers) if la.sparse]
    if sparse:  # the LPs, bounds and patterns below read dense matrices
        raise UnsupportedModelError(
            f"counting regions needs dense layers; layers {sparse} of this network are held "
            "sparse (convolutions too large to hold densely), which only compress, stability "
            "and verify --certificates read"
        )
    box = _region_box(bind_domain(domain, net), net)
    if stability not in ("none", "bounds", "full"):
        raise InvalidOptionError(f"stability must be none, bounds or full, got {stability!r}")
    for name, value in (("samples", samples), ("lines", lines), ("seed", seed)):
        if int(value) < 0:
            raise InvalidOptionError(f"--{name} must be >= 0, got {value}")
    fixed: list[np.ndarray] = []
    compressed = None
    if stability != "none" and net.num_neurons:
        if stability == "full":
            check_options(method, time_limit)
            rep = _stable_neurons(
                net,
                box,
                method=method,
                time_limit=time_limit,
                jobs=jobs,
                progress=progress,
                tol=tol,
                seed=seed,
            )
        else:
            rep = bound_verdicts(net, box, tol)
        fixed = fixed_signs(rep)
        # every pass but drop_dead: an unread neuron still splits activation regions
        passes = (merge_duplicates, remove_inactive, fold_active, merge_linear)
        compressed = compress_network(net, rep, tol=tol, passes=passes).network
    counted = _count(
        net,
        box,
        fixed=fixed,
        limit=limit,
        jobs=jobs,
        exact=exact,
        keep_cells=keep_cells,
        samples=samples,
        lines=lines,
        seed=seed,
        compressed=compressed,
        progress=progress,
        tol=tol,
    )
    return replace(counted, seconds=time.perf_counter() - t0)  # stability included


def _region_box(boxes: Sequence[Box], net: Network) -> Box:
    """The one box regions are counted on; refused when it has no interior to count in."""
    if len(boxes) != 1:
        raise InvalidDomainError(
            f"regions are counted on one box; the domain has {len(boxes)} (overlapping boxes "
            "would count shared regions twice)"
        )
    box = boxes[0]
    flat = np.flatnonzero(box.upper <= box.lower)
    if flat.size == box.dim or (net.input_size == 2 and flat.size):
        raise InvalidDomainError(
            f"the box is empty inside: coordinate {int(flat[0])} has lower == upper, so no "
            "region has an interior"
        )
    return box
