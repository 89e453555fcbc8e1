r"""Evaluate a convolution layer as a convolution, never through its dense matrix.

A layer that carries a :class:`~exactcomp.conv.ConvSpec` computes ``z = W h + b`` where
``W`` is the convolution's matrix (see :mod:`exactcomp.conv`). Multiplying by ``W`` costs
``out_features x in_features`` operations per input (2,048 x 3,072 for the first layer of a
CIFAR-10 network), almost all of them by zero; the convolution itself costs one operation per
*tap*, ``out_features x (C/g) x kh x kw`` (2,048 x 48), 64 times fewer there.

Method (im2col): the input of a batch is reshaped to ``(n, C, H, W)`` and zero-padded; for
each kernel offset ``(a, b)`` the strided slice

.. math::

    P[n, c, a, b, i, j] = x_{pad}[n, c,\; i s_0 + a d_0,\; j s_1 + b d_1]

is copied out, and each group's output is one matrix product of its kernel, reshaped to
``(M/g, (C/g) kh kw)``, with the patches of its channels. Every term of the dense row
product that is not a product with zero appears once, so the result is the same sum as
``W h`` up to the order of the float64 additions (a few units of round-off, well inside
``Tolerances.check_scale``; :func:`conv_apply` is checked against the dense product in
``tests/test_conv_eval.py``). The batch is cut into pieces whose patches hold at most
:data:`PATCH_ENTRIES` numbers, so memory stays proportional to the parameters and the batch,
never to ``pixels x pixels``.

:func:`matching_spec` checks that a spec really describes a layer's matrix before it is
used: the taps must hold exactly the matrix's entries, and the matrix no other non-zero.
"""

from __future__ import annotations

import numpy as np

from .conv import ConvSpec

#: At most this many float64 numbers (16 MiB) in the patches of one piece of a batch.
PATCH_ENTRIES = 1 << 21


def matching_spec(spec: object, weight: np.ndarray) -> ConvSpec | None:
    """``spec`` if it is a :class:`ConvSpec` whose matrix is exactly ``weight``, else None.

    Exact comparison: every tap's entry equals its kernel entry and ``weight`` has no
    non-zero outside the taps (a tap whose kernel entry is 0 must be 0 in ``weight`` too).
    """
    if not isinstance(spec, ConvSpec) or not isinstance(weight, np.ndarray):
        return None
    if weight.shape != (spec.out_features, spec.in_features):
        return None
    rows, cols, entries = spec.taps
    vals = spec.kernel.reshape(-1)[entries]
    if not np.array_equal(weight[rows, cols], vals):
        return None
    if int(np.count_nonzero(weight)) != int(np.count_nonzero(vals)):
        return None
    return spec


def conv_apply(spec: ConvSpec, h: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
    """``h @ W.T`` for a batch ``h`` of shape ``(n, in_features)`` (``W`` the matrix of
    ``spec``), computed as a convolution; ``kernel`` replaces the spec's (e.g. ``|K|``)."""
    k = spec.kernel if kernel is None else kernel
    h = spec.permuted_input(np.asarray(h, dtype=np.float64))  # a channels-last input
    n = h.shape[0]
    c, hh, ww = spec.in_shape
    m, oh, ow = spec.out_shape
    g = spec.groups
    cg, kh, kw = k.shape[1:]
    mg = m // g
    out = np.empty((n, m, oh * ow))
    per = max(1, PATCH_ENTRIES // max(1, c * kh * kw * oh * ow))
    kmat = k.reshape(g, mg, cg * kh * kw)
    for start in range(0, n, per):
        piece = h[start : start + per].reshape(-1, c, hh, ww)
        patches = _patches(spec, piece, kh, kw, oh, ow)  # (c, kh, kw, n', oh, ow)
        cols = patches.reshape(g, cg * kh * kw, -1)  # channels of group t are t*cg...
        for t in range(g):
            res = kmat[t] @ cols[t]  # (mg, n' * oh * ow)
            out[start : start + per, t * mg : (t + 1) * mg] = res.reshape(
                mg, -1, oh * ow
            ).transpose(1, 0, 2)
    return out.reshape(n, m * oh * ow)


def _patches(spec: ConvSpec, x: np.ndarray, kh: int, kw: int, oh: int, ow: int) -> np.ndarray:
    """The im2col array ``P[c, a, b, n, i, j]`` of a batch ``x`` of shape ``(n, C, H, W)``."""
    top, left, bottom, right = spec.pads
    (s0, s1), (d0, d1) = spec.strides, spec.dilations
    n, c, hh, ww = x.shape
    # padded size: large enough for every tap of every output position (ONNX may give more
    # end padding than the taps reach; that is never read)
    ph = max(hh + top + bottom, (oh - 1) * s0 + (kh - 1) * d0 + 1)
    pw = max(ww + left + right, (ow - 1) * s1 + (kw - 1) * d1 + 1)
    xp = np.zeros((c, n, ph, pw))
    xp[:, :, top : top + hh, left : left + ww] = x.transpose(1, 0, 2, 3)
    out = np.empty((c, kh, kw, n, oh, ow))
    for a in range(kh):
        for b in range(kw):
            y0, x0 = a * d0, b * d1
            out[:, a, b] = xp[
                :, :, y0 : y0 + (oh - 1) * s0 + 1 : s0, x0 : x0 + (ow - 1) * s1 + 1 : s1
            ]
    return out
