"""The MILP phase of one layer: questions in a fixed order, answered in-process, in local
worker processes, or on a Dask cluster.

Determinism whatever ``jobs`` or ``cluster``
--------------------------------------------
Questions form one ordered list per layer. Their *answers are consumed in that order*,
exactly as a single process would: before consuming question ``i`` we check whether what was
learned from answers ``< i`` (witnesses shared from incumbents, the neuron's other sign) has
made it moot; if so its answer is discarded even when a worker already computed it. Workers
only run questions speculatively ahead of the consumer (a window of ``8 * jobs`` local
processes, or ``2 *`` the cluster's worker threads), so they change the speed, never the
verdicts, the proof kinds or the witness rows. Each question is solved by the same function,
:func:`~exactcomp.milp.highs.solve_question`, on a fresh HiGHS instance and the same compiled
MILP (pickled, or scattered once per layer to the cluster), which makes its answer independent
of where it ran; a question whose worker failed is answered in-process, with the same answer.
(Time limits are the one exception, for every ``jobs`` alike: a question that runs out of time
on a slower machine proves nothing. That is sound, an undecided neuron is kept, but it may
leave undecided a neuron that a faster run decides. The engine's limit is CPU seconds of the
solving process (:data:`~exactcomp.milp.layer.WALL_PER_CPU`), so a *busier* machine costs
wall-clock time, not verdicts, up to the caller's deadline.)

Local worker processes are started with ``spawn`` (never ``fork``: HiGHS keeps a thread pool
that a forked child would inherit in a broken state), and only once the MILPs have proven slow
enough to pay for their start-up (each worker imports the package: seconds). When the work
ends by an exception (Ctrl-C, the CLI's SIGTERM, a bug) they are stopped, not awaited
(:func:`_stop_processes`), and each releases its semaphores on the way out.

A cluster (``cluster="tcp://scheduler:8786"``, the ``cluster`` extra: Dask distributed) is used
from the first question on: its workers are already running. ``distributed`` is imported only
then. An address that cannot be reached, or a cluster with no worker, is an
:class:`~exactcomp.errors.InvalidOptionError` before any work; a cluster that fails later
(a lost connection, workers that die or all leave, a task error) is dropped with a progress
note and the remaining questions are answered in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.util
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import InvalidOptionError
from ..milp.highs import Answer, CompiledMilp, Question, solve_question
from ..progress import SILENT, Progress

if TYPE_CHECKING:
    from ..bab.beta_parts import Spread

_MIN_QUESTIONS_FOR_WORKERS = 6
_START_AFTER_SECONDS = 5.0
_MANY_QUESTIONS = 24  # this many left on one layer: start the workers at once
_CONNECT_SECONDS = 10.0  # to reach the scheduler
_FIRST_WORKER_SECONDS = 30.0  # for a cluster with no worker yet to get one
_POLL_SECONDS = 1.0  # how often a wait for an answer checks that the cluster has workers
_NO_WORKER_SECONDS = 60.0  # without any worker before the cluster is given up
# for workers told to stop (SIGTERM) before they are killed: a worker inside a HiGHS run stops
# at its next callback or return (2 workers, digits --method naive, SIGTERM 3 or 6 s in: all 8
# within 0.03 s; benchmarks/RESULTS.md "split16"); the margin is for a long phase without one
_STOP_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class Task:
    """One question of the layer's list: can ``sign * z[neuron] > 0``?"""

    neuron: int
    sign: int


@dataclass(frozen=True)
class Ahead:
    """How to run questions ahead of the consumer: ``submit`` (a future, or None when the
    workers just failed) and how many questions may be in flight."""

    submit: Callable[[Question], Any]
    window: int


def connect(address: str) -> Any:
    """A ``distributed.Client`` for the scheduler at ``address`` that has at least one worker.

    Raises :class:`InvalidOptionError` (one line) when Dask distributed is not installed, the
    scheduler cannot be reached within :data:`_CONNECT_SECONDS`, or no worker joins within
    :data:`_FIRST_WORKER_SECONDS`.
    """
    try:
        from distributed import Client
    except ImportError:
        raise InvalidOptionError(
            "--cluster needs Dask distributed, which is not installed: "
            "pip install 'exactcomp[cluster]'"
        ) from None
    try:
        client = Client(address, timeout=_CONNECT_SECONDS, set_as_default=False)
    except Exception as exc:  # OSError (unreachable, timed out), ValueError (bad address), ...
        raise InvalidOptionError(
            f"cannot reach the Dask scheduler at {address!r}: {_line(exc)}"
        ) from None
    try:
        client.wait_for_workers(1, timeout=_FIRST_WORKER_SECONDS)
    except Exception:
        _close(client)
        raise InvalidOptionError(
            f"the Dask cluster at {address!r} has no worker (waited {_FIRST_WORKER_SECONDS:g} s)"
        ) from None
    return client


class Workers:
    """Where questions run ahead of the consumer; a context manager.

    Without ``cluster``: a local process pool (``jobs`` processes; ``None``: all cores; ``1``:
    never) started only once MILPs prove slow: starting workers costs seconds (each imports the
    package), so only after the MILPs of this call have taken :data:`_START_AFTER_SECONDS`
    in-process and enough questions remain, or at once when a layer has
    :data:`_MANY_QUESTIONS` left. With ``cluster`` (a Dask scheduler address), a
    client connected on entry and closed on exit; ``jobs`` is then unused. ``broken`` is set
    once the workers failed (everything then runs in-process); ``remote`` counts the answers
    consumed from the cluster.
    """

    def __init__(
        self, jobs: int | None, cluster: str | None = None, progress: Progress = SILENT
    ) -> None:
        self.jobs = max(1, int(jobs if jobs is not None else (os.cpu_count() or 1)))
        self.cluster = cluster
        self.progress = progress
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._layer: tuple[CompiledMilp, Ahead] | None = None  # the MILP scattered last
        self.broken = False
        self.solve_seconds = 0.0
        self.remote = 0

    def pool_for(self, remaining: int) -> ProcessPoolExecutor | None:
        """The local pool, started now if worth it for ``remaining`` more questions."""
        if self._pool is not None:
            return None if self.broken else self._pool
        if (
            self.broken
            or self.jobs == 1
            or remaining < _MIN_QUESTIONS_FOR_WORKERS
            or (self.solve_seconds < _START_AFTER_SECONDS and remaining < _MANY_QUESTIONS)
        ):
            return None
        return self._start()

    def _start(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=ctx, initializer=_worker_start
        )
        return self._pool

    def spread(self) -> Spread | None:
        """The processes a layer's batched ReLU-split trees may grow in
        (:mod:`exactcomp.bab.beta_parts`): ``jobs`` parts, this process taking one and the
        local pool (started at the first part sent, only once the trees have outgrown
        :data:`~exactcomp.bab.beta_parts.SPREAD_AFTER` nodes) the others; ``None`` (all in
        this process) with one job, a cluster, or workers that failed."""
        if self.jobs == 1 or self.cluster is not None or self.broken:
            return None
        from ..bab import beta_parts  # only where ReLU splits run (their import is not free)
        from ..bab.beta_parts import Spread

        budgets = (beta_parts.MAX_NODES_SPREAD, beta_parts.TOTAL_NODES_SPREAD)
        return Spread(
            self.jobs, self._submit, beta_parts.SPREAD_AFTER, *budgets, beta_parts.SLACK_SPREAD
        )

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future | None:
        """``fn(*args)`` in the local pool (started now if need be), or None: run it here."""
        if self.broken:
            return None
        try:
            return (self._pool or self._start()).submit(fn, *args)
        except Exception:  # a broken pool, one that cannot start
            self.broken = True
            return None

    def ahead(self, milp: CompiledMilp, remaining: int) -> Ahead | None:
        """How to run questions on ``milp`` ahead, or None: answer in-process."""
        if self._client is not None:
            return self._on_cluster(milp)
        pool = self.pool_for(remaining)
        if pool is None:
            return None
        # a wide window: while the consumer waits on one long question (mnist-net_256x2
        # prop_1: one proof of 43 s among 48 of 1-3 s), the other workers keep going
        return Ahead(partial(pool.submit, solve_question, milp), 8 * self.jobs)

    def _on_cluster(self, milp: CompiledMilp) -> Ahead | None:
        """Scatter ``milp`` to every worker once (per layer), then submit questions on it."""
        if self._layer is not None and self._layer[0] is milp:
            return self._layer[1]
        self._layer = None  # releases the previous layer's MILP on the workers
        client = self._client
        try:
            ref = client.scatter(milp, broadcast=True, hash=False)
            threads = sum(client.nthreads().values())
        except Exception as exc:
            self.lose(exc)
            return None

        def submit(q: Question) -> Any:
            try:
                return client.submit(solve_question, ref, q, pure=False)
            except Exception as exc:
                self.lose(exc)
                return None

        self._layer = (milp, Ahead(submit, 2 * max(1, threads)))
        return self._layer[1]

    def result(self, fut: Any) -> Answer | None:
        """The answer of a submitted question, or None when the workers failed."""
        if self.broken:
            return None
        if self._client is None:
            try:
                return fut.result()
            except BrokenProcessPool:
                # workers could not start or died (e.g. a __main__ that cannot be re-imported
                # under spawn): answer in-process instead; the answers are the same.
                self.broken = True
                return None
        idle = 0.0
        while True:
            try:
                answer = fut.result(timeout=_POLL_SECONDS)
            except asyncio.TimeoutError:  # still running, or queued: are there workers?
                try:
                    threads = sum(self._client.nthreads().values())
                except Exception as exc:
                    self.lose(exc)
                    return None
                idle = 0.0 if threads else idle + _POLL_SECONDS
                if idle >= _NO_WORKER_SECONDS:
                    self.lose(f"no worker for {_NO_WORKER_SECONDS:g} s")
                    return None
                continue
            except Exception as exc:  # lost connection, KilledWorker, an error in the task
                self.lose(exc)
                return None
            if not isinstance(answer, Answer):
                self.lose(f"a worker returned {type(answer).__name__}, not an Answer")
                return None
            self.remote += 1
            return answer

    def lose(self, why: object) -> None:
        """Give up the cluster: note why, close the client; later questions run in-process."""
        self.broken = True
        reason = why if isinstance(why, str) else _line(why)
        self.progress.note(
            f"the Dask cluster at {self.cluster} failed ({reason}); "
            "answering the remaining MILPs in this process"
        )
        self._drop_client()

    def _drop_client(self) -> None:
        self._layer = None
        client, self._client = self._client, None
        if client is not None:
            _close(client)

    def __enter__(self) -> Workers:
        if self.cluster is not None:
            self._client = connect(self.cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            if exc[0] is not None:  # Ctrl-C, SIGTERM or a bug: no running question is awaited
                _stop_processes(self._pool)
            self._pool.shutdown(wait=not self.broken, cancel_futures=True)
            self._pool = None
        self._drop_client()


def _stop_processes(pool: ProcessPoolExecutor) -> None:
    """End ``pool``'s worker processes now, so that its shutdown does not wait for the
    questions they are solving (a MILP may run for its whole time limit): SIGTERM
    (:func:`_worker_stop`), and SIGKILL for any still running :data:`_STOP_GRACE_SECONDS`
    later. The processes are the executor's ``_processes`` (no public handle before Python
    3.14's ``terminate_workers``, which sends the same SIGTERM)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        with contextlib.suppress(Exception):  # already gone
            proc.terminate()
    stop_by = time.monotonic() + _STOP_GRACE_SECONDS
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(max(0.0, stop_by - time.monotonic()))
            if proc.is_alive():
                proc.kill()


def _worker_start() -> None:
    """The initializer of each local worker process: SIGTERM stops it cleanly."""
    signal.signal(signal.SIGTERM, _worker_stop)


def _worker_stop(signum: int, _frame: object) -> None:
    """A worker's SIGTERM: run multiprocessing's exit finalizers, then exit at once.

    The finalizers unlink the named semaphores the worker's imports created (Pyomo makes a
    ``multiprocessing.Lock`` on import, and in a spawned process it is named and registered
    with the resource tracker); a worker ended by the default SIGTERM skips them, and the
    tracker reports "There appear to be N leaked semaphore objects" when the run ends. No
    exception is raised, which HiGHS could swallow in a callback or the pool's worker loop
    would return as the question's answer: the handler runs at the solver's next callback
    or return, and :data:`_STOP_GRACE_SECONDS` bounds the wait for it."""
    multiprocessing.util._exit_function()
    os._exit(128 + signum)


def _line(exc: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _close(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=_CONNECT_SECONDS)


def _cancel(fut: Future[Answer] | Any) -> None:
    with contextlib.suppress(Exception):  # a cluster future whose client is gone
        fut.cancel()


def run_questions(
    milp: CompiledMilp,
    tasks: Sequence[Task],
    *,
    moot: Callable[[Task], bool],
    question: Callable[[Task], Question],
    consume: Callable[[Task, Answer], None],
    workers: Workers,
    solve: Callable[[CompiledMilp, Question], Answer] = solve_question,
) -> int:
    """Answer ``tasks`` in order, skipping those ``moot`` at their turn; returns solves used.

    ``moot`` must be monotone (once moot, always moot) and ``question(task)`` must not
    depend on the state, so that the consumed sequence is the single-process one.
    """
    solved = 0
    futures: dict[int, Any] = {}
    submitted = 0
    for i, t in enumerate(tasks):
        ahead = workers.ahead(milp, len(tasks) - i) if solve is solve_question else None
        if ahead is not None:
            submitted = max(submitted, i)
            while submitted < len(tasks) and submitted < i + ahead.window:
                s = tasks[submitted]
                if not moot(s):
                    fut = ahead.submit(question(s))
                    if fut is None:  # the cluster just failed
                        break
                    futures[submitted] = fut
                submitted += 1
        fut = futures.pop(i, None)
        if moot(t):
            if fut is not None:
                _cancel(fut)
            continue
        answer = workers.result(fut) if fut is not None else None
        if answer is None:
            answer = solve(milp, question(t))
        workers.solve_seconds += answer.seconds
        consume(t, answer)
        solved += 1
    for fut in futures.values():
        _cancel(fut)
    return solved
