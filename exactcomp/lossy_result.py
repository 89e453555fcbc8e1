"""What a lossy command returns and reports: :class:`LossyResult` (the network, its proven and
sampled difference from the original, the JSON report; written atomically) and the report's
common keys (README, "Certified lossy compression")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .domain import sample_rows
from .errors import InvalidOptionError
from .network import Network, is_sparse
from .rewrite.quantize import QuantizedWeight

__all__ = [
    "LossyResult",
    "data_facts",
    "nonzero_parameters",
    "report_document",
    "source_bytes",
    "write_source",
]


@dataclass(frozen=True, eq=False)
class LossyResult:
    """A lossy result: ``network`` (what is written), its grids for ONNX (quantise), report."""

    original: Network
    network: Network
    grids: tuple[QuantizedWeight | None, ...] | None
    proven: float
    sampled: float
    report: dict
    pruned: Network | None = None  # same architecture as ``reference`` (before dropping)
    #: what ``proven`` is proven against: ``original``, or its exact compression (equal to it
    #: on the domain, :func:`compress_lossy`); None: ``original``
    reference: Network | None = None

    def save(
        self, path: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False
    ) -> None:
        """Write atomically: ONNX with integer initialisers for a quantised ``.onnx``, else the
        dequantised float32 weights in the suffix's format; never over the file the original
        was read from unless ``overwrite`` (:func:`exactcomp.io.check_not_source`)."""
        from . import io as _io

        target = Path(path)
        _io.check_not_source(target, self.original, overwrite)
        if self.grids is not None and target.suffix.lower() == ".onnx":
            from .io.onnx_quant import save_quantized_onnx

            _io.check_save_path(target, inputs)
            save_quantized_onnx(self.network, self.grids, target, like=self.original.meta)
        else:
            _io.save(self.network, target, inputs=tuple(inputs), overwrite=overwrite)
        self.report["bytes_after"] = target.stat().st_size
        if self.proven == 0:  # the input's function: never a larger file of it (write_source)
            self.report.update(write_source(target, self.original, self.report))


def write_source(target: Path, original: Network, report: dict) -> dict:
    """The report's keys when the file written at ``target`` for a network proven equal to
    ``original`` on the domain (bound 0: no lossy edit) came out larger than ``original``'s
    own file of the same format, which replaces it (:func:`exactcomp.io.write_source_instead`:
    the same function, exactly and everywhere; on resnet_2b ``compress --tol 0.05`` proved no
    edit and wrote the exact pass's dense chain, 8.9 MB from 450 KB: RESULTS.md "rn23"); the
    sizes after are then the input's. ``{}`` when nothing was replaced."""
    from . import io as _io

    source = original.meta.get("source")
    replaced = _io.write_source_instead(target, source) if source else None
    if replaced is None:
        return {}
    size = target.stat().st_size
    return {
        "written": {
            "file": "source",
            "bytes": size,
            "bytes_rewritten": replaced,
            "neurons_rewritten": report["neurons_after"],
            "parameters_rewritten": report["parameters_after"],
            "reason": (
                f"no lossy edit (proven max |f - g| <= 0) and the rewrite took {replaced:,} "
                f"bytes, more than the input's {size:,}: the input itself is written"
            ),
        },
        "bytes_after": size,
        "neurons_after": report["neurons_before"],
        "parameters_after": report["parameters_before"],
    }


def nonzero_parameters(net: Network) -> int:
    return int(sum(_nonzero(la.weight) + np.count_nonzero(la.bias) for la in net.layers))


def _nonzero(weight) -> int:
    """Non-zero entries of a dense or ``scipy.sparse`` matrix."""
    return int(weight.count_nonzero() if is_sparse(weight) else np.count_nonzero(weight))


def check_data(net: Network, data: Any, labels: Any) -> None:
    """``data`` and ``labels`` (``--data``, ``--labels``) checked before any work: they are
    read only at the end, for the report (:func:`~exactcomp.domain.sample_rows`)."""
    if labels is not None and data is None:
        raise InvalidOptionError("--labels needs --data (the samples that the labels are of)")
    if data is not None:
        sample_rows(data, net.input_size, labels)


def data_facts(f: Network, g: Network, data, labels) -> dict:
    if data is None:
        return {}
    x = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    pf, pg = f.forward(x).argmax(axis=1), g.forward(x).argmax(axis=1)
    out = {"data_points": len(x), "agreement": float((pf == pg).mean())}
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        out["accuracy_before"] = float((pf == y).mean())
        out["accuracy_after"] = float((pg == y).mean())
    return out


def report_document(f, g, tol, proven, sampled, seconds, layers, data, labels, **extra) -> dict:
    doc = {
        "tool": "exactcomp",
        "tol": tol,
        "proven_max_abs_diff": proven,
        "sampled_max_abs_diff": sampled,
        "neurons_before": f.num_neurons,
        "neurons_after": g.num_neurons,
        "parameters_before": nonzero_parameters(f),
        "parameters_after": nonzero_parameters(g),
        "bytes_before": extra.pop("bytes_before", None),
        "bytes_after": None,
        "seconds": round(seconds, 3),
        "layers": layers,
        "notes": list(f.meta.get("notes", ())),  # what the model reader assumed
    }
    doc.update(extra)
    doc.update(data_facts(f, g, data, labels))
    return doc


def source_bytes(model: Any) -> int | None:
    """The size of the model's file, when it was given as a path."""
    if isinstance(model, (str, Path)) and Path(model).is_file():
        return Path(model).stat().st_size
    return None
