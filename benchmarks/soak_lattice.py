"""The soak's ``lattice`` family: the weight-read facts, and ``verify`` against a planted bug.

Each case (:func:`exactcomp.testing.lattice_cases.lattice_case`: opposite pairs whose class
sums almost cancel, scaled pairs, copies one ulp apart, constant units, biases that make the
lattice identity's ``F`` exactly 0 or move it by ``2^-60``/``1e-300``) runs

- every check of :func:`~exactcomp.testing.soak_case.check_case` (bounds, claims,
  compression, ``verify`` of the compression and of a mutant, against the exact oracle);
- ``structure``: every fact of :func:`~exactcomp.stability.constants.layer_classes`
  (classes, constants, nulls, opposites, the identity's floor and ceiling, pass-throughs)
  checked in exact rationals, in the box and far outside it (the facts claim every input);
- ``planted``: ``verify_equivalence(f, g')`` where ``g'`` is the compression ``g`` with a
  bug planted in it (:func:`planted`, by seed: one hidden neuron (on half the seeds the
  one read with the largest weight, a slab's pass-through) removed, its outgoing
  weights halved as when one of two merged copies is lost, or its bias moved by 4 tol);
  ``EQUIVALENT`` where the exact ``max |f - g'|`` exceeds tol is an ``equivalent`` finding,
  a counterexample must hold in exact arithmetic, the bounds must enclose the exact maximum
  (:meth:`~exactcomp.testing.soak_checks.Checker.equivalence`): the see-through
  (:mod:`exactcomp.verify.seethrough`) and the twins (:mod:`exactcomp.verify.coupling`)
  must not cancel a neuron ``g'`` lost.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from exactcomp.network import Layer, Network
from exactcomp.testing.lattice_cases import lattice_case, structure_findings
from exactcomp.testing.soak_case import check_case
from exactcomp.testing.soak_checks import Checker
from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions

PLANTS = ("remove", "half", "nudge")
MAX_NEURONS = 16
"""The exact oracle's limit (:attr:`SoakOptions.exact_neurons`): every difference settled."""


def planted(g: Network, seed: int, tol: float) -> tuple[str, Network] | None:
    """``g`` with one bug (module docstring) at a hidden ReLU neuron that the next layer
    reads, chosen by ``seed``; ``None`` where ``g`` has none."""
    rng = np.random.default_rng(seed)
    cands = [
        (k, j)
        for k in range(len(g.layers) - 1)
        if g.layers[k].relu
        for j in np.flatnonzero(np.any(g.layers[k + 1].weight != 0.0, axis=0))
    ]
    if not cands:
        return None
    k, j = cands[int(rng.integers(len(cands)))]
    if (seed // len(PLANTS)) % 2 == 0:  # the neuron read the hardest (a slab's pass-through)
        k, j = max(cands, key=lambda c: float(np.max(np.abs(g.layers[c[0] + 1].weight[:, c[1]]))))
    kind = PLANTS[seed % len(PLANTS)]
    layers = list(g.layers)
    la, nx = layers[k], layers[k + 1]
    if kind == "remove" and la.out_features >= 2:
        keep = np.arange(la.out_features) != j
        layers[k] = Layer(la.weight[keep], la.bias[keep], la.relu)
        layers[k + 1] = Layer(nx.weight[:, keep], nx.bias, nx.relu)
    elif kind == "nudge":
        b = la.bias.copy()
        b[j] += 4.0 * tol
        layers[k] = Layer(la.weight, b, la.relu)
    else:
        kind = "half"
        w = nx.weight.copy()
        w[:, j] *= 0.5
        layers[k + 1] = Layer(w, nx.bias, nx.relu)
    return f"planted {kind} ({k},{j})", g.replace_layers(tuple(layers))


def _planted_check(c: Checker, g: Network) -> None:
    lo, hi = c.exact.ranges[-1]
    tol = 1e-6 * max(1.0, float(np.max(np.abs([lo, hi]))))
    bad = planted(g, c.seed, tol)
    if bad is not None:
        c.equivalence(bad[1], bad[0])


def run_lattice_case(seed: int, opts: SoakOptions, method: str) -> tuple[dict, CaseResult]:
    """Generate case ``seed``, check it (module docstring)."""
    case = lattice_case(seed, max_neurons=MAX_NEURONS)
    opts = dataclasses.replace(opts, exact_neurons=max(opts.exact_neurons, MAX_NEURONS))
    t0 = time.perf_counter()
    box = case.box
    corners = np.array([box.lower, box.upper, box.center])
    pts = np.vstack(
        [corners, np.random.default_rng(seed).uniform(box.lower, box.upper, (21, box.lower.size))]
    )
    found = [Finding("structure", d) for d in structure_findings(case.network, box, pts, seed)]
    result = check_case(case, opts, method, written=_planted_check)
    result = dataclasses.replace(
        result,
        family="lattice",
        findings=result.findings + tuple(found),
        seconds=time.perf_counter() - t0,
    )
    return {"family": "lattice", **case.to_json()}, result
