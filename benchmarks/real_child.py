"""One ``benchmarks real`` case in a child process, against whichever ``exactcomp`` it imports.

Run as ``python real_child.py SPEC.json OUT.json`` with ``PYTHONPATH`` naming the source tree
to measure: the current checkout, or an older commit extracted by :mod:`benchmarks.engines`
(the "previous engine"). This file therefore imports nothing from ``benchmarks`` and uses
only the public API that both trees have (``load``, ``compress``, ``save``, ``stored``,
``verify_equivalence``); what a tree lacks (``deadline``, branch-and-bound counters, the
channel rewrite) is looked up by name and recorded as absent, never faked.

The spec (plain JSON) holds the model path, the input boxes as ``lower``/``upper`` lists (read
by the parent, so both engines get the very same boxes), the options and ``budget``. The
budget stops the stability analysis by the tree's own means: ``compress(deadline=...)`` where
the tree has it, otherwise a Ctrl-C (``SIGALRM`` raising ``KeyboardInterrupt``) with
``partial=True``, which every tree since the November release turns into "compress with what
is proven so far". (No Ctrl-C for a tree with a deadline: landing in the re-check after the
analysis, it would turn a late result into none.) ``OUT.json`` is written (atomically) after the compression and again after
the verification, so a parent that must stop a slow verification still has the first half.
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path


def _write(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (MILP workers), user + sys."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _has(package: Path, name: str) -> bool:
    """Whether the tree has the subpackage ``name`` (the previous engine has no ``bab``).

    Looked up on disk: an editable install's import hook would find it in another tree."""
    return (package / name / "__init__.py").is_file()


def _interrupt(signum, frame):  # noqa: ARG001 - the signal handler's signature
    raise KeyboardInterrupt


def main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import numpy as np

    import exactcomp
    from exactcomp import api
    from exactcomp.domain import Box
    from exactcomp.verdicts import Proof, Verdict

    package = Path(exactcomp.__file__).resolve().parent
    tree = Path(os.environ.get("PYTHONPATH", "")).resolve()
    if not package.is_relative_to(tree):  # never measure one tree under another's name
        raise RuntimeError(f"imported exactcomp from {package}, not from {tree}")
    doc: dict = {"stage": "started", "exactcomp": str(package)}
    _write(out_path, doc)
    original = api.load(spec["model"])
    boxes = [Box(np.asarray(lo), np.asarray(hi)) for lo, hi in spec["boxes"]]
    options = dict(
        method=spec["method"], time_limit=spec["time_limit"], jobs=spec["jobs"], partial=True
    )
    params = inspect.signature(api.compress).parameters
    budget = spec["budget"]
    start, cpu0 = time.perf_counter(), _cpu()
    if budget is not None and "deadline" in params:  # the tree's own budget
        options["deadline"] = start + budget
    elif budget is not None:  # an older tree: Ctrl-C, which ``partial=True`` turns into a result
        signal.signal(signal.SIGALRM, _interrupt)
        signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        result = api.compress(original, boxes, **options)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu0
    report = result.stability
    structure = result.report.get("structure", {}) or {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.onnx"
        api.save(api.stored(result.network), out)
        written = out.stat().st_size
    doc.update(
        stage="compressed",
        seconds=seconds,
        cpu_seconds=cpu,
        interrupted=bool(
            result.report.get("interrupted")
            or report.stats.get("interrupted")
            or report.stats.get("out_of_time")  # a tree's own deadline passed
        ),
        neurons_before=original.num_neurons,
        neurons_after=result.network.num_neurons,
        parameters_before=original.num_parameters,
        parameters_after=result.network.num_parameters,
        bytes_after=written,
        channels_removed=sum((structure.get("channels_removed") or {}).values()),
        milps=int(report.stats.get("milps", 0) or 0),
        bab_nodes=int(report.stats.get("bab_nodes", 0) or 0) if _has(package, "bab") else -1,
        proofs={
            p.name.lower(): sum(int((ls.proof == p).sum()) for ls in report.layers) for p in Proof
        },
        **{v.name.lower(): report.count(v) for v in Verdict},
    )
    _write(out_path, doc)

    t0 = time.perf_counter()
    res = api.verify_equivalence(
        original,
        result.network,
        boxes,
        mode="linf",
        tol=spec["verify_tol"],
        time_limit=spec["verify_time_limit"],
        certificates=report,
    )
    doc.update(
        stage="verified",
        verdict=res.status.name,
        verify_seconds=time.perf_counter() - t0,
        verify_tol=float(getattr(res, "tol", float("nan"))),
        verify_note="" if res.status.name == "EQUIVALENT" else str(getattr(res, "reason", "")),
    )
    _write(out_path, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
