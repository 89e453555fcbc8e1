"""Skip connections and ``Concat`` of branches, read exactly by *carrying* tensors through ReLUs.

The reader (:mod:`exactcomp.io.onnx_graph`) keeps every input-dependent tensor as an affine
function of ``h``, the output of the last layer committed. A residual block uses a tensor
``t`` from before a ReLU after it (``y = relu(W x + b) ; z = V y + x``), which a chain of
layers cannot express directly. It can once ``t`` travels through the layer as extra
neurons, the *carry* of ``t``: when a layer is committed, every tensor still needed later
(its *live* tensors) is appended to it as rows, and read back after it as an affine function
of the new ``h``. For a tensor ``t = A h + c`` with ``k`` entries crossing a ReLU layer:

* if ``t`` is proven non-negative, one carry neuron per entry, ``u = relu(A h + c)``, and
  ``t = u`` since ``relu(s) = s`` for ``s >= 0``. The proof is syntactic and exact: ``h``
  is non-negative (the last layer has a ReLU, or is a max-pool of non-negative values, or
  an average pool of a non-negative ``h``) and every entry of ``A`` and ``c`` is ``>= 0``.
  This covers a ReLU output, an ``AveragePool`` of one, and any positive-weighted sum of
  them;
* otherwise two, ``u = relu(A h + c)`` and ``v = relu(-A h - c)``, and ``t = u - v`` since
  ``s = relu(s) - relu(-s)`` for every real ``s``;
* a layer without ReLU (a linear layer the reader commits, such as the one before a
  max-pool) carries ``t`` as ``k`` linear rows, ``t = u``.

The carried values enter the affine function built after the layer exactly (entries
``+1``/``-1`` of the new linear part), so ``Add`` of a block's output and its input, and
``Concat`` of two branches (both are affine functions of the same carried ``h``), are
ordinary affine operators again. The IR stays a chain of :class:`~exactcomp.network.Layer`,
so every bound, MILP, rewrite and verifier works unchanged; a carry neuron of a
non-negative tensor is stably active on every domain, so ``compress`` folds it back.

Memory: a carry's rows are selections of ``h`` in the common case, so the layer is built
as a ``scipy.sparse`` matrix once it exceeds :data:`~exactcomp.network.SPARSE_ABOVE`
entries, and the read-back linear parts are strided views of ``O(len(h))`` numbers.
Refused by name (by the callers): a ``MaxPool`` while a tensor is being carried across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network import SPARSE_ABOVE, Layer
from .onnx_ops import Affine


@dataclass(frozen=True)
class CarryPlan:
    """Where each live tensor sits in a committed layer: its first row and its row count."""

    starts: tuple[int, ...]
    doubled: tuple[bool, ...]  # True: two rows per entry (t = u - v)
    width: int  # rows of the layer, main rows and carries together


def is_nonneg(t: Affine, h_nonneg: bool) -> bool:
    """True when ``t`` is proven ``>= 0``: ``h >= 0`` and every coefficient and offset ``>= 0``."""
    return bool(h_nonneg and np.all(t.lin >= 0) and np.all(np.asarray(t.off) >= 0))


def _rows(t: Affine) -> tuple[np.ndarray, np.ndarray]:
    n = t.lin.shape[0]
    return t.lin.reshape(n, -1).T, np.asarray(t.off, dtype=np.float64).reshape(-1)


def carry_layer(
    main: tuple[np.ndarray, np.ndarray],
    live: list[Affine],
    relu: bool,
    h_nonneg: bool,
) -> tuple[Layer, CarryPlan]:
    """The layer of ``main`` (weights, bias) with the carry rows of ``live`` appended below.

    Dense when the whole matrix has at most :data:`~exactcomp.network.SPARSE_ABOVE` entries,
    else CSR (every carry row is stored by its non-zero entries only).
    """
    w, b = main
    n_in = w.shape[1]
    blocks_w: list = [w]
    blocks_b = [b]
    starts, doubled = [], []
    row = w.shape[0]
    for t in live:
        tw, tb = _rows(t)
        two = relu and not is_nonneg(t, h_nonneg)
        starts.append(row)
        doubled.append(two)
        blocks_w.append(tw)
        blocks_b.append(tb)
        if two:
            blocks_w.append(-tw)
            blocks_b.append(-tb)
        row += tb.size * (2 if two else 1)
    bias = np.concatenate(blocks_b)
    if row * n_in > SPARSE_ABOVE:
        from scipy import sparse

        weight = sparse.vstack([sparse.csr_array(np.asarray(m)) for m in blocks_w], format="csr")
    else:
        weight = np.vstack([np.asarray(m) for m in blocks_w])
    plan = CarryPlan(tuple(starts), tuple(doubled), row)
    return Layer(weight, bias, relu), plan


def selection(n: int, shape: tuple[int, ...], start: int, minus: int | None, base: int) -> Affine:
    """The tensor ``h[start : start + k]`` (minus ``h[minus : minus + k]`` when given) laid out
    in ``shape``, as an :class:`Affine` over an ``h`` of ``n`` entries, ``k = prod(shape)``.

    The linear part is a read-only strided view of ``n + k - 1`` numbers: entry ``(j, i)`` is
    ``z[n - 1 - j + i]``, which is ``1`` exactly when ``j = start + i`` (``-1`` when
    ``j = minus + i``).
    """
    k = int(np.prod(shape, dtype=np.int64))
    z = np.zeros(n + k - 1)
    z[n - 1 - start] = 1.0
    if minus is not None:
        z[n - 1 - minus] = -1.0
    view = np.lib.stride_tricks.as_strided(
        z[n - 1 :], shape=(n, k), strides=(-z.itemsize, z.itemsize), writeable=False
    )
    return Affine(view.reshape((n, *shape)), np.zeros(shape), base, pure=minus is None)


def read_back(live: list[Affine], plan: CarryPlan, base: int) -> list[Affine]:
    """Each live tensor as a function of the committed layer's output (see the module maths)."""
    out = []
    for t, start, two in zip(live, plan.starts, plan.doubled, strict=True):
        k = int(np.prod(t.shape, dtype=np.int64))
        minus = start + k if two else None
        v = selection(plan.width, t.shape, start, minus, base)
        out.append(Affine(v.lin, v.off, base, pure=False))
    return out
