r"""Acceptance of ranked lossy edits: which prefix of the order a proof of the whole allows.

The search of :mod:`exactcomp.rewrite.lossy` ranks its candidate edits; what is kept is decided
here, always by one proof of the whole edited network against the original, never by a sum.

* **Longest proven prefix** (:func:`longest_prefix`): with ``lo`` a prefix known to pass
  (proven :math:`\le \varepsilon`) and ``hi`` one known (or taken) to fail, bisection keeps the
  invariant and stops when :math:`hi - lo = 1`, after a number of proofs, or at a deadline.
  Passing need not be monotone in the prefix length (edits may cancel), so the result is
  *a* proven prefix, not always the longest: only what is proven is kept.
* **Shrinking blocks** (:func:`blocks`): the candidates after that prefix are added in blocks of
  an eighth of them, each kept if the whole is still proven; a failed block is retried in
  quarter-size blocks, and a single failed candidate is dropped.
* **The LP slack** (:func:`spend_proof`): the joint-LP proof may be :math:`\rho` times the
  symbolic bound (:math:`\rho < 1`); the blocks then run at :math:`\varepsilon / \rho` by the
  symbolic bound and the LP proves (or bisects back) what they added.
* **A deadline** (:class:`Gate`): a charger that starts no proof that would end past it.
  Without a proof an edit is not kept, so a refused proof (``inf``) is sound wherever a
  failed one is; only the edits kept change.
* **One rule for every step** (:func:`affords`, :func:`attempt`): a step of a search (a
  bisection probe, a block, a merge screened, an amplification probe) first asks whether the
  proofs it needs still fit before its gate's end, at the last proof's seconds, and builds
  no network when they do not: a refused proof ends the step, since every later one would be
  refused too (on cifar_base_kw each refused block built its network for nothing, 0.1 s
  each, 13-48 of them a run: RESULTS.md "cifartol21", "span21").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

BISECT_STEPS = 3  # LP proofs per bisection back (each takes seconds on the digits model)
RATIO_SLACK = 0.01  # LP / symbolic above 1 - this: no slack worth spending


class Gate:
    """A charger (:class:`~exactcomp.verify.charge.Charger`, passed in: rewrite passes sit
    below verify) that keeps to ``end`` (``time.perf_counter``): :meth:`proven` of a network
    whose proof is not known already (``charger.known``) is refused, ``inf``, once the
    charger's last proof (``charger.seconds``) no longer fits before ``end``, and the
    solvers' seconds (the joint LP's, ...) are cut to the time left. On cifar_base_kw a
    symbolic proof takes 4-10 s: the phases of ``compress --tol`` started 29 proofs past
    their ends, 285 s for a 90 s limit (RESULTS.md "lossybudget20"). Everything else is the
    charger's (``roots``, ``calls``, ...)."""

    def __init__(self, charger: Any, end: float) -> None:
        self.charger, self.end = charger, end

    def fits(self, proofs: int = 1) -> bool:
        """True when ``proofs`` more proofs, each as long as the last, end by ``end``."""
        return time.perf_counter() + proofs * self.charger.seconds <= self.end

    def proven(self, g: Any, **options: float) -> float:
        known = self.charger.known(g)
        if not known and not self.fits():
            return math.inf  # no proof started: nothing is claimed of g
        # the solvers (a joint LP, ...) run after the symbolic bound: they get what it leaves
        left = max(self.end - time.perf_counter() - (0.0 if known else self.charger.seconds), 0.0)
        cut = {k: min(v, left) if k.endswith("_seconds") else v for k, v in options.items()}
        cut["end"] = min(self.end, cut.get("end", math.inf))  # a pass cut there claims less
        return self.charger.proven(g, **cut)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.charger, name)


def affords(charger: Any, proofs: int = 1, g: Any = None) -> bool:
    """True when ``charger`` has time for ``proofs`` more proofs: a :class:`Gate` by its
    end and its last proof's seconds (:meth:`Gate.fits`) or, given ``g``, when ``g``'s proof
    is memoised (``known``); any other charger always."""
    if not isinstance(charger, Gate):
        return True
    return charger.fits(proofs) or (g is not None and charger.known(g))


def attempt(charger: Any, build: Callable[[Any], Any], chosen: Any, **options: float) -> float:
    """The proven bound of ``build(chosen)``, or ``inf`` (nothing claimed) without building
    it when ``charger`` has no time left for a proof (:func:`affords`): the one rule every
    step of a search keeps before it builds a network."""
    if not affords(charger):
        return math.inf
    return charger.proven(build(chosen), **options)


def longest_prefix(
    bound: Callable[[int], float],
    limit: float,
    lo: int,
    hi: int,
    t_end: float,
    steps: int | None = None,
) -> tuple[int, float | None]:
    """Bisect for a prefix length in ``[lo, hi)`` with ``bound(length) <= limit``: ``lo`` is
    taken to pass, ``hi`` to fail (module docstring). At most ``steps`` calls of ``bound``
    (``None``: no cap), none started after ``t_end``, and none after a bound of ``inf`` (a
    proof refused at a deadline: each later probe would be refused too, after building its
    network: 0.17 s each on cifar_base_kw, 29 of them in one run). Returns the length found
    and its bound (``None`` when ``lo`` was never moved)."""
    best = None
    done = 0
    while hi - lo > 1 and (steps is None or done < steps) and time.perf_counter() < t_end:
        done += 1
        mid = (lo + hi) // 2
        b = bound(mid)
        if b == math.inf:  # a refused proof (a Gate's deadline): so would every later one be
            break
        if b <= limit:
            lo, best = mid, b
        else:
            hi = mid
    return lo, best


def blocks(accepted: list, rest: list, bound: Callable[[list], float], limit: float, t_end: float):
    """Candidates of ``rest`` added to ``accepted`` in shrinking blocks, each kept if
    ``bound(accepted + kept + block) <= limit``; a bound of ``inf`` (a proof refused at a
    deadline, :func:`attempt`) ends the blocks, as it ends :func:`longest_prefix`. Returns
    the kept ones (in order) and those not kept."""
    kept: list = []
    dropped: list = []
    block = max(len(rest) // 8, 1)
    while rest and time.perf_counter() < t_end:
        head, rest = rest[:block], rest[block:]
        b = bound(accepted + kept + head)
        if b == math.inf:  # refused: so would every later block be
            rest = head + rest
            break
        if b <= limit:
            kept += head
        elif block > 1:  # retry the failed block in smaller ones; a single failure is dropped
            rest = head + rest
            block = max(block // 4, 1)
        else:
            dropped += head
    return kept, dropped + rest


def spend_proof(
    build: Callable[[Sequence], object],
    accepted: list,
    rest: list,
    charger,
    eps: float,
    lp_seconds: float,
    t_end: float,
) -> tuple[list, float, list[dict]]:
    r"""Spend the slack of the joint-LP proof: the search accepts by the symbolic bound, which
    the LP proves to be :math:`\rho` times too large (measured on the current network,
    :math:`\rho = \text{LP} / \text{symbolic}`). Candidates are then accepted while the
    symbolic bound stays within :math:`\varepsilon / \rho`, the result is proven by the LP,
    and if that proof exceeds :math:`\varepsilon` the added candidates are bisected back (the
    longest prefix the LP proves, to within :data:`BISECT_STEPS` halvings); from then on (or
    when :math:`\rho` shows no slack) the greedy goes on at :math:`\varepsilon` itself. Time
    is kept for one last LP proof (as long as the first one took). Every state returned is
    proven within ``eps`` by one proof (LP or symbolic, the smaller) of the whole network; the
    ratio only chooses what to try. ``build(chosen)``: the network with the edits ``chosen``;
    ``charger``: as in :func:`~exactcomp.rewrite.lossy.search`. Returns
    ``(accepted, proven, rounds)``."""

    def strong(chosen):
        left = min(lp_seconds, t_end - time.perf_counter())
        return attempt(charger, build, chosen, lp_seconds=max(left, 1e-3))

    t = time.perf_counter()
    proven = strong(accepted)
    if proven == math.inf:  # no time for the LP: the symbolic proof of ``accepted`` stands
        return accepted, charger.proven(build(accepted)), []
    lp_wall = time.perf_counter() - t
    rounds, optimistic = [], True
    while rest and time.perf_counter() < t_end - lp_wall:
        now = time.perf_counter()
        sym = charger.proven(build(accepted))
        ratio = proven / sym if sym > 0 else 1.0
        target = eps / ratio if optimistic and ratio < 1.0 - RATIO_SLACK else eps
        # with slack, the symbolic greedy gets half of what is left (the LP bisection the
        # rest); without, all but one LP proof
        if target > eps:
            block_end = now + (t_end - now - lp_wall) / 2
        else:
            block_end = t_end - 1.5 * lp_wall
        extra, rest = blocks(
            accepted, rest, lambda c: attempt(charger, build, c), target, block_end
        )
        if not extra:
            break
        got = strong(accepted + extra)
        if got <= eps:
            lo, best = len(extra), got
        else:  # the longest prefix the LP proves, within BISECT_STEPS proofs
            lo, b = longest_prefix(
                lambda m, a=accepted, e=extra: strong(a + e[:m]),
                eps,
                0,
                len(extra),
                t_end,
                BISECT_STEPS,
            )
            best = proven if b is None else b
        rounds.append({"ratio": ratio, "symbolic_target": target, "tried": len(extra), "kept": lo})
        accepted, proven = accepted + extra[:lo], best
        if lo < len(extra):  # the ratio over-promised here: go on at eps, retrying the rest
            optimistic, rest = False, extra[lo:] + rest
    return accepted, proven, rounds
