"""The network IR: a feed-forward chain of affine layers, each followed by ReLU or nothing.

Everything in exactcomp (bounds, MILPs, rewrites, verification) works on this one plain
representation, in float64, so that folds and checks are computed at the highest precision
numpy offers regardless of the checkpoint's dtype. It depends on numpy only (a layer too large
to hold densely may carry a ``scipy.sparse`` matrix, made by the reader that needs it; see
:attr:`Layer.sparse`).

A network computes ``h_0 = x``, ``z_k = W_k h_{k-1} + b_k``, ``h_k = relu(z_k)`` if layer
``k`` has a ReLU else ``h_k = z_k``; the output is ``h_L``. Layers with a ReLU hold the
*neurons* that stability analysis classifies (usually every layer but the last).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np

from .conv import ConvSpec, PoolLevel
from .conv_eval import conv_apply, matching_spec
from .errors import InvalidNetworkError


def is_sparse(matrix: object) -> bool:
    """True for a ``scipy.sparse`` matrix or array (tested without importing scipy)."""
    return hasattr(matrix, "tocsr") and not isinstance(matrix, np.ndarray)


#: A layer whose dense matrix would have more entries than this (2^24 float64 entries,
#: 128 MiB) is held as a ``scipy.sparse`` matrix of its taps (:attr:`Layer.sparse`): the ONNX
#: reader stores large convolutions and max-pools so, the analysis runs them cone by cone
#: (:mod:`exactcomp.stability.cones`), and a sparse layer without its structure is written
#: densely only up to this size.
SPARSE_ABOVE = 1 << 24

#: :meth:`Network.forward` evaluates a batch in chunks of rows holding at most this many
#: activations of the widest layer (2^20 float64, 8 MiB per copy): 4,096 points through a
#: convolution of 23,328 outputs would otherwise hold 0.76 GB per copy, and the sampling of
#: the lossy commands kept several (Convnet_maxpool's ``quantize`` peaked at 7.1 GB).
#: CPU seconds per 100,000 points at 2^19 / 2^20 / 2^21 / 2^22 (RESULTS.md "budget17"):
#: Convnet_avgpool held sparse 8.7 / 6.8 / 7.1 / 11.3, Convnet_maxpool 17.3 / 15.5 / 18.1 /
#: 26.9, cifar_base_kw 9.4 / 8.7 / 9.4 / 9.2, the digits model 0.11 / 0.12 / 0.16 / 0.34:
#: chunks that stay in cache.
FORWARD_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class Layer:
    """One affine map ``z = W h + b`` (``W`` of shape ``(out, in)``), optionally followed by ReLU.

    ``structure``, when set, is an exact description of ``W`` and ``b`` that writers keep
    (a :class:`~exactcomp.conv.ConvSpec`: ``W`` is its matrix and ``b`` one value per output
    channel; or a :class:`~exactcomp.conv.PoolLevel` of an exact max-pool). Every computation
    uses ``W``; a rewrite that builds a new ``Layer`` without it simply gets a dense layer.
    """

    weight: np.ndarray
    bias: np.ndarray
    relu: bool
    structure: ConvSpec | PoolLevel | None = None

    def __post_init__(self) -> None:
        if is_sparse(self.weight):
            w = self.weight.tocsr().astype(np.float64, copy=True)
            w.sum_duplicates()
        else:
            w = np.array(self.weight, dtype=np.float64, copy=True)
            w.setflags(write=False)
        b = np.array(self.bias, dtype=np.float64, copy=True).reshape(-1)
        b.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "relu", bool(self.relu))

    @property
    def sparse(self) -> bool:
        """True when ``weight`` is a ``scipy.sparse`` CSR matrix (a convolution or pool too
        large to hold densely). Its entries are those of the dense matrix, exactly; only the
        engines that read it through :meth:`apply` and :meth:`abs_weight` (the forward pass,
        the cone analysis :mod:`exactcomp.stability.cones`, the channel rewrite, the
        writers) accept such a layer."""
        return is_sparse(self.weight)

    @cached_property
    def conv(self) -> ConvSpec | None:
        """The layer's convolution when ``structure`` is one whose matrix is exactly the dense
        ``weight`` (checked once, :func:`~exactcomp.conv_eval.matching_spec`), else None.
        :meth:`apply` and :meth:`apply_abs` then convolve instead of multiplying by ``W``."""
        return None if self.sparse else matching_spec(self.structure, self.weight)

    def apply(self, h: np.ndarray) -> np.ndarray:
        """``h @ W.T`` for a batch ``h`` of shape ``(n, in_features)``, dense result (a
        convolution is evaluated as one: :mod:`exactcomp.conv_eval`)."""
        if self.sparse:
            return np.asarray((self.weight @ h.T).T)
        if self.conv is not None:
            return conv_apply(self.conv, h)
        return h @ self.weight.T

    def apply_abs(self, h: np.ndarray) -> np.ndarray:
        """``h @ |W|.T`` for a batch ``h``, as :meth:`apply` does it."""
        if self.conv is not None:
            return conv_apply(self.conv, h, np.abs(self.conv.kernel))
        return np.asarray((self.abs_weight() @ h.T).T)

    def abs_weight(self):  # ndarray or scipy.sparse matrix
        """``|W|`` entry by entry, in ``W``'s storage."""
        return abs(self.weight)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def num_parameters(self) -> int:
        """Parameters as written: a convolution's kernel and channel biases, a pool's none."""
        if isinstance(self.structure, ConvSpec):
            return self.structure.num_parameters
        if isinstance(self.structure, PoolLevel):
            return 0
        return int(self.weight.size + self.bias.size)


@dataclass(frozen=True, eq=False)
class Network:
    """A feed-forward ReLU network; immutable, float64.

    Parameters
    ----------
    layers:
        The affine layers in order.
    dtype:
        The dtype of the checkpoint it came from (``"float32"``, ``"float64"``...); used only
        when saving, so that a compressed network is written in the input's precision.
    meta:
        Free-form facts about the source (ONNX input/output names and shapes, the original
        format) that writers may use to mirror it. Never used in computations.
    """

    layers: tuple[Layer, ...]
    dtype: str = "float32"
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        self.validate()

    def __reduce__(self) -> tuple:
        """Pickled with its ``meta`` as a dict (a mapping proxy does not pickle), for the
        engine's worker processes (:mod:`exactcomp.bab.beta_parts`)."""
        return (type(self), (self.layers, self.dtype, dict(self.meta)))

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(
        cls,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        relu_last: bool = False,
        dtype: str = "float32",
    ) -> Network:
        """Build an MLP with a ReLU after every layer but the last (unless ``relu_last``)."""
        n = len(weights)
        if n != len(biases):
            raise InvalidNetworkError(f"{n} weight matrices but {len(biases)} bias vectors")
        layers = [
            Layer(w, b, relu=(i < n - 1) or relu_last)
            for i, (w, b) in enumerate(zip(weights, biases, strict=True))
        ]
        return cls(tuple(layers), dtype=dtype)

    def replace_layers(self, layers: tuple[Layer, ...] | list[Layer]) -> Network:
        """A copy with other layers and the same dtype and metadata."""
        return Network(tuple(layers), dtype=self.dtype, meta=dict(self.meta))

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise :class:`InvalidNetworkError` unless the layers chain and all values are finite."""
        if not self.layers:
            raise InvalidNetworkError("the network has no layers")
        for k, layer in enumerate(self.layers):
            if layer.weight.ndim != 2:
                raise InvalidNetworkError(
                    f"layer {k}: weight must be a matrix, got shape {layer.weight.shape}"
                )
            if layer.bias.shape != (layer.out_features,):
                raise InvalidNetworkError(
                    f"layer {k}: bias has {layer.bias.size} entries but the layer has "
                    f"{layer.out_features} outputs"
                )
            values = layer.weight.data if layer.sparse else layer.weight
            if not (np.isfinite(values).all() and np.isfinite(layer.bias).all()):
                raise InvalidNetworkError(f"layer {k}: weights or biases contain NaN or inf")
            spec = layer.structure
            if isinstance(spec, ConvSpec) and (
                (spec.out_features, spec.in_features) != layer.weight.shape
            ):
                raise InvalidNetworkError(f"layer {k}: its convolution does not fit its matrix")
            if k > 0 and layer.in_features != self.layers[k - 1].out_features:
                raise InvalidNetworkError(
                    f"layer {k} expects {layer.in_features} inputs but layer {k - 1} has "
                    f"{self.layers[k - 1].out_features} outputs"
                )

    # ----------------------------------------------------------------- shape facts
    @property
    def input_size(self) -> int:
        return self.layers[0].in_features

    @property
    def output_size(self) -> int:
        return self.layers[-1].out_features

    @property
    def relu_layers(self) -> tuple[int, ...]:
        """Indices of the layers followed by a ReLU (the ones whose neurons we classify)."""
        return tuple(k for k, layer in enumerate(self.layers) if layer.relu)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """Width of each ReLU layer, in order."""
        return tuple(self.layers[k].out_features for k in self.relu_layers)

    @property
    def num_neurons(self) -> int:
        """Total number of ReLU neurons."""
        return int(sum(self.hidden_widths))

    @property
    def num_parameters(self) -> int:
        """Parameters as a writer stores them (:attr:`Layer.num_parameters`)."""
        return int(sum(layer.num_parameters for layer in self.layers))

    # ----------------------------------------------------------------- evaluation
    def preactivations(self, x: np.ndarray) -> list[np.ndarray]:
        """All pre-activations ``z_k`` (float64) for a batch ``x`` of shape ``(n, input_size)``."""
        h = self._as_batch(x)
        out = []
        for layer in self.layers:
            z = layer.apply(h) + layer.bias
            out.append(z)
            h = np.maximum(z, 0.0) if layer.relu else z
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the network in float64; ``x`` is one input or a batch ``(n, input_size)``."""
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        h = self._as_batch(x)
        rows = max(FORWARD_CHUNK // max(la.out_features for la in self.layers), 1)
        if len(h) > rows:  # the rows are independent: chunks give the same values
            return np.concatenate([self.forward(h[i : i + rows]) for i in range(0, len(h), rows)])
        for layer in self.layers:
            h = layer.apply(h)  # a new array: updated in place
            h += layer.bias
            if layer.relu:
                np.maximum(h, 0.0, out=h)
        return h[0] if single else h

    __call__ = forward

    def term_scale(self, x: np.ndarray) -> np.ndarray:
        """Per output, the size of the terms a float64 evaluation at ``x`` sums: ``s_0 = |x|``,
        ``s_k = |W_k| s_{k-1} + |b_k|``. Rounding in any evaluation (ours, or a rewritten
        network's) is a small multiple of ``2^-53 * s_L``; see ``Tolerances.check_scale``."""
        s = np.abs(self._as_batch(x))
        for layer in self.layers:
            s = layer.apply_abs(s)
            s += np.abs(layer.bias)
        return s

    def _as_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise InvalidNetworkError(
                f"input has shape {x.shape}; the network expects {self.input_size} features"
            )
        return x

    def describe(self) -> str:
        """A one-line architecture summary such as ``64-100r-100r-10``."""
        parts = [str(self.input_size)]
        parts += [f"{la.out_features}{'r' if la.relu else ''}" for la in self.layers]
        return "-".join(parts)
