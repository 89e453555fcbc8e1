"""The engines ``benchmarks real`` compares: this checkout and the code of an older commit.

Issue 14 asks for the previous engine and the new one in the same run. The previous engine is
:data:`PREVIOUS_COMMIT`, the last commit before branch and bound entered (``d032ad7`` added
``exactcomp/bab`` with input splitting; its parent is the engine of LP bounds, local search and
one big-M MILP per open neuron). It runs *as that code*: its ``exactcomp/`` is extracted with
``git archive`` into a temporary folder, and each case runs in a child process whose
``PYTHONPATH`` names that folder. The current engine runs the same child script against this
checkout, so both are measured the same way (a fresh interpreter per case; seconds and CPU
seconds counted inside the child around ``compress``, imports excluded).

Each case has a wall budget: the child stops its own analysis at the budget (see
:mod:`benchmarks.real_child`), and the parent stops the child's process group when it overruns
that by more than a grace period (the row then says "did not finish", never a hang).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exactcomp.domain import Box

from .isolate import _stop_group

REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().with_name("real_child.py")
#: the parent of d032ad7 ("bab: batched interval + CROWN-style bounds over sub-boxes, ...")
PREVIOUS_COMMIT = "9318857"
#: seconds a child may run past its budget (interpreter start, reading, the interrupt landing
#: between two solver calls, rewriting, the 100,000-point re-check) before it is stopped
GRACE = 90.0


@dataclass(frozen=True)
class Engine:
    """A source tree whose ``exactcomp`` package a child process imports."""

    name: str  # "current" or "previous"
    root: Path  # the folder that holds ``exactcomp/``
    commit: str = ""


@contextlib.contextmanager
def previous_engine(commit: str = PREVIOUS_COMMIT) -> Iterator[Engine]:
    """``exactcomp/`` of ``commit`` extracted into a temporary folder (removed afterwards)."""
    full = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="exactcomp-previous-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", full, "exactcomp"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Engine("previous", Path(tmp), full[:7])


def current_engine() -> Engine:
    """This checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=7", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = ""
    return Engine("current", REPO_ROOT, head)


@dataclass(frozen=True)
class CaseSpec:
    """One case for the child: the model, its boxes and the options (see ``real_child``)."""

    model: str
    boxes: Sequence[Box]
    method: str
    time_limit: float
    jobs: int | None
    budget: float | None
    verify_time_limit: float
    verify_tol: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "boxes": [[b.lower.tolist(), b.upper.tolist()] for b in self.boxes],
            "method": self.method,
            "time_limit": self.time_limit,
            "jobs": self.jobs,
            "budget": self.budget,
            "verify_time_limit": self.verify_time_limit,
            "verify_tol": self.verify_tol,
        }


@dataclass(frozen=True)
class ChildResult:
    """``status``: ``ok``, ``did not finish`` or ``error: <last line of stderr>``; ``doc``:
    what the child wrote (``stage`` ``compressed`` or ``verified`` when it got that far)."""

    status: str
    doc: dict[str, Any]
    wall_seconds: float
    where: str = ""  # why it did not finish: stopped by the parent, or the last frame hit


def _last_frame(lines: list[str]) -> str:
    """``exactcomp/x.py:12 in f`` from the deepest traceback frame of ``lines`` ("" if none)."""
    for ln in reversed(lines):
        text = ln.strip()
        if text.startswith('File "') and "/exactcomp/" in text:
            path, _, rest = text[6:].partition('", line ')
            line, _, func = rest.partition(", in ")
            return f"{path[path.rfind('/exactcomp/') + 1 :]}:{line} in {func}"
    return ""


def run_case(
    engine: Engine, spec: CaseSpec, grace: float = GRACE, poll: float = 0.25
) -> ChildResult:
    """Run one case against ``engine`` in a child process group, within the budget.

    The child is stopped ``grace`` seconds after its budget if it has not compressed by then,
    and ``grace`` seconds after 1.2 times the verification's time limit if it has."""
    with tempfile.TemporaryDirectory(prefix="exactcomp-real-") as tmp:
        child = Path(tmp) / "real_child.py"  # alone in its folder: nothing else to import
        shutil.copyfile(CHILD, child)
        spec_path, out_path, err_path = (Path(tmp) / n for n in ("spec.json", "out.json", "err"))
        spec_path.write_text(json.dumps(spec.to_json()))
        env = {**_environ(), "PYTHONPATH": str(engine.root)}
        start = time.perf_counter()
        compress_by = math.inf if spec.budget is None else start + spec.budget + grace
        verify_by = math.inf
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(child), str(spec_path), str(out_path)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=engine.root,
                env=env,
                start_new_session=True,
            )
            stopped = False
            try:
                while proc.poll() is None:
                    now = time.perf_counter()
                    if verify_by == math.inf and _stage(out_path) == "compressed":
                        verify_by = now + spec.verify_time_limit * 1.2 + grace
                    if now > (compress_by if verify_by == math.inf else verify_by):
                        _stop_group(proc)
                        stopped = True
                        break
                    time.sleep(poll)
            except BaseException:
                _stop_group(proc)
                raise
        wall = time.perf_counter() - start
        doc = _read(out_path)
        if stopped:
            where = "compress" if verify_by == math.inf else "verify"
            return ChildResult("did not finish", doc, wall, f"{where} stopped {grace:.0f} s late")
        if proc.returncode != 0:
            lines = [ln for ln in err_path.read_text().splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            return ChildResult(f"error: {last}", doc, wall, _last_frame(lines))
        return ChildResult("ok", doc, wall)


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stage(path: Path) -> str:
    return str(_read(path).get("stage", ""))
