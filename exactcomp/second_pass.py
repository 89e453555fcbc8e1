r"""A second exact pass where the lossy search proved nothing: the search's time given back.

``compress --tol`` gives its exact pass :data:`~exactcomp.approx.EXACT_SHARE` of the time and
the search the rest. Where the search proves no edit within ``tol`` (VNN-COMP 2023's tll24 at
0.05: no candidate's proof fits), it ends early, and the command wrote the first exact pass's
network: 85,666 B, where exact ``compress --budget 60`` writes 78,415 B (RESULTS.md
"lossy26"). A user given a larger file for a tolerance than for none sees a fault.

So then the exact compression runs again, on the first pass's network :math:`f_e` (the
reference every claim is proven against), until the search's end: its network
:math:`f_{e2}`, with the neurons the first pass left undecided decided now (tll24: 1150 ->
1100 neurons in 14.8 s). :func:`~exactcomp.exact_reference.exact_reference` proves its gap
:math:`\gamma_2 \ge \max |f_e - f_{e2}|` on the domain as for the first pass (0 for a
restriction; its folds replayed in rationals or proven by the verifier; else the deleting
passes' rewrite, or :math:`f_e` itself), and with the first pass's gap :math:`\gamma_1`

.. math:: \max |f - g| \le \gamma_1 + \gamma_2 + \max |f_{e2} - g|

for whatever :math:`g` is then written (the stored rounding of :math:`f_{e2}`, proven against
it by a charger of its own). It is taken only where it keeps fewer nonzero parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .domain import Box
from .exact_reference import exact_reference
from .lossy_result import nonzero_parameters
from .network import Network
from .strategies import exact_pass_facts

__all__ = [
    "SECOND_PASS_LEAST",
    "SECOND_PASS_UNDECIDED",
    "SecondPass",
    "left_undecided",
    "second_exact_pass",
    "taken",
]

#: Of the command's time, the least left before the search's end for a second exact pass to
#: start (9 s of 90: tll24's took 14.8 s for 50 neurons, RESULTS.md "lossy27").
SECOND_PASS_LEAST = 0.1
#: The first pass's analysis, cut by its deadline, left at least this share of its network's
#: neurons undecided: a second pass runs before the search, until the search has only its
#: floor (:data:`~exactcomp.approx.SEARCH_FLOOR`) left (tll24 at load 1-2:
#: 340 undecided of 1152 kept; the digits models, ACAS Xu 1_1 over prop_1: none; cifar_base_kw
#: 14 of its thousands, whose search needs the time: RESULTS.md "lossy27").
SECOND_PASS_UNDECIDED = 0.1


@dataclass(frozen=True)
class SecondPass:
    """The second pass's network, its ``CompressionResult`` (``done``), its proven ``gap``
    to the network it ran on, and its wall ``seconds``."""

    network: Network
    done: Any
    gap: float
    seconds: float


def second_exact_pass(
    f: Network,
    exact: Callable[..., Any],
    boxes: Sequence[Box],
    tol: float | None,
    time_limit: float,
    end: float,
    rewrite_share: float,
) -> SecondPass | None:
    """``exact`` (``exact(f, boxes, deadline=..., analysis_end=...)``) run again on ``f`` until
    ``end`` (its analysis ending ``rewrite_share`` of its time before), its network and gap
    by :func:`~exactcomp.exact_reference.exact_reference` (``tol``: what is left of the
    command's, of which the gap may take its share); None where less than
    :data:`SECOND_PASS_LEAST` of ``time_limit`` is left, ``f`` holds a layer sparse (its
    cone-by-cone analysis runs its cones to the end, past a deadline: Convnet_maxpool 38.9 s,
    RESULTS.md "budget18"), or the network keeps as many nonzero parameters as ``f``."""
    t0 = time.perf_counter()
    share = end - t0
    if share < SECOND_PASS_LEAST * time_limit or any(la.sparse for la in f.layers):
        return None
    done = exact(f, boxes, deadline=end, analysis_end=end - rewrite_share * share)
    g, done, gap = exact_reference(f, done, boxes, tol, time_limit)
    if not nonzero_parameters(g) < nonzero_parameters(f):
        return None
    return SecondPass(g, done, gap, time.perf_counter() - t0)


def left_undecided(done: Any) -> bool:
    """True where the exact pass ``done`` (a ``CompressionResult``) left at least
    :data:`SECOND_PASS_UNDECIDED` of its network's neurons undecided."""
    n = done.network.num_neurons
    return n > 0 and int(done.stability.stats.get("undecided", 0)) >= SECOND_PASS_UNDECIDED * n


def taken(
    again: SecondPass | None, f: Network, gap: float, tol: float, facts: dict
) -> tuple[Network, float, float]:
    """The reference, its gap to the original and the tolerance left, after ``again`` (None:
    ``f``, ``gap``, ``tol`` as they were); ``facts`` (the report's ``exact_pass``) gains
    ``later_passes``: what each removed, its seconds and gap."""
    if again is None:
        return f, gap, tol
    done = again.done
    facts.setdefault("later_passes", []).append(
        exact_pass_facts(done.original, done, again.seconds, again.gap)
    )
    return again.network, gap + again.gap, tol - again.gap
