r"""Heads: the final non-affine function of a classifier, kept outside the IR.

A network that ends in one of these (a torch module last in an ``nn.Sequential``, an aten
op last in an exported program, an ONNX node producing the graph's output, possibly through
``Identity`` nodes) is read as its *logits* network :math:`z = N(x)` plus the head's name in
``Network.meta["head"]``; the head is written back by every writer that can hold it (``.pt``
and ``.onnx``; ``.nnet`` refuses).

==============  ================  ==============  =====================================  ==========
head            torch module      ONNX op         function of the logits :math:`z`       Lipschitz
==============  ================  ==============  =====================================  ==========
``softmax``     ``Softmax``       ``Softmax``     :math:`e^{z_i} / \sum_j e^{z_j}`        1/2
``log_softmax`` ``LogSoftmax``    ``LogSoftmax``  :math:`z_i - \log \sum_j e^{z_j}`       2
``sigmoid``     ``Sigmoid``       ``Sigmoid``     :math:`1 / (1 + e^{-z_i})`              1/4
``tanh``        ``Tanh``          ``Tanh``        :math:`\tanh z_i`                       1
==============  ================  ==============  =====================================  ==========

Softmax and LogSoftmax act on a row (over all the features of a sample: the readers refuse
any other ``dim``/``axis``); Sigmoid and Tanh act entry by entry. Lipschitz constants are in
the max norm: for softmax the Jacobian's row :math:`i` has absolute sum
:math:`2 s_i (1 - s_i) \le 1/2`, for log-softmax :math:`2 (1 - s_i) \le 2`; sigmoid's
derivative is at most :math:`1/4`, tanh's at most 1.

What a proof means with a head. Everything exactcomp proves is about the logits: an exact
compression keeps :math:`z` (so the head's output, a fixed function of :math:`z`, is kept
exactly), and a tolerance ``--tol t`` bounds :math:`\max |z_f - z_g| \le t` on the domain.
The head's outputs then differ by at most :math:`L t` with :math:`L` the constant above:
probabilities of a sigmoid by ``t / 4``, of a tanh or softmax by ``t`` (softmax ``t / 2``),
log-probabilities by ``2 t``. ``--tol-mode top1`` keeps the arg-max of :math:`z`, which is
the arg-max of every head here (each is increasing in its own logit).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidNetworkError

#: Every head, by name (``Network.meta["head"]``).
HEADS = ("softmax", "log_softmax", "sigmoid", "tanh")
#: The ``torch.nn`` class and the ONNX operator of each head (the same name).
HEAD_CLASSES = {
    "softmax": "Softmax",
    "log_softmax": "LogSoftmax",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
}
#: Heads over a row (a ``dim``/``axis`` to check); the others act entry by entry.
ROW_HEADS = ("softmax", "log_softmax")
#: Max-norm Lipschitz constant of each head (module docstring).
LIPSCHITZ = {"softmax": 0.5, "log_softmax": 2.0, "sigmoid": 0.25, "tanh": 1.0}
#: The head of each class or operator name.
HEAD_OF = {cls: kind for kind, cls in HEAD_CLASSES.items()}


def head_label(kind: str) -> str:
    """The class / operator name of head ``kind`` (``"softmax"`` -> ``"Softmax"``)."""
    return HEAD_CLASSES.get(kind, kind)


def head_note(kind: str) -> str:
    """The one-line note that a head was set aside for the analysis."""
    label = head_label(kind)
    bound = {0.5: "t/2", 2.0: "2t", 0.25: "t/4", 1.0: "t"}[LIPSCHITZ[kind]]
    return (
        f"the final {label} is kept as the head: the network analysed, compressed and "
        f"verified is the logits before it ({label} is not affine; a tolerance t on the logits "
        f"is at most {bound} on its outputs); a written .pt or .onnx re-attaches it (a .nnet "
        "file cannot hold it)"
    )


def apply_head(logits: np.ndarray, head: str | None) -> np.ndarray:
    """``logits`` (one row per sample) through the head, in float64: ``softmax`` is
    ``exp(z - max z) / sum exp(z - max z)``, ``log_softmax`` is ``z - max z - log sum exp(z -
    max z)`` (shifted by the row maximum, so nothing overflows), ``sigmoid`` is
    ``1 / (1 + exp(-z))`` (``exp(z) / (1 + exp(z))`` for ``z < 0``, so nothing overflows),
    ``tanh`` is ``tanh z``; ``None``: unchanged."""
    if head is None:
        return logits
    if head == "sigmoid":
        e = np.exp(-np.abs(logits))
        return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if head == "tanh":
        return np.tanh(logits)
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    if head == "log_softmax":
        return z - lse
    if head == "softmax":
        return np.exp(z - lse)
    raise InvalidNetworkError(f"unknown head {head!r}")
