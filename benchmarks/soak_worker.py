"""One soak case at a time in a child process, stopped for sure past a wall-clock limit.

A case can run for an hour in places no per-call time limit reaches (an oracle's region
enumeration, an LP that overruns its cap, a reader on a hostile file), and a thread cannot be
stopped safely; so the soak hands its cases to a worker process and waits at most
``limit`` seconds for each answer. The worker starts its own session (``os.setsid``), so a
time-out kills its whole process group with ``SIGKILL``: the worker and anything it started
(a CLI child, a HiGHS or stability worker). The next case gets a fresh worker.

The worker is started with ``spawn`` (no state copied from the parent but ``sys.path``) and
says "ready" once it has imported what it runs, so the start-up (about 1.5 s of imports) is
not charged to a case. The same worker runs case after case until one times out or the pipe
closes. A thread of the worker waits on a second pipe whose only other end the driver holds:
when the driver ends or is killed (``timeout`` sends its signal to its own process group,
which the worker has left), that pipe closes and the thread kills the worker's group, so no
case outlives its soak.
An exception out of the case function is the case's ``error`` finding, and a worker that dies
(a segfault, the kernel's OOM killer) answers an ``error`` too: the soak goes on either way.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from exactcomp.testing.soak_results import CaseResult, Finding, SoakOptions, method_for

RunCase = Callable[[str, int, SoakOptions], tuple[dict[str, Any], CaseResult]]
"""``run(family, seed, opts) -> (case JSON, result)``: :func:`.soak_families.run_case` or a
test's stand-in; a module-level function (it is pickled by name into the worker)."""


def _serve(conn: Connection, alive: Connection, run: RunCase) -> None:
    """The worker's loop: a session of its own, then run each case sent until EOF."""
    os.setsid()
    threading.Thread(target=_die_with_driver, args=(alive,), daemon=True).start()
    conn.send("ready")
    while True:
        try:
            family, seed, opts = conn.recv()
        except EOFError:
            return
        try:
            answer = run(family, seed, opts)
        except Exception:  # the case's error finding; the worker goes on
            answer = (
                {"family": family, "seed": seed},
                _error(family, seed, traceback.format_exc()),
            )
        conn.send(answer)


def _die_with_driver(alive: Connection) -> None:
    """Block until the driver's end of ``alive`` closes, then kill this process group."""
    try:
        alive.recv()
    except EOFError:
        pass
    os.killpg(0, signal.SIGKILL)


def _error(family: str, seed: int, detail: str) -> CaseResult:
    """The result of a case that raised or whose worker died: one ``error`` finding."""
    finding = Finding("error", detail.strip().splitlines()[-1][:500] if detail.strip() else "?")
    return CaseResult(seed, 0, 0, method_for(seed), {}, {}, (finding,), family=family)


class CaseWorker:
    """Runs cases in a child process; :meth:`run` returns None when a case timed out.

    Use as a context manager: the worker (and its process group) is killed on exit.
    """

    def __init__(self, run: RunCase) -> None:
        self._run = run
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Connection | None = None
        self._alive: Connection | None = None  # closed: the worker kills its group

    def __enter__(self) -> CaseWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> Connection:
        ours, theirs = self._ctx.Pipe()
        watch, self._alive = self._ctx.Pipe(duplex=False)
        # not a daemon: a daemonic process may not start the processes a case may need
        proc = self._ctx.Process(target=_serve, args=(theirs, watch, self._run), daemon=False)
        self._proc = proc
        proc.start()
        theirs.close()
        watch.close()
        self._conn = ours
        try:
            ours.recv()  # "ready": in its own session, its imports done
        except EOFError:  # it died while importing: nothing can run, say so
            proc.join()
            code = proc.exitcode
            self.stop()
            raise RuntimeError(f"the soak worker did not start (exit code {code})") from None
        return ours

    def run(
        self, family: str, seed: int, opts: SoakOptions, limit: float | None
    ) -> tuple[dict[str, Any], CaseResult] | None:
        """Case ``seed`` of ``family`` within ``limit`` seconds (None: no limit); None if
        it ran past the limit (the worker is then killed, the next case starts a new one)."""
        conn = self._conn or self._start()
        conn.send((family, seed, opts))
        if not conn.poll(limit):
            self.stop()
            return None
        try:
            return conn.recv()
        except EOFError:  # the worker died mid-case
            code = self._proc.exitcode if self._proc is not None else None
            self.stop()
            return {"family": family, "seed": seed}, _error(
                family, seed, f"soak worker died (exit code {code})"
            )

    def stop(self) -> None:
        """Kill the worker's process group (the worker and every process it started)."""
        proc, self._proc = self._proc, None
        for conn in (self._conn, self._alive):
            if conn is not None:
                conn.close()
        self._conn = self._alive = None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: os.setsid before "ready"
        except ProcessLookupError:  # already gone, group and all
            pass
        proc.join()
        proc.close()
