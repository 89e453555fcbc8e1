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

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .errors import InvalidNetworkError


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

        The relative part covers rounding of normal numbers (``gamma_n * scale``). What the
        absolute part must cover is *underflow*: a product or sum whose exact value lies
        below ``2^-1022`` is rounded to a subnormal (or 0) with an absolute error up to
        ``2^-1075``, which no relative pad on the (possibly zero) rounded terms covers. Such
        an error is added once per operation and then multiplied by whatever multiplies the
        result later (weights of later layers in a back-substitution, box magnitudes, dual
        values): at most ``N 2^-1075 A`` with ``N`` operations per bound and ``A`` that
        amplification. ``bound_abs = 1e-200`` allows ``N A`` up to ``2e123`` (``N <= 2^40``
        operations, ``A <= 1e111``); ``1e-12`` was far above that and left rows such as
        metaroom ``4cnn``'s (weights below ``1e-20``, bias ``-1e-26``, inactive in exact
        arithmetic) undecided. Every use of the pad is such a rounding pad (a bound moved
        outwards, or the rhs of a relaxed LP row loosened); margins a proof needs against a
        solver's tolerance are ``solver_abs``/``solver_rel``, separate. The last operation
        ``value +- pad`` rounds to nearest with error at most ``2^-53 |result|`` (or
        ``2^-1075``), covered by the slack between ``bound_rel`` and ``gamma_n``
        (``|value| <= scale``), so the pad is never lost, for tiny values included.
        The amplification ``A <= 1e111`` is not assumed: :func:`underflow_tolerances`
        bounds it per network and raises ``bound_abs`` where it is larger (every entry
        point that meets a network: ``stable_neurons``, ``verify_equivalence``,
        ``Pair.prepare``, ``recheck_certificates``).
    solver_abs, solver_rel:
        Margin a solver's (LP or MILP) dual bound must clear before we trust its sign:
        a MILP proves ``z <= 0`` only if its bound on ``max z`` is
        ``<= -(solver_abs + solver_rel * max(M, 1))`` with ``M`` the neuron's a-priori bound
        magnitude. Covers HiGHS' primal/dual feasibility tolerance (1e-7). Computed only by
        :func:`exactcomp.highs.margins.solver_margin` (the maths is there).
    witness:
        A concrete input proves a sign only if the float64 forward pass gives
        ``z > witness`` (positive side) or ``z < -witness`` (negative side), relative to
        the magnitude of the terms (``witness * (1 + scale)``).
    fold_rel:
        Rounding allowed in a fold of stably active neurons whose linear dependence is
        *proven* exact (the basis provably spans the inputs, so exact rational coefficients
        exist and the float64 ones only approximate them): the true residual of the float64
        coefficients, column by column, relative to the terms summed (see
        :mod:`exactcomp.rewrite.algebra`). Some 4,500 units in the last place: rounding, never
        a real residual. A dependence not proven exact is never accepted, whatever its
        residual, and duplicates must be exact positive multiples: no tolerance at all.
    check_abs, check_rel, check_scale:
        Allowed |f(x) - g(x)| when re-checking a compressed network by evaluation, in float64:
        ``check_abs + check_rel * max(1, |f(x)|) + check_scale * S(x)`` with ``S(x)`` the size
        of the terms the evaluation sums (:meth:`Network.term_scale`). The last term matters
        only for networks whose terms dwarf their outputs (weights of 1e6 on inputs of 1e5
        cancelling to O(1)): there the original's own float64 value is uncertain by about
        ``n * 2^-53 * S(x)``, and a fold, which re-associates those sums, cannot be closer
        than that. ``1e-12`` allows some 4,500 units in the last place of the largest term.
        Computed only by :func:`check_allowance`; its largest value on the domain is the
        *rounding allowance* ``compress`` reports and ``compress --verify`` proves where
        the re-check needed it (:func:`~exactcomp.api.checking.compress_verified`).
    equivalence:
        Least default tolerance of :func:`exactcomp.verify_equivalence` in ``linf`` mode.
    rounding_factor:
        When the second network holds weights stored in a narrower dtype (a float32 file),
        the default tolerance is ``max(equivalence, rounding_factor * E)`` with ``E`` the
        proven bound of :func:`stored_rounding_bound`: what rounding an exact compression
        to that dtype can change in the outputs. ``E`` is a sound bound, so the true difference
        is at most ``E``; the factor 2 leaves room for the verifier's own (padded) bound on it,
        which is computed differently and may be somewhat looser.
    region_radius:
        Linear-region counting (:mod:`exactcomp.regions`): a region counts only if it holds a
        ball of radius ``region_radius * max(1, max |box bound|)`` (input units). An LP slack
        below it, or a polygon vertex closer than it to a neuron's line, cannot be told from
        zero (HiGHS' feasibility tolerance is 1e-7), so slivers thinner than that are not
        counted, by the LP counter and the polygon splitter alike. Counting proves nothing
        about a neuron; this tolerance never enters a compression.
    """

    bound_abs: float = 1e-200
    bound_rel: float = 1e-9
    solver_abs: float = 1e-6
    solver_rel: float = 1e-7
    witness: float = 1e-9
    fold_rel: float = 1e-12
    check_abs: float = 1e-7
    check_rel: float = 1e-7
    check_scale: float = 1e-12
    equivalence: float = 1e-6
    rounding_factor: float = 2.0
    region_radius: float = 1e-7


DEFAULT = Tolerances()

UNDERFLOW_LOSS_LOG2 = -1075
"""``log2`` of the most one float64 operation loses to underflow (half the smallest
subnormal, ``2^-1075``, itself below float64's range)."""
UNDERFLOW_OPERATIONS_LOG2 = 40
"""``log2`` of the operations assumed per bound (a million neurons of a million inputs each)."""


def amplification(networks: Sequence, boxes: Sequence) -> float:
    r"""A bound on what multiplies an underflow error in any bound of ``networks`` on ``boxes``.

    Every bound of the package is a sum of products ``q v`` of a *coefficient* ``q`` (a weight,
    an entry of a back-substituted or forward linear form, a relaxation slope or offset) and a
    *variable* ``v`` (an input, pre-activation or activation, or a difference of two of
    them, or a magnitude bound of one). An error ``e`` that underflow leaves on one factor
    reaches the bound times the other factor. With :math:`\|W_k\|_\infty` the largest absolute
    row sum of layer ``k`` and :math:`\|W_k\|_1` its largest absolute column sum:

    * coefficients: an entry of a product ``W_k D_k W_{k-1} ... W_j`` (``|D| <= 1``) is at most
      :math:`\max|W_k| \prod_{i<k} \|W_i\|_1` (back-substitution) or
      :math:`\prod_{i>j} \|W_i\|_\infty \max|W_j|` (forward forms), so at most
      :math:`P = \prod_k \max(1, \|W_k\|_\infty, \|W_k\|_1)`;
    * variables: :math:`|z_k| \le \|W_k\|_\infty m_{k-1} + \|b_k\|_\infty` with
      :math:`m_{-1} = \|x\|_\infty`, so every :math:`|z_k|, |h_k| \le P V` with
      :math:`V = \max(1, \|x\|_\infty) + \sum_k \|b_k\|_\infty`, and a difference of
      two networks' variables at most twice the larger.

    Both factors stay below ``A = 2 P V`` (the largest over ``networks`` and ``boxes``), so
    ``N`` operations lose at most ``N 2^-1075 A`` to underflow. Returned as ``log2 A``
    (``A`` itself can overflow); computed in float64 from norms that are rounded upwards by
    the ``1e-6`` relative pad, far above their summation error.
    """
    log2 = 1.0
    box_mag = max((float(np.max(np.abs([b.lower, b.upper]), initial=0.0)) for b in boxes),
                  default=0.0)  # fmt: skip
    worst = -math.inf
    for net in networks:
        norms, biases = 0.0, max(1.0, box_mag)
        for layer in net.layers:
            w = layer.abs_weight()
            rows = float(np.max(np.asarray(w.sum(axis=1)), initial=0.0))
            cols = float(np.max(np.asarray(w.sum(axis=0)), initial=0.0))
            norms += math.log2(max(1.0, rows, cols) * (1.0 + 1e-6))
            biases += float(np.max(np.abs(layer.bias), initial=0.0))
        worst = max(worst, norms + math.log2(biases * (1.0 + 1e-6)))
    return log2 + worst


def check_allowance(tol: Tolerances, magnitude, scale):
    """What the re-check of a compression lets float64 rounding move an output by:
    ``check_abs + check_rel * max(1, magnitude) + check_scale * scale`` (elementwise), with
    ``magnitude`` = ``|f(x)|`` and ``scale`` = ``S(x)`` (:meth:`Network.term_scale`) at a
    point, or bounds on them over the domain (the rounding allowance of ``compress``)."""
    return tol.check_abs + tol.check_rel * np.maximum(1.0, magnitude) + tol.check_scale * scale


def forward_error(net, x: np.ndarray) -> np.ndarray:
    r"""Per row of ``x`` and output, a bound on how far ``net.forward(x)`` (float64, any
    summation order) is from the exact value of the network at ``x``.

    With ``u = 2^-53``, ``\gamma_m = m u / (1 - m u)`` and ``n_k`` layer ``k``'s inputs, the
    computed pre-activation of layer ``k`` is within ``\gamma_{n_k+1} (|W_k| |\hat h_{k-1}| +
    |b_k|)`` of ``W_k \hat h_{k-1} + b_k`` (a dot product of ``n_k + 1`` terms); ReLU is
    1-Lipschitz, so the errors obey ``e_k <= |W_k| e_{k-1} (1 + \gamma) + \gamma_{n_k+1} s_k``
    with ``s_k = |W_k| s_{k-1} + |b_k|``, ``s_0 = |x|`` (:meth:`~exactcomp.network.Network.
    term_scale`), and unrolled ``e_L <= (\sum_k \gamma_{n_k+1}) s_L`` to first order. The
    factor ``1.01`` covers the higher-order terms and ``s_L``'s own (upward-free) rounding
    while ``L n u`` stays below ``1e-3``. Underflow is outside that relative model: each
    operation loses at most ``2^-1075`` absolutely, and later layers multiply what it lost by
    up to the amplification ``A`` (:func:`amplification`, with the box of the rows of ``x``),
    so ``N 2^-1075 A`` covers it (``N = 2^40`` operations, as :func:`underflow_tolerances`),
    at least :attr:`Tolerances.bound_abs`; ``+inf`` where that overflows. (A subnormal
    product ``1e-310 x`` read through two layers of ``1e150`` is off by ``2.5e-24`` where the
    relative model gives ``3e-26``: red25, ``tests/test_forward_error_underflow.py``.)"""
    u = 2.0**-53
    gamma = sum((la.in_features + 1) * u / (1 - (la.in_features + 1) * u) for la in net.layers)
    rows = np.atleast_2d(np.asarray(x, dtype=np.float64))
    exponent = UNDERFLOW_OPERATIONS_LOG2 + UNDERFLOW_LOSS_LOG2
    exponent += amplification([net], [_Rows(rows, rows)])
    underflow = 2.0**exponent if exponent < 1000 else math.inf
    return 1.01 * gamma * net.term_scale(x) + max(DEFAULT.bound_abs, underflow)


@dataclass(frozen=True)
class _Rows:
    """Inputs as :func:`amplification` reads a box: only their magnitude counts."""

    lower: np.ndarray
    upper: np.ndarray


def underflow_tolerances(tol: Tolerances, networks: Sequence, boxes: Sequence) -> Tolerances:
    """``tol`` with ``bound_abs`` raised to cover underflow in bounds of ``networks`` on
    ``boxes``: at least ``N 2^-1075 A = 2^-1035 A`` (``N`` = ``2^UNDERFLOW_OPERATIONS_LOG2``
    operations, ``A`` = :func:`amplification`), refused by name (:class:`~exactcomp.errors.InvalidNetworkError`) where that pad is beyond
    ``1e300`` (weights whose norms multiply past ``1e611``: no finite bound would survive it).
    ``tol`` itself, unchanged, for every network whose ``A`` the default ``bound_abs`` already
    covers (``A <= 3.6e111``)."""
    exponent = UNDERFLOW_OPERATIONS_LOG2 + UNDERFLOW_LOSS_LOG2 + amplification(networks, boxes)
    if exponent > math.log2(1e300):
        raise InvalidNetworkError(
            f"the weights amplify float64 underflow by 2^{exponent + 1035:.0f} (the product of "
            "the layers' largest absolute row or column sums, times the inputs and biases): "
            "beyond what a rounding pad can cover; refused"
        )
    need = 2.0**exponent
    return tol if need <= tol.bound_abs else replace(tol, bound_abs=need)


# HiGHS' own tolerances, as every MILP of the package sets them (exactcomp.highs.runtime.
# milp_options); the margins of exactcomp.highs.margins are computed from them.
FEASIBILITY_TOLERANCE = 1e-6
"""HiGHS' ``mip_feasibility_tolerance`` (its default, set explicitly on every solve): how far
the solver lets a row, bound or integrality slip. Margins scale it by
:func:`~exactcomp.milp.encoding.tolerance_amplification`."""
LAZY_ROW_TOLERANCE = 1e-7
"""Violation of a lazy row (:mod:`exactcomp.bounds.lazy`, relative to ``1 + |a| . |v|``) above
which it joins the LP: HiGHS' primal feasibility tolerance, below which the full LP would not
have cut the point either. Tightness only: a row left out is a relaxation, so the bound stays
sound whatever this value."""
PRECISE_FEASIBILITY_TOLERANCE = 1e-9
"""The tolerance of a *precise* question: the MILP, primal and dual feasibility tolerances all
set to it, for near ties, neurons whose extreme lies within the default margin of 0
(mnist-net_256x2 prop_1 neuron 82: max z = -6.3e-4, margin 6.9e-4 at the default tolerance,
2e-6 at this one)."""
ROW_TOLERANCE = 1e-7
"""HiGHS' ``primal_feasibility_tolerance``, the tightest row tolerance of a default solve."""
SMALL_MATRIX_VALUE = 1e-12
"""HiGHS drops matrix entries below ``small_matrix_value``; we lower it from 1e-9 to its
minimum and count what it may still drop as rounding doubt
(:func:`~exactcomp.highs.margins.rounding_doubt`)."""
ROUNDING_BUDGET = 0.1
"""Share of the solver's row tolerance that float64 rounding of a model may use
(:func:`~exactcomp.highs.margins.rounding_doubt`)."""

LARGE_DEFAULT_TOL = 0.01
"""``exactcomp verify`` without ``--tol`` notes when the default tolerance (the proven effect
of rounding the second network's weights, :func:`exactcomp.api.default_tolerance`) exceeds
this share of the span of the original's outputs sampled on the domain: on ACAS Xu 1_1 over
prop_1 it is 1.53 where the outputs span 0.011, so a copy whose output 0 is moved by 0.5 is
EQUIVALENT under it (the worst case of 2^-24 relative rounding through six layers of large
terms). Nothing changes but the note: the tolerance stays sound for what rounding can do."""

TOP1_SLACK = 1e-6
"""``compress --tol-mode top1``: the linf tolerance is ``(1 - TOP1_SLACK) * m / 2`` for a proven
class margin ``m`` (:mod:`exactcomp.verify.margin`), so that a proven ``max |f - g| <= tol`` is
strictly below ``m / 2`` and no output of ``g`` can tie with the class."""


def rounding_deltas(
    weight: np.ndarray, bias: np.ndarray, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    r"""Bounds on :math:`|W^* - W|` and :math:`|b^* - b|` for *any* float64 weights
    :math:`W^*, b^*` that round to ``weight``, ``bias`` in ``dtype``.

    With the unit roundoff :math:`u = \epsilon/2` of ``dtype`` and :math:`\eta` half its
    smallest subnormal, round-to-nearest gives :math:`|w^* - w| \le u|w^*| + \eta`, hence
    :math:`|w^* - w| \le u'|w| + \eta'` with :math:`u' = u/(1-u)`, :math:`\eta' = \eta/(1-u)`.
    """
    info = np.finfo(np.dtype(dtype))
    u = float(info.eps) / 2.0
    u1, eta = u / (1.0 - u), float(info.smallest_subnormal) / 2.0 / (1.0 - u)
    return u1 * np.abs(weight) + eta, u1 * np.abs(bias) + eta


def stored_rounding_bound(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    deltas: Sequence[tuple[np.ndarray, np.ndarray]],
    input_magnitudes: Sequence[np.ndarray],
) -> np.ndarray:
    r"""Proven bound, per output, on :math:`|g^*(x) - g(x)|` over a domain, where :math:`g`
    has weights ``layers`` = :math:`(W_k, b_k)` and :math:`g^*` (same shape, same ReLUs) has
    weights within ``deltas`` = :math:`(\Delta_k, \delta_k)` of them:
    :math:`|W^*_k - W_k| \le \Delta_k`, :math:`|b^*_k - b_k| \le \delta_k` elementwise.

    Use: :math:`g` is the network a float32 file holds and :math:`g^*` the exact float64
    compression that was rounded to write it (``deltas`` = the actual rounding errors), or
    any network that rounds to :math:`g` (``deltas`` = :func:`rounding_deltas`).
    ``input_magnitudes[k]`` is a sound bound :math:`A_{k-1}` on :math:`|h_{k-1}(x)|`, the
    input of layer ``k`` in :math:`g` (the box itself for ``k = 0``). Since

    .. math::

        z^*_k - z_k = W^*_k (h^*_{k-1} - h_{k-1}) + (W^*_k - W_k) h_{k-1} + (b^*_k - b_k),

    :math:`|W^*_k| \le |W_k| + \Delta_k`, and ReLU is 1-Lipschitz,
    :math:`|h^*_k - h_k| \le |z^*_k - z_k| \le e_k` with

    .. math::

        e_0 = 0, \qquad
        e_k = (|W_k| + \Delta_k)\, e_{k-1} + \Delta_k A_{k-1} + \delta_k.

    If :math:`g^* = f` on the domain (an exact compression of :math:`f`), then
    :math:`\max |f - g| \le e_L` there. Computed in float64 (every term non-negative, so
    the summation error is relative), then padded by a relative ``1e-6`` (far above it), and
    by what underflow can lose: each of layer ``k``'s ``2 n_k + 1`` products and sums loses at
    most ``2^-1075`` absolutely, and later layers amplify a loss by at most their largest row
    sum of ``|W| + \Delta``, so :math:`u_k = \|\,|W_k| + \Delta_k\|_\infty u_{k-1} +
    (2 n_k + 2)\, 2^{-1074}` is added (``2^-1075`` itself rounds to 0; nothing in effect
    unless terms go subnormal).
    """
    e = np.zeros(np.asarray(input_magnitudes[0]).shape)
    lost = 0.0  # what underflow may have taken, bounded as the docstring says
    for (w, _b), (dw, db), mag in zip(layers, deltas, input_magnitudes, strict=True):
        # a scipy.sparse ``w`` (a layer held sparse) comes with a sparse ``dw``
        a = abs(w) + dw if hasattr(w, "tocsr") else np.abs(np.asarray(w, dtype=np.float64)) + dw
        e = a @ e + dw @ np.asarray(mag, dtype=np.float64) + db
        rows = float(np.max(np.asarray(a.sum(axis=1)), initial=0.0)) * (1.0 + 1e-6)
        lost = rows * lost + (2 * a.shape[1] + 2) * 2.0 ** (UNDERFLOW_LOSS_LOG2 + 1)  # 2^-1074
    return e * (1.0 + 1e-6) + 2.0 * lost


def product_rounding_delta(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r"""Bound, entry by entry, on :math:`|UV - \mathrm{fl}(UV)|`: the real product of the
    factors of a low-rank layer (:mod:`exactcomp.rewrite.lowrank`) against the float64 one
    that is proven, summed as :func:`~exactcomp.rewrite.lowrank.dense_product` does (``r``
    products, each rounded, added in order).

    Each entry is a sum of ``r`` products, so the standard bound of a dot product computed
    in floating point (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1) gives
    :math:`|\mathrm{fl}(UV)_{ij} - (UV)_{ij}| \le \gamma_r \sum_l |U_{il}| |V_{lj}|` with
    :math:`\gamma_r = r u / (1 - r u)` and :math:`u = 2^{-53}`. The factors hold float32 (or
    float64) numbers far from float64's underflow (a product of two float32 numbers is a
    normal float64 number), so there is no absolute term. :math:`|U||V|` is itself computed
    in float64, within a relative :math:`\gamma_r` of its true value: the relative ``1e-6``
    pad covers that."""
    r = u.shape[1]
    unit = 2.0**-53
    gamma = r * unit / (1.0 - r * unit)
    return gamma * (np.abs(u) @ np.abs(v)) * (1.0 + 1e-6)
