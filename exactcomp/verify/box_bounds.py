r"""The bounds of :math:`\max_{x \in B} |f_i(x) - g_i(x)|` per output on one box that
:meth:`exactcomp.verify.charge.Charger.proven` combines (the smallest holds: each is sound on
its own), from the cheapest:

* :func:`symbolic_bound`: the differential bound of :mod:`exactcomp.verify.symbolic`, with the
  pass's ranges of every hidden difference (the joint LP starts from them).
* :func:`split_bound`: input splitting (:func:`exactcomp.verify.splitting.split_verify`,
  ``exactcomp verify``'s search) in its ``tightest`` mode: worst leaf first, closing leaves
  within a narrowing factor of the largest difference seen (on few inputs).
* :func:`milp_bound`: with a ``target`` > 0, the exact joint MILP in decision form
  (:func:`exactcomp.verify.diffmilp.milp_within`: the same rows as the joint LP with ``f``'s
  and ``g``'s phase columns binary) asks whether every output's two sides stay within
  ``target``; if all are proven infeasible beyond it, the bound is ``target``; a time-out or a
  counterexample claims nothing and the bound given stands. Exact on small networks (the
  oracle's value to the margin); on the digits model at 8 bits (400 binaries) no verdict in
  60 s per side and HiGHS' dual bound 3.25 -> 3.20 (RESULTS.md "lossy6"), so it is off by
  default.
* :func:`head_bound`: with a ``target`` > 0, where ``g`` changes ``f``'s last layer alone (its
  error is then affine in ``f``'s last hidden layer), the stability engine decides whether
  every output stays within ``target``, as one network
  (:func:`exactcomp.verify.head.head_bounds`; on the digits model with its output layer at 8
  bits, 0.4 proven in 8.5 s where the differential bounds end at 0.86, RESULTS.md "head14").
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..domain import Box
from ..network import Network
from .diffmilp import milp_within
from .head import head_bounds, shared_body
from .pairs import Pair
from .splitting import split_verify
from .symbolic import difference_bounds


def split_bound(f: Network, g: Network, box: Box, target: float, seconds: float):
    """Per output, input splitting's bound of ``|f_i - g_i|`` on ``box`` in ``seconds``, and
    whether it finished: every leaf within ``target`` or within
    :data:`~exactcomp.verify.splitting.GAP_END` times the largest difference seen, which no
    later bound (the joint LP) can beat by more than that factor.

    The search is :func:`~exactcomp.verify.splitting.split_verify` in its ``tightest`` mode
    (the one ``exactcomp verify`` runs, asked for a bound rather than a decision): asked to
    decide ``target`` = 0, it would stop at the first sampled difference with nothing proven.
    """
    m = f.output_size
    out = split_verify(f, g, box, range(m), target, time.perf_counter() + seconds, tightest=True)
    per_output = np.array([max(out.bounds[(i, 1.0)], out.bounds[(i, -1.0)]) for i in range(m)])
    return per_output, out.proven


def milp_bound(pair: Pair, box: Box, per_output: np.ndarray, target: float, seconds: float):
    """``per_output`` capped at ``target`` when the joint MILP proves every output within it
    (outputs above ``target`` first, the largest first: one side not proven ends the try)."""
    order = [int(i) for i in np.argsort(-per_output, kind="stable") if per_output[i] > target]
    sides = [(pair.outputs[i], s) for i in order for s in (1.0, -1.0)]
    if milp_within(pair, box, target, seconds, sides):
        return np.minimum(per_output, target)
    return per_output


def head_bound(f: Network, g: Network, box: Box, target: float, seconds: float) -> np.ndarray:
    """Per output, the stability engine's bound of ``|f_i - g_i|`` on ``box`` when ``g`` is
    ``f`` with another last layer, asked to decide ``target`` (``inf`` where it does not
    apply)."""
    m = f.output_size
    if not shared_body(f, g):
        return np.full(m, np.inf)
    sides = [(i, s) for i in range(m) for s in (1.0, -1.0)]
    out = head_bounds(f, g, box, sides, target, deadline=time.perf_counter() + seconds)
    return np.array([max(out.bounds[(i, 1.0)], out.bounds[(i, -1.0)]) for i in range(m)])


def symbolic_bound(pair: Pair, g: Network, box: Box, end: float | None) -> tuple[np.ndarray, list]:
    """Per output ``i``, the differential bound of ``max |f_i - g_i|`` on ``box``, and the
    pass's bounds of every hidden layer's difference (the joint LP's ranges); ``Late`` past
    ``end``."""
    b = difference_bounds(dataclasses.replace(pair, g=g, end=end), box.lower[None], box.upper[None])
    return np.maximum(-b.lo[0], b.hi[0]), b.differences(pair.f)
