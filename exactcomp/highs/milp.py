"""One HiGHS MILP run on a matrix model: options, cut-off, target, warm start, incumbents.

What is asked and what the answer proves are the caller's (:mod:`exactcomp.milp.highs`, with
the rules of :mod:`exactcomp.highs.status`); this module only drives the solver and reports
how the run ended, keeping a Ctrl-C that arrives during the run for after it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import highspy
import numpy as np

from .matrix import MatrixModel, highs_with_model
from .runtime import INF, run
from .status import Termination, from_highs

__all__ = ["MilpRun", "run_milp"]


@dataclass(frozen=True, eq=False)
class MilpRun:
    """How one MILP run ended: its termination and HiGHS' words for it, the final solution's
    column values (``None`` without a feasible one), the dual bound (``mip_dual_bound``: a
    global bound only after a run without cut-off), and the error text if the solver failed."""

    termination: Termination
    text: str
    values: np.ndarray | None
    dual: float
    error: str | None = None


def run_milp(
    model: MatrixModel,
    cost: np.ndarray,
    integer: np.ndarray,
    *,
    time_limit: float,
    options: dict[str, object],
    cutoff: float | None = None,
    target: float | None = None,
    row: tuple[int, float, float] | None = None,
    start: np.ndarray | None = None,
    on_incumbent: Callable[[object], None] | None = None,
    cpu_limit: float | None = None,
) -> MilpRun:
    """Minimise ``cost . v`` over ``model`` with the columns in ``integer`` integral.

    ``cutoff``/``target`` set HiGHS' ``objective_bound``/``objective_target``; ``row`` adds one
    row ``(col, lower, upper)`` on a single column (coefficient 1); ``start`` is a full column
    vector tried as the first incumbent; ``on_incumbent`` receives HiGHS' improving-solution
    events. A solver exception ends the run as OTHER with its text in ``error``.

    ``time_limit`` is wall-clock seconds (HiGHS' own ``time_limit``). ``cpu_limit``, when
    given, also stops the run once this process has used that many CPU seconds
    (``time.process_time``) since the run started: HiGHS has no CPU-time option, so the
    branch and bound's interrupt callback (``cbMipInterrupt``, called between nodes) checks
    the clock and interrupts. Such a run ends as TIME_LIMIT, which proves nothing, exactly
    as a wall-clock time-out. A CPU limit makes a question's verdict independent of the
    machine's load (a loaded machine gives the run fewer CPU seconds per wall second); the
    wall-clock limit stays as the outer cap (a caller's deadline). The process's clock
    counts every thread of the process, so where other threads work at the same time the
    run is stopped sooner, never later.
    """
    h = highs_with_model(model, cost=cost, integer=integer)
    h.setOptionValue("time_limit", max(float(time_limit), 1e-3))
    for name, value in options.items():
        h.setOptionValue(name, value)
    if row is not None:
        col, lo, hi = row
        h.addRow(
            float(lo) if np.isfinite(lo) else -INF,
            float(hi) if np.isfinite(hi) else INF,
            1,
            np.array([col], dtype=np.int32),
            np.array([1.0]),
        )
    if cutoff is not None:
        h.setOptionValue("objective_bound", float(cutoff))
    if target is not None:
        h.setOptionValue("objective_target", float(target))
    if on_incumbent is not None:
        h.cbMipImprovingSolution.subscribe(on_incumbent)
    out_of_cpu = [False]
    if cpu_limit is not None:
        stop_at = time.process_time() + max(float(cpu_limit), 1e-3)

        def _check_cpu(event) -> None:
            if time.process_time() >= stop_at:
                out_of_cpu[0] = True
                event.interrupt()

        h.cbMipInterrupt.subscribe(_check_cpu)
    if start is not None:
        h.setSolution(int(start.size), np.arange(start.size, dtype=np.int32), start)
    try:
        with _signals_after_run():
            status = run(h)
        model_status = h.getModelStatus()
        info = h.getInfo()
        has_solution = info.primal_solution_status == highspy.kSolutionStatusFeasible
        values = np.array(h.getSolution().col_value, dtype=np.float64) if has_solution else None
        dual = float(info.mip_dual_bound)
        text = h.modelStatusToString(model_status)
    except Exception as exc:  # any solver error proves nothing
        return MilpRun(Termination.OTHER, f"error: {exc}", None, np.nan, str(exc))
    finally:
        h.cbMipImprovingSolution.clear()
        h.cbMipInterrupt.clear()
    term = from_highs(model_status, status == highspy.HighsStatus.kError)
    if out_of_cpu[0] and model_status == highspy.HighsModelStatus.kInterrupt:
        term, text = Termination.TIME_LIMIT, "CPU time limit reached"
    return MilpRun(term, text, values, dual)


@contextlib.contextmanager
def _signals_after_run() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT), or a SIGTERM that Python handles, that arrives during a HiGHS run
    and deliver it after the run.

    Python raises ``KeyboardInterrupt`` wherever the main thread is running Python code; during
    a run that is our incumbent callback, and HiGHS swallows an exception raised there (the
    run ends as "Solve error" and the analysis would go on, ignoring the Ctrl-C). So while the
    solver runs, SIGINT only sets a flag; afterwards the previous handler gets the signal
    (the default one raises ``KeyboardInterrupt``; an ignored SIGINT stays ignored). SIGTERM
    likewise when a Python handler is installed (the CLI's raises
    :class:`~exactcomp.errors.Terminated`); its default action, ending the process at once,
    swallows nothing and is left alone, and so is the handler of a worker process
    (:mod:`exactcomp.stability.milp_phase`: it exits at once without raising, and must not
    wait for the run to end). Only possible in the main thread (elsewhere, e.g. a Dask worker
    thread, nothing changes).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = [signal.SIGINT]
    if callable(signal.getsignal(signal.SIGTERM)) and multiprocessing.parent_process() is None:
        held.append(signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        # None: a handler not installed from Python (embedding); the default is the closest
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
    for s in dict.fromkeys(pending):  # each signal once, in the order it came
        handler = previous[s]
        if handler is signal.SIG_IGN:
            continue
        if callable(handler):
            handler(s, None)
        else:  # SIG_DFL or unknown (SIGINT only): the same as Python's default
            raise KeyboardInterrupt
