"""``quantize`` of a DAG in its own graph: per-tensor widths chosen under the proof.

A graph with skip connections or branches is read as a chain whose layers carry the skip
tensors (meta ``carried``); written, that chain is dense and wide (resnet_2b: 450,053 B in,
14.9 MB out for ``--tol 0.5``). Instead the file's own ``Conv``/``Gemm`` weights are quantised
(:mod:`exactcomp.io.onnx_requant`) and the network proven is the one read back from the
bytes written. :class:`SourcePlan` builds such a file for any per-tensor widths;
:func:`choose_source_bits` picks them for ``--tol`` under the proof, frugally, because one
proof of resnet_2b takes tens of seconds:

1. *the uniform ladder*: every tensor at one width, from 8 bits (16 where 8 is not in the
   ladder): proven within ``tol``, the next narrower width that stores fewer bits is tried
   (:func:`~exactcomp.rewrite.bitwidths.narrower`) until one is not; not proven, the wider
   ones, until one is;
2. *narrowing*, while time is left: the tensors largest first, each one step narrower (a
   tensor at float32 to the widest width), kept where the whole is still proven within
   ``tol``; rounds until one keeps nothing.

A trial the symbolic bound does not prove within ``tol`` but within ``LP_GAIN`` times it is
asked of the joint LP too (``lp_end``, as the chain's ``narrow_with_lp``); the bound of the
widths chosen is returned, so that the caller's claim is the tighter of it and its final
proof of the same file.

A trial is started only while the last proof's seconds (:attr:`Charger.seconds`, before the
first a multiple of ``f``'s bounds' seconds) and the last build's still fit before ``end``.
What nothing proves within ``tol`` stays float32 in its graph; where no tensor is proven at
any width the input itself is the result (written as it is: never a larger file). Every
width is only *chosen* here; the claim is the caller's one proof of the final file.

``corrected``: each node's bias takes its mean error on the domain
(:mod:`exactcomp.io.onnx_means`), as the chain's ``corrected`` quantiser does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidNetworkError, UnsupportedModelError
from .lossy_result import LossyResult
from .network import Network
from .rewrite.bitwidths import LP_GAIN, narrower
from .rewrite.quantize import quantize_weight
from .verify.pairs import comparable

#: The width the uniform ladder starts at (lead24: resnet_2b proven 0.44 at 8 bits).
FIRST_BITS = 8


@dataclass
class SourcePlan:
    """An ONNX file read as a carried chain ``f``, whose own weights (``sizes``: per tensor
    name, its entries) can be quantised and read back paired with ``f``; ``means``: per
    name, its node's mean input on the domain (bias correction), or None."""

    path: str
    f: Network
    sizes: dict[str, int]
    means: dict[str, np.ndarray] | None
    biased: dict[str, np.ndarray] | None = None  # ``means`` of the nodes that have a bias
    seconds: float = 0.0  # of the last build (write, read back, the reader's check)

    def build(self, widths: dict[str, float | None] | float) -> Any:
        """The file quantised to ``widths`` (:func:`~exactcomp.io.onnx_requant.quantized_source`),
        bias corrected where that reads back paired with ``f`` (a bias given to a node that
        had none can keep the reader from seeing a ReLU's input as non-negative: another
        chain), else only the nodes that have a bias, else plain; None where none applies
        and reads back paired."""
        from .io.onnx_requant import quantized_source

        begun = time.perf_counter()
        src = None
        tries: list = [None]
        if self.means:
            fewer = self.biased is not None and len(self.biased) < len(self.means)
            tries = [self.means, *([self.biased] if fewer else []), None]
        for means in tries:
            try:  # the file read back is checked against onnxruntime (which may fuse otherwise)
                src = quantized_source(self.path, widths, quantize_weight, means)
            except (InvalidNetworkError, UnsupportedModelError, ValueError):
                src = None
            if src is not None and comparable(self.f, src.network):
                break
            src = None
        self.seconds = time.perf_counter() - begun
        return src


def source_plan(
    model: Any, f: Network, boxes, corrected: bool, deadline: float | None = None
) -> SourcePlan | None:
    """A :class:`SourcePlan` when ``model`` is a file path and ``f``, read from it, is a DAG
    read as a chain of carrying layers with weights of its own to quantise; else None.
    ``corrected``: the nodes' mean inputs, no point after the first few past ``deadline``."""
    path = f.meta.get("source")
    if not f.meta.get("carried") or isinstance(model, LossyResult) or not path:
        return None
    from .io.onnx_requant import own_weights

    source, sizes, has = own_weights(path)
    if not sizes:
        return None
    means = biased = None
    if corrected:
        from .io.onnx_means import input_means

        try:  # estimates only: where onnxruntime cannot run the probe, no correction
            shape = f.meta.get("input_shape", ())
            means = input_means(source, list(sizes), boxes, shape, deadline)
        except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
            means = None
        biased = None if means is None else {k: v for k, v in means.items() if k in has} or None
    return SourcePlan(str(path), f, sizes, means, biased)


def choose_source_bits(
    plan: SourcePlan, charger: Any, tol: float, ladder: list, end: float, lp_end: float = -np.inf
) -> tuple[dict[str, float | None] | None, Any, float]:
    """Per tensor widths proven within ``tol`` (module docstring), the file built for them
    (None: no tensor proven, every width None: the input itself) and its proven bound;
    ``(None, None, inf)`` where the first file built does not read back paired with ``f``
    (the caller quantises the chain instead). Until ``lp_end``, a trial whose symbolic bound
    is above ``tol`` but within :data:`~exactcomp.rewrite.bitwidths.LP_GAIN` times it is
    asked of the joint LP too (tighter; its seconds to ``lp_end``), as the chain's
    :func:`~exactcomp.rewrite.bitwidths.narrow_with_lp`."""
    names = sorted(plan.sizes, key=lambda k: (-plan.sizes[k], k))
    best: tuple[dict, Any, float] = ({k: None for k in names}, None, np.inf)

    def fits() -> bool:
        return time.perf_counter() + charger.seconds + plan.seconds <= end

    built = [0, 0]  # files built, and those that read back paired

    def proven(widths: dict) -> tuple[Any, float]:
        """The built file where it is proven within ``tol`` (else None), and its bound."""
        src = plan.build(widths)
        built[0] += 1
        if src is None:
            return None, np.inf
        built[1] += 1
        bound = charger.proven(src.network, end=end)
        left = min(lp_end, end) - time.perf_counter()
        if tol < bound <= LP_GAIN * tol and left > 0:
            bound = min(bound, charger.proven(src.network, target=tol, lp_seconds=left, end=end))
        return (src if bound <= tol else None), bound

    start = ladder.index(FIRST_BITS) if FIRST_BITS in ladder else len(ladder) - 1
    i: int | None = start
    while i is not None and fits():  # 1. the uniform ladder
        widths = {k: ladder[i] for k in names}
        src, bound = proven(widths)
        if built == [1, 0]:
            return None, None, np.inf  # the first file built did not read back paired
        if src is not None:
            best = (widths, src, bound)
            i = narrower(ladder, i)
        elif best[1] is not None:
            break
        else:
            i = i + 1 if i + 1 < len(ladder) else None
    progress = True
    while progress:  # 2. the largest tensors one step narrower
        progress = False
        for k in names:
            if not fits():
                return best
            now = best[0][k]
            j = narrower(ladder, None if now is None else ladder.index(now))
            if j is None:
                continue
            widths = dict(best[0])
            widths[k] = ladder[j]
            src, bound = proven(widths)
            if src is not None:
                best, progress = (widths, src, bound), True
    return best


def source_rows(plan: SourcePlan, src: Any) -> list[dict]:
    """The report's rows, one per own tensor of the file (its width, or float32)."""
    grids = {} if src is None else dict(zip(src.names, src.grids, strict=True))
    rows = []
    for k, name in enumerate(sorted(plan.sizes)):
        q = grids.get(name)
        rows.append(
            {
                "layer": k,
                "tensor": name,
                "action": "float32"
                if q is None
                else ("float16" if q.bits == 16 else f"{q.bits:g}-bit"),
                "bits": 32 if q is None else q.storage_bits,
                "entropy_bits": None if q is None else q.entropy(),
            }
        )
    return rows


def source_bits(plan: SourcePlan, src: Any) -> tuple[float, float]:
    """Stored bits per weight and entropy per weight over the file's own tensors (32 for one
    kept in float32)."""
    grids = {} if src is None else dict(zip(src.names, src.grids, strict=True))
    total = max(sum(plan.sizes.values()), 1)
    stored = sum(
        n * (32 if k not in grids else grids[k].storage_bits) for k, n in plan.sizes.items()
    )
    entropy = sum(
        n * (32.0 if k not in grids else grids[k].entropy()) for k, n in plan.sizes.items()
    )
    return stored / total, entropy / total
