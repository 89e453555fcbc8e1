"""The MILP phase of one layer: questions in a fixed order, answered in-process or in workers.

Determinism whatever ``jobs``
-----------------------------
Questions form one ordered list per layer. Their *answers are consumed in that order*,
exactly as a single process would: before consuming question ``i`` we check whether what was
learned from answers ``< i`` (witnesses shared from incumbents, the neuron's other sign) has
made it moot; if so its answer is discarded even when a worker already computed it. Workers
only run questions speculatively ahead of the consumer (a window of ``2 * jobs``), so they
change the speed, never the verdicts, the proof kinds or the witness rows. Each question is
solved on a fresh HiGHS instance, which makes its answer independent of where it ran.

Worker processes are started with ``spawn`` (never ``fork``: HiGHS keeps a thread pool that a
forked child would inherit in a broken state), and only once the MILPs have proven slow
enough to pay for their start-up (each worker imports the package: seconds).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from ..milp.highs import Answer, CompiledMilp, Question, solve_question

_MIN_QUESTIONS_FOR_WORKERS = 6
_START_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class Task:
    """One question of the layer's list: can ``sign * z[neuron] > 0``?"""

    neuron: int
    sign: int


class Workers:
    """A process pool (``jobs`` processes) started only once MILPs prove slow; a context manager.

    ``jobs=None`` means all cores; ``jobs=1`` never starts a process. Starting workers costs
    seconds (each imports the package), so they are started only after the MILPs of this
    call have taken :data:`_START_AFTER_SECONDS` in-process and enough questions remain.
    """

    def __init__(self, jobs: int | None) -> None:
        self.jobs = max(1, int(jobs if jobs is not None else (os.cpu_count() or 1)))
        self._pool: ProcessPoolExecutor | None = None
        self.broken = False
        self.solve_seconds = 0.0

    def pool_for(self, remaining: int) -> ProcessPoolExecutor | None:
        """The pool, started now if worth it for ``remaining`` more questions."""
        if self._pool is not None:
            return None if self.broken else self._pool
        if (
            self.broken
            or self.jobs == 1
            or remaining < _MIN_QUESTIONS_FOR_WORKERS
            or self.solve_seconds < _START_AFTER_SECONDS
        ):
            return None
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx)
        return self._pool

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not self.broken, cancel_futures=True)
            self._pool = None


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
    futures: dict[int, Future[Answer]] = {}
    submitted = 0
    for i, t in enumerate(tasks):
        pool = workers.pool_for(len(tasks) - i) if solve is solve_question else None
        if pool is not None:
            submitted = max(submitted, i)
            while submitted < len(tasks) and submitted < i + 2 * workers.jobs:
                s = tasks[submitted]
                if not moot(s):
                    futures[submitted] = pool.submit(solve_question, milp, question(s))
                submitted += 1
        fut = futures.pop(i, None)
        if moot(t):
            if fut is not None:
                fut.cancel()
            continue
        answer = None
        if fut is not None and not workers.broken:
            try:
                answer = fut.result()
            except BrokenProcessPool:
                # workers could not start or died (e.g. a __main__ that cannot be re-imported
                # under spawn): answer in-process instead; the answers are the same.
                workers.broken = True
        if answer is None:
            answer = solve(milp, question(t))
        workers.solve_seconds += answer.seconds
        consume(t, answer)
        solved += 1
    for fut in futures.values():
        fut.cancel()
    return solved
