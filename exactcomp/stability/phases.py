r"""The proof phases of one layer, cheapest first: each a function of (network, domain, known
bounds, open neurons) that returns what it proved, and nothing else.

The engine (:mod:`exactcomp.stability.layer`) and the re-check of a report
(:mod:`exactcomp.verify.recheck`) run the *same* functions, each with its own inputs: the
engine with the bounds it has proven so far, the re-check with bounds it computes afresh (it
trusts nothing from the report). A phase proves, for neuron :math:`j` of layer :math:`k`,

.. math::

    \text{inactive}_j:\ \max_{x \in X} z_{kj}(x) \le 0, \qquad
    \text{active}_j:\ \min_{x \in X} z_{kj}(x) \ge 0,

through sound (padded) bounds: :math:`u_{kj} \le 0` or :math:`l_{kj} \ge 0`
(:func:`exactcomp.verdicts.stable_masks`). ``sides`` says which claim is wanted per neuron:
``+1`` only inactive (a positive value was never seen, or the claim to re-prove is INACTIVE),
``-1`` only active, ``0`` either. A phase's points are candidate inputs (in the box) which the
caller re-evaluates in float64 before they witness anything.

The MILP phase shares its model and questions (:mod:`exactcomp.milp.layer`) but not its
driver: the engine poses an ordered list of questions to worker processes, the re-check one
claim at a time with a share of its time budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..bab.relu import prove_signs_relu
from ..bab.replay import replay_signs
from ..bab.split import prove_signs
from ..bab.split_tree import SplitTree
from ..bounds.interval import Bounds
from ..domain import Box
from ..network import Network
from ..tolerances import Tolerances
from ..verdicts import stable_masks
from .constants import LayerClasses, constant_bounds

if TYPE_CHECKING:
    from ..bab.beta_parts import Spread

__all__ = [
    "PhaseInput",
    "PhaseResult",
    "constant_phase",
    "from_bounds",
    "ideal_cut_phase",
    "input_split_phase",
    "replay_split_phase",
    "linear_phase",
    "lp_phase",
]


@dataclass(frozen=True)
class PhaseInput:
    """The question a phase answers about layer ``k``: sound bounds ``known`` of layers
    ``0..k`` (the re-check's own, or the engine's so far), the ``neurons`` asked about and the
    claim each wants (``sides``), the tolerances, a ``time.perf_counter()`` deadline
    (``None``: none), and for the LP phase the side to solve first where ``sides`` is 0
    (``first``, as in :func:`exactcomp.bounds.lp.lp_layer_result`; ``None``: both sides),
    and for the ideal-cut and input-split phases a cap in CPU seconds of this process
    (``cpu_limit``, checked between their LPs or batches of nodes; ``None``: none), and for
    the ReLU-split phase the processes its batched trees may grow in (``spread``,
    :class:`~exactcomp.bab.beta_parts.Spread`; ``None``: this one)."""

    net: Network
    box: Box
    k: int
    known: list[Bounds]
    neurons: np.ndarray
    sides: np.ndarray
    tol: Tolerances
    deadline: float | None = None
    first: np.ndarray | None = None
    cpu_limit: float | None = None
    spread: Spread | None = None


@dataclass(frozen=True)
class PhaseResult:
    """What one phase proved about layer ``k``: full-width claim masks, the (sound) bounds it
    computed (``None``: none), candidate witnesses, the branch-and-bound nodes it used
    (``None``: not a branch and bound), the record of each input-split tree it grew
    (:mod:`exactcomp.bab.split_tree`), and per neuron the questions a ReLU-split tree judged
    hopeless (bits of :attr:`~exactcomp.bab.split.SplitResult.hopeless`; ``None``: none)."""

    inactive: np.ndarray
    active: np.ndarray
    bounds: Bounds | None = None
    points: np.ndarray | None = None
    nodes: int | None = None
    trees: tuple[SplitTree, ...] = ()
    hopeless: np.ndarray | None = None


def from_bounds(bounds: Bounds, points: np.ndarray | None = None) -> PhaseResult:
    """The claims sound bounds prove: ``u <= 0`` inactive, ``l >= 0`` active (independently)."""
    masks = stable_masks(bounds[0], bounds[1], exclusive=False)
    return PhaseResult(masks.inactive, masks.active, bounds, points)


def constant_phase(net: Network, k: int, classes: LayerClasses) -> PhaseResult:
    """The claims the weights alone prove (:mod:`exactcomp.stability.constants`): a neuron
    whose pre-activation is the constant ``b`` is INACTIVE if ``b <= 0`` (a tie at 0 included),
    else ACTIVE, on every input; one the lattice identity bounds (``floor <= z <= ceiling``,
    :mod:`exactcomp.stability.lattice`) is INACTIVE if ``ceiling <= 0``, else ACTIVE if
    ``floor >= 0``. Its bounds are exact, but an INACTIVE neuron's lower one is left out
    where it is ``>= 0`` (``z = 0``: it would read as an ACTIVE claim too, a contradiction)."""
    lower, upper = constant_bounds(net, k, classes)
    inactive = upper <= 0.0
    active = (lower >= 0.0) & ~inactive
    bounds = (np.where(inactive & (lower >= 0.0), -np.inf, lower), upper)
    return PhaseResult(inactive, active, bounds)


def _monotonic(deadline: float | None) -> float | None:
    """A ``time.perf_counter()`` instant as the ``time.monotonic()`` one of the LP modules."""
    if deadline is None:
        return None
    return time.monotonic() + max(deadline - time.perf_counter(), 0.0)


def linear_phase(q: PhaseInput) -> PhaseResult:
    """Linear (CROWN-style) bounds of the whole layer
    (:func:`exactcomp.bounds.linear.linear_layer_bounds`)."""
    from ..bounds.linear import linear_layer_bounds

    return from_bounds(linear_layer_bounds(q.net, q.box, q.k, q.known, q.tol))


def lp_phase(q: PhaseInput) -> PhaseResult:
    """Triangle-relaxation LP bounds of the neurons asked about, on the side each asks for
    (:func:`exactcomp.bounds.lp.lp_layer_bounds`; ``0``: both, or the side ``first`` names
    and the other only if no sign was proven), until the deadline: an LP that would start
    past it is not solved, so its neuron keeps its input bound."""
    from ..bounds.lp import lp_layer_bounds

    left = None if q.deadline is None else max(q.deadline - time.perf_counter(), 0.0)
    bounds = lp_layer_bounds(
        q.net,
        q.box,
        q.k,
        q.known,
        neurons=q.neurons,
        tol=q.tol,
        time_limit=left,
        sides=q.sides,
        first=q.first,
    )
    return from_bounds(bounds)


def ideal_cut_phase(q: PhaseInput, probe: bool = True) -> PhaseResult:
    """LP bounds with ideal-formulation cuts on the side each neuron asks for
    (:func:`exactcomp.bounds.ideal_cuts.ideal_cut_layer_result`; ``probe=False``: every
    question asked, for bounds rather than signs). Its LP optima are candidate witnesses."""
    from ..bounds.ideal_cuts import ideal_cut_layer_result

    deadline = _monotonic(q.deadline)
    res = ideal_cut_layer_result(
        q.net, q.box, q.k, q.known, q.neurons, q.sides, q.tol, deadline, probe, q.cpu_limit
    )
    return from_bounds(res.bounds, res.points)


def input_split_phase(q: PhaseInput) -> PhaseResult:
    """Branch and bound over input splits (:func:`exactcomp.bab.split.prove_signs`) for the
    side each neuron asks for, within its node budget, the deadline and ``cpu_limit``. A
    neuron proven both ways counts as inactive."""
    return _split_phase(q, partial(prove_signs, cpu_limit=q.cpu_limit))


def replay_split_phase(q: PhaseInput, trees: Sequence[SplitTree]) -> PhaseResult:
    """Input splits that first walk recorded trees (:func:`exactcomp.bab.replay.replay_signs`:
    the caller's own bounds at each node, a search where the walk leaves a claim); same
    contract as :func:`input_split_phase`, for the claims ``sides`` (``+1``/``-1``)."""
    return _split_phase(q, partial(replay_signs, trees=trees, cpu_limit=q.cpu_limit))


def relu_split_phase(q: PhaseInput) -> PhaseResult:
    """Branch and bound over ReLU splits of earlier layers
    (:func:`exactcomp.bab.relu.prove_signs_relu`), for networks with too many inputs to split
    them; same contract as :func:`input_split_phase`, its batched trees grown in the
    processes of ``q.spread``."""
    return _split_phase(q, partial(prove_signs_relu, spread=q.spread))


def _split_phase(q: PhaseInput, search) -> PhaseResult:
    idx = np.asarray(q.neurons, dtype=np.int64)
    sides = np.asarray(q.sides)
    res = search(q.net, q.box, q.k, q.known, idx, sides, tol=q.tol, deadline=q.deadline)
    n = q.net.layers[q.k].out_features
    inactive, active = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    inactive[idx[res.inactive]] = True
    active[idx[res.active & ~res.inactive]] = True
    bounds = None
    if res.lower is not None and res.upper is not None:
        # the bounds of the trees that ran out of nodes, and 0 on each proven side, so that
        # the bounds say what the masks do (the re-check reads the bounds of a phase first)
        lower, upper = np.full(n, -np.inf), np.full(n, np.inf)
        np.maximum.at(lower, idx, res.lower)
        np.minimum.at(upper, idx, res.upper)
        upper[inactive] = np.minimum(upper[inactive], 0.0)
        lower[active] = np.maximum(lower[active], 0.0)
        bounds = (lower, upper)
    hopeless = None
    if res.hopeless is not None:
        hopeless = np.zeros(n, dtype=np.int8)
        np.bitwise_or.at(hopeless, idx, res.hopeless)
    return PhaseResult(inactive, active, bounds, res.points, res.nodes, res.trees, hopeless)
