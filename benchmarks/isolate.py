"""Run one stability method in a child process with a wall-clock budget.

The slow baselines (``naive`` above all) can run for hours on networks the fast engine
settles in seconds. ``stable_neurons`` has a per-MILP time limit but no total budget, and
a thread cannot be stopped safely, so each method runs in its own process group that is
killed when its budget is spent; the row then says "did not finish" instead of a guess.
Seconds are measured inside the child around the ``stable_neurons`` call, so the start-up
of a fresh interpreter (importing torch and pyomo) is not charged to the method.

The child is ``python -m benchmarks.isolate SPEC.json OUT.json``; the spec (a
``benchmark-spec`` document) names the model file, the domain, the method and its options, so
nothing unpicklable crosses processes; the child answers with a ``stability`` document that
holds each neuron's proof kind (:mod:`exactcomp.report` writes and reads both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exactcomp.report import read_document, stability_doc, stability_from_doc, write_document
from exactcomp.verdicts import StabilityReport

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MethodSpec:
    """What one isolated run computes: ``method`` on ``model`` over ``domain``.

    ``domain`` is ``{"kind": "uniform", "lo": 0.0, "hi": 1.0}`` or
    ``{"kind": "vnnlib", "path": "prop.vnnlib"}``; ``data`` is ``"digits"`` to hand the
    engine the digits training inputs (all methods get the same), or ``None``.
    """

    model: str
    domain: dict[str, Any]
    method: str
    time_limit: float
    jobs: int | None = None
    seed: int = 0
    data: str | None = None


@dataclass(frozen=True, eq=False)
class MethodOutcome:
    """``status`` is ``"ok"``, ``"did not finish"`` or ``"error: <last line of stderr>"``."""

    status: str
    seconds: float
    report: StabilityReport | None
    wall_seconds: float = float("nan")  # the whole child: interpreter start, imports, loading


def run_isolated(spec: MethodSpec, budget: float) -> MethodOutcome:
    """Run ``spec`` in a child process; stop it (and its workers) after ``budget`` seconds."""
    with tempfile.TemporaryDirectory(prefix="exactcomp-bench-") as tmp:
        spec_path, out_path, err_path = (Path(tmp) / n for n in ("spec.json", "out.json", "err"))
        write_document(spec_path, "benchmark-spec", spec.__dict__)
        start = time.perf_counter()
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.isolate", str(spec_path), str(out_path)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=REPO_ROOT,
                start_new_session=True,  # its own process group: we can stop its workers too
            )
            try:
                rc = proc.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                _stop_group(proc)
                return MethodOutcome("did not finish", float("nan"), None, budget)
            except BaseException:
                _stop_group(proc)
                raise
        wall = time.perf_counter() - start
        if rc != 0 or not out_path.is_file():
            lines = [ln for ln in err_path.read_text().splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit code {rc}"
            return MethodOutcome(f"error: {last}", float("nan"), None, wall)
        doc = read_document(out_path, "stability")
        return MethodOutcome("ok", float(doc["seconds"]), stability_from_doc(doc, out_path), wall)


def _stop_group(proc: subprocess.Popen) -> None:
    """Terminate the child's process group (only processes this run started), then kill."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _child(spec_path: str, out_path: str) -> int:
    from exactcomp.api import load, stable_neurons

    from .networks import load_domain

    doc = read_document(spec_path, "benchmark-spec")
    spec = MethodSpec(**{k: v for k, v in doc.items() if k not in ("kind", "version")})
    net = load(spec.model)
    boxes = load_domain(spec.domain, net.input_size)
    data = None
    if spec.data == "digits":
        from .digits import train_inputs

        data = train_inputs()
    start = time.perf_counter()
    report = stable_neurons(
        net,
        list(boxes),
        method=spec.method,
        time_limit=spec.time_limit,
        jobs=spec.jobs,
        data=data,
        seed=spec.seed,
    )
    seconds = time.perf_counter() - start
    write_document(out_path, "stability", stability_doc(report, seconds, proof_per_neuron=True))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
