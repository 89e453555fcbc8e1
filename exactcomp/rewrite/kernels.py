r"""Lossy rewrites of convolution and pooling layers: edit the kernel, rebuild the matrix.

A layer with a :class:`~exactcomp.conv.ConvSpec` is a convolution: its matrix ``W`` is a
function of the kernel ``K`` alone (:meth:`~exactcomp.conv.ConvSpec.taps`) and its bias is one
value per output channel. A lossy pass that edits ``W`` entry by entry (quantisation) would
give a matrix that is no longer a convolution, written densely (a 29x larger file on
``marabou_conv_mp1``). Here the pass edits the *kernel*, and the layer is rebuilt from it:

* :func:`conv_layer`: the layer of a spec, its matrix built from the taps, dense or held sparse
  as the original was (:attr:`~exactcomp.network.Layer.sparse`); the structure is kept, so
  every writer emits ``Conv`` with the edited kernel, and the network the verifier proves is
  exactly that of the file.
* Bias correction of a convolution (:mod:`exactcomp.rewrite.quantize`'s :math:`b - E\mu`)
  must stay one value per channel: with :math:`E` the matrix of the kernel error and
  :math:`\mu` the mean layer input, the channel ``m`` takes the mean of :math:`(E\mu)` over
  its output positions (:func:`channel_shift`). The shift is only a choice of the quantiser;
  the claim is the verifier's proof of the network built.
* A pooling layer (:class:`~exactcomp.conv.PoolLevel`) has no parameter to store (its weights
  are 1, -1 or 1/k, written as ``MaxPool``/``AveragePool``): it is kept exactly.
* A pass that edits matrices entry by entry (``compress --tol``'s search, the rounding to the
  model's dtype) gives layers without structure. :func:`restore_structure` gives each back
  the structure of the reference's layer at the same place *where it still describes the
  layer exactly*: the kernel read from the layer's own taps must rebuild its matrix entry for
  entry (:func:`~exactcomp.conv_eval.matching_spec`: no other non-zero, every tap of a kernel
  entry equal) with one bias per channel; a pool layer must equal the reference's. Nothing is
  changed but how the writers store the layer.
"""

from __future__ import annotations

import numpy as np

from ..conv import ConvSpec, PoolLevel
from ..conv_eval import conv_apply, matching_spec
from ..network import Layer, Network


def stored_weights(layer: Layer) -> int:
    """Weights as a writer stores them: a convolution's kernel entries, a pool's none, else
    the matrix entries."""
    if isinstance(layer.structure, ConvSpec):
        return int(layer.structure.kernel.size)
    if isinstance(layer.structure, PoolLevel):
        return 0
    return int(layer.weight.shape[0] * layer.weight.shape[1])


def conv_spec(layer: Layer) -> ConvSpec | None:
    """The layer's convolution when its matrix is that of its :class:`ConvSpec`: checked
    entry by entry for a dense layer (:attr:`Layer.conv`); a sparse layer is built from its
    spec's taps by the reader (:mod:`exactcomp.io.onnx_handlers`), its shape checked by
    :meth:`~exactcomp.network.Network.validate`."""
    if layer.sparse:
        return layer.structure if isinstance(layer.structure, ConvSpec) else None
    return layer.conv


def conv_layer(spec: ConvSpec, bias: np.ndarray, relu: bool, sparse: bool) -> Layer:
    """The layer computing ``spec`` (its matrix from the taps; held sparse with ``sparse``)
    with one ``bias`` value per output channel (or per output)."""
    bias = np.asarray(bias, dtype=np.float64).reshape(-1)
    per = spec.out_features // spec.out_shape[0]
    if bias.size == spec.out_shape[0]:
        bias = np.repeat(bias, per)
    if sparse:
        from ..io.onnx_ops import csr

        weight = csr(spec.coo())
        weight.eliminate_zeros()
    else:
        weight = spec.dense()
    return Layer(weight, bias, relu, spec)


def channel_shift(spec: ConvSpec, error: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per output channel, the mean over its positions of :math:`E \\mu`, ``E`` the matrix of
    the kernel ``error`` and :math:`\\mu` = ``centre`` (module docstring)."""
    shift = conv_apply(spec, np.asarray(centre, dtype=np.float64)[None, :], error)
    return shift.reshape(spec.out_shape[0], -1).mean(axis=1)


def restore_structure(reference: Network, net: Network) -> Network:
    """``net`` with the structures of ``reference`` given back where they still describe
    its layers exactly (module docstring); ``net`` itself when the layer counts differ."""
    if len(reference.layers) != len(net.layers):
        return net
    layers = [_restored(ref, la) for ref, la in zip(reference.layers, net.layers, strict=True)]
    return net.replace_layers(layers)


def _restored(ref: Layer, layer: Layer) -> Layer:
    spec = ref.structure
    if layer.structure is not None or layer.sparse or layer.weight.shape != ref.weight.shape:
        return layer
    if isinstance(spec, PoolLevel) and not ref.sparse:
        same = np.array_equal(layer.weight, ref.weight) and np.array_equal(layer.bias, ref.bias)
        return Layer(layer.weight, layer.bias, layer.relu, spec) if same else layer
    if not isinstance(spec, ConvSpec):
        return layer
    rows, cols, entries = spec.taps
    kernel = np.zeros(spec.kernel.size)
    kernel[entries] = layer.weight[rows, cols]
    if not np.array_equal(kernel[entries], layer.weight[rows, cols]):
        return layer  # two taps of one kernel entry differ: not a convolution
    cand = spec.replace(kernel.reshape(spec.kernel.shape), spec.in_shape[0])
    bias = layer.bias.reshape(spec.out_shape[0], -1)
    if np.any(bias != bias[:, :1]) or matching_spec(cand, layer.weight) is None:
        return layer
    return Layer(layer.weight, layer.bias, layer.relu, cand)
