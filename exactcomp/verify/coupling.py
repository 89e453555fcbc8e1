r"""Coupling: proven links between neurons of the two networks that compute the same function.

Two independent big-M encodings make a weak MILP: the LP relaxation lets each copy take its
own relaxed activations, so even ``f`` against a permuted copy of itself gives bounds on
``f - g`` of the order of the outputs. A compressed network keeps many neurons of the original
*exactly* (same pre-activation function on the box), so we look for such pairs and add
**valid inequalities** that tie the copies together.

For a ReLU neuron :math:`q` of ``g`` and :math:`p` of ``f`` whose pre-activations agree on every
sampled input (a candidate pair, :func:`match_neurons`), :mod:`exactcomp.verify.differential`
proves bounds valid on the whole box (exactly, see that module),

.. math::

    z^g_q - z^f_p \in [\lambda, \upsilon], \qquad
    h^g_q - h^f_p \in [\min(\lambda, 0), \max(\upsilon, 0)]

(ReLU is monotone and 1-Lipschitz). Both hold for every input of the box, so adding them to the
model (:func:`add_links`) keeps it an exact encoding of the pair: it only removes relaxed
points, and the MILP remains a proof. Before any proof uses them, :func:`inconsistency` checks
the links, bounds and verdicts on the sampled inputs (a bug upstream gives UNKNOWN, not a wrong
EQUIVALENT).
"""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo

from ..bounds import Bounds
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import Verdict, stable_masks
from . import differential

#: At most this many values (64 MiB of float64) in one array of the sampled check.
CHECK_ENTRIES = 1 << 23
#: Other candidate partners per ``g`` neuron in the same ``f`` layer (:func:`match_neurons`).
TWINS = 3
MATCH_REL = 1e-4  # sampled pre-activations must agree to this relative accuracy to be paired
# (loose enough for a network re-rounded to float32; a wrong pair only gives a wide link)


def post_activation(block, k: int, j: int, bounds: list[Bounds], verdicts) -> object:
    """The term holding ``h_kj`` in an encoding made by ``milp.encoding.add_network``: the
    ReLU variable, the pre-activation itself (stably active) or ``0.0`` (stably inactive)."""
    blk = block.component(f"layer{k}")
    v = None
    if verdicts is not None and k < len(verdicts) and verdicts[k] is not None:
        v = verdicts[k][j : j + 1]
    lo, hi = bounds[k]
    inactive, active = stable_masks(lo[j : j + 1], hi[j : j + 1], v)
    if inactive[0]:
        return 0.0
    if active[0]:
        return blk.z[j]
    return blk.h[j]


def match_neurons(
    f: Network, g: Network, points: np.ndarray, alternatives: int = 1, twins: int = 0
) -> list[tuple[int, int, int, int]]:
    r"""Pairs ``(gk, q, fk, p)`` of ReLU neurons whose pre-activations agree on ``points``.

    A candidate only: the pairing is used after :func:`prove_links` has proven it on the box.
    Each ``g`` neuron gets the ``f`` neuron (any ReLU layer) with the smallest disagreement
    ``dev / scale`` among those with ``dev <= MATCH_REL * scale``, where ``dev`` is the largest
    difference over the points and ``scale = 1 + max |z|`` of the two.
    ``alternatives > 1``: up to that many candidates per ``g`` neuron, the best of each ``f``
    layer, smallest ``dev`` first (consecutive in the list; the first is the pair above).
    A neuron can agree with neurons of two layers (``relu(a) - relu(-a) = a``, a lattice
    network's identity) of which only one is its partner in the differential argument
    (:func:`~exactcomp.verify.differential.bound_differences` keeps the narrower link).
    ``twins > 0``: also up to that many other agreeing neurons of the same ``f`` layers (a
    lattice network holds several copies of one function that its weights do not show equal;
    the argument links each target to the copy it reads), for ``g`` neurons not constant on
    the points.

    Not every pair is compared: each neuron's values are projected on one random direction
    ``r`` of the points, and only the ``f`` neurons whose projections lie within
    ``|r|_1 * MATCH_REL * (1 + M)`` of the ``g`` neuron's are (``M`` the largest ``|z|`` of
    either side), which contains every neuron that agrees
    (:math:`|r \cdot (z^g - z^f)| \le |r|_1 \, dev`): the same pairs as comparing all,
    in a sort and a few comparisons per neuron instead of (neurons of ``g``) x (neurons of
    ``f``) x points.
    """
    zf, zg = f.preactivations(points), g.preactivations(points)
    r = np.random.default_rng(0).normal(size=len(points))
    r1 = float(np.abs(r).sum())
    index = []
    with np.errstate(invalid="ignore", over="ignore"):
        for fk in f.relu_layers:
            key = r @ zf[fk]
            order = np.argsort(key, kind="stable")
            index.append((fk, zf[fk], np.abs(zf[fk]).max(axis=0, initial=0.0), key[order], order))
        pairs = []
        for gk in g.relu_layers:
            keys, gmax = r @ zg[gk], np.abs(zg[gk]).max(axis=0, initial=0.0)
            for q in range(g.layers[gk].out_features):
                col = zg[gk][:, q]
                found, same = [], {}
                for fk, z, fmax, sorted_keys, order in index:
                    # 1% more: the float64 projections carry their own round-off
                    reach = 1.01 * r1 * MATCH_REL * (1.0 + max(fmax.max(initial=0.0), gmax[q]))
                    lo, hi = np.searchsorted(sorted_keys, [keys[q] - reach, keys[q] + reach])
                    cand = np.sort(order[lo:hi])
                    if not np.isfinite(reach) or not np.isfinite(keys[q]):
                        cand = np.arange(z.shape[1])  # overflowed values: compare all
                    if cand.size == 0:
                        continue
                    dev = np.abs(z[:, cand] - col[:, None]).max(axis=0)
                    scale = 1.0 + np.maximum(fmax[cand], gmax[q])
                    i = int(np.argmin(dev / scale))
                    if dev[i] <= MATCH_REL * scale[i]:
                        found.append((dev[i], fk, int(cand[i])))
                        if twins and np.ptp(col) > 0:
                            near = np.flatnonzero(dev <= MATCH_REL * scale)
                            near = near[np.argsort(dev[near] / scale[near], kind="stable")]
                            same[fk] = [int(cand[t]) for t in near[1 : 1 + twins]]
                found.sort(key=lambda t: t[0])  # stable: the earlier layer first on a tie
                best = found[:alternatives]
                pairs += [(gk, q, fk, p) for _, fk, p in best]
                pairs += [(gk, q, fk, p) for _, fk, _p in best for p in same.get(fk, ())]
    return pairs


def add_links(model, links: dict, enc_f, enc_g) -> int:
    """Add the proven links (:func:`exactcomp.verify.differential.bound_differences`) to the
    joint model as valid inequalities on ``z`` and ``h``; returns how many were added.

    ``enc_f``/``enc_g`` are the ``(bounds, verdicts)`` each network was encoded with (under
    ``model.f`` and ``model.g``).
    """
    model.links = pyo.ConstraintList()
    n = 0
    for (gk, q), (fk, p, zlo, zhi, hlo, hhi) in links.items():
        if not (np.isfinite(zlo) and np.isfinite(zhi)):
            continue
        zg = model.g.component(f"layer{gk}").z[q]
        zf = model.f.component(f"layer{fk}").z[p]
        model.links.add(zg - zf <= zhi)
        model.links.add(zg - zf >= zlo)
        hg = post_activation(model.g, gk, q, *enc_g)
        hf = post_activation(model.f, fk, p, *enc_f)
        if not (isinstance(hg, float) and isinstance(hf, float)):
            model.links.add(hg - hf <= hhi)
            model.links.add(hg - hf >= hlo)
        n += 1
    return n


def inconsistency(
    f,
    g,
    links: dict,
    points: np.ndarray,
    tol: Tolerances = DEFAULT,
    deadline: float | None = None,
) -> str | None:
    """A description of the first fact contradicted at a concrete input, or ``None``.

    Every bound, verdict and link used in a proof must hold at every input of the box; checking
    them on the sampled inputs costs a few forward passes and turns a bug upstream (an unsound
    bound, a wrong verdict) into an UNKNOWN instead of a wrong EQUIVALENT. ``f``/``g`` are the
    :class:`~exactcomp.verify.differential.Side` objects (network, bounds, verdicts) and
    ``links`` come from :func:`~exactcomp.verify.differential.bound_differences`. Links are
    exact (of the order of round-off) while a float64 forward pass is not, so a link, bound
    or verdict is contradicted only by more than ``check_scale`` times the size of the terms
    summed (a lattice network's tie ``z = |t|/2 - t/2 = 0`` evaluates to ``-4e-16``).
    The points are checked in chunks of at most :data:`CHECK_ENTRIES` values per array (an
    image network's thousands of points would otherwise hold gigabytes at once); past
    ``deadline`` no chunk starts but the first (a check of fewer points: the proof itself
    does not rest on it; marabou cifar10_small: 8.5 s of CPU past ``verify``'s limit).
    """
    width = sum(la.out_features for side in (f, g) for la in side.net.layers)
    per = max(1, CHECK_ENTRIES // max(1, width))
    for start in range(0, len(points), per):
        if start and deadline is not None and time.perf_counter() > deadline:
            break
        found = _contradiction(f, g, links, points[start : start + per], tol)
        if found is not None:
            return found
    return None


def _contradiction(f, g, links: dict, points: np.ndarray, tol: Tolerances) -> str | None:
    """:func:`inconsistency` on one chunk of points."""
    zs, scales = {}, {}
    for name, side in (("f", f), ("g", g)):
        zs[name] = side.net.preactivations(points)
        scales[name] = _term_scales(side.net, points)
        for k, (z, (lo, hi)) in enumerate(zip(zs[name], side.bounds, strict=True)):
            slack = tol.check_scale * scales[name][k]  # a tie z = 0 evaluates to -4e-16
            if np.any(z < lo - slack) or np.any(z > hi + slack):
                return f"a bound of layer {k} of {name} does not enclose a sampled value"
            v = side.verdicts[k]
            if v is not None and (
                np.any((z - slack)[:, v == Verdict.INACTIVE] > 0)
                or np.any((z + slack)[:, v == Verdict.ACTIVE] < 0)
            ):
                return f"a stability verdict of layer {k} of {name} is contradicted by a sample"
    for (gk, q), (fk, p, zlo, zhi, _, _) in links.items():
        d = zs["g"][gk][:, q] - zs["f"][fk][:, p]
        slack = tol.check_scale * (scales["g"][gk][:, q] + scales["f"][fk][:, p])
        if np.any(d < zlo - slack) or np.any(d > zhi + slack):
            return f"the link of neuron {q} of layer {gk} of g is contradicted by a sample"
    return None


def _term_scales(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """Per layer, the size of the terms a float64 pass at ``x`` sums (``Network.term_scale``)."""
    s, out = np.abs(x), []
    for layer in net.layers:
        s = layer.apply_abs(s) + np.abs(layer.bias)  # a convolution as one
        out.append(s)
    return out


def swapped_outputs(
    f, g, points: np.ndarray, match: int, box_bounds: Bounds, tol: Tolerances, deadline
):
    """Bounds ``(lo, hi)`` on each ``g_i - f_i`` from the argument with ``f`` and ``g``
    swapped (module docstring), or a description of a contradicted fact.

    ``f``/``g`` are :class:`~exactcomp.verify.differential.Side` objects; the candidate pairs
    come from the first ``match`` of the sampled ``points`` as the forward ones do, and the
    swapped links are checked on all of them (:func:`inconsistency`). No link is proven past
    ``deadline`` (the outputs are still bounded).
    """
    pairs = match_neurons(g.net, f.net, points[:match], 2, twins=TWINS)
    back = differential.bound_differences(g, f, pairs, box_bounds, deadline=deadline)
    broken = inconsistency(g, f, back.links, points, tol, deadline=deadline)
    if broken is not None:
        return f"{broken} (the roles swapped: its g is f)"
    return tuple((-hi, -lo) for lo, hi in back.outputs)
