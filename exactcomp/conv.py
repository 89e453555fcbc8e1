"""Structure a dense layer may carry: a 2-D convolution, or one level of an exact max-pool.

Every consumer of the IR (bounds, MILPs, rewrites, verification) reads a layer's matrix:
dense, or for a layer too large to hold densely its taps as a ``scipy.sparse`` matrix built
from :meth:`ConvSpec.coo` / :func:`pool_layers_coo` (analysed cone by cone,
:mod:`exactcomp.stability.cones`). The structure here is an *exact, checked description* of
that same matrix that the
writers use to emit ``Conv``/``MaxPool`` instead of ``Gemm``, and that the channel rewrite
(:mod:`exactcomp.rewrite.channels`) edits channel by channel. It is never trusted blindly:
:func:`~exactcomp.io.conv_recognition.recognize_conv` (the ONNX reader's) attaches a
:class:`ConvSpec` to a matrix only when rebuilding the matrix from the spec gives back every
entry bit for bit.

Convolution (ONNX ``Conv`` without its bias, NCHW, one sample). With input ``x`` of shape
``(C, H, W)``, kernel ``K`` of shape ``(M, C/g, kh, kw)``, strides ``s``, dilations ``d``,
top/left padding ``p`` and ``g`` groups, output channel ``m`` in group ``m // (M/g)`` is

.. math::

    y[m, i, j] = \\sum_{c', a, b} K[m, c', a, b]\\; x[g(m)\\,C/g + c',\\;
        i s_0 - p_0 + a d_0,\\; j s_1 - p_1 + b d_1]

where out-of-range input positions are zero (the padding). Flattened in C order, ``y``
is ``W x`` with ``W[(m, i, j), (c, y, x)] = K[m, c', a, b]`` for the taps in range and 0
elsewhere; :meth:`ConvSpec.taps` lists exactly those (row, column, kernel entry) triples.
The numbers of parameters are ``K.size`` plus one bias per output channel.

Input permutation (a channels-last export: ``Transpose(perm=0,3,1,2)`` into the ``Conv``).
With ``in_axes`` set, the layer's input is a tensor ``x`` of :attr:`ConvSpec.source_shape`
and the convolution reads ``z = transpose(x, in_axes)`` (numpy's and ONNX's meaning:
``z.shape[i] = x.shape[in_axes[i]]``), of shape ``in_shape``. The matrix is then ``W P`` with
``P`` the permutation matrix of that transpose: column ``k`` of the plain matrix (position
``k`` of ``z`` in C order) moves to column ``perm[k]``, where
``perm = arange(n).reshape(source_shape).transpose(in_axes).ravel()``. :meth:`ConvSpec.taps`
(and so :meth:`~ConvSpec.dense`, :meth:`~ConvSpec.coo`) apply it; a consumer that reads the
geometry itself must honour it or drop the structure (the layer's matrix stays the truth).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

Shape3 = tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class ConvSpec:
    """A 2-D convolution ``(C, H, W) -> (M, OH, OW)``; see the module docstring."""

    in_shape: Shape3
    kernel: np.ndarray
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1
    in_axes: tuple[int, int, int] | None = None  # input permutation (module docstring)

    def __post_init__(self) -> None:
        k = np.array(self.kernel, dtype=np.float64, copy=True)
        k.setflags(write=False)
        object.__setattr__(self, "kernel", k)
        for name in ("in_shape", "strides", "pads", "dilations"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        c, m, g = self.in_shape[0], k.shape[0], int(self.groups)
        if k.ndim != 4 or g < 1 or c % g or m % g or k.shape[1] != c // g:
            raise ValueError(f"kernel {k.shape} does not fit {c} input channels in {g} groups")
        if min(self.out_shape) < 1:
            raise ValueError("the kernel is larger than the padded input")
        axes = None if self.in_axes is None else tuple(int(a) for a in self.in_axes)
        if axes is not None and sorted(axes) != [0, 1, 2]:
            raise ValueError(f"in_axes {axes} is not a permutation of (0, 1, 2)")
        object.__setattr__(self, "in_axes", None if axes == (0, 1, 2) else axes)

    @property
    def source_shape(self) -> Shape3:
        """The shape of the layer's input tensor: ``in_shape`` unless ``in_axes`` permutes it."""
        if self.in_axes is None:
            return self.in_shape
        src = [0, 0, 0]
        for i, a in enumerate(self.in_axes):
            src[a] = self.in_shape[i]
        return (src[0], src[1], src[2])

    def permuted_input(self, h: np.ndarray) -> np.ndarray:
        """A batch ``h`` of shape ``(n, in_features)`` laid out as the convolution reads it
        (``transpose(x, in_axes)`` of each sample, flattened); ``h`` itself without ``in_axes``."""
        if self.in_axes is None:
            return h
        n = h.shape[0]
        x = h.reshape(n, *self.source_shape)
        return x.transpose(0, *(a + 1 for a in self.in_axes)).reshape(n, -1)

    @property
    def out_shape(self) -> Shape3:
        (_, h, w), (kh, kw) = self.in_shape, self.kernel.shape[2:]
        (s0, s1), (d0, d1) = self.strides, self.dilations
        t, le, b, r = self.pads
        return (
            int(self.kernel.shape[0]),
            (h + t + b - d0 * (kh - 1) - 1) // s0 + 1,
            (w + le + r - d1 * (kw - 1) - 1) // s1 + 1,
        )

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_features(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def num_parameters(self) -> int:
        """Kernel entries plus one bias per output channel."""
        return int(self.kernel.size + self.kernel.shape[0])

    @cached_property
    def taps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, entries)``: ``W[rows, cols] = kernel.flat[entries]``, taps in range."""
        rows, cols, entries, _ = conv_taps(
            self.in_shape,
            self.kernel.shape,
            self.strides,
            self.pads[:2],
            self.dilations,
            self.out_shape[1:],
        )
        if self.in_axes is not None:
            n = self.in_features
            perm = np.arange(n).reshape(self.source_shape).transpose(self.in_axes).reshape(-1)
            cols = perm[cols]
        return rows, cols, entries

    def dense(self) -> np.ndarray:
        """The ``(out_features, in_features)`` matrix of the convolution."""
        rows, cols, entries = self.taps
        w = np.zeros((self.out_features, self.in_features))
        w[rows, cols] = self.kernel.reshape(-1)[entries]
        return w

    def coo(self) -> Coo:
        """The same matrix as :meth:`dense`, as its taps (build a sparse matrix from them)."""
        rows, cols, entries = self.taps
        vals = self.kernel.reshape(-1)[entries]
        return Coo(vals, rows, cols, (self.out_features, self.in_features))

    def replace(self, kernel: np.ndarray, in_channels: int) -> ConvSpec:
        """The same geometry (input permutation included) with another kernel and number of
        input channels."""
        return ConvSpec(
            (in_channels, *self.in_shape[1:]),
            kernel,
            self.strides,
            self.pads,
            self.dilations,
            self.groups,
            self.in_axes,
        )


def rounded(structure: ConvSpec | PoolLevel | None, dtype: np.dtype) -> ConvSpec | PoolLevel | None:
    """``structure`` with its parameters rounded to ``dtype`` (a pool has none), so that it
    still describes the matrix rounded entry by entry."""
    if not isinstance(structure, ConvSpec):
        return structure
    k = structure.kernel.astype(dtype).astype(np.float64)
    return structure.replace(k, structure.in_shape[0])


def conv_taps(
    in_shape: Shape3,
    kshape: tuple[int, ...],
    strides: tuple[int, ...],
    begin: tuple[int, ...],
    dilations: tuple[int, ...],
    out_hw: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows, columns and kernel entries of the taps in range, and the number of output rows.

    ``out_hw`` defaults to the output size with no bottom/right padding beyond what the taps
    reach (the ONNX formula with ``end = 0``); the recogniser passes the size it observed.
    """
    c, h, w = in_shape
    m, cg, kh, kw = (int(v) for v in kshape)
    groups = c // cg
    mg = m // groups
    if out_hw is None:
        out_hw = (
            (h + begin[0] - dilations[0] * (kh - 1) - 1) // strides[0] + 1,
            (w + begin[1] - dilations[1] * (kw - 1) - 1) // strides[1] + 1,
        )
    oh, ow = out_hw
    mm, ii, jj, cc, aa, bb = np.meshgrid(
        np.arange(m),
        np.arange(oh),
        np.arange(ow),
        np.arange(cg),
        np.arange(kh),
        np.arange(kw),
        indexing="ij",
    )
    y = ii * strides[0] - begin[0] + aa * dilations[0]
    x = jj * strides[1] - begin[1] + bb * dilations[1]
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    ch = (mm // mg) * cg + cc
    rows = ((mm * oh + ii) * ow + jj)[ok]
    cols = ((ch * h + y) * w + x)[ok]
    entries = (((mm * cg + cc) * kh + aa) * kw + bb)[ok]
    return rows.astype(np.int64), cols.astype(np.int64), entries.astype(np.int64), m * oh * ow


@dataclass(frozen=True)
class PoolLevel:
    """One layer of a pooling block: an exact ``MaxPool`` as ReLUs, or a linear ``AveragePool``.

    A max-pool block is ``levels`` ReLU layers then one linear layer (``level == levels``);
    an average pool is one linear layer (``levels == level == 0``). ``in_shape`` is the pooled
    tensor's ``(C, H, W)``; ``kernel``, ``strides`` and ``pads`` (top, left, bottom, right)
    are the node's. ``nonneg``: the block was built for a non-negative input (a ReLU output),
    so it carries ``b`` as ``relu(b + CARRY_SHIFT)`` alone. Units are laid out channel by channel, the same
    number per channel; :func:`pool_matrices` builds the matrices from these fields alone.
    """

    kind: str
    in_shape: Shape3
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    level: int = 0
    levels: int = 0
    nonneg: bool = False
    count_include_pad: bool = False

    @property
    def channels(self) -> int:
        return int(self.in_shape[0])

    @property
    def out_hw(self) -> tuple[int, int]:
        (_, h, w), (kh, kw), (s0, s1) = self.in_shape, self.kernel, self.strides
        t, le, b, r = self.pads
        return (h + t + b - kh) // s0 + 1, (w + le + r - kw) // s1 + 1

    def with_channels(self, channels: int) -> PoolLevel:
        return replace(self, in_shape=(channels, *self.in_shape[1:]))

    def at_level(self, level: int) -> PoolLevel:
        return replace(self, level=level)


def pool_windows(pool: PoolLevel) -> list[list[int]]:
    """Per output position of one channel, the flat input positions of its window."""
    (_, h, w), (kh, kw), (s0, s1) = pool.in_shape, pool.kernel, pool.strides
    top, left = pool.pads[:2]
    oh, ow = pool.out_hw
    out = []
    for i in range(oh):
        for j in range(ow):
            ys = [i * s0 - top + a for a in range(kh)]
            xs = [j * s1 - left + b for b in range(kw)]
            out.append([y * w + x for y in ys for x in xs if 0 <= y < h and 0 <= x < w])
    return out


def _dense(rows: list[dict[int, float]], width: int) -> np.ndarray:
    m = np.zeros((len(rows), width))
    for r, row in enumerate(rows):
        for c, v in row.items():
            m[r, c] += v
    return m


#: Added to a carried non-negative value ``b`` so that its unit ``relu(b + 1) = b + 1`` is
#: *strictly* active: interval bounds prove it at once, where ``relu(b)`` with ``min b = 0``
#: would be a tie left to the MILP. Any positive number works; 1 is exact in every float type.
CARRY_SHIFT = 1.0

Affine1 = tuple[dict[int, float], float]  # sum of coefficient * unit, plus a constant


def _row(a: Affine1, sign: float = 1.0, b: Affine1 | None = None) -> Affine1:
    out = {c: sign * v for c, v in a[0].items()}
    const = sign * a[1]
    if b is not None:
        for c, v in b[0].items():
            out[c] = out.get(c, 0.0) - v
        const -= b[1]
    return out, const


def pool_matrices(pool: PoolLevel) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(matrix, bias)`` of each layer of one channel's pooling block, in order.

    Average: one linear layer, each row ``1/k`` over its window (``k`` the kernel size, or the
    number of in-range entries when ``count_include_pad`` is false), bias 0.

    Max, as ReLUs. With :math:`s` = :data:`CARRY_SHIFT`,

    .. math::

        \\max(a, b) = b + \\mathrm{relu}(a - b), \\qquad
        b = \\mathrm{relu}(b) - \\mathrm{relu}(-b), \\qquad
        b = \\mathrm{relu}(b + s) - s \\ \\text{if } b \\ge 0 .

    Each level pairs the values of every window: ``(a, b) -> relu(a - b)`` plus ``b`` carried
    through the layer as ``relu(b + s)`` when the block's input is non-negative (a ReLU
    output: maxima of non-negative values stay non-negative, so this holds at every level),
    else as ``relu(b), relu(-b)``; an odd last value is carried the same way. The next level
    reads ``max(a, b)`` linearly from those units (the ``-s`` goes into its bias). After
    ``ceil(log2(window size))`` levels every window holds one value, which the final linear
    layer reads. Padding (``-inf`` in ONNX) is never a maximum, so padded positions are left
    out of their windows. Exact in real arithmetic; a MILP sees only ReLUs and linear maps.
    """
    (_, h, w) = pool.in_shape
    wins = pool_windows(pool)
    if any(not win for win in wins):
        raise ValueError("a pooling window lies entirely in the padding")
    if pool.kind == "average":
        size = pool.kernel[0] * pool.kernel[1]
        rows = [{c: 1.0 / (size if pool.count_include_pad else len(win)) for c in win}
                for win in wins]  # fmt: skip
        return [(_dense(rows, h * w), np.zeros(len(rows)))]
    values: list[list[Affine1]] = [[({c: 1.0}, 0.0) for c in win] for win in wins]
    width, out = h * w, []
    while any(len(v) > 1 for v in values):
        rows: list[Affine1] = []
        nxt = []
        for vals in values:
            new = []
            for t in range(0, len(vals), 2):
                b = vals[t + 1] if t + 1 < len(vals) else vals[t]
                combo: dict[int, float] = {}
                const = 0.0
                if t + 1 < len(vals):
                    rows.append(_row(vals[t], 1.0, b))
                    combo[len(rows) - 1] = 1.0
                if pool.nonneg:
                    d, c0 = _row(b)
                    rows.append((d, c0 + CARRY_SHIFT))
                    combo[len(rows) - 1] = 1.0
                    const = -CARRY_SHIFT
                else:
                    rows.append(_row(b))
                    combo[len(rows) - 1] = 1.0
                    rows.append(_row(b, -1.0))
                    combo[len(rows) - 1] = -1.0
                new.append((combo, const))
            nxt.append(new)
        out.append((_dense([r[0] for r in rows], width), np.array([r[1] for r in rows])))
        width, values = len(rows), nxt
    last = [v[0] for v in values]
    out.append((_dense([r[0] for r in last], width), np.array([r[1] for r in last])))
    return out


def channel_blocks(mat: np.ndarray, channels: int) -> np.ndarray:
    """The block-diagonal matrix applying one channel's ``mat`` to each of ``channels``."""
    return np.kron(np.eye(channels), mat)


def pool_layers(pool: PoolLevel) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`pool_matrices` for all ``pool.channels`` channels (units channel by channel)."""
    c = pool.channels
    return [(channel_blocks(m, c), np.tile(b, c)) for m, b in pool_matrices(pool)]


@dataclass(frozen=True, eq=False)
class Coo:
    """A matrix of ``shape`` as its non-zero entries ``vals`` at ``(rows, cols)``: what a
    ``scipy.sparse`` matrix is built from (this module stays numpy-only)."""

    vals: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]


def channel_blocks_coo(mat: np.ndarray, channels: int) -> Coo:
    """:func:`channel_blocks` as its non-zero entries, without the dense matrix."""
    i, j = np.nonzero(mat)
    ch = np.arange(channels)[:, None]
    r, q = mat.shape
    return Coo(
        np.tile(mat[i, j], channels),
        (ch * r + i).reshape(-1),
        (ch * q + j).reshape(-1),
        (channels * r, channels * q),
    )


def pool_layers_coo(pool: PoolLevel) -> list[tuple[Coo, np.ndarray]]:
    """:func:`pool_layers` with each matrix as a :class:`Coo` (for the sparse layers)."""
    c = pool.channels
    return [(channel_blocks_coo(m, c), np.tile(b, c)) for m, b in pool_matrices(pool)]
