"""Rewrites that keep convolutions convolutions: whole channels go, or nothing does.

The dense passes (:mod:`exactcomp.rewrite.stable`) remove single positions, which leaves a
matrix that is no longer a convolution, and a written ``Gemm`` can be far larger than the
``Conv`` it came from. Here a channel of a convolution layer ``k`` (with ReLU) is removed
only as a whole:

* *inactive*: every position proven INACTIVE on the domain, so ``h = 0`` there;
* *dead*: an all-zero kernel slice and a bias ``b <= 0``, so ``h = relu(b) = 0`` everywhere;
* *constant*: an all-zero kernel slice and ``b > 0``: ``h = b`` everywhere, so its
  contribution goes into the next layer's bias (when that keeps the next layer a
  convolution, i.e. one constant per output channel; padding usually prevents it).

Its rows go from layer ``k``; the next layer reads zeros from it, so its kernel slice
(or matrix columns) for the channel go too, and the bias does not change. When the next
layers are a pooling block (:class:`~exactcomp.conv.PoolLevel`) their units of that channel
compute ``max`` (or mean) of zeros, i.e. 0, and go the same way. Per-position stability that
removes no whole channel is reported (:func:`channel_summary`) but left in place.

After the pass, :func:`restructure` gives every layer back its structure, *checked*: the
new :class:`~exactcomp.conv.ConvSpec` (or pool level) must rebuild the new matrix entry for
entry, or the layer stays dense. :func:`choose_structured` then keeps whichever of the dense
rewrite, the channel rewrite and the unchanged network has the fewest parameters as written,
so the output is never larger than the input.
"""

from __future__ import annotations

import numpy as np

from ..conv import ConvSpec, Coo, PoolLevel, pool_layers, pool_layers_coo
from ..network import SPARSE_ABOVE, Layer, Network
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import StabilityReport, Verdict
from .editor import Editor, PassResult
from .pipeline import compress_network
from .record import Fold, Reason, RewriteResult
from .stable import remove_inactive
from .state import LayerState, RewriteState


def _block_after(net: Network, k: int, channels: int) -> list[int]:
    """Layers after ``k`` forming pooling blocks over its ``channels``, one after another
    (a max pool then an average pool: each pools its channel alone, so zeros stay zeros);
    empty when none. An unfinished block ends the list."""
    out: list[int] = []
    i = k + 1
    while True:
        block: list[int] = []
        while i < len(net.layers):
            tag = net.layers[i].structure
            if not isinstance(tag, PoolLevel) or tag.channels != channels:
                break
            if tag.level != len(block):
                break
            block.append(i)
            i += 1
            if tag.level == tag.levels:
                break
        last = net.layers[block[-1]].structure if block else None
        if not isinstance(last, PoolLevel) or last.level != last.levels:
            return out
        out += block


def remove_channels(net: Network, state, tol: Tolerances = DEFAULT) -> PassResult:
    """Remove every convolution channel proven inactive at all its positions, or dead.

    ``tol`` is unused (uniform pass signature). See the module docstring for why each
    removal is exact on the domain.
    """
    ed = Editor("remove_channels", net, state)
    for k in range(ed.depth - 1):
        spec, layer = net.layers[k].structure, net.layers[k]
        if not isinstance(spec, ConvSpec) or not layer.relu:
            continue
        m, oh, ow = spec.out_shape
        per = oh * ow
        block = _block_after(net, k, m)
        if block and block[-1] == ed.depth - 1:
            continue  # the pooled channels are outputs: they stay
        verdict = state.layers[k].verdict.reshape(m, per)
        zero = ~np.any(spec.kernel.reshape(m, -1) != 0.0, axis=1)
        bias = layer.bias.reshape(m, per)[:, 0]
        for c in range(m):
            if not ed.keep[k][c * per]:
                continue
            units = range(c * per, (c + 1) * per)
            if zero[c] and bias[c] <= 0.0:
                for j in units:
                    ed.remove(k, j, Reason.CONSTANT, fold=Fold((), (), 0.0))
            elif np.all(verdict[c] == Verdict.INACTIVE):
                for j in units:
                    ed.remove(k, j, Reason.INACTIVE, ed.proof_of(k, j))
            else:
                if zero[c] and not block:
                    _fold_constant(ed, net, k, units, float(bias[c]))
                continue
            for i in block:  # they pool zeros: 0, whatever the level
                u = net.layers[i].out_features // m
                for j in range(c * u, (c + 1) * u):
                    ed.remove(i, j, Reason.CONSTANT, fold=Fold((), (), 0.0))
    return ed.finish()


def _fold_constant(ed: Editor, net: Network, k: int, units: range, value: float) -> bool:
    """Fold a constant channel (all-zero kernel, ``h = relu(b) = b > 0`` everywhere) into the
    next layer's bias, ``b_{k+1} += W_{k+1}[:, channel] b``, and remove it; only when the
    next layer stays what it is (a convolution needs one constant per output channel, which
    padding breaks at the borders). Returns whether it did."""
    cols = np.asarray(units)
    with np.errstate(over="ignore", invalid="ignore"):
        bias = ed.biases[k + 1] + np.asarray(ed.weights[k + 1][:, cols].sum(axis=1)).ravel() * value
    if not np.all(np.isfinite(bias)):
        return False
    nxt = net.layers[k + 1].structure
    if isinstance(nxt, ConvSpec):
        per_channel = bias.reshape(nxt.out_shape[0], -1)
        if np.any(per_channel != per_channel[:, :1]):
            return False
    elif nxt is not None:
        return False
    ed.biases[k + 1] = bias
    for j in units:
        ed.remove(k, j, Reason.CONSTANT, fold=Fold((), (), value))
    return True


def dense_layers_only(original: Network):
    """:func:`~exactcomp.rewrite.stable.remove_inactive` restricted to ``original``'s layers
    without structure (a pass): proven-inactive neurons of dense layers go, while a
    convolution or pool never loses a single position. Layer indices must be those of
    ``original`` (no pass in the same pipeline deletes a layer)."""

    def remove_inactive_dense(net: Network, state: RewriteState, tol: Tolerances = DEFAULT):
        layers = [
            LayerState(
                np.full(ls.width, Verdict.UNDECIDED),
                np.zeros(ls.width, np.int8),
                ls.lower,
                ls.upper,
                ls.origin,
            )
            if original.layers[k].structure is not None
            else ls
            for k, ls in enumerate(state.layers)
        ]
        return remove_inactive(net, RewriteState(tuple(layers)), tol)

    return remove_inactive_dense


def _whole(kept: np.ndarray, total: int, channels: int) -> np.ndarray | None:
    """The channels ``kept`` units make up, or ``None`` unless they are whole channels."""
    per = total // channels
    chans = np.unique(kept // per)
    if len(kept) != len(chans) * per or not np.array_equal(
        np.sort(kept), (chans[:, None] * per + np.arange(per)).reshape(-1)
    ):
        return None
    return chans


def _csr(coo: Coo):  # scipy.sparse.csr_array
    from scipy import sparse

    return sparse.csr_array((coo.vals, (coo.rows, coo.cols)), shape=coo.shape)


def _same(matrix, layer: Layer) -> bool:
    """``matrix`` equals ``layer.weight`` entry for entry (dense, or both sparse)."""
    if layer.sparse:
        return matrix.shape == layer.weight.shape and (matrix != layer.weight).nnz == 0
    return bool(np.array_equal(matrix, layer.weight))


def _checked(old: Layer, new: Layer, kept_out: np.ndarray, kept_in: np.ndarray | None):
    """The structure of ``new`` derived from ``old``'s, if it rebuilds ``new`` exactly."""
    spec = old.structure
    if isinstance(spec, ConvSpec):
        m, c = spec.out_shape[0], spec.in_shape[0]
        outs = _whole(kept_out, old.out_features, m)
        if (
            spec.in_axes is not None
            and kept_in is not None
            and len(kept_in) != c * (old.in_features // c)
        ):
            return None  # a channels-last input is not laid out channel by channel
        ins = np.arange(c) if kept_in is None else _whole(kept_in, old.in_features, c)
        if outs is None or ins is None or not (len(outs) and len(ins)):
            return None
        if spec.groups != 1 and (len(outs) < m or len(ins) < c):
            return None
        # a grouped kernel's axis 1 is the c/groups channels of a group, not all c: it is
        # only ever kept whole (above)
        kernel = spec.kernel[outs] if spec.groups != 1 else spec.kernel[outs][:, ins]
        cand = spec.replace(kernel, len(ins))
        b = new.bias.reshape(len(outs), -1)
        if np.any(b != b[:, :1]) or not _same(
            _csr(cand.coo()) if new.sparse else cand.dense(), new
        ):
            return None
        return cand
    if isinstance(spec, PoolLevel):
        outs = _whole(kept_out, old.out_features, spec.channels)
        if outs is None or not len(outs):
            return None
        tag = spec.with_channels(len(outs))
        if new.sparse:
            coo, bias = pool_layers_coo(tag)[tag.level]
            mat = _csr(coo)
        else:
            mat, bias = pool_layers(tag)[tag.level]
        if not (np.array_equal(bias, new.bias) and _same(mat, new)):
            return None
        return tag
    return None


def restructure(original: Network, result: RewriteResult) -> Network:
    """``result.network`` with each layer's structure derived from ``original`` and checked.

    Assumes the layers are those of ``original`` (no layer deleted), as after
    :func:`remove_channels`; a layer whose structure does not check out stays dense.
    """
    net, st = result.network, result.state
    if st is None or len(net.layers) != len(original.layers):
        return net
    layers, prev = [], None
    for k, (old, new) in enumerate(zip(original.layers, net.layers, strict=True)):
        origin = st.layers[k].origin
        kept = origin[:, 1]
        structure = _checked(old, new, kept, prev) if np.all(origin[:, 0] == k) else None
        layers.append(Layer(new.weight, new.bias, new.relu, structure))
        prev = kept
    return net.replace_layers(layers)


def channel_summary(net: Network, report: StabilityReport) -> list[dict]:
    """Per convolution layer with ReLU, per channel: positions proven inactive and active."""
    verdicts = {ls.layer: ls.verdict for ls in report.layers}
    out = []
    for k, layer in enumerate(net.layers):
        spec = layer.structure
        if not isinstance(spec, ConvSpec) or k not in verdicts:
            continue
        m = spec.out_shape[0]
        v = np.asarray(verdicts[k]).reshape(m, -1)
        out.append(
            {
                "layer": k,
                "channels": m,
                "positions": int(v.shape[1]),
                "inactive": (v == Verdict.INACTIVE).sum(axis=1).tolist(),
                "active": (v == Verdict.ACTIVE).sum(axis=1).tolist(),
            }
        )
    return out


def choose_structured(
    original: Network,
    report: StabilityReport,
    dense: RewriteResult | None,
    tol: Tolerances = DEFAULT,
) -> tuple[RewriteResult, dict]:
    """The rewrite to write: fewest parameters as written, never more than ``original``'s.

    Returns ``dense`` unchanged (and ``{}``) for a network without structure. ``dense`` is
    ``None`` for a network with sparse layers (no position-level candidate). Otherwise the
    candidates are ``dense``, the channel rewrite and ``original`` itself, preferred in the
    reverse order on ties; the dict says which won, the parameters of each, the channels
    removed and :func:`channel_summary`.
    """
    if original.meta.get("carried"):
        return choose_dag(original, report, dense, tol)
    if not any(la.structure is not None for la in original.layers):
        return dense, {}
    if dense is None:  # a sparse network: no position-level rewrite (it would be dense)
        dense = compress_network(original, report, tol, passes=())
    passes = (remove_channels, dense_layers_only(original))
    chan = compress_network(original, report, tol, passes=passes)
    chan = RewriteResult(restructure(original, chan), chan.records, chan.neuron_map, chan.state)
    same = compress_network(original, report, tol, passes=())
    options = {"original": same, "channels": chan, "dense": dense}
    params = {name: r.network.num_parameters for name, r in options.items()}
    # a sparse layer that lost its structure is written as a dense Gemm: only up to the size
    # below which the reader would have held it densely anyway
    writable = [
        name
        for name, r in options.items()
        if all(
            la.structure is not None or not la.sparse or np.prod(la.weight.shape) <= SPARSE_ABOVE
            for la in r.network.layers
        )
    ]
    best = min(writable, key=lambda name: params[name])  # list order breaks ties
    removed: dict[int, int] = {}
    for rec in chan.records:
        for (k, j), _ in rec.removed.items():
            spec = original.layers[k].structure
            if isinstance(spec, ConvSpec) and j % (spec.out_features // spec.out_shape[0]) == 0:
                removed[k] = removed.get(k, 0) + 1
    note = {
        "original": "no rewrite makes the network smaller as written; the original structure "
        "is kept",
        "channels": "whole channels removed; convolutions written as Conv",
        "dense": "the position-level (dense) rewrite is the smallest as written",
    }[best]
    doc = {
        "written": best,
        "note": note,
        "parameters": params,
        "channels_removed": {str(k): n for k, n in sorted(removed.items())},
        "channels": channel_summary(original, report),
    }
    return options[best], doc


#: Bytes a written layer costs beyond its weights (nodes, names, shapes): a generous
#: estimate, so that a DAG's chain rewrite is never chosen when it may be the larger file.
LAYER_BYTES = 256


def choose_dag(
    original: Network,
    report: StabilityReport,
    dense: RewriteResult | None,
    tol: Tolerances = DEFAULT,
) -> tuple[RewriteResult, dict]:
    """The rewrite to write for a DAG read as a chain (a residual ``Add`` or a ``Concat``,
    carried through layers by :mod:`exactcomp.io.onnx_skip`; ``meta["carried"]``).

    The source graph stores a skip connection for free, the chain pays for its carry
    neurons, and no structured rewrite of the graph itself exists yet. So the position-level
    rewrite (written as a chain) is chosen only when it has fewer parameters than the source
    graph (``meta["source_parameters"]``) and, at :data:`LAYER_BYTES` per layer on top of its
    weights, fewer bytes (``meta["source_bytes"]``); otherwise the network read, unchanged,
    which the writer writes as the source graph itself.
    """
    meta = original.meta
    same = compress_network(original, report, tol, passes=())
    src_params = int(meta.get("source_parameters", 0))
    src_bytes = int(meta.get("source_bytes", 0))
    params = {"original": src_params}
    best = "original"
    if dense is not None and not any(la.sparse for la in dense.network.layers):
        net = dense.network
        params["dense"] = net.num_parameters
        item = np.dtype(net.dtype).itemsize if np.dtype(net.dtype).kind == "f" else 4
        estimate = params["dense"] * item + LAYER_BYTES * (len(net.layers) + 1)
        if params["dense"] < src_params and estimate < src_bytes:
            best = "dense"
    note = {
        "original": "a graph with skip connections or Concat: the rewrite as a chain is not "
        "smaller than the source graph, which is written unchanged",
        "dense": "a graph with skip connections or Concat, written as a smaller chain",
    }[best]
    doc = {"written": best, "note": note, "parameters": params, "channels_removed": {}}
    return (same if best == "original" else dense), doc  # type: ignore[return-value]
