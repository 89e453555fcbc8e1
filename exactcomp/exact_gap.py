r"""A proven bound on ``max |f - f_e|``: the exact pass's identities replayed in rationals.

The exact pass (:func:`exactcomp.api.compress`) deletes neurons and moves what they carried
into the next layer: a constant unit's value into its biases, a duplicate ``h_j = \lambda
h_m`` into the column of ``m``, a folded active neuron ``h_j = \sum_s \alpha_s h_s + \beta``
into its sources' columns and the biases. Computed in float64 these new weights round, so
the stored network ``f_e`` is only *near* ``f`` (:mod:`exactcomp.exact_reference`). Where
``verify`` cannot prove how near (tll24: UNKNOWN, 1.5e4; RESULTS.md "audit24"), this module
rebuilds, in exact rationals, the network ``f_e^*`` the same rewrite would give in exact
arithmetic, checks that it equals ``f`` on the domain, and bounds ``|f_e^* - f_e|`` from the
difference of their weights.

**The replay.** ``f`` and ``f_e`` have the same layers and ReLU flags. By induction over the
layers, each unit ``u`` of ``f``'s layer ``k - 1`` is on the domain an affine form of the
kept units ``p`` of ``f_e^*``'s layer ``k - 1`` (the inputs for ``k = 1``):

.. math::

    h_u = \sum_p E_{u p}\, h^*_p + e_u .

Then ``f``'s pre-activations are :math:`z = (W_k E) h^* + (W_k e + b_k)` there, and a kept
unit ``r`` of layer ``k`` at position ``t`` of ``f_e`` gets the exact row
:math:`W^*_t = (W_k E)_r`, :math:`b^*_t = (W_k e + b_k)_r`, so :math:`z^*_t = z_r` and
:math:`h^*_t = h_r` on the domain. A deleted unit ``j`` gets its row of ``E`` from a fact
checked here, never from the rewrite's word: proven ``INACTIVE`` (its verdict): ``h_j = 0``;
its row of :math:`W_k E` is zero: the constant :math:`\mathrm{relu}(c_j)`; its fate's
identity (:class:`~exactcomp.rewrite.record.Fold`) holds *exactly* between the affine forms
:math:`z_j = \sum_s \alpha_s z_s + \beta`, with ``\beta = 0``, one source and
:math:`\alpha > 0` (a duplicate: :math:`h_j = \alpha h_s`, ReLU being positively
homogeneous), or with ``j`` and every source proven ``ACTIVE`` (:math:`h = z` for them).
Otherwise ``j`` is unknown, and a row that reads it with a nonzero weight ends the replay
(no bound). The output layer keeps every row. Hence :math:`f_e^* = f` on the domain.

**The bound.** ``f_e`` and ``f_e^*`` have the same shape, with
:math:`\Delta_k = |W^*_k - W_k|`, :math:`\delta_k = |b^*_k - b_k|` computed exactly and
rounded up, so :func:`~exactcomp.tolerances.stored_rounding_bound` over sound interval bounds
of ``f_e``'s hidden layers bounds :math:`\max |f - f_e| = \max |f_e^* - f_e|`.

The replay costs one rational product per nonzero weight of ``f`` read through a non-trivial
form; past :data:`MAX_TERMS` of them it gives up (``None``), as where a layer is merged or a
ReLU dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from .bounds.interval import input_magnitudes, interval_bounds
from .domain import Box
from .network import Network
from .rewrite.record import RewriteResult
from .tolerances import stored_rounding_bound
from .verdicts import Verdict

__all__ = ["MAX_TERMS", "kept_rows", "replayed_gap", "same_layers"]

#: At most this many rational products (and comparisons) in one replay.
MAX_TERMS = 400_000

Form = tuple[dict[int, Fraction], Fraction]  # sum_p coef_p h*_p + const


class _Budget:
    """Counts rational operations; :meth:`spend` is False past :data:`MAX_TERMS`."""

    def __init__(self, terms: int) -> None:
        self.left = terms

    def spend(self, n: int) -> bool:
        self.left -= n
        return self.left >= 0


def replayed_gap(
    f: Network,
    rewrite: RewriteResult | None,
    stability,
    boxes: Sequence[Box],
    terms: int = MAX_TERMS,
) -> float | None:
    """A proven bound on ``max |f - rewrite.network|`` over ``boxes`` (module docstring), or
    ``None`` where the replay does not apply (layers merged, a ReLU dropped, an identity
    that does not hold exactly, more than ``terms`` rational operations)."""
    if not same_layers(f, rewrite):
        return None
    g = rewrite.network
    budget = _Budget(terms)
    forms: list[Form | None] = [({i: Fraction(1)}, Fraction(0)) for i in range(f.input_size)]
    deltas = []
    for k, (a, b) in enumerate(zip(f.layers, g.layers, strict=True)):
        step = _layer(k, a, b, forms, rewrite.neuron_map, stability, budget)
        if step is None:
            return None
        forms, delta = step
        deltas.append(delta)
    layers = [(la.weight, la.bias) for la in g.layers]
    worst = 0.0
    for box in boxes:
        mags = input_magnitudes(g, box, interval_bounds(g, box))
        worst = max(worst, float(np.max(stored_rounding_bound(layers, deltas, mags))))
    return worst


def _layer(k, a, b, forms, fates, stability, budget):
    """Layer ``k``'s exact rows compared with ``f_e``'s (the deltas) and the forms of its
    units for the next layer; ``None`` where the replay does not apply."""
    n = a.out_features
    if a.relu:
        rows = kept_rows(fates, k, n)
    else:
        rows = np.arange(n) if b.out_features == n else None
    if rows is None or rows.size != b.out_features:
        return None
    w = sp.csr_matrix(a.weight)
    cache: dict[int, Form | None] = {}

    def z(i: int) -> Form | None:  # unit i's pre-activation as a form of the kept h*_p
        if i not in cache:
            cache[i] = _row_form(w, a.bias, i, forms, budget)
        return cache[i]

    delta = _deltas(b, rows, z, budget)
    if delta is None:
        return None
    out: list[Form | None] = [None] * n
    for t, r in enumerate(rows.tolist()):
        out[r] = ({t: Fraction(1)}, Fraction(0))
    verdicts = _verdicts(stability, k, n) if a.relu else None
    pending, unknown = [j for j in range(n) if out[j] is None], set()
    while pending:  # an identity may read a deleted source resolved in a later sweep
        left = []
        for j in pending:
            form = _deleted_form(j, k, a.relu, fates, verdicts, z, out, unknown)
            if form is False:
                left.append(j)
            elif form is None:
                unknown.add(j)
            else:
                out[j] = form
        if len(left) == len(pending):
            break  # a cycle: unknown (None), refused where read
        pending = left
    return out, delta


def _verdicts(stability, k: int, n: int) -> np.ndarray:
    try:
        return stability.for_layer(k).verdict
    except KeyError:  # a ReLU layer without verdicts: all undecided
        return np.full(n, Verdict.UNDECIDED)


def same_layers(f: Network, rewrite: RewriteResult | None) -> bool:
    """True when ``rewrite.network`` has ``f``'s layers and ReLU flags (none merged or
    dropped)."""
    if rewrite is None:
        return False
    g = rewrite.network
    return len(g.layers) == len(f.layers) and all(
        a.relu == b.relu for a, b in zip(f.layers, g.layers, strict=True)
    )


def kept_rows(fates, k: int, n: int) -> np.ndarray | None:
    """Original indices of layer ``k``'s kept neurons in the order of their new positions;
    ``None`` where a fate is missing or a kept neuron moved to another layer or order."""
    if any((k, i) not in fates for i in range(n)):
        return None
    kept = sorted((fates[(k, i)].position, i) for i in range(n) if fates[(k, i)].kept)
    if any(pos is None or pos[0] != k for pos, _ in kept):
        return None
    if [pos[1] for pos, _ in kept] != list(range(len(kept))):
        return None
    return np.array([i for _, i in kept], dtype=np.int64)


def _row_form(w, bias, i: int, forms, budget) -> Form | None:
    """``z_i = sum_u W_iu h_u + b_i`` with each ``h_u`` replaced by its form; ``None`` where
    it reads an unknown unit."""
    lo, hi = w.indptr[i], w.indptr[i + 1]
    cols, vals = w.indices[lo:hi], w.data[lo:hi]
    if not budget.spend(int(hi - lo) + 1):
        return None
    coef: dict[int, Fraction] = {}
    const = Fraction(float(bias[i]))
    for u, v in zip(cols.tolist(), vals.tolist(), strict=True):
        form = forms[u]
        if form is None:
            return None
        fv = Fraction(v)
        if not budget.spend(len(form[0])):
            return None
        for p, c in form[0].items():
            coef[p] = coef.get(p, Fraction(0)) + fv * c
        if form[1]:
            const += fv * form[1]
    return {p: c for p, c in coef.items() if c}, const


def _deltas(b, rows: np.ndarray, z, budget):
    r""":math:`(|W^* - W|, |b^* - b|)` of ``f_e``'s layer ``b``, rounded up to float64 (dense
    or sparse like ``b.weight``), or ``None``."""
    gw = sp.csr_matrix(b.weight)
    di, dj, dv = [], [], []
    db = np.zeros(b.out_features)
    for t, r in enumerate(rows.tolist()):
        form = z(r)
        if form is None:
            return None
        coef, const = form
        lo, hi = gw.indptr[t], gw.indptr[t + 1]
        stored = dict(zip(gw.indices[lo:hi].tolist(), gw.data[lo:hi].tolist(), strict=True))
        if not budget.spend(len(coef) + len(stored)):
            return None
        for p in set(coef) | set(stored):
            d = _up(abs(coef.get(p, Fraction(0)) - Fraction(stored.get(p, 0.0))))
            if d:
                di.append(t)
                dj.append(p)
                dv.append(d)
        db[t] = _up(abs(const - Fraction(float(b.bias[t]))))
    dw = sp.csr_matrix((dv, (di, dj)), shape=gw.shape)
    return (dw if sp.issparse(b.weight) else dw.toarray()), db


def _deleted_form(j, k, relu, fates, verdicts, z, out, unknown):
    """The form of deleted unit ``j`` of layer ``k`` (module docstring), ``None`` (unknown),
    or ``False`` (a source not resolved yet)."""
    if relu and verdicts[j] == Verdict.INACTIVE:
        return {}, Fraction(0)
    zj = z(j)
    if zj is None:
        return None
    if not zj[0]:  # a constant
        return {}, max(zj[1], Fraction(0)) if relu else zj[1]
    fold = fates[(k, j)].fold if relu and (k, j) in fates else None
    if fold is None or not fold.sources or any(s[0] != k for s in fold.sources):
        return None
    src = [s[1] for s in fold.sources]
    alpha = [Fraction(c) for c in fold.coefficients]
    beta = Fraction(fold.offset)
    duplicate = len(src) == 1 and beta == 0 and alpha[0] > 0
    active = all(verdicts[i] == Verdict.ACTIVE for i in [j, *src])
    if not (duplicate or active) or any(s in unknown for s in src):
        return None
    if any(out[s] is None for s in src):
        return False
    zs = [z(s) for s in src]
    if any(f is None for f in zs):
        return None
    coef: dict[int, Fraction] = {}
    const = beta
    for c, (fc, fk) in zip(alpha, zs, strict=True):
        for p, v in fc.items():
            coef[p] = coef.get(p, Fraction(0)) + c * v
        const += c * fk
    if {p: v for p, v in coef.items() if v} != zj[0] or const != zj[1]:
        return None  # the identity does not hold exactly between f's rows
    form: dict[int, Fraction] = {}  # h_j = sum_s alpha_s h_s + beta, h_s by its form
    hconst = beta
    for c, s in zip(alpha, src, strict=True):
        for p, v in out[s][0].items():
            form[p] = form.get(p, Fraction(0)) + c * v
        hconst += c * out[s][1]
    return {p: v for p, v in form.items() if v}, hconst


def _up(x: Fraction) -> float:
    """``x >= 0`` as a float64 no smaller than it."""
    v = float(x)
    return v if Fraction(v) >= x else float(np.nextafter(v, np.inf))
