r"""The equivalence MILP: two networks encoded on one shared input, in Pyomo.

Formulation
-----------
One input vector :math:`x \in [\ell, u]` (the box) feeds both networks, each encoded with the
big-M formulation of :mod:`exactcomp.milp.encoding` using its own sound pre-activation bounds
(so the stable neurons of either network need no binary). Let :math:`y^f, y^g` be the output
variables (the pre-activations of the last layers; a network whose last layer has a ReLU gets
an identity layer appended first, so its output is again a pre-activation).

``linf`` mode, one objective per output :math:`i` and sign :math:`s \in \{+1, -1\}`:

.. math::

    \varphi_{i,s}^* = \max_{x, \text{encodings}} \; s\,(y^f_i - y^g_i).

Because the encodings are exact (every feasible :math:`x` has exactly one feasible completion,
the true activations), :math:`\max_x \|f(x) - g(x)\|_\infty = \max_{i,s} \varphi_{i,s}^*`.

``top1`` mode, one objective per ordered pair :math:`i \ne j`:

.. math::

    \psi_{ij}^* = \max \; y^g_j - y^g_i \quad \text{s.t.} \quad y^f_i \ge y^f_k \;\; \forall k,

(":math:`i` is a top class of :math:`f`, and :math:`g` prefers :math:`j` to it"). For every
:math:`x` and every top class :math:`i` of :math:`f(x)`,
:math:`\max_j g_j(x) - \max_{c \in \arg\max f(x)} g_c(x) \le \max_j (g_j(x) - g_i(x))`, so
:math:`\max_{i \ne j} \psi^*_{ij} \le \tau` *proves* top-1 equivalence. The converse can
fail only at inputs where :math:`f` ties and ``g`` picks one of the tied classes, with no
genuine disagreement nearby (two identical output rows of ``f``; a tie that ``f`` touches
without crossing): a pair problem then exceeds :math:`\tau` although there is no
counterexample; its incumbent fails the float64 re-check and the answer is UNKNOWN, never a
wrong verdict.
(Excluding ties exactly would need a strict inequality :math:`f_c < f_i`, which a MILP cannot
express without a further tolerance.)

Every objective is posed to the solver as a *minimisation* of its negation (HiGHS' cut-off
options are defined for minimisation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from ..bounds import Bounds, interval_bounds
from ..domain import Box
from ..milp.encoding import add_input, add_network
from ..network import Layer, Network
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import StabilityReport, Verdict


def best_bounds(net: Network, box: Box, tol: Tolerances = DEFAULT) -> list[Bounds]:
    """The tightest sound pre-activation bounds we can compute cheaply (linear, else interval)."""
    try:
        from ..bounds.linear import linear_bounds
    except ImportError:  # pragma: no cover - the linear bounds module is optional
        return interval_bounds(net, box, tol=tol)
    return linear_bounds(net, box, tol=tol)


@dataclass(frozen=True)
class StabilityBudget:
    """The time :func:`proven_encoding` may spend on the stability analysis: ``per_milp``
    seconds per MILP question and, optionally, a ``deadline`` (a ``time.perf_counter()``
    value) after which no further layer or MILP question of the analysis is started."""

    per_milp: float
    deadline: float | None = None


def proven_encoding(
    net: Network,
    box: Box,
    tol: Tolerances,
    time_limit: float | StabilityBudget | None,
    known: StabilityReport | None = None,
) -> tuple[list[Bounds], list]:
    """Bounds and verdicts to encode ``net`` with: the best cheap bounds, intersected with the
    bounds and verdicts the stability engine *proves* (skipped when ``time_limit`` is None).

    ``time_limit`` is the seconds per MILP of the analysis, or a :class:`StabilityBudget`
    that also sets a deadline (``stable_neurons(deadline=...)``: no layer or MILP question
    starts after it, a running question is capped to it; skipped when it has already passed):
    what was not decided by then keeps the cheap bounds and no verdict. Stable neurons then
    need no binary; every verdict used carries its own proof (interval, linear, LP or MILP
    with margin), and UNDECIDED/UNSTABLE neurons keep their binary, so running out of time
    loses proofs, never soundness.
    """
    bounds = best_bounds(net, box, tol)
    verdicts: list = [None] * len(net.layers)
    if known is not None:  # independently re-proven verdicts: only their signs are used
        for ls in known.layers:
            lo, hi = bounds[ls.layer]
            inactive, active = ls.verdict == Verdict.INACTIVE, ls.verdict == Verdict.ACTIVE
            bounds[ls.layer] = (
                np.where(active, np.maximum(lo, 0.0), lo),
                np.where(inactive, np.minimum(hi, 0.0), hi),
            )
            v = np.full(ls.width, Verdict.UNDECIDED, dtype=np.int8)
            v[inactive], v[active] = Verdict.INACTIVE, Verdict.ACTIVE
            verdicts[ls.layer] = v
    if time_limit is None or not net.relu_layers:
        return bounds, verdicts
    budget = time_limit if isinstance(time_limit, StabilityBudget) else StabilityBudget(time_limit)
    report = _stability(net, box, tol, budget)
    if report is None:
        return bounds, verdicts
    for ls in report.layers:
        lo, hi = bounds[ls.layer]
        bounds[ls.layer] = (np.maximum(lo, ls.lower), np.minimum(hi, ls.upper))
        verdicts[ls.layer] = ls.verdict
    return bounds, verdicts


def _stability(
    net: Network, box: Box, tol: Tolerances, budget: StabilityBudget
) -> StabilityReport | None:
    """The stability report of ``net`` within ``budget`` (None: no time was left for it)."""
    from ..stability import stable_neurons

    if budget.deadline is not None and time.perf_counter() >= budget.deadline:
        return None
    return stable_neurons(
        net, box, time_limit=budget.per_milp, jobs=1, tol=tol, deadline=budget.deadline
    )


def with_linear_output(net: Network) -> Network:
    """``net`` itself, or ``net`` followed by an identity layer when its last layer has a ReLU,
    so that the network's output is always the pre-activation of its last layer."""
    if not net.layers[-1].relu:
        return net
    m = net.output_size
    return net.replace_layers(net.layers + (Layer(np.eye(m), np.zeros(m), relu=False),))


@dataclass(frozen=True, eq=False)
class JointModel:
    """Both networks on one input. ``yf``/``yg`` are the output variables; ``out_bounds``
    are the sound a-priori bounds on them (``(lo, hi)`` per network); ``scale`` is the largest
    output bound magnitude (the ``M`` of the solver margin); ``binaries`` counts the ReLUs
    that needed a binary."""

    model: pyo.ConcreteModel
    x: pyo.Var
    yf: pyo.Var
    yg: pyo.Var
    out_bounds: tuple[Bounds, Bounds]
    scale: float
    binaries: int


def build_joint_model(
    f: Network,
    g: Network,
    box: Box,
    bounds_f: list[Bounds],
    bounds_g: list[Bounds],
    verdicts_f=None,
    verdicts_g=None,
) -> JointModel:
    """Encode ``f`` and ``g`` on one input ``x`` in ``box`` (see the module docstring).

    ``bounds_f``/``bounds_g`` are sound pre-activation bounds of every layer of
    ``with_linear_output(f)``/``with_linear_output(g)``; ``verdicts_f``/``verdicts_g`` are
    optional per-layer arrays of *proven* verdicts (stable neurons get no binary).
    """
    f, g = with_linear_output(f), with_linear_output(g)
    model = pyo.ConcreteModel(name="equivalence")
    x = add_input(model, box)
    model.f = pyo.Block()
    model.g = pyo.Block()
    yf = add_network(model.f, f, x, bounds_f, verdicts_f)[-1]
    yg = add_network(model.g, g, x, bounds_g, verdicts_g)[-1]
    model.obj = pyo.Objective(expr=0.0, sense=pyo.minimize)
    ends = [bounds_f[-1], bounds_g[-1]]
    scale = max(float(np.max(np.abs(np.concatenate(b)))) for b in ends)
    binaries = sum(1 for v in model.component_data_objects(pyo.Var) if v.is_binary())
    return JointModel(model, x, yf, yg, (ends[0], ends[1]), scale, binaries)


def linf_objective(jm: JointModel, i: int, s: float):
    """The expression minimised for objective ``(i, s)``: ``-s (y^f_i - y^g_i)``."""
    return -s * (jm.yf[i] - jm.yg[i])


def set_top1_condition(jm: JointModel, i: int) -> None:
    """Replace the "``i`` is a top class of ``f``" constraints: ``y^f_i >= y^f_k`` for all k."""
    model = jm.model
    if model.component("top1") is not None:
        model.del_component("top1")
    others = [k for k in range(len(jm.yf)) if k != i]
    model.top1 = pyo.Constraint(others, rule=lambda _, k: jm.yf[i] >= jm.yf[k])


def top1_objective(jm: JointModel, i: int, j: int):
    """The expression minimised for the pair ``(i, j)``: ``-(y^g_j - y^g_i)``."""
    return -(jm.yg[j] - jm.yg[i])


def set_objective(jm: JointModel, expr) -> None:
    """Make ``expr`` the (minimised) objective of the model."""
    jm.model.obj.set_value(expr)
