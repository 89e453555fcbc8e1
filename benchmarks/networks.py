"""The real networks shipped in ``models/real`` and the domains the benchmarks use.

Each real network is listed with the VNN-LIB properties that belong to it (a property file
only makes sense for the network it was written for). Files that are missing are skipped
with a note, so the harness still runs on a partial checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exactcomp.domain import Box

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = REPO_ROOT / "models" / "real"


@dataclass(frozen=True)
class RealNetwork:
    """A shipped ONNX network and the VNN-LIB properties whose input boxes we compress over."""

    name: str
    onnx: Path
    props: tuple[Path, ...]
    large: bool = False  # naive per-neuron MILPs are hopeless here within minutes


def real_networks(root: Path = REAL_DIR) -> tuple[RealNetwork, ...]:
    """The shipped real networks that have at least one VNN-LIB property (slowest last)."""
    acas = root / "acasxu"
    mnist = root / "mnistfc"
    small = root / "small"
    conv = root / "conv"
    eran = root / "eran"
    candidates = (
        *(
            RealNetwork(
                f"acasxu_{ij}",
                acas / f"ACASXU_run2a_{ij}_batch_2000.onnx",
                tuple(acas / f"prop_{i}.vnnlib" for i in (1, 2, 3, 4)),
            )
            for ij in ("1_1", "1_2", "2_1", "3_3")
        ),
        RealNetwork("cartpole", small / "cartpole.onnx", (small / "cartpole_case_safe_14.vnnlib",)),
        RealNetwork("vdp", small / "vdp.onnx", (small / "vdp_0.vnnlib",)),
        RealNetwork(
            "marabou_conv_mp1",
            conv / "marabou_conv_mp1.onnx",
            (conv / "marabou_conv_mp1_box_0.02.vnnlib",),
        ),
        RealNetwork(
            "convnet_maxpool",
            conv / "Convnet_maxpool.onnx",
            (conv / "Convnet_maxpool_prop_0_0.004.vnnlib",),
            large=True,
        ),
        RealNetwork(
            "convnet_avgpool",
            conv / "Convnet_avgpool.onnx",
            (conv / "Convnet_avgpool_prop_0_0.02.vnnlib",),
            large=True,
        ),
        RealNetwork(
            "mnist_256x2",
            mnist / "mnist-net_256x2.onnx",
            (mnist / "prop_0_0.03.vnnlib", mnist / "prop_1_0.05.vnnlib"),
            large=True,
        ),
        RealNetwork(
            "mnist_256x4",
            mnist / "mnist-net_256x4.onnx",
            (mnist / "prop_0_0.03.vnnlib", mnist / "prop_1_0.05.vnnlib"),
            large=True,
        ),
        RealNetwork(
            "eran_9x200",
            eran / "mnist_relu_9_200.onnx",
            (
                eran / "mnist_spec_idx_1013_eps_0.01500.vnnlib",
                eran / "mnist_spec_idx_186_eps_0.01500.vnnlib",
            ),
            large=True,
        ),
        RealNetwork(
            "cifar_base_kw",
            conv / "cifar_base_kw.onnx",
            (
                conv / "cifar_base_kw-img4549-eps0.00392156862745098.vnnlib",
                conv / "cifar_base_kw-img2908-eps0.019869281045751634.vnnlib",
            ),
            large=True,
        ),
        RealNetwork(
            "mnist_256x6",
            mnist / "mnist-net_256x6.onnx",
            (mnist / "prop_0_0.03.vnnlib", mnist / "prop_1_0.05.vnnlib"),
            large=True,
        ),
    )
    out = []
    for net in candidates:
        props = tuple(p for p in net.props if p.is_file())
        if net.onnx.is_file() and props:
            out.append(RealNetwork(net.name, net.onnx, props, net.large))
    return tuple(out)


def uniform_domain(lo: float, hi: float) -> dict[str, Any]:
    """The spec of the box ``[lo, hi]^n`` (``n`` is the network's input size)."""
    return {"kind": "uniform", "lo": lo, "hi": hi}


def vnnlib_domain(path: Path) -> dict[str, Any]:
    """The spec of the input boxes of a VNN-LIB property."""
    return {"kind": "vnnlib", "path": str(Path(path).resolve())}


def domain_label(domain: dict[str, Any]) -> str:
    """A short name for a domain spec, for tables."""
    if domain["kind"] == "uniform":
        return f"[{domain['lo']:g},{domain['hi']:g}]^n"
    return Path(domain["path"]).stem


def load_domain(domain: dict[str, Any], n_inputs: int) -> tuple[Box, ...]:
    """The boxes of a domain spec (a VNN-LIB disjunction gives several)."""
    if domain["kind"] == "uniform":
        return (Box.uniform(float(domain["lo"]), float(domain["hi"]), n_inputs),)
    if domain["kind"] == "vnnlib":
        from exactcomp.api import read_vnnlib

        return tuple(read_vnnlib(domain["path"], n_inputs).boxes)
    raise ValueError(f"unknown domain kind {domain['kind']!r}")
