"""Recognise a convolution in a dense matrix, exactly: the ONNX reader's check.

A ``Conv`` node (or a ``Pad`` then a ``Conv``) the reader has multiplied out into a dense
matrix keeps its structure (:class:`~exactcomp.conv.ConvSpec`, what the writers emit as
``Conv`` and the channel rewrite edits) only when :func:`recognize_conv` finds a spec whose
matrix (:func:`~exactcomp.conv.conv_taps`) gives back every entry bit for bit, with no other
non-zero entry and one bias per output channel. No tolerance: the structure describes the
matrix, it never approximates it.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from ..conv import ConvSpec, Shape3, conv_taps


def recognize_conv(
    weight: np.ndarray,
    bias: np.ndarray,
    in_shape: Shape3,
    out_shape: Shape3,
    kernel_hw: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    groups: int,
) -> ConvSpec | None:
    """The convolution whose matrix is exactly ``weight`` (and bias constant per channel).

    Tries every top/left padding that fits the output size (a ``Pad`` node before a ``Conv``
    moves it); returns ``None`` unless one rebuilds ``weight`` entry for entry, with no other
    non-zero entry, and ``bias`` is one value per output channel. Exact comparison, no
    tolerance: the structure is a description of the matrix, never an approximation of it.
    """
    c, h, w = (int(v) for v in in_shape)
    m, oh, ow = (int(v) for v in out_shape)
    kh, kw = kernel_hw
    if c % groups or m % groups or weight.shape != (m * oh * ow, c * h * w):
        return None
    b = np.asarray(bias).reshape(m, oh * ow)
    if np.any(b != b[:, :1]):
        return None
    nonzero = int(np.count_nonzero(weight))
    kshape = (m, c // groups, kh, kw)
    # the largest top/left padding that still fits the output size with no end padding
    most = [
        max((o - 1) * st + d * (kk - 1) + st - n, 0)
        for o, st, d, kk, n in zip((oh, ow), strides, dilations, (kh, kw), (h, w), strict=True)
    ]
    for top in range(most[0] + 1):
        for left in range(most[1] + 1):
            rows, cols, entries, _ = conv_taps(
                (c, h, w), kshape, strides, (top, left), dilations, (oh, ow)
            )
            vals = weight[rows, cols]
            if int(np.count_nonzero(vals)) != nonzero:
                continue
            kernel = np.zeros(int(np.prod(kshape)))
            kernel[entries] = vals
            if not np.array_equal(kernel[entries], vals):
                continue  # two positions disagree on one kernel entry: not a convolution
            bottom = (oh - 1) * strides[0] + dilations[0] * (kh - 1) + 1 - h - top
            right = (ow - 1) * strides[1] + dilations[1] * (kw - 1) + 1 - w - left
            if bottom < 0 or right < 0:
                # a smaller end padding than the taps need: only if ONNX's floor still fits
                bottom, right = max(bottom, 0), max(right, 0)
            try:
                spec = ConvSpec(
                    (c, h, w),
                    kernel.reshape(kshape),
                    strides,
                    (top, left, bottom, right),
                    dilations,
                    groups,
                )
            except ValueError:
                continue
            if spec.out_shape == (m, oh, ow):
                return spec
    return None


def permuted_conv(
    weight: np.ndarray,
    bias: np.ndarray,
    source: tuple[int, ...],
    in_shape: tuple[int, ...],
    out_shape: Shape3,
    args: dict,
) -> ConvSpec | None:
    """The convolution of a transposed input whose matrix is exactly ``weight``.

    A channels-last export feeds its ``(H, W, C)`` input through ``Transpose(0, 3, 1, 2)``
    into the ``Conv``, so the layer's matrix is a convolution's with its columns permuted.
    For each axis order ``p`` that turns ``source`` (the layer's input tensor) into
    ``in_shape`` (the ``Conv``'s), the columns are put back in the ``Conv``'s order and
    :func:`recognize_conv` decides, exactly; the spec found carries ``in_axes = p``, so its
    matrix (:meth:`~exactcomp.conv.ConvSpec.taps`) is ``weight`` itself, entry for entry
    (checked once more here).
    """
    src = tuple(int(v) for v in source)
    for axes in itertools.permutations(range(3)):
        if axes == (0, 1, 2) or tuple(src[a] for a in axes) != tuple(in_shape):
            continue
        perm = np.arange(weight.shape[1]).reshape(src).transpose(axes).reshape(-1)
        spec = recognize_conv(weight[:, perm], bias, in_shape, out_shape, **args)  # type: ignore[arg-type]
        if spec is None:
            continue
        spec = replace(spec, in_axes=axes)
        rows, cols, entries = spec.taps
        vals = spec.kernel.reshape(-1)[entries]
        if np.array_equal(weight[rows, cols], vals) and int(np.count_nonzero(vals)) == int(
            np.count_nonzero(weight)
        ):
            return spec
    return None
