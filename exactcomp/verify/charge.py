r"""The proven and the sampled size of a lossy change: :math:`\max_{x \in D} \|f(x) - g(x)\|_\infty`.

Every lossy step (quantisation, pruning, a nearly stable neuron replaced) keeps the
architecture, so ``g`` is compared with the *original* ``f`` neuron by neuron by the
differential bounds of :mod:`exactcomp.verify.symbolic` (no other bound is written here):

* :meth:`Charger.proven` is a sound upper bound: the symbolic difference bound on each box of
  the domain (``f``'s own bounds, the expensive part, are computed once per box and reused for
  every candidate ``g``), and for at most :data:`SPLIT_MAX_INPUTS` inputs the tighter bound of
  input splitting (:func:`exactcomp.verify.box_bounds.split_bound`) within a time budget.
  It runs before the LPs below, which
  are skipped when it finishes (then no LP could be lower by more than that factor; on ACAS
  Xu 1_1 over prop_1 at 8 bits: 0.0043 in 10 s against the LP's 974 in 30 s,
  benchmarks/RESULTS.md "acasq8"); when it does not, the LP runs too and the smaller holds.
  With ``tighten_seconds`` > 0, ``f``'s hidden-layer bounds are first tightened by LP, once
  (:func:`exactcomp.verify.tighten.tightened_pair`), and each box's bound is the smaller of
  the difference bounds with and without them (both are sound; the relaxations' slope choices
  make tighter root bounds give a *looser* difference bound now and then); where the
  tightening moved no bound (its seconds ran out before an LP finished) the box keeps one
  pair, and a proof one symbolic bound instead of two equal ones.
  With ``lp_seconds`` > 0, the joint LP of ``f`` and ``g``
  (:func:`exactcomp.verify.difflp.lp_difference_bounds`) tightens each output's bound further
  (one LP per output and sign: seconds, so for a final claim, not inside a search loop;
  with the phase columns that tie each unstable ReLU's triangle to its difference, 1.5 %
  tighter on the digits model at 8 bits for 3x the LP time, measured in benchmarks/RESULTS.md
  "lossy5" with the other candidates: back-substituted hidden differences, exact bounds of
  ``f``).
  With ``bab_seconds`` > 0, branch and bound on ``f``'s ReLU phases inside that LP
  (:func:`exactcomp.verify.diffbab.bab_difference_bounds`, whose root is the joint LP)
  instead, for ``lp_seconds + bab_seconds``.
  With ``milp_seconds`` > 0 and a ``target`` > 0, last, the exact joint MILP decides whether
  every output stays within ``target``, and with ``head_seconds`` > 0, where ``g`` changes
  ``f``'s last layer alone, the stability engine does (:mod:`exactcomp.verify.box_bounds`,
  which holds every per-box bound this module combines).
* :func:`~exactcomp.verify.falsify.sampled_max_difference` (re-exported here) is a lower bound:
  the largest difference seen on uniform
  points, near-vertex points, the centre, after a projected gradient ascent from the worst
  of them (:func:`exactcomp.verify.falsify.ascend`) and after a coordinate local search from
  the ascents' ends (:func:`exactcomp.verify.local_search.local_search`: vertices one coordinate
  at a time, then kicks; on the digits model at 8 bits 0.198 -> 0.272 for 0.25 s of CPU).

On a network with a layer too large to hold densely (:attr:`~exactcomp.network.Layer.sparse`,
a large convolution or pool) none of the above fits in memory (each holds a dense row of
coefficients per neuron): :meth:`Charger.proven` is then the differential interval bound of
:mod:`exactcomp.verify.diffinterval` (sparse products only), looser and sound, and, where ``g``
equals ``f`` on every layer up to the last sparse one (``cut``: the lossy search edits only
the dense head), the smaller of it and the bound of the dense tails on a box enclosing ``f``'s
outputs of layer ``cut - 1`` (:mod:`exactcomp.verify.prefix`): a second charger of the tails,
with every option above.

The claim a lossy command reports is one :meth:`Charger.proven` of the original against the
final network, never a sum of per-step charges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence

import numpy as np

from ..bounds.interval import intersect, interval_bounds
from ..bounds.linear import Late
from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from . import box_bounds
from .diffbab import bab_difference_bounds
from .diffinterval import interval_difference
from .difflp import lp_difference_bounds

# re-exported: their home before they moved to falsify
from .falsify import sampled_max_difference as sampled_max_difference
from .falsify import sampled_worst as sampled_worst
from .pairs import Pair, comparable
from .prefix import cut, shared_prefix, tail, tail_box
from .tighten import tightened_pair

SPLIT_MAX_INPUTS = 12  # input splitting pays off only in low dimension (2 halves per split)
#: A pair's symbolic proof costs about this many times ``f``'s own bounds (``Pair.prepare``;
#: resnet_2b: 27.8 against 12.7 s CPU, RESULTS.md "rn23"; 24.5 against 10.8 s since both
#: form their rounding pads by matrix-vector products, "lead24"): :attr:`Charger.seconds`
#: before the first proof, so that a deadline refuses a first proof that cannot end in time.
PROOF_PER_PREPARE = 2.2


class Charger:
    """Proven bounds of ``max |f - g|`` for many ``g`` against one ``f`` on a union of boxes."""

    def __init__(
        self,
        f: Network,
        boxes: Sequence[Box],
        tol: Tolerances = DEFAULT,
        *,
        tighten_seconds: float = 0.0,
        tighten_end: float | None = None,
        tighten_under: float = np.inf,
        end: float | None = None,
    ) -> None:
        """``tighten_end`` (a ``time.perf_counter()`` value): the tightening ends by then too
        (every bound it has tightened is kept: each is sound on its own). ``tighten_under``:
        the tightening runs only if ``f``'s symbolic bounds took at most this many seconds (a
        network whose proofs are costly pays for the tightening twice: its seconds, and a
        second symbolic bound in every proof). ``end``: ``f``'s symbolic bounds stop there
        (between two layers); past it the charger is ``coarse``: every proof is then the
        differential interval bound (:mod:`exactcomp.verify.diffinterval`, sound, looser)."""
        begun = time.perf_counter()
        self.f, self.boxes, self.tol = f, tuple(boxes), tol
        #: a layer held sparse: the differential interval bound, and the dense tails' bound
        #: from layer ``cut`` on where ``g`` shares ``f``'s layers before it (module docstring)
        self.sparse = any(la.sparse for la in f.layers)
        self.cut = cut(f)
        self._tail: Charger | None = None
        self._roots: list | None = None  # sparse: per box, f's bounds of every layer
        outputs = range(f.output_size)
        try:
            self._pairs = (
                []
                if self.sparse
                else [Pair.prepare(f, f, b, outputs, tol, end) for b in self.boxes]
            )
        except Late:  # f's bounds would end past ``end``: interval bounds only
            self._pairs = []
        self.coarse = not self.sparse and not self._pairs
        prepared = time.perf_counter() - begun
        self._plain: list[Pair | None] | None = None  # the untightened pairs, when tightened
        if tighten_end is not None:
            tighten_seconds = min(tighten_seconds, tighten_end - time.perf_counter())
        if time.perf_counter() - begun > tighten_under:
            tighten_seconds = 0.0
        if tighten_seconds > 0 and not (self.sparse or self.coarse):
            share = tighten_seconds / len(self.boxes)
            self._plain = self._pairs
            self._pairs = [
                tightened_pair(p, b, share) for p, b in zip(self._pairs, self.boxes, strict=True)
            ]
            # a box whose bounds the tightening did not move (no LP finished in time) has one
            # pair: the two would give the same bound (the pads are functions of the root)
            moved = [_moved(t, p) for t, p in zip(self._pairs, self._plain, strict=True)]
            self._plain = [p if m else None for p, m in zip(self._plain, moved, strict=True)]
            if not any(moved):
                self._plain = None
        if self.sparse:
            self._roots = [interval_bounds(f, b, tol=tol) for b in self.boxes]
            tails = self.cut < len(f.layers) and f.layers[self.cut].in_features > 0
            if tails and _finite(self._roots):
                boxes_a = [tail_box(f, self.cut, b, tol) for b in self.boxes]
                self._tail = Charger(tail(f, self.cut), boxes_a, tol,
                                     tighten_seconds=max(tighten_seconds, 0.0),
                                     tighten_end=tighten_end,
                                     tighten_under=tighten_under)  # fmt: skip
                self._roots = [
                    [
                        *r[: self.cut],
                        *(intersect(a, b) for a, b in zip(r[self.cut :], t, strict=True)),
                    ]
                    for r, t in zip(self._roots, self._tail.roots(), strict=True)
                ]
        self.calls = self.late = 0  # proofs asked, and those the clock cut to the interval bound
        #: wall seconds of the last symbolic bound computed (a memoised one costs none; held
        #: sparse: of the last proof): what a search with a deadline expects the next to take;
        #: before the first, :data:`PROOF_PER_PREPARE` times ``f``'s (per pass)
        passes = 1 if self._plain is None else 2
        self.seconds = 0.0 if self.sparse else PROOF_PER_PREPARE * prepared * passes
        #: per network proven (its weights' digest), the symbolic bounds per box: a search
        #: proves the network it keeps again (the final claim, the LP after its symbolic
        #: bound), and on a dense conv network one symbolic proof takes 30 s (RESULTS.md
        #: "qbudget19")
        self._symbolic: dict[bytes, list[np.ndarray]] = {}
        #: ... and per box the pass's ranges of every hidden difference, with the seconds of
        #: one pass: the joint LP starts from them (on cifar_base_kw its own prefix bounds
        #: took 11 s CPU, RESULTS.md "clock22")
        self._ranges: dict[bytes, tuple[list, float]] = {}
        self._last_ranges: tuple[list, float] = ([None] * len(self.boxes), 0.0)  # of the last g

    def proven(
        self,
        g: Network,
        *,
        split_seconds: float = 0.0,
        target: float = 0.0,
        lp_seconds: float = 0.0,
        bab_seconds: float = 0.0,
        milp_seconds: float = 0.0,
        head_seconds: float = 0.0,
        end: float | None = None,
    ) -> float:
        r"""A sound upper bound of :math:`\max_{x \in D} \|f(x) - g(x)\|_\infty`.

        ``split_seconds`` > 0 lets input splitting (low input dimension only) tighten it
        first, for its tightest bound (leaves within ``target``, the tolerance to prove, are
        not split; with ``target`` 0, those near the largest difference seen); ``lp_seconds``
        > 0 the joint LP, unless splitting finished;
        ``bab_seconds`` > 0 branch and bound in the joint LP (sides at most ``target`` are
        not split); ``milp_seconds`` > 0 (with ``target`` > 0) then the exact joint MILP's
        decision "within ``target``?" (module docstring); ``head_seconds`` > 0 (with
        ``target`` > 0), where ``g`` differs from ``f`` in its last layer alone, the stability
        engine's decision of the same (:mod:`exactcomp.verify.head`). ``end``
        (``time.perf_counter``): the solvers' seconds end there, and a symbolic bound that
        would not (by :attr:`seconds`) or does not (between two layers) gives way to the
        differential interval bound (``coarse``): a proof stopped by the clock claims less."""
        if not comparable(self.f, g):
            raise ValueError("lossy changes must keep the architecture (layer shapes and ReLUs)")
        self.calls += 1
        if _identical(self.f, g):
            return 0.0  # the same weights: the same function (the padded bound would be ~1e-7)
        if self.sparse or self.coarse:
            self.late += int(self.coarse)  # f's bounds ran late: the interval bound only
            begun = time.perf_counter()
            bounds = [interval_difference(self.f, g, b, self.tol) for b in self.boxes]
            bound = max(float(max(b.max(initial=0.0), 0.0)) for b in bounds)
            if self._tail is not None and bound > 0 and shared_prefix(self.f, g) >= self.cut:
                options = {"split_seconds": split_seconds, "target": target,
                           "lp_seconds": lp_seconds, "bab_seconds": bab_seconds,
                           "milp_seconds": milp_seconds, "head_seconds": head_seconds,
                           "end": end}  # fmt: skip
                bound = min(bound, self._tail.proven(tail(g, self.cut), **options))
            self.seconds = time.perf_counter() - begun
            return bound

        def cut(seconds: float) -> float:  # a solver's seconds, to ``end``
            return seconds if end is None else max(min(seconds, end - time.perf_counter()), 0.0)

        try:
            if not self.known(g) and cut(self.seconds) < self.seconds:
                raise Late  # no symbolic pass would end by ``end``
            bounds = self._symbolic_bounds(g, end)
        except Late:
            self.late += 1  # the report's ``proofs_late``
            return max(float(interval_difference(self.f, g, b, self.tol).max(initial=0.0))
                       for b in self.boxes)  # fmt: skip
        worst = 0.0
        ranges, pass_seconds = self._last_ranges
        for pair, symbolic, box, known in zip(self._pairs, bounds, self.boxes, ranges,
                                              strict=True):  # fmt: skip
            per_output = symbolic.copy()
            settled = per_output.max(initial=0.0) <= target
            if split_seconds > 0 and box.dim <= SPLIT_MAX_INPUTS and not settled:
                seconds = cut(split_seconds / len(self.boxes))
                split, settled = box_bounds.split_bound(self.f, g, box, max(target, 0.0), seconds)
                per_output = np.minimum(per_output, split)
                settled = settled or per_output.max(initial=0.0) <= target
            deep = len(self.f.layers) > 1  # one affine layer: the symbolic bound is exact
            share = cut((lp_seconds + bab_seconds) / len(self.boxes))
            if deep and share > 0 and not settled:
                paired = dataclasses.replace(pair, g=g)
                if bab_seconds > 0:
                    lp = bab_difference_bounds(paired, box, share, target=target).bounds
                else:
                    lp = lp_difference_bounds(paired, box, share, known=known,
                                              pass_seconds=pass_seconds)  # fmt: skip
                per_output = np.minimum(per_output, lp)
            if milp_seconds > 0 and target > 0 and per_output.max(initial=0.0) > target:
                per_output = box_bounds.milp_bound(dataclasses.replace(pair, g=g), box, per_output, target,
                                   cut(milp_seconds / len(self.boxes)))  # fmt: skip
            head = cut(head_seconds / len(self.boxes))
            if head > 0 and target > 0 and per_output.max(initial=0.0) > target:
                per_output = np.minimum(
                    per_output, box_bounds.head_bound(self.f, g, box, target, head)
                )
            worst = max(worst, float(max(per_output.max(initial=0.0), 0.0)))
        return worst

    def known(self, g: Network) -> bool:
        """True when :meth:`proven` of ``g`` costs next to nothing: ``g`` is ``f``, or its
        symbolic bounds are memoised (held sparse: its dense tail's, the interval part is
        recomputed: milliseconds on Convnet_avgpool). What a deadline lets through
        (:class:`~exactcomp.rewrite.acceptance.Gate`)."""
        if _identical(self.f, g):
            return True
        if self.sparse:
            shared = self._tail is not None and shared_prefix(self.f, g) >= self.cut
            return shared and self._tail.known(tail(g, self.cut))
        return _digest(g) in self._symbolic

    def _symbolic_bounds(self, g: Network, end: float | None = None) -> list[np.ndarray]:
        """Per box, the symbolic bound of ``|f_i - g_i|`` per output (the smaller with and
        without the tightened bounds of ``f``), computed once per network ``g``: the key is a
        SHA-256 digest of its layers' shapes, dtypes, ReLUs, structures and weights' bytes, so
        the same bounds come back only for the same numbers (a layer held sparse is never
        memoised: its matrix has no one byte string)."""
        key = _digest(g)
        if key is None or key not in self._symbolic:
            begun = time.perf_counter()
            plain = self._plain or [None] * len(self.boxes)
            bounds, ranges = [], []
            for pair, other, box in zip(self._pairs, plain, self.boxes, strict=True):
                per_output, diffs = box_bounds.symbolic_bound(pair, g, box, end)
                if other is not None:
                    per_output = np.minimum(
                        per_output, box_bounds.symbolic_bound(other, g, box, end)[0]
                    )
                bounds.append(per_output)
                ranges.append(diffs)
            self.seconds = time.perf_counter() - begun
            passes = len(self.boxes) * (1 if self._plain is None else 2)
            self._last_ranges = (ranges, self.seconds / passes)
            if key is None:
                return bounds
            self._symbolic[key] = bounds
            self._ranges[key] = self._last_ranges
        self._last_ranges = self._ranges[key]
        return self._symbolic[key]

    def roots(self) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per box, ``f``'s proven pre-activation bounds of every layer: the symbolic pairs'
        (tightened when asked); on a sparse network the interval bounds, met with the tail
        charger's bounds of the tail's layers on its boxes (which enclose ``f``'s there)."""
        if self._roots is not None:
            return self._roots
        return [list(p.root) for p in self._pairs]


def _moved(tightened: Pair, plain: Pair) -> bool:
    """True when the tightening changed some root bound of ``plain``."""
    return any(
        not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))
        for a, b in zip(tightened.root, plain.root, strict=True)
    )


def _identical(f: Network, g: Network) -> bool:
    return shared_prefix(f, g) == len(f.layers)


def _finite(roots: list) -> bool:
    """True when every bound of every box is finite (a box can be built from them)."""
    return all(np.isfinite(lo).all() and np.isfinite(hi).all() for r in roots for lo, hi in r)


def _digest(g: Network) -> bytes | None:
    """A SHA-256 digest of everything ``g`` computes with, or None if a layer is sparse."""
    digest = hashlib.sha256()
    for la in g.layers:
        if la.sparse:
            return None
        digest.update(f"{la.relu}{la.structure!r}".encode())
        for a in (la.weight, la.bias):
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(a.data)
    return digest.digest()
