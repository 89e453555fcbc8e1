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
forked child would inherit in a broken state), lazily, and only for layers with enough
questions to pay for them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from ..milp.highs import Answer, CompiledMilp, Question, solve_question

_MIN_QUESTIONS_FOR_WORKERS = 6


@dataclass(frozen=True)
class Task:
    """One question of the layer's list: can ``sign * z[neuron] > 0``?"""

    neuron: int
    sign: int


class Workers:
    """A lazily started process pool (``jobs`` processes); a context manager.

    ``jobs=None`` means all cores; ``jobs=1`` never starts a process.
    """

    def __init__(self, jobs: int | None) -> None:
        self.jobs = max(1, int(jobs if jobs is not None else (os.cpu_count() or 1)))
        self._pool: ProcessPoolExecutor | None = None

    def pool_for(self, n_questions: int) -> ProcessPoolExecutor | None:
        if self.jobs == 1 or n_questions < _MIN_QUESTIONS_FOR_WORKERS:
            return None
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx)
        return self._pool

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
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
    pool = workers.pool_for(len(tasks)) if solve is solve_question else None
    solved = 0
    if pool is None:
        for t in tasks:
            if not moot(t):
                consume(t, solve(milp, question(t)))
                solved += 1
        return solved
    window = 2 * workers.jobs
    futures: dict[int, Future[Answer]] = {}
    submitted = 0
    for i, t in enumerate(tasks):
        while submitted < len(tasks) and submitted < i + window:
            s = tasks[submitted]
            if not moot(s):
                futures[submitted] = pool.submit(solve_question, milp, question(s))
            submitted += 1
        fut = futures.pop(i, None)
        if moot(t):
            if fut is not None:
                fut.cancel()
            continue
        answer = fut.result() if fut is not None else solve_question(milp, question(t))
        consume(t, answer)
        solved += 1
    for fut in futures.values():
        fut.cancel()
    return solved
