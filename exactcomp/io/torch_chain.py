"""The one place where PyTorch layers become IR layers: a chain builder shared by every reader.

Modules in memory or pickled whole, TorchScript archives and ``torch.export`` programs all
describe a network as a chain of steps; each reader walks its own format and calls
:class:`ChainBuilder`, which owns the rules of what is exact:

* ``Linear`` (``z = W h + b``) starts a new IR layer;
* ``ReLU`` marks the last layer as followed by a ReLU;
* ``BatchNorm1d`` in eval mode computes ``y = gamma * (z - mean) / sqrt(var + eps) + beta``,
  an affine map of its input, so directly after a Linear it is folded into it:
  ``s = gamma / sqrt(var + eps)``, ``W' = diag(s) W``, ``b' = s * (b - mean) + beta``. The fold
  is computed in float64 from the stored values: it is the exact real-arithmetic composition,
  rounded once per entry to float64 (torch's float32 evaluation rounds at every step instead,
  so the two agree to float32 rounding, not bitwise). A BatchNorm anywhere else (after a
  ReLU, or first) is refused: folding it would need the *next* layer, which this reader does
  not do;
* Dropout (any kind), Flatten and Identity are the identity at inference on flat inputs;
* a final ``Softmax``/``LogSoftmax`` over the feature dimension, or a final ``Sigmoid`` /
  ``Tanh``, is kept as the *head* (:mod:`exactcomp.io.heads`): it is not affine, so it is
  not part of the IR. The network analysed is the logits network before
  it; since the head is a fixed function of the logits, a compressed logits network followed
  by the same head equals the original exactly. The head's name is stored in
  ``Network.meta["head"]`` and written back by :func:`~exactcomp.io.torch_io.save_torch`.

Anything else is refused by the readers, by name. Facts the user should know (an assumed
architecture, a dropped head, a module read in eval mode) are collected as one-line notes in
``Network.meta["notes"]``; the CLI prints them and the JSON report stores them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..conv import ConvSpec, PoolLevel
from ..errors import InvalidNetworkError, UnsupportedModelError
from ..network import Layer, Network
from .heads import HEAD_OF, ROW_HEADS, head_label, head_note

#: Bits of the float dtypes a tensor may have, by name (for the widest-dtype rule).
FLOAT_BITS = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}


def to_float64(t: Any, name: str) -> np.ndarray:
    """A float64 copy of a parameter (numpy array or torch tensor); refuses non-float and
    non-finite values."""
    if isinstance(t, np.ndarray):
        if t.dtype.name not in FLOAT_BITS:
            raise UnsupportedModelError(
                f"{name!r} has dtype {t.dtype}; only float weights are supported"
            )
        array = np.array(t, dtype=np.float64)
    else:
        import torch

        if not torch.is_tensor(t):
            raise InvalidNetworkError(f"{name!r} is a {type(t).__name__}, not a tensor")
        if t.is_quantized or not t.is_floating_point():
            raise UnsupportedModelError(
                f"{name!r} has dtype {t.dtype}; only float weights are supported"
            )
        array = t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    if not np.isfinite(array).all():
        raise InvalidNetworkError(f"{name!r} contains NaN or inf values")
    return array


def dtype_name_bits(dtype: Any) -> tuple[str, int]:
    """``("float32", 32)`` for a numpy or torch float dtype."""
    if isinstance(dtype, np.dtype):
        return dtype.name, FLOAT_BITS[dtype.name]
    import torch

    return str(dtype).removeprefix("torch."), torch.finfo(dtype).bits


def build_network(
    layers: tuple[Layer, ...], dtypes: list[Any], *, notes: tuple[str, ...] = (), **meta: Any
) -> Network:
    """The Network, with the widest source dtype (float64 if any layer is float64).

    ``meta`` gets ``format="torch"``, plus ``notes`` and any other keys given when non-empty.
    """
    widest, _ = max((dtype_name_bits(d) for d in dtypes), key=lambda nb: nb[1])
    info: dict[str, Any] = {"format": "torch"}
    if notes:
        info["notes"] = tuple(notes)
    info.update({k: v for k, v in meta.items() if v is not None})
    return Network(layers, dtype=widest, meta=info)


class ChainBuilder:
    """Collects the steps of a sequential network and applies the exactness rules above.

    A reader creates one, calls :meth:`linear`, :meth:`relu`, :meth:`batchnorm`,
    and :meth:`head` in execution order (identities need no call), then :meth:`network`. ``source``
    names the format in messages (``"module"``, ``"TorchScript"``, ``"torch.export"``).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.notes: list[str] = []
        self._weights: list[np.ndarray] = []
        self._biases: list[np.ndarray] = []
        self._relu: list[bool] = []
        self._structures: list[ConvSpec | PoolLevel | None] = []
        self._dtypes: list[Any] = []
        self._foldable = False  # the last step was a Linear (or a BatchNorm folded into one)
        self._head: tuple[str, str] | None = None  # (kind, step name)
        self._training: list[str] = []

    def _check_open(self, name: str, what: str) -> None:
        if self._head is not None:
            kind, head_name = self._head
            raise UnsupportedModelError(
                f"{self.source} {what} {name!r} follows the {head_label(kind)} {head_name!r}; "
                "a Softmax, LogSoftmax, Sigmoid or Tanh is supported only as the last layer"
            )

    def linear(self, name: str, weight: Any, bias: Any | None) -> None:
        """``z = W h + b`` (``bias=None``: zero)."""
        self._check_open(name, "Linear")
        w = to_float64(weight, f"{name}.weight")
        if w.ndim != 2:
            raise UnsupportedModelError(
                f"{self.source} Linear {name!r} has a {w.ndim}-D weight; only 2-D is supported"
            )
        b = np.zeros(w.shape[0]) if bias is None else to_float64(bias, f"{name}.bias")
        if b.shape != (w.shape[0],):
            raise InvalidNetworkError(
                f"{self.source} Linear {name!r}: bias has {b.size} entries but the weight has "
                f"{w.shape[0]} rows"
            )
        if self._weights and self._weights[-1].shape[0] != w.shape[1]:
            raise InvalidNetworkError(
                f"{self.source} Linear {name!r} expects {w.shape[1]} inputs but the layer "
                f"before it has {self._weights[-1].shape[0]} outputs"
            )
        self._weights.append(w)
        self._biases.append(b)
        self._relu.append(False)
        self._structures.append(None)
        self._dtypes.append(weight.dtype)
        self._foldable = True

    def layer(self, name: str, layer: Layer, dtype: Any) -> None:
        """A layer built whole by a reader of convolutions and pools
        (:mod:`~exactcomp.io.torch_spatial`): its matrix, bias and structure, no ReLU yet."""
        self._check_open(name, "layer")
        if self._weights and self._weights[-1].shape[0] != layer.in_features:
            raise InvalidNetworkError(
                f"{self.source} layer {name!r} expects {layer.in_features} inputs but the layer "
                f"before it has {self._weights[-1].shape[0]} outputs"
            )
        self._weights.append(layer.weight)
        self._biases.append(layer.bias)
        self._relu.append(layer.relu)
        self._structures.append(layer.structure)
        self._dtypes.append(dtype)
        self._foldable = False

    @property
    def width(self) -> int | None:
        """The number of outputs of the last layer (``None`` before the first)."""
        return int(self._weights[-1].shape[0]) if self._weights else None

    @property
    def last_dtype(self) -> Any:
        """The dtype of the last layer's parameters (float32 before the first)."""
        return self._dtypes[-1] if self._dtypes else np.dtype(np.float32)

    @property
    def last_relu(self) -> bool:
        """True when the last layer is followed by a ReLU (its output is non-negative)."""
        return bool(self._relu) and self._relu[-1]

    def relu(self, name: str) -> None:
        self._check_open(name, "ReLU")
        if not self._weights:
            raise UnsupportedModelError(
                f"{self.source} ReLU {name!r} comes before the first Linear layer; not supported"
            )
        self._relu[-1] = True
        self._foldable = False

    def batchnorm(self, name: str, gamma: Any, beta: Any, mean: Any, var: Any, eps: float) -> None:
        """Fold an eval-mode BatchNorm1d into the Linear just before it (see module docs).

        ``gamma``/``beta`` may be ``None`` (``affine=False``: 1 and 0); ``mean``/``var`` are
        the running statistics and must be present (without them BatchNorm normalises by
        the batch's own statistics, which is not a function of one input).
        """
        self._check_open(name, "BatchNorm1d")
        if mean is None or var is None:
            raise UnsupportedModelError(
                f"{self.source} BatchNorm1d {name!r} has no running statistics "
                "(track_running_stats=False): it normalises by batch statistics, which is not "
                "a fixed function of the input"
            )
        if not self._foldable:
            where = "follows a ReLU" if self._weights else "comes before any Linear layer"
            raise UnsupportedModelError(
                f"{self.source} BatchNorm1d {name!r} {where}; only a BatchNorm1d directly after "
                "a Linear layer is supported (it is folded into that layer)"
            )
        m, v = to_float64(mean, f"{name}.running_mean"), to_float64(var, f"{name}.running_var")
        width = self._weights[-1].shape[0]
        g = np.ones(width) if gamma is None else to_float64(gamma, f"{name}.weight")
        be = np.zeros(width) if beta is None else to_float64(beta, f"{name}.bias")
        if not all(a.shape == (width,) for a in (m, v, g, be)):
            raise InvalidNetworkError(
                f"{self.source} BatchNorm1d {name!r} does not have {width} features, the width "
                "of the Linear layer before it"
            )
        denom = np.sqrt(v + float(eps))
        if not (np.isfinite(denom).all() and (denom > 0).all()):
            raise InvalidNetworkError(
                f"{self.source} BatchNorm1d {name!r}: running_var + eps is not positive"
            )
        s = g / denom
        self._weights[-1] = s[:, None] * self._weights[-1]
        self._biases[-1] = s * (self._biases[-1] - m) + be
        self._dtypes += [x.dtype for x in (mean, var, gamma, beta) if x is not None]

    def head(self, name: str, kind: str, dim: int | None, ndim: int = 2) -> None:
        """A final head (:mod:`exactcomp.io.heads`); a Softmax/LogSoftmax over the feature
        dimension of ``ndim``-D activations."""
        self._check_open(name, head_label(kind))
        if not self._weights:
            raise UnsupportedModelError(
                f"{self.source} {head_label(kind)} {name!r} comes before any Linear layer"
            )
        if kind in ROW_HEADS and dim not in (None, -1, ndim - 1):
            raise UnsupportedModelError(
                f"{self.source} {head_label(kind)} {name!r} is over dim={dim}, not the feature "
                "dimension; only dim=-1 is supported"
            )
        self._head = (kind, name)
        self._foldable = False

    def training(self, name: str, kind: str) -> None:
        """Record that a Dropout/BatchNorm was saved in training mode (read in eval mode)."""
        self._training.append(f"{kind} {name!r}")

    def network(self) -> Network:
        """The IR network, with ``meta["head"]`` and the notes."""
        if not self._weights:
            raise InvalidNetworkError(f"the {self.source} model has no Linear layer")
        layers = tuple(
            Layer(w, b, r, s)
            for w, b, r, s in zip(
                self._weights, self._biases, self._relu, self._structures, strict=True
            )
        )
        if self._training:
            self.notes.append(
                f"read in eval mode (as model.eval() computes it): {', '.join(self._training)} "
                "saved in training mode"
            )
        head = None
        if self._head is not None:
            head = self._head[0]
            self.notes.append(head_note(head))
        return build_network(layers, self._dtypes, notes=tuple(self.notes), head=head)


#: Layers that compute nothing at inference on flat ``(batch, features)`` inputs.
IDENTITY_KINDS = ("Identity", "Flatten", "Dropout", "AlphaDropout", "FeatureAlphaDropout")

#: Every layer kind :func:`feed` reads (the class names of the torch.nn modules).
LAYER_KINDS = ("Linear", "ReLU", "BatchNorm1d", *HEAD_OF, *IDENTITY_KINDS)


def feed(chain: ChainBuilder, name: str, kind: str, leaf: Any) -> None:
    """Give ``chain`` one layer of kind ``kind`` (a name in :data:`LAYER_KINDS`).

    ``leaf`` is a ``torch.nn`` module of exactly that class, or a TorchScript module compiled
    from one: only its attributes are read (``weight``, ``bias``, ``running_mean``, ``eps``,
    ``dim``, ``start_dim``, ``training``...), never its ``forward``.
    """
    training = bool(getattr(leaf, "training", False))
    if kind == "Linear":
        chain.linear(name, leaf.weight, leaf.bias)
    elif kind == "ReLU":
        chain.relu(name)
    elif kind == "BatchNorm1d":
        if training:
            chain.training(name, kind)
        chain.batchnorm(
            name, leaf.weight, leaf.bias, leaf.running_mean, leaf.running_var, float(leaf.eps)
        )
    elif kind in HEAD_OF:
        chain.head(name, HEAD_OF[kind], getattr(leaf, "dim", None))
    elif kind == "Flatten":
        if (leaf.start_dim, leaf.end_dim) != (1, -1):
            raise UnsupportedModelError(
                f"{chain.source} Flatten {name!r} has start_dim={leaf.start_dim}, "
                f"end_dim={leaf.end_dim}; only the default Flatten(1, -1) is supported"
            )
    elif kind in IDENTITY_KINDS:
        if training and kind != "Identity":
            chain.training(name, kind)
    else:
        raise UnsupportedModelError(
            f"unsupported layer {name!r} ({kind}); supported: {', '.join(LAYER_KINDS)}"
        )
