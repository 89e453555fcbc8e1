"""The baselines of ``python -m benchmarks lossy``, at the same size as ours: magnitude pruning
(``torch.nn.utils.prune``: global unstructured L1, and per-neuron L2 on the hidden layers'
rows) and plain per-tensor round-to-nearest quantisation. Each returns a new network of the
same architecture; none proves anything (the benchmark proves them with our verifier)."""

from __future__ import annotations

import numpy as np

from exactcomp.network import Layer, Network

__all__ = ["magnitude_global", "magnitude_neurons", "round_to_nearest", "torch_no_grad"]


def _torch(net: Network):
    import torch

    mods = []
    for la in net.layers:
        lin = torch.nn.Linear(la.in_features, la.out_features)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(la.weight))
            lin.bias.copy_(torch.tensor(la.bias))
        mods += [lin] + ([torch.nn.ReLU()] if la.relu else [])
    return torch.nn.Sequential(*mods)


def _from_torch(seq, like: Network) -> Network:
    lins = [m for m in seq if hasattr(m, "weight")]
    layers = [
        Layer(m.weight.detach().double().numpy(), m.bias.detach().double().numpy(), la.relu)
        for m, la in zip(lins, like.layers, strict=True)
    ]
    return Network(tuple(layers), dtype="float32")


def magnitude_global(f: Network, zeros: int) -> Network:
    """Global unstructured L1 pruning of ``zeros`` weights (torch.nn.utils.prune)."""
    from torch.nn.utils import prune

    seq = _torch(f)
    lins = [(m, "weight") for m in seq if hasattr(m, "weight")]
    if zeros > 0:
        prune.global_unstructured(lins, pruning_method=prune.L1Unstructured, amount=int(zeros))
        for m, name in lins:
            prune.remove(m, name)
    return _from_torch(seq, f)


def magnitude_neurons(f: Network, share: float) -> Network:
    """Per-neuron L2 pruning of ``share`` of each hidden layer's rows (prune.ln_structured)."""
    from torch.nn.utils import prune

    seq = _torch(f)
    lins = [m for m in seq if hasattr(m, "weight")]
    for m in lins[:-1]:
        if share > 0:
            prune.ln_structured(m, "weight", amount=share, n=2, dim=0)
            prune.remove(m, "weight")
            with torch_no_grad():
                m.bias[~m.weight.detach().any(dim=1)] = 0.0
    return _from_torch(seq, f)


def torch_no_grad():
    import torch

    return torch.no_grad()


def round_to_nearest(f: Network, bits: int) -> Network:
    """Plain per-tensor symmetric round-to-nearest quantisation of every weight matrix."""
    layers = []
    for la in f.layers:
        top = 2 ** (bits - 1) - 1
        s = np.abs(la.weight).max() / top
        layers.append(Layer(np.rint(la.weight / s) * s, la.bias, la.relu))
    return Network(tuple(layers), dtype="float32")
