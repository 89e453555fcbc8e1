"""What a lossy command returns and reports: :class:`LossyResult` (the network, its proven and
sampled difference from the original, the JSON report; written atomically) and the report's
common keys (README, "Certified lossy compression")."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .conv import ConvSpec, PoolLevel
from .domain import sample_rows
from .errors import InvalidOptionError
from .network import Network, is_sparse
from .rewrite.quantize import QuantizedWeight

__all__ = [
    "LossyResult",
    "data_facts",
    "least_bytes",
    "nonzero_parameters",
    "report_document",
    "source_bytes",
    "write_smaller",
    "write_source",
]


@dataclass(frozen=True, eq=False)
class LossyResult:
    """A lossy result: ``network``, its grids for ONNX (quantise), its claims, the report.

    Which object describes what:

    * ``network``, ``grids``, ``proven`` and ``sampled`` always describe the result itself
      (``proven``: a proven bound of ``max |original - network|`` on the domain), whatever a
      :meth:`save` wrote;
    * ``report`` describes the result until the first :meth:`save`, and after each save the
      *file that save wrote*: that may be the result, the ``alternative`` (the float network
      the command started from) or the input file itself (claim 0), whichever is smaller
      (``report["written_choice"]``, ``report["written"]``). Each save starts again from the
      report as it stood before the first save, so a second save to another path or format
      never carries over the facts of the first (a file written as the result under the
      claim of the started-from network written before, say); so does the save of a copy
      (``dataclasses.replace``) that shares the report.
    """

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
    #: no lossy edit was accepted: ``network`` is ``reference``'s function but for its rounding
    #: to the model's dtype (``proven`` may be that rounding's bound): :func:`write_source`
    unedited: bool = False
    #: ``quantize`` of a DAG: its own file quantised (:mod:`exactcomp.io.onnx_requant`), what
    #: an ``.onnx`` target gets (``network`` is read back from it)
    source: Any = None
    #: a proven bound on ``max |original - reference|`` (the rounding of the exact pass's
    #: folds, :mod:`exactcomp.exact_reference`), already in ``proven``; what composes adds it
    reference_gap: float = 0.0
    #: the float network the command started from, within its ``tol``: written instead where
    #: its file is smaller (:mod:`exactcomp.float_candidate`)
    alternative: LossyResult | None = None
    #: ``reference`` rounded to the model's dtype and a proven bound of ``max |reference -
    #: it|`` on the domain (the command's charger), for the float candidate: None, not proven
    started_from: tuple[Network, float] | None = None
    #: the report as it stood before the first :meth:`save` (each save starts from it), by
    #: the report's ``id``; shared by the copies ``dataclasses.replace`` makes (an init field:
    #: a copy of a saved result shares its report, which that save changed: red28)
    _unsaved: dict[int, tuple[dict, dict]] = field(default_factory=dict, repr=False, compare=False)

    def save(
        self, path: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False
    ) -> None:
        """Write atomically: ONNX with integer initialisers for a quantised ``.onnx``, else the
        dequantised float32 weights in the suffix's format; never over the file the original
        was read from unless ``overwrite`` (:func:`exactcomp.io.check_not_source`). With an
        ``alternative``, the smaller file of the two (:func:`write_smaller`; the report then
        describes what was written; class docstring)."""
        kept = self._unsaved.get(id(self.report))
        if kept is None or kept[0] is not self.report:
            self._unsaved[id(self.report)] = (self.report, copy.deepcopy(self.report))
        else:  # what an earlier save (of this result or a copy) wrote is not this file
            self.report.clear()
            self.report.update(copy.deepcopy(kept[1]))
        self._write(Path(path), inputs, overwrite)
        if self.alternative is not None:
            write_smaller(self, Path(path), [Path(p) for p in inputs])

    def _write(self, target: Path, inputs: Sequence[str | Path], overwrite: bool) -> None:
        from . import io as _io

        _io.check_not_source(target, self.original, overwrite)
        plain = self.grids is None or all(g is None for g in self.grids)
        same = self.proven == 0 or self.unedited  # the input's function: never a larger file
        if same and plain:  # a rewrite that cannot beat the input is never written
            _io.check_save_path(target, inputs)
            facts = write_source(target, self.original, self.report, least_bytes(self.network))
            if facts:
                self.report.update(facts)
                return
        if self.source is not None and target.suffix.lower() == ".onnx":
            from .io.onnx_requant import save_quantized_source

            _io.check_save_path(target, inputs)
            save_quantized_source(self.source, target)
        elif self.grids is not None and target.suffix.lower() == ".onnx":
            from .io.onnx_quant import save_quantized_onnx

            _io.check_save_path(target, inputs)
            save_quantized_onnx(self.network, self.grids, target, like=self.original.meta)
        else:
            _io.save(self.network, target, inputs=tuple(inputs), overwrite=overwrite)
        self.report["bytes_after"] = target.stat().st_size
        if same:
            self.report.update(write_source(target, self.original, self.report))


def write_smaller(res: LossyResult, target: Path, inputs: Sequence[Path]) -> None:
    """After ``res`` is written at ``target``: its ``alternative`` written beside it, and
    kept there instead where that file is smaller; ``res.report`` then describes it."""
    alt = res.alternative
    written = target.stat().st_size
    facts = {"written": "result", "result_bytes": written, "started_from_bytes": None}
    facts["result_proven"] = res.report["proven_max_abs_diff"]
    source = res.original.meta.get("source")  # the input itself, a candidate too (claim 0)
    small = isinstance(source, str | Path) and Path(source).is_file()
    small = small and Path(source).stat().st_size < written
    if alt is not None and (small or least_bytes(alt.network) < written):
        spare = target.with_name(f".{target.name}.started-from{target.suffix}")
        try:
            alt.save(spare, inputs=inputs)
            facts["started_from_bytes"] = spare.stat().st_size
            if facts["started_from_bytes"] < written:
                os.replace(spare, target)
                before = res.report.get("bytes_before")
                res.report.update(alt.report)
                res.report["bytes_before"] = before
                facts["written"] = "started from"
        finally:
            spare.unlink(missing_ok=True)
    facts["started_from_proven"] = None if alt is None else alt.report["proven_max_abs_diff"]
    res.report["bytes_after"] = target.stat().st_size
    res.report["written_choice"] = facts


def least_bytes(net: Network) -> int:
    """A lower bound of the bytes any writer takes for ``net``'s weights (quantised grids
    aside): each nonzero weight it stores at its dtype's size at least (a convolution's
    kernel entries, a pool's none, else the matrix's: dense or sparse)."""
    count = 0
    for la in net.layers:
        if isinstance(la.structure, ConvSpec):
            count += int(np.count_nonzero(la.structure.kernel))
        elif not isinstance(la.structure, PoolLevel):
            count += _nonzero(la.weight)
    return count * np.dtype(net.dtype).itemsize


def write_source(target: Path, original: Network, report: dict, least: int | None = None) -> dict:
    """The report's keys when the input's own file is written at ``target`` for a network
    proven equal to ``original`` on the domain (bound 0: no lossy edit) whose rewrite is larger
    (:func:`exactcomp.io.write_source_instead`: the same function, exactly and everywhere):
    the rewrite just written there, or never written where ``least`` (:func:`least_bytes`)
    already exceeds the input's bytes (resnet_2b ``compress --tol 0.05``: no edit proven, and
    the exact pass's dense chain took 8.9 MB from 450 KB, 35 s to write and check: RESULTS.md
    "rn23"); the sizes after are then the input's. ``{}`` when nothing was written."""
    from . import io as _io

    source = original.meta.get("source")
    replaced = _io.write_source_instead(target, source, least) if source else None
    if replaced is None:
        return {}
    size = target.stat().st_size
    took = f"would take at least {replaced:,}" if least is not None else f"took {replaced:,}"
    return {
        "written": {
            "file": "source",
            "bytes": size,
            "bytes_rewritten": replaced,
            "rewritten": least is None,  # False: never written, ``bytes_rewritten`` at least
            "neurons_rewritten": report["neurons_after"],
            "parameters_rewritten": report["parameters_after"],
            "proven_rewritten": report["proven_max_abs_diff"],  # of the rewrite: its rounding
            "reason": (
                f"no lossy edit and the rewrite {took} bytes, more than the input's {size:,}: "
                "the input itself is written (proven max |f - g| <= 0)"
            ),
        },
        "proven_max_abs_diff": 0.0,  # the input is f
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
