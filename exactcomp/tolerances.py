"""Every numerical tolerance of exactcomp, in one documented place.

Soundness rule: a neuron is called stable only when a bound *with margin* proves it.
The margins below cover floating-point rounding in our own bound arithmetic and the
feasibility/optimality tolerances of the LP/MILP solver. A value inside the margin is
"undecided", and an undecided neuron is kept. Keeping a neuron is always exact; dropping
one wrongly is not, so every tolerance errs towards keeping.

Definitions (exact maths): neuron pre-activation ``z(x)``; *stably inactive* iff
``max_x z(x) <= 0`` (ties at exactly 0 are inactive: ReLU outputs 0 either way);
*stably active* iff ``min_x z(x) >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerances:
    """Numerical tolerances; pass a modified copy (``dataclasses.replace``) to change one.

    Attributes
    ----------
    bound_abs, bound_rel:
        Padding added to every float64 bound we compute ourselves (interval, linear,
        LP): ``pad = bound_abs + bound_rel * scale`` where ``scale`` is the sum of the
        absolute terms that entered the bound. Float64 summation error is far below
        ``1e-12`` relative, so ``bound_rel = 1e-9`` is very safe.
    solver_abs, solver_rel:
        Margin a solver's (LP or MILP) dual bound must clear before we trust its sign:
        a MILP proves ``z <= 0`` only if its bound on ``max z`` is
        ``<= -(solver_abs + solver_rel * M)`` with ``M`` the neuron's a-priori bound
        magnitude. Covers HiGHS' primal/dual feasibility tolerance (1e-7).
    witness:
        A concrete input proves a sign only if the float64 forward pass gives
        ``z > witness`` (positive side) or ``z < -witness`` (negative side), relative to
        the magnitude of the terms (``witness * (1 + scale)``).
    fold_rel:
        Largest relative residual accepted when expressing one neuron as a linear
        combination of others (rank folding, duplicates). Above it the neuron is kept.
    check_abs, check_rel, check_scale:
        Allowed |f(x) - g(x)| when re-checking a compressed network by evaluation, in float64:
        ``check_abs + check_rel * max(1, |f(x)|) + check_scale * S(x)`` with ``S(x)`` the size
        of the terms the evaluation sums (:meth:`Network.term_scale`). The last term matters
        only for networks whose terms dwarf their outputs (weights of 1e6 on inputs of 1e5
        cancelling to O(1)): there the original's own float64 value is uncertain by about
        ``n * 2^-53 * S(x)``, and a fold, which re-associates those sums, cannot be closer
        than that. ``1e-12`` allows some 4,500 units in the last place of the largest term.
    equivalence:
        Default tolerance of :func:`exactcomp.verify_equivalence` in ``linf`` mode.
    region_radius:
        Linear-region counting (:mod:`exactcomp.regions`): a region counts only if it holds a
        ball of radius ``region_radius * max(1, max |box bound|)`` (input units). An LP slack
        below it, or a polygon vertex closer than it to a neuron's line, cannot be told from
        zero (HiGHS' feasibility tolerance is 1e-7), so slivers thinner than that are not
        counted, by the LP counter and the polygon splitter alike. Counting proves nothing
        about a neuron; this tolerance never enters a compression.
    """

    bound_abs: float = 1e-12
    bound_rel: float = 1e-9
    solver_abs: float = 1e-6
    solver_rel: float = 1e-7
    witness: float = 1e-9
    fold_rel: float = 1e-9
    check_abs: float = 1e-7
    check_rel: float = 1e-7
    check_scale: float = 1e-12
    equivalence: float = 1e-6
    region_radius: float = 1e-7


DEFAULT = Tolerances()
