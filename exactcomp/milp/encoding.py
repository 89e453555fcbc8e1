r"""The big-M MILP encoding of a ReLU network (prefix) in Pyomo: the single source of the formulation.

Every MILP exactcomp solves (stability of one neuron, equivalence of two networks) is built
here, once, as a Pyomo model. Fast paths (:mod:`exactcomp.milp.highs`) compile this model to
matrix form; they never write constraints of their own, so the maths below is the whole story.

Formulation
-----------
Input variables :math:`x_i \in [\ell^x_i, u^x_i]` (the box). For every layer :math:`k` and
neuron :math:`j`, with *sound* pre-activation bounds :math:`l_{kj} \le z_{kj} \le u_{kj}` over
the box:

.. math::

    z_{kj} &= \sum_i W_{k,ji}\, h_{k-1,i} + b_{kj}, \qquad h_{-1} = x,
    \qquad z_{kj} \in [l_{kj}, u_{kj}] \text{ when both are finite}.

If layer :math:`k` has no ReLU, :math:`h_{kj} = z_{kj}`. Otherwise, per neuron:

* stably inactive (verdict ``INACTIVE`` or :math:`u_{kj} \le 0`): :math:`h_{kj} = 0`; the
  neuron contributes nothing to the next layer and gets no variable;
* stably active (verdict ``ACTIVE`` or :math:`l_{kj} \ge 0`): :math:`h_{kj} = z_{kj}`;
* unstable (:math:`l_{kj} < 0 < u_{kj}`, both finite): a binary :math:`a_{kj}` and

  .. math::

      h_{kj} \ge z_{kj}, \quad h_{kj} \ge 0, \quad
      h_{kj} \le z_{kj} - l_{kj}(1 - a_{kj}), \quad
      h_{kj} \le u_{kj}\, a_{kj}, \quad a_{kj} \in \{0, 1\},

  and the implied bound :math:`0 \le h_{kj} \le u_{kj}` on the variable itself.

  With :math:`a = 1` the last two give :math:`h \le z` (so :math:`h = z`, hence
  :math:`z \ge 0`); with :math:`a = 0` they give :math:`h \le 0` (so :math:`h = 0`, and
  :math:`z \le 0` follows from :math:`h \ge z`). Exactness needs :math:`l \le z \le u` to hold
  for every input in the box, which is why the bounds must be sound; they are never invented:
  a neuron that needs a binary but has an infinite bound raises
  :class:`~exactcomp.errors.InvalidNetworkError`.

The smaller the :math:`[l, u]` (progressive tightening) and the more neurons proven stable,
the fewer binaries and the tighter the LP relaxation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from ..domain import Box
from ..errors import InvalidNetworkError
from ..network import Layer, Network
from ..verdicts import stable_masks

BoundsList = Sequence[tuple[np.ndarray, np.ndarray]]
VerdictList = Sequence[np.ndarray | None]

# One term of an affine expression: a Pyomo variable (or ``None`` for an exact zero).
_Terms = list[object | None]


def _affine_block(
    blk: pyo.Block, layer: Layer, inputs: _Terms, bounds=None, rows: Sequence[int] | None = None
) -> pyo.Var:
    r"""Add ``z = W h + b`` on ``blk`` (``blk.z``, ``blk.affine``) and return ``z``.

    ``inputs[i]`` is the variable holding :math:`h_{k-1,i}` or ``None`` when it is identically
    zero (a stably inactive neuron), in which case its column of ``W`` is skipped. Exact zero
    weights are skipped too (they are common after :math:`\ell_1` training). ``rows`` limits
    the equations to those neurons (default: all); the others' ``z`` stay unconstrained.
    """
    n = layer.out_features
    if bounds is None:
        blk.z = pyo.Var(range(n), domain=pyo.Reals)
    else:
        lo, hi = bounds

        def _b(_m, j):
            return (
                float(lo[j]) if np.isfinite(lo[j]) else None,
                float(hi[j]) if np.isfinite(hi[j]) else None,
            )

        blk.z = pyo.Var(range(n), domain=pyo.Reals, bounds=_b)
    live = np.array([v is not None for v in inputs], dtype=bool)
    w, b = layer.weight, layer.bias

    def _rule(m, j):
        row = w[j]
        nz = np.flatnonzero((row != 0.0) & live)  # the sparse row (a conv's is mostly zeros)
        expr = LinearExpression(
            constant=float(b[j]),
            linear_coefs=[float(row[i]) for i in nz],
            linear_vars=[inputs[i] for i in nz],
        )
        return m.z[j] == expr

    blk.affine = pyo.Constraint(range(n) if rows is None else list(rows), rule=_rule)
    return blk.z


def _relu_block(blk: pyo.Block, z: pyo.Var, layer_index: int, bounds, verdict) -> _Terms:
    """Add the ReLU of one layer (see the module docstring) and return its outputs as terms."""
    lo, hi = bounds
    n = len(lo)
    outputs: _Terms = [None] * n
    unstable: list[int] = []
    inactive, active = stable_masks(lo, hi, verdict)
    for j in range(n):
        if inactive[j]:
            outputs[j] = None
        elif active[j]:
            outputs[j] = z[j]
        else:
            if not (np.isfinite(lo[j]) and np.isfinite(hi[j])):
                raise InvalidNetworkError(
                    f"layer {layer_index}, neuron {j}: no finite bound on its pre-activation "
                    f"([{lo[j]}, {hi[j]}]), so no exact big-M encoding exists; the weights or "
                    "the box are too large for float64"
                )
            unstable.append(j)
    blk.h = pyo.Var(unstable, domain=pyo.NonNegativeReals, bounds=lambda _m, j: (0.0, float(hi[j])))
    blk.a = pyo.Var(unstable, domain=pyo.Binary)
    blk.relu_ge_z = pyo.Constraint(unstable, rule=lambda m, j: m.h[j] >= z[j])
    blk.relu_off = pyo.Constraint(
        unstable, rule=lambda m, j: m.h[j] <= z[j] - float(lo[j]) * (1 - m.a[j])
    )
    blk.relu_on = pyo.Constraint(unstable, rule=lambda m, j: m.h[j] <= float(hi[j]) * m.a[j])
    for j in unstable:
        outputs[j] = blk.h[j]
    return outputs


def add_network(
    block: pyo.Block,
    net: Network,
    x: pyo.Var,
    bounds: BoundsList,
    verdicts: VerdictList | None = None,
    upto: int | None = None,
) -> list[pyo.Var]:
    """Add the big-M encoding of layers ``0..upto`` of ``net`` on inputs ``x`` to ``block``.

    Parameters
    ----------
    block:
        A Pyomo block (or model); one sub-block ``layer{k}`` is added per layer.
    net:
        The network.
    x:
        Pyomo variables indexed ``0..net.input_size-1``, bounded by the caller (the box).
    bounds:
        Sound pre-activation bounds ``(lower, upper)`` per layer, at least up to ``upto``
        (the big-M constants; also the bounds of the ``z`` variables).
    verdicts:
        Optional per-layer arrays of :class:`~exactcomp.verdicts.Verdict` (``None`` entries, or
        a short list, mean "nothing known"). ``INACTIVE``/``ACTIVE`` neurons get no binary.
        Only ever pass *proven* verdicts: they are trusted.
    upto:
        Last layer to encode (default: all). Its activation is encoded too.

    Returns
    -------
    list of pyo.Var
        The pre-activation variables ``z[k]`` (indexed by neuron) for ``k = 0..upto``.
    """
    if upto is None:
        upto = len(net.layers) - 1
    return _encode(block, net, x, bounds, verdicts, upto)[0]


def _encode(
    block, net: Network, x, bounds, verdicts, upto: int, trim: bool = False
) -> tuple[list[pyo.Var], _Terms]:
    """:func:`add_network`, also returning the output terms of layer ``upto`` (``None`` = 0).

    ``trim``: write no equation for the ``z`` of a stably inactive neuron (nothing downstream
    reads it). The prefix MILPs of the stability engine use it: on a 784-input layer most of
    the matrix would otherwise be rows of dead neurons, which HiGHS' presolve then spends
    seconds removing again for every question.
    """
    if not -1 <= upto < len(net.layers):
        raise ValueError(f"upto={upto} is outside the network's {len(net.layers)} layers")
    if len(bounds) <= upto:
        raise ValueError(f"bounds are given for {len(bounds)} layers but upto={upto}")
    terms: _Terms = [x[i] for i in range(net.input_size)]
    zs: list[pyo.Var] = []
    for k in range(upto + 1):
        layer = net.layers[k]
        blk = pyo.Block(concrete=True)
        block.add_component(f"layer{k}", blk)
        verdict = verdicts[k] if verdicts is not None and k < len(verdicts) else None
        rows = _live(bounds[k], verdict) if trim and layer.relu else None
        z = _affine_block(blk, layer, terms, bounds[k], rows)
        zs.append(z)
        if layer.relu:
            terms = _relu_block(blk, z, k, bounds[k], verdict)
        else:
            terms = [z[j] for j in range(layer.out_features)]
    return zs, terms


def _live(bounds, verdict) -> list[int]:
    """Neurons of a ReLU layer that are not stably inactive (the rule of :func:`_relu_block`)."""
    return np.flatnonzero(~stable_masks(*bounds, verdict).inactive).tolist()


def add_input(block: pyo.Block, box: Box, name: str = "x") -> pyo.Var:
    """Add input variables ``x[i]`` bounded by ``box`` to ``block`` and return them."""
    lo, hi = box.lower, box.upper
    var = pyo.Var(range(box.dim), bounds=lambda _m, i: (float(lo[i]), float(hi[i])))
    block.add_component(name, var)
    return var


def build_prefix_model(
    net: Network,
    box: Box,
    k: int,
    bounds: BoundsList,
    verdicts: VerdictList | None = None,
) -> tuple[pyo.ConcreteModel, pyo.Var]:
    """The MILP for the stability question of layer ``k``: layers ``< k`` encoded, plus ``z_k``.

    The model has inputs ``model.x`` (bounded by ``box``), the big-M encoding of layers
    ``0..k-1`` under ``model.net``, and the affine map of layer ``k`` as free variables
    ``model.zk[j] = W_k h_{k-1} + b_k`` (deliberately unbounded, so that the answer depends
    only on the encoding of the earlier layers). Its objective ``model.obj`` is a placeholder
    (``0``); callers set the sense and expression per question (e.g. minimise ``-zk[j]``).
    """
    box.check_size(net.input_size)
    if not 0 <= k < len(net.layers):
        raise ValueError(f"layer {k} is outside the network's {len(net.layers)} layers")
    model = pyo.ConcreteModel(name=f"prefix_{k}")
    x = add_input(model, box)
    model.net = pyo.Block()
    _, terms = _encode(model.net, net, x, bounds, verdicts, upto=k - 1, trim=True)
    model.target = pyo.Block()
    zk = _affine_block(model.target, net.layers[k], terms, None)
    model.zk = pyo.Reference(zk)
    model.obj = pyo.Objective(expr=0.0, sense=pyo.minimize)
    return model, model.zk


def feeding_binary_vars(model: pyo.ConcreteModel, k: int) -> pyo.Var | None:
    """The binaries ``a[i]`` of layer ``k - 1`` in a :func:`build_prefix_model` model (indexed
    by neuron; ``None`` when that layer has none)."""
    blk = model.net.component(f"layer{k - 1}") if k > 0 else None
    return None if blk is None else blk.component("a")


def binary_layers(model: pyo.ConcreteModel, k: int) -> int:
    """How many of layers ``0..k-1`` of a :func:`build_prefix_model` model have binaries."""
    count = 0
    for i in range(k):
        blk = model.net.component(f"layer{i}")
        a = None if blk is None else blk.component("a")
        count += int(a is not None and len(a) > 0)
    return count


def feeding_binaries(
    model: pyo.ConcreteModel, k: int, columns: Sequence[pyo.Var]
) -> tuple[np.ndarray, np.ndarray]:
    r"""The binaries of layer ``k - 1`` in a :func:`build_prefix_model` model: (columns, neurons).

    ``columns`` is the column order of the compiled model. Returns the positions of the
    binaries :math:`a_{k-1,i}` and the neurons :math:`i` they belong to.

    Why: the question "can :math:`s\, z_{kj} > 0`?" maximises
    :math:`s\, z_{kj} = s \sum_i W_{k,ji} h_{k-1,i} + s\, b_{kj}`, and nothing else in the
    model reads :math:`h_{k-1}` (the other targets are free). For a neuron with
    :math:`s\, W_{k,ji} \le 0` the maximum wants :math:`h_{k-1,i}` as *small* as allowed, and
    the relaxation of its binary to :math:`a \in [0, 1]` only allows
    :math:`h \ge \max(0, z)`, whose smallest value is the true ReLU. So making those binaries
    continuous leaves the optimum, and hence every proof, unchanged, while the branch and
    bound has about half as many binaries to branch on (mnist-net_256x2, layer 2: 70 to
    about 17, and questions that timed out at 10 s proven in 2 s).
    """
    a = feeding_binary_vars(model, k)
    if a is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    where = {id(v): c for c, v in enumerate(columns)}
    pairs = np.array([(where[id(a[i])], int(i)) for i in a if id(a[i]) in where], dtype=np.int64)
    pairs = pairs.reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def set_point(model: pyo.ConcreteModel, net: Network, x: np.ndarray) -> None:
    """Give every variable of a :func:`build_prefix_model` model its value at input ``x``.

    The values satisfy every constraint (the bounds being sound): ``z`` from the forward
    pass, ``h = max(z, 0)``, ``a = 1`` iff ``z > 0``. Used to warm-start a solver.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    zs = net.preactivations(x[None, :])
    for i in range(net.input_size):
        model.x[i].set_value(float(x[i]), skip_validation=True)
    k = 0
    while model.net.find_component(f"layer{k}") is not None:
        blk = getattr(model.net, f"layer{k}")
        zk = zs[k][0]
        for j in blk.z:
            blk.z[j].set_value(float(zk[j]), skip_validation=True)
        if hasattr(blk, "h"):
            for j in blk.h:
                blk.h[j].set_value(max(float(zk[j]), 0.0), skip_validation=True)
                blk.a[j].set_value(1.0 if zk[j] > 0.0 else 0.0, skip_validation=True)
        k += 1
    for j in model.target.z:
        model.target.z[j].set_value(float(zs[k][0][j]), skip_validation=True)


def tolerance_amplification(
    net: Network, box: Box, k: int, bounds: BoundsList, verdicts: VerdictList | None = None
) -> np.ndarray:
    r"""How far a solver's feasibility tolerance can move ``z_k`` in the prefix model of layer ``k``.

    A MILP solver accepts points that violate each row, bound and integrality by up to its
    tolerance :math:`\varepsilon` (relative to the row's scale once it rescales the model), and
    its presolve reasons with the same tolerance. Propagating such slack through the
    encoding bounds how far the solver's idea of :math:`z_{kj}` can be from the network's,
    per unit of :math:`\varepsilon`:

    .. math::

        e_x = 1, \qquad
        e_{z_l} = |W_l|\, e_{h_{l-1}} + 1 + |W_l|\, \bar h_{l-1} + |b_l|, \qquad
        e_{h_l} = \begin{cases} 0 & \text{inactive} \\ e_{z_l} & \text{active} \\
        e_{z_l} + 1 + \max(|l_l|, |u_l|) & \text{binary} \end{cases}

    with :math:`\bar h` the magnitude bound of :math:`h` (of :math:`x` for :math:`l = 0`); a
    binary relaxed to :math:`[0, \varepsilon]` moves :math:`h` by :math:`\varepsilon M`.
    A MILP answer is trusted only with a margin of at least :math:`\varepsilon` times this
    factor: on badly scaled networks (weights of 1e-8 feeding weights of 1e9) it is huge,
    and the neuron stays undecided rather than being "proven" by a solver working below its
    own precision.
    """
    e_h = np.ones(net.input_size)
    mag_h = np.maximum(np.abs(box.lower), np.abs(box.upper))
    for j in range(k):
        layer = net.layers[j]
        w = np.abs(layer.weight)
        lo, hi = bounds[j]
        e_z = w @ e_h + 1.0 + w @ mag_h + np.abs(layer.bias)
        if layer.relu:
            v = verdicts[j] if verdicts is not None and j < len(verdicts) else None
            inactive, active = stable_masks(lo, hi, v)
            mag = np.maximum(np.abs(lo), np.abs(hi))
            e_h = np.where(inactive, 0.0, np.where(active, e_z, e_z + 1.0 + mag))
            mag_h = np.where(inactive, 0.0, np.maximum(hi, 0.0))
        else:
            e_h, mag_h = e_z, np.maximum(np.abs(lo), np.abs(hi))
    w = np.abs(net.layers[k].weight)
    return w @ e_h + 1.0 + w @ mag_h + np.abs(net.layers[k].bias)


NEGLIGIBLE_REL = 1e-6
"""A coefficient below this fraction of its row's largest (the row of ``z``, which holds a 1)
may be rounded away by a solver's scaling; see :func:`negligible_contribution`."""


def negligible_contribution(
    net: Network, box: Box, k: int, bounds: BoundsList, verdicts: VerdictList | None = None
) -> np.ndarray:
    r"""How far ``z_k`` can move if a solver treats tiny coefficients of the encoding as zero.

    Solvers rescale rows and columns and then drop entries below a threshold, so a weight of
    1e-10 on an input of 3e5 (a contribution of 3e-5) can vanish inside the solver even
    though we pass it. Per neuron, the contributions :math:`|W_{ji}|\, \bar h_i` of the weights
    with :math:`|W_{ji}| < \rho \max(1, \max_i |W_{ji}|)` (:math:`\rho` =
    :data:`NEGLIGIBLE_REL`) are summed and propagated to layer ``k`` like errors:
    :math:`d_{z_l} = |W_l|\, d_{h_{l-1}} + \sum_{\text{tiny}} |W_{l,ji}|\, \bar h_{l-1,i}`. A MILP
    proof must clear this (absolute) amount on top of its tolerance margin.
    """
    d_h = np.zeros(net.input_size)
    mag_h = np.maximum(np.abs(box.lower), np.abs(box.upper))
    d_z = np.zeros(net.layers[k].out_features)
    for j in range(k + 1):
        layer = net.layers[j]
        w = np.abs(layer.weight)
        row_max = np.maximum(1.0, w.max(axis=1, initial=0.0))
        tiny = np.where(w < NEGLIGIBLE_REL * row_max[:, None], w, 0.0)
        d_z = w @ d_h + tiny @ mag_h
        if j == k:
            break
        lo, hi = bounds[j]
        if layer.relu:
            v = verdicts[j] if verdicts is not None and j < len(verdicts) else None
            inactive = stable_masks(lo, hi, v).inactive
            d_h = np.where(inactive, 0.0, d_z)
            mag_h = np.where(inactive, 0.0, np.maximum(hi, 0.0))
        else:
            d_h, mag_h = d_z, np.maximum(np.abs(lo), np.abs(hi))
    return d_z
