r"""When a ReLU-split tree cannot prove its question within its node budget: stop it early.

A question of :mod:`exactcomp.bab.beta_tree` seeks :math:`s z_{kj} \le 0` on the box. After
:math:`N` nodes its tree proves :math:`s z \le B(N)` (the largest bound of its open leaves),
and the primal points :math:`x^*` of its nodes reach :math:`A = \max s z(x^*) \le 0` (a value
above the witness margin would have refuted it). Since :math:`A \le \max s z \le B(N)`, a proof
(:math:`B \le 0`) needs the gap :math:`G(N) = B(N) - A` to fall to :math:`-A`. On
mnist-net_256x6 prop_0_0.03 the gap of the hard questions falls as a power of the nodes,
:math:`G \propto N^{-p}` with :math:`p \approx 0.35` (benchmarks/RESULTS.md "fsb11").

The tree records :math:`(N_i, G_i)` at :math:`N_i = ` :data:`FIRST_MARK` :math:`\cdot 2^i`
nodes. From the last two marks, :math:`p = \log(G_{i-1} / G_i) / \log(N_i / N_{i-1})`, and
the nodes a proof needs at that rate are

.. math::

    N^\star = N_i \, (G_i / (-A))^{1/p}  \qquad (\infty \text{ where } p \le 0).

The question is **hopeless** when :math:`N^\star >` :data:`SLACK` times its node budget: its
tree stops there and claims nothing (UNDECIDED, kept); its bound :math:`B` stays a valid bound,
since its open leaves still cover the box. Soundness does not depend on the rule: it only
decides how many nodes a question gets. :math:`A` is the best value the tree has seen, not the
true maximum, so :math:`-A` over-states what the gap must reach, and :math:`N^\star` is
optimistic: the rule stops late rather than early.
"""

from __future__ import annotations

import math

__all__ = ["FIRST_MARK", "SLACK", "STOP_HOPELESS", "hopeless", "mark", "needed_nodes"]

STOP_HOPELESS = True
"""Whether :func:`exactcomp.bab.beta_tree.prove_signs_beta` stops hopeless questions. On
mnist-net_256x6 prop_0_0.03 (``scripts/stability_trace.py``, 300 s cap) the trace went from
226.7 s of CPU to 91.0 s with the same 4 undecided neurons, the stopped questions' LP trees
(:data:`~exactcomp.bab.beta_first.LP_AFTER_HOPELESS`) and MILPs
(:data:`~exactcomp.stability.milp_questions.SKIP_HOPELESS`) skipped too; 256x4 prop_0_0.03
and 256x2 prop_1_0.05 grew the same trees (benchmarks/RESULTS.md "tail12"). Three of the
four it stops (layer 3's 88 and 177, layer 5's 22) are proven by trees of 57,000-82,000
nodes, past the budget of :data:`~exactcomp.bab.beta_tree.MAX_NODES_BETA`: the rule stops
what the budget cannot reach, not what no budget can."""
FIRST_MARK = 1000
"""Nodes of a question's first mark; the rule reads two marks, so no question stops before
``2 * FIRST_MARK`` nodes."""
SLACK = 10.0
"""Multiple of the question's node budget that :math:`N^\\star` may reach and the tree go on.
The power law is pessimistic: the gap falls faster as the tree nears a proof (closed leaves
leave it). Measured on the batched trees of at least 2,000 nodes (``python
scripts/relu_split_replay.py replay OUT.pkl --profile --no-stop``; :math:`N^\\star` over the
budget of 20,000 at each mark from the second): the trees that end proven reached at most
4.9 (mnist-net_256x6 prop_0_0.03 layer 3's neuron 85, proven at 19,353 nodes; then 2.6, 1.4,
1.0), 4.4 (139, proven at 11,725), 2.6 (mnist-net_256x2 prop_1_0.05's 45, at 15,037), 1.05
(256x6 layer 2's 164, at 8,357); 256x2's 29, which the batched tree leaves open and the LP
trees prove, 9.1 at its second mark, then 3.2, 2.2, 1.3. The four that stay open: layer 5's
158 404 and more at every mark, layer 3's 88 344 and 177 39 at their second marks,
layer 5's 22 1.7 then 19."""


def needed_nodes(marks: list[tuple[int, float]], best: float) -> float:
    """:math:`N^\\star` (module docstring) from the marks ``(nodes, bound)`` and the best value
    ``best`` (:math:`A`) seen; ``0`` where the last bound already proves the question or the
    best value is not negative (nothing to extrapolate), ``inf`` where the gap did not fall."""
    (n0, b0), (n1, b1) = marks[-2], marks[-1]
    if b1 <= 0.0 or not best < 0.0:
        return 0.0
    g0, g1, need = b0 - best, b1 - best, -best  # g1 > need, as b1 > 0
    if not g1 < g0:
        return math.inf
    p = math.log(g0 / g1) / math.log(n1 / n0)
    return n1 * (g1 / need) ** (1.0 / p)


def mark(q, max_nodes: int, slack: float | None = None, nodes: int | None = None) -> None:
    """Record the bound of the tree ``q`` (a :class:`~exactcomp.bab.beta_tree.Question`) at
    each of its marks, and set its state to ``"hopeless"`` there if it is (with
    :data:`STOP_HOPELESS`; ``slack``: :data:`SLACK` where ``None``). ``nodes``: the tree's
    nodes on the scale of a whole tree (``None``: ``q.nodes``; a part of a tree grown in one
    of several processes counts its own nodes as many times, :mod:`exactcomp.bab.beta_parts`)."""
    nodes = q.nodes if nodes is None else nodes
    if nodes < FIRST_MARK * 2 ** len(q.marks):
        return
    q.marks.append((nodes, q.bound()))
    if STOP_HOPELESS and hopeless(q.marks, q.best, max_nodes, slack):
        q.state = "hopeless"


def hopeless(
    marks: list[tuple[int, float]], best: float, budget: int, slack: float | None = None
) -> bool:
    """Whether a question with these marks and best value cannot reach a proof within
    ``slack`` (:data:`SLACK` where ``None``) times its node budget ``budget`` at its
    measured rate."""
    slack = SLACK if slack is None else slack
    return len(marks) >= 2 and needed_nodes(marks, best) > slack * budget
