"""The search and shortcut phases of one :func:`~exactcomp.verify.verify_equivalence` run:
sampling (1), the shared body (1a), input splitting (1b) and gradient ascent (3), in the
order and with the maths of :mod:`exactcomp.verify.equivalence`'s docstring, which also holds
the proof phases (the differential argument and the MILP).

Each phase either settles the question (a counterexample confirmed in exact arithmetic, or a
proof) or leaves proven bounds in :attr:`~exactcomp.verify.run.EquivalenceRun.known` for the
phases after it; each keeps to its share of the time left.
"""

from __future__ import annotations

import time

import numpy as np

from . import falsify, head, splitting
from .result import Counterexample, EquivalenceResult, EquivalenceStatus
from .run import EquivalenceRun

SAMPLES = 4096  # uniform points in the falsification phase
GRADIENT_STARTS = 4  # starting points per objective for gradient ascent
MATCH_POINTS = 512  # sampled inputs used to pair neurons of f and g
FALSIFY_SHARE = 0.2  # at most this share of the time limit goes to sampling + gradients
SPLIT_MAX_INPUTS = 12  # input splitting runs in full for at most this many free inputs
SPLIT_WIDE_NODES = 64  # ... and with more free inputs, bounds at most this many boxes
SPLIT_SHARE = 0.75  # input splitting may use this share of the time left after sampling
# ... and bounds at most this many boxes when paired neurons differ by more than a quarter of
# their size (permuted copies; but also ACAS Xu 1_1 at 2 or 4 bits or pruned, whose outputs
# differ by 0.007-0.03: proven with 361-3,317 boxes, benchmarks/RESULTS.md "acasq8")
SPLIT_UNPAIRED_NODES = 4096
# networks that share every hidden layer: the stability engine may use this share of the time
# left after sampling (digits l1 = 0, output layer at 8 bits: EQUIVALENT at tol 0.4 in
# 12 s where the later phases end at 0.86 in 60 s; benchmarks/RESULTS.md "head14")
HEAD_SHARE = 0.75


class SearchPhases(EquivalenceRun):
    """Phases 1, 1a, 1b and 3 of a run (:mod:`exactcomp.verify.equivalence`); the run itself,
    with the proof phases, subclasses this."""

    def sample(self, rng: np.random.Generator, data) -> Counterexample | None:
        """Phase 1: both networks on the candidate points (uniform, corners, data)."""
        t = time.perf_counter()
        self.progress.task("sampling", 1)
        self.points = falsify.candidate_points(self.box, SAMPLES, rng, data)
        cex = self.counterexample(self.points, "sampling")
        self.progress.advance(1)
        self.timed("sampling", t)
        return cex

    def split(self) -> EquivalenceResult | None:
        """Phase 1b: input splitting over differential bounds, when it applies; a result when
        it settles the question, else None (its proven bounds are kept in ``self.known``)."""
        f, g = self.f, self.g
        if self.mode != "linf" or SPLIT_MAX_INPUTS <= 0:
            return None
        free = int(np.count_nonzero(self.box.upper > self.box.lower))  # fixed inputs never split
        if not splitting.comparable(f, g):
            return None
        nodes = 2_000_000 if free <= SPLIT_MAX_INPUTS else SPLIT_WIDE_NODES
        if not splitting.paired(f, g, self.points[:MATCH_POINTS]):
            nodes = min(nodes, SPLIT_UNPAIRED_NODES)
        t = time.perf_counter()
        self.progress.task("input splitting", 1)
        out = splitting.split_verify(
            f,
            g,
            self.box,
            self.outputs,
            self.tol,
            t + SPLIT_SHARE * self.left(),
            max_nodes=nodes,
            tolerances=self.tolerances,
        )
        self.boxes = out.nodes
        cex = self.counterexample(out.x, "splitting")
        self.progress.advance(1, f"{out.nodes} boxes")
        self.timed("splitting", t)
        if cex is not None:
            return self.finish(EquivalenceStatus.NOT_EQUIVALENT, np.inf, cex, reason=cex.source)
        for o, b in out.bounds.items():  # with what the shared body proved, if it ran
            self.known[o] = min(self.known.get(o, np.inf), b)
        if out.proven:
            return self.finish(
                EquivalenceStatus.EQUIVALENT,
                max(*out.bounds.values(), 0.0),
                proven=len(self.objectives),
                reason=f"input splitting over differential bounds ({out.nodes} boxes)",
            )
        return None

    def head(self) -> EquivalenceResult | None:
        """Phase 1a (``linf``, networks that share every hidden layer exactly; after 1b on
        few inputs): each side of
        each compared output is a row on the shared body, asked of the stability engine
        (:mod:`exactcomp.verify.head`) within :data:`HEAD_SHARE` of the time left; a result
        when it settles the question, else None (its proven bounds are kept in ``self.known``
        and carried by the phases after it)."""
        if self.mode != "linf" or not head.shared_body(self.f, self.g):
            return None
        todo = [o for o in self.objectives if not self.known.get(o, np.inf) <= self.tol]
        t = time.perf_counter()
        self.progress.task("shared body", 1)
        out = head.head_bounds(
            self.f,
            self.g,
            self.box,
            todo,
            self.tol,
            deadline=t + HEAD_SHARE * self.left(),
            tol=self.tolerances,
        )
        self.progress.advance(1)
        self.timed("shared body", t)
        cex = self.counterexample(out.points, "shared body") if len(out.points) else None
        if cex is not None:
            return self.finish(EquivalenceStatus.NOT_EQUIVALENT, np.inf, cex, reason=cex.source)
        for o, b in out.bounds.items():
            self.known[o] = min(self.known.get(o, np.inf), b)
        if all(self.known.get(o, np.inf) <= self.tol for o in self.objectives):
            return self.finish(
                EquivalenceStatus.EQUIVALENT,
                max(*self.known.values(), 0.0),
                proven=len(self.objectives),
                reason="the shared hidden layers: each output's difference proven as a row "
                "on them (exactcomp.verify.head)",
            )
        return None

    def gradient(self) -> Counterexample | None:
        """Phase 2 (when the differential bounds did not prove everything): gradient ascent
        on each objective still open, from the best sampled points; none once the run's time
        is up (its forward passes of every sampled point alone took 8.9 s on marabou
        cifar10_small at load 4, past ``verify``'s limit)."""
        if self.left() <= 0:
            return None
        pts = self.points
        t = time.perf_counter()
        budget = t + FALSIFY_SHARE * self.left()
        todo = [o for o in self.objectives if not self.known.get(o, np.inf) <= self.tol]
        self.progress.task("gradient search", len(todo))
        fx, gx = self.f.forward(pts), self.g.forward(pts)
        m = self.f.output_size
        cex = None
        for obj in todo:
            if time.perf_counter() > budget:
                break
            if self.mode == "linf":
                i, s = obj
                score = s * (fx[:, i] - gx[:, i])
                coef = falsify.linf_coefficients(m, i, s)
            else:
                i, j = obj
                score = gx[:, j] - gx[:, i] - np.maximum(fx.max(axis=1) - fx[:, i], 0.0)
                coef = falsify.top1_coefficients(i, j)
            starts = pts[np.argsort(-score)[:GRADIENT_STARTS]]
            cex = self.counterexample(
                falsify.ascend(self.f, self.g, self.box, starts, coef), "gradient"
            )
            self.progress.advance(1)
            if cex is not None:
                break
        self.timed("gradient", t)
        return cex
