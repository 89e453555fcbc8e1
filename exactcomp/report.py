"""Every JSON document exactcomp writes or reads, and the text of its content.

Documents: every JSON file exactcomp writes or reads goes through :func:`write_document`
(or :func:`document_text`) and :func:`read_document`, which put and check an envelope of two
keys ahead of the content: ``"kind"`` (one of :data:`KINDS`) and ``"version"``
(:data:`VERSION`). A reader refuses a file of another kind or version, or without them, with
a one-line :class:`~exactcomp.errors.InputFileError`. Typed readers on top:
:func:`read_stability` (a ``stability`` or ``compress`` report as a
:class:`~exactcomp.verdicts.StabilityReport`), :func:`read_certificates` (its stable-neuron
claims, for ``verify --certificates``) and :func:`read_counterexample`.

How a person sees a document on the terminal (rich tables, the progress bar) is the CLI's:
:mod:`exactcomp.cli.tables`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import InputFileError
from .io.atomic import atomic_write


def stability_doc(
    report: Any,
    seconds: float,
    *,
    cluster: str | None = None,
    notes: Any = (),
    proof_per_neuron: bool = False,
) -> dict:
    """A JSON-able summary of a :class:`~exactcomp.verdicts.StabilityReport`; ``cluster``: the
    Dask scheduler address the MILPs were sent to, if any; ``notes``: the model reader's notes
    (``Network.meta["notes"]``); ``proof_per_neuron``: also each neuron's proof kind (the
    benchmarks compare them), as ``"proof_of_each"`` beside ``"verdicts"``."""
    from .verdicts import Proof

    layers = []
    for ls in report.layers:
        row = {"layer": ls.layer, "width_before": ls.width, **ls.summary()}
        if proof_per_neuron:
            row["proof_of_each"] = [Proof(int(p)).name.lower() for p in ls.proof]
        layers.append(row)
    return {
        "neurons": report.num_neurons,
        "seconds": round(seconds, 4),
        "complete": report.complete,
        "cluster": cluster,
        "layers": layers,
        "stats": {k: float(v) for k, v in report.stats.items()},
        "notes": list(notes),
    }


def to_json_text(doc: dict) -> str:
    """``doc`` as indented JSON text (numpy scalars/arrays, enums and mappings allowed)."""
    return json.dumps(_no_negative_zero(doc), indent=2, default=_jsonable) + "\n"


def _no_negative_zero(obj: Any) -> Any:
    """``obj`` with every float ``-0.0`` written as ``0.0`` (a bound of ``-0.0`` reads as a
    sign error to a person; the two are the same number)."""
    import numpy as np

    if isinstance(obj, (float, np.floating)):
        return float(obj) + 0.0
    if isinstance(obj, np.ndarray):
        return _no_negative_zero(obj.tolist())
    if isinstance(obj, dict):
        return {k: _no_negative_zero(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_negative_zero(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------- documents
#: The version of every JSON document exactcomp writes; a reader refuses any other.
VERSION = 1
#: The kinds of document, each with the command or API function that writes it.
KINDS = {
    "compress": "exactcomp compress --report (api.compress(...).report)",
    "stability": "exactcomp stability --report (stability_doc)",
    "counterexample": "exactcomp verify --counterexample (counterexample_doc)",
    "verify": "exactcomp verify --report (verify_doc)",
    "lossy": "exactcomp compress --tol --report (approx.compress_lossy(...).report)",
    "quantize": "exactcomp quantize --report (quantization.quantize(...).report)",
    "regions": "exactcomp regions --report (RegionCount.to_json())",
    "benchmark-spec": "benchmarks/isolate.py: one isolated stability run",
}


def document_text(kind: str, doc: Mapping[str, Any]) -> str:
    """``doc`` as the JSON text of a document of ``kind``: ``kind`` and ``version`` first."""
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r}; add it to report.KINDS")
    content = {k: v for k, v in doc.items() if k not in ("kind", "version")}
    return to_json_text({"kind": kind, "version": VERSION, **content})


def write_document(path: str | Path, kind: str, doc: Mapping[str, Any] | str) -> None:
    """Write a document of ``kind`` atomically (``doc``: its content, or the text that
    :func:`document_text` rendered for it, e.g. before anything else was written)."""
    text = doc if isinstance(doc, str) else document_text(kind, doc)
    atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def read_document(path: str | Path, *kinds: str) -> dict:
    """The document at ``path``, which must be of one of ``kinds`` and of :data:`VERSION`;
    anything else is refused with a one-line :class:`~exactcomp.errors.InputFileError`."""
    path = Path(path)
    wanted = " or ".join(kinds)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(
            f"{path}: no such file (expected an exactcomp {wanted} JSON document)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(f"{path}: not a JSON document: {exc}") from None
    if not isinstance(doc, dict) or "kind" not in doc:
        raise InputFileError(f'{path}: not an exactcomp document (no "kind"; expected {wanted})')
    if doc["kind"] not in kinds:
        raise InputFileError(f"{path}: an exactcomp {doc['kind']!r} document, expected {wanted}")
    if doc.get("version") != VERSION:
        raise InputFileError(
            f"{path}: {doc['kind']} document of version {doc.get('version')!r}; this exactcomp "
            f"reads version {VERSION} (write it again with this version)"
        )
    return doc


def counterexample_doc(ce: Any) -> dict:
    """The content of a ``counterexample`` document (``verify --counterexample``)."""
    return {"x": ce.x, "f_x": ce.f_x, "g_x": ce.g_x, "difference": float(ce.difference)}


def verify_doc(res: Any, seconds: float, inputs: Mapping[str, Any]) -> dict:
    """The content of a ``verify`` document (``verify --report``): the verdict (``verdict``),
    ``tol`` (``tol_default``: derived, no ``--tol``), the proven ``upper_bound`` (``None``:
    none proven) and the best ``lower_bound`` found, the ``counterexample`` with
    ``written_to`` (its ``--counterexample`` path or ``None``), ``seconds`` of the whole call,
    the rest of :meth:`~exactcomp.verify.EquivalenceResult.to_json` (``timings`` per phase),
    then ``inputs``: the two model paths, ``domain`` (the boxes), ``outputs``, ``recheck``."""
    doc = res.to_json()
    doc = {"verdict": doc.pop("status"), **doc, "timings": doc.pop("seconds")}
    doc["seconds"] = round(seconds, 4)
    if doc["counterexample"] is not None:
        doc["counterexample"]["written_to"] = inputs.get("counterexample")
    return {**doc, **{k: v for k, v in inputs.items() if k != "counterexample"}}


def read_counterexample(path: str | Path) -> dict:
    """A ``counterexample`` document, its vectors as float64 arrays."""
    import numpy as np

    doc = read_document(path, "counterexample")
    try:
        return {
            **doc,
            **{k: np.asarray(doc[k], dtype=np.float64) for k in ("x", "f_x", "g_x")},
            "difference": float(doc["difference"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: a broken counterexample document: {exc!r}") from None


def read_stability(path: str | Path) -> Any:
    """The verdicts (and, where the document has them, each neuron's proof kind) of a
    ``stability`` or ``compress`` document as a :class:`~exactcomp.verdicts.StabilityReport`
    without bounds or witnesses (:func:`stability_from_doc`)."""
    return stability_from_doc(read_document(path, "stability", "compress"), path)


def stability_from_doc(doc: Mapping[str, Any], path: str | Path = "the document") -> Any:
    """The :class:`~exactcomp.verdicts.StabilityReport` of a ``stability``/``compress``
    document read by :func:`read_document`; its ``stats`` are the document's."""
    import numpy as np

    from .verdicts import LayerStability, Proof, StabilityReport, Verdict

    try:
        layers = []
        for row in doc["layers"]:
            names = row["verdicts"]
            if not isinstance(names, list):
                raise TypeError(f"layer {row['layer']}: verdicts is not a list")
            base = LayerStability.undecided(int(row["layer"]), len(names))
            for j, name in enumerate(names):
                if not isinstance(name, str) or name.upper() not in Verdict.__members__:
                    raise ValueError(f"layer {base.layer}, neuron {j}: unknown verdict {name!r}")
                base.verdict[j] = Verdict[name.upper()]
            for j, name in enumerate(row.get("proof_of_each", ())):
                base.proof[j] = Proof[str(name).upper()]
            layers.append(base)
        stats = {k: float(v) for k, v in doc.get("stats", doc.get("stability_stats", {})).items()}
        return StabilityReport(tuple(layers), np.zeros((0, 0)), stats=stats)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputFileError(
            f"{path}: a {doc.get('kind')} document without readable per-neuron verdicts: {exc!r}"
        ) from None


def read_certificates(path: str | Path, net: Any) -> Any:
    """The stability claims of a ``stability`` or ``compress`` document on ``net``, as
    certificates for :func:`exactcomp.api.verify_equivalence`.

    Only the INACTIVE/ACTIVE claims are kept (UNSTABLE and undecided become UNDECIDED: they
    are not needed for an equivalence proof, and the report has no witness rows). Nothing in
    the file is trusted: :func:`~exactcomp.api.verify_equivalence` re-proves every claim
    before using it."""
    import numpy as np

    from .verdicts import LayerStability, StabilityReport, Verdict

    if not Path(path).is_file():
        raise InputFileError(f"{path}: no such certificate file")
    read = read_stability(path)
    layers = []
    for ls in read.layers:
        k = ls.layer
        if k not in net.relu_layers or ls.width != net.layers[k].out_features:
            raise InputFileError(
                f"{path}: not a stability report of this network: layer {k} with {ls.width} "
                f"verdicts does not match the network ({net.describe()})"
            )
        claims = LayerStability.undecided(k, ls.width)
        keep = np.isin(ls.verdict, (Verdict.INACTIVE, Verdict.ACTIVE))
        claims.verdict[keep] = ls.verdict[keep]
        layers.append(claims)
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))
