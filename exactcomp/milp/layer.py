r"""One layer's prefix MILP, ready for questions: the one setup of the engine and the re-check.

Both the stability engine (:meth:`exactcomp.stability.milp_questions.MilpQuestions.run`) and the
certificate re-check (:func:`exactcomp.verify.recheck._milp_layer`) ask, for neurons :math:`j`
of layer :math:`k` and signs :math:`s`, "can :math:`s\, z_{kj} > 0` on the box?". They build
the question the same way, here, from inputs each computes itself (the re-check passes its own
fresh bounds, never the report's):

1. the prefix model of layers :math:`< k` (:func:`~exactcomp.milp.encoding.build_prefix_model`),
   compiled once to matrix form (:func:`~exactcomp.milp.highs.compile_model`);
2. the margin :math:`m_j = \mu(M_j) + \varepsilon A_j + N_j`
   (:func:`~exactcomp.highs.margins.milp_margin`), at the solver's coarse or precise
   feasibility tolerance :math:`\varepsilon`;
3. whether float64 rounding lets any answer be a proof at that tolerance
   (:func:`~exactcomp.highs.margins.rounding_doubt` :math:`\le 1`);
4. the feeding binaries that may be solved as continuous for that question, a column mask
   (:func:`~exactcomp.milp.encoding.feeding_binaries`: the binaries
   :math:`a_{k-1,i}` with :math:`s\, W_{k,ji} \le 0`; the optimum, hence every proof, is
   unchanged). This is the package's one form of that relaxation.

Each question is then answered by :func:`~exactcomp.milp.highs.solve_question` on a fresh
HiGHS instance. What differs between the two callers is only the driver around it (the
engine's ordered, moot-skipping, parallel list; the re-check's per-claim time shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..domain import Box
from ..highs.margins import milp_margin, rounding_doubt
from ..network import Network
from ..tolerances import (
    FEASIBILITY_TOLERANCE,
    PRECISE_FEASIBILITY_TOLERANCE,
    ROW_TOLERANCE,
    Tolerances,
)
from .encoding import (
    binary_layers,
    build_prefix_model,
    feeding_binaries,
    negligible_contribution,
    tolerance_amplification,
)
from .highs import CompiledMilp, Question, compile_model

__all__ = ["WALL_PER_CPU", "LayerMilp", "layer_milp"]

WALL_PER_CPU = 10.0
"""Wall-clock seconds a stability question may take per CPU second of its limit. The
engine's per-question limit (``time_limit``) is CPU seconds of the solving process
(:func:`exactcomp.highs.milp.run_milp`), so that a question's verdict does not depend on the
machine's load: at load 10-13 on 2 cores a 10 s wall-clock limit gave each of
mnist-net_256x6's questions 1-2 s of CPU, and they settled none of the 17 that the quiet
machine's run settled 3 of. This factor bounds the wall-clock time anyway (a run that
seldom reaches the solver's interrupt check), and the caller's deadline bounds it too."""


@dataclass(frozen=True, eq=False)
class LayerMilp:
    """The compiled prefix MILP of layer ``k`` and what each question on it needs.

    ``model``/``zk``: the Pyomo model and its target variables (for solvers other than
    HiGHS); ``milp``: its matrix form; ``magnitude``: each target's a-priori
    :math:`\\max(|l_j|, |u_j|)`; ``amplification``/``negligible``: the encoding's terms of
    the margin; ``feeding``: (columns, neurons) of the binaries of layer ``k - 1``;
    ``weight``: ``W_k``; ``coarse``: the feasibility tolerance assumed for a first try;
    ``deep``: binaries in two or more layers (how HiGHS branches, :class:`Question`).
    """

    model: Any
    zk: Any
    milp: CompiledMilp
    magnitude: np.ndarray
    amplification: np.ndarray
    negligible: np.ndarray
    feeding: tuple[np.ndarray, np.ndarray]
    weight: np.ndarray
    coarse: float = FEASIBILITY_TOLERANCE
    deep: bool = False

    def tolerance(self, precise: bool) -> float:
        """The solver's feasibility tolerance of a coarse or a precise question."""
        return PRECISE_FEASIBILITY_TOLERANCE if precise else self.coarse

    def trusted(self, precise: bool = False) -> bool:
        """Whether float64 rounding leaves an answer at that tolerance a proof."""
        row = PRECISE_FEASIBILITY_TOLERANCE if precise else ROW_TOLERANCE
        return rounding_doubt(self.milp, self.magnitude, row_tolerance=row) <= 1.0

    def margin(self, tol: Tolerances, j: int, precise: bool = False) -> float:
        """The margin neuron ``j``'s answer must clear (module docstring, step 2)."""
        eps = self.tolerance(precise)
        a, n = self.amplification[j], self.negligible[j]
        return float(milp_margin(tol, float(self.magnitude[j]), eps, a, n))

    def relaxable(self, j: int, sign: int) -> np.ndarray:
        """The columns of the feeding binaries that question ``(j, sign)`` may solve as
        continuous (module docstring, step 4)."""
        cols, neurons = self.feeding
        return cols[sign * self.weight[j, neurons] <= 0.0]

    def question(
        self,
        tol: Tolerances,
        j: int,
        sign: int,
        time_limit: float,
        *,
        mode: str = "row",
        precise: bool = False,
        relax: bool = True,
        cpu_limit: float | None = None,
    ) -> Question:
        """The question "can ``sign * z_j > 0``?" with its margin, tolerance and relaxation;
        ``time_limit`` is wall-clock seconds, ``cpu_limit`` (optional) CPU seconds."""
        return Question(
            j,
            sign,
            self.margin(tol, j, precise),
            mode,
            time_limit,
            continuous=self.relaxable(j, sign) if relax else None,
            feasibility=self.tolerance(precise),
            cpu_limit=cpu_limit,
            deep=self.deep,
        )


def layer_milp(
    net: Network,
    box: Box,
    k: int,
    bounds: list,
    magnitude: np.ndarray,
    verdicts: list | None = None,
    coarse: float = FEASIBILITY_TOLERANCE,
) -> LayerMilp:
    """Build and compile layer ``k``'s prefix MILP on ``bounds`` (of layers ``< k``; later
    entries are not read) and, where given, the ``verdicts`` of earlier layers."""
    model, zk = build_prefix_model(net, box, k, bounds, verdicts)
    milp, columns = compile_model(model, model.x, zk)
    return LayerMilp(
        model=model,
        zk=zk,
        milp=milp,
        magnitude=np.asarray(magnitude, dtype=np.float64),
        amplification=tolerance_amplification(net, box, k, bounds, verdicts),
        negligible=negligible_contribution(net, box, k, bounds, verdicts),
        feeding=feeding_binaries(model, k, columns),
        weight=net.layers[k].weight,
        coarse=coarse,
        deep=binary_layers(model, k) >= 2,
    )
