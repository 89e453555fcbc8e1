"""Which (network, domain) cases the ``stability`` and ``scaling`` benchmarks run.

Kept apart from the runner so the case lists can be read (and changed) in one place:
the shipped digits models over [0,1]^64, the real networks over their VNN-LIB boxes, and
the width/depth sweep.
"""

from __future__ import annotations

from .digits import SHIPPED, checkpoint, scaling_grid
from .methods import Case
from .networks import domain_label, real_networks, uniform_domain, vnnlib_domain


def _neurons(path) -> int:
    from exactcomp.api import load

    return load(path).num_neurons


def stability_cases(suite: str, quick: bool, *, with_data: bool = False) -> list[Case]:
    """Digits shipped models (``quick``: the l1 = 5e-4 one) and real networks (``quick``: the
    first property of each small one). Naive is not attempted on the large MNIST network."""
    cases: list[Case] = []
    unit = uniform_domain(0.0, 1.0)
    if suite in ("all", "digits"):
        shipped = [c for c in SHIPPED if c.l1 == 5e-4] if quick else list(SHIPPED)
        for cfg in shipped:
            cases.append(
                Case(
                    network=f"digits {cfg.arch} l1={cfg.l1:g}",
                    model=checkpoint(cfg),
                    domain=unit,
                    domain_label=domain_label(unit),
                    neurons=sum(cfg.hidden),
                    width=cfg.hidden[0],
                    depth=len(cfg.hidden),
                    data="digits" if with_data else None,
                )
            )
    if suite in ("all", "real"):
        for net in real_networks():
            if quick and net.large:
                continue
            props = net.props[:1] if quick else net.props
            n = _neurons(net.onnx)
            for prop in props:
                dom = vnnlib_domain(prop)
                cases.append(
                    Case(
                        network=net.name,
                        model=net.onnx,
                        domain=dom,
                        domain_label=domain_label(dom),
                        neurons=n,
                        naive_ok=not net.large,
                    )
                )
    return cases


def scaling_cases(quick: bool, *, naive_max_neurons: int, only: str = "") -> list[Case]:
    """The width/depth sweep at l1 = 5e-4 over [0,1]^64; naive only up to a neuron count.

    ``only`` filters by architecture before any checkpoint is trained.
    """
    unit = uniform_domain(0.0, 1.0)
    cases = []
    for cfg in scaling_grid(quick):
        if only not in cfg.arch:
            continue
        n = sum(cfg.hidden)
        cases.append(
            Case(
                network=cfg.arch,
                model=checkpoint(cfg),
                domain=unit,
                domain_label=domain_label(unit),
                neurons=n,
                width=cfg.hidden[0],
                depth=len(cfg.hidden),
                naive_ok=n <= naive_max_neurons,
            )
        )
    return cases
