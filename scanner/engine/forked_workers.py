"""Forked worker processes that compute ``work(index)`` for spans of indexes, answered in order.

Why not ``multiprocessing.Pool``: its worker-handler thread waits on the results pipe as well as
on the workers, so while a report is in that pipe it wakes, polls and waits again, over and over,
and the reports come in through two more threads of the parent. Measured on 1,000 snapshots on two
CPUs, the parent used about 0.5 s of CPU while the workers scanned, on a CPU the workers need.
Here the parent's main thread alone hands out spans and receives their results (about 0.2 s of
CPU for the same run): each worker has a pipe for its spans and one for its answers, and
``selectors`` tells which answer came in.

What the callers rely on:

* results come back in index order, or :class:`WorkLost` is raised: a worker that could not be
  forked, a job that raised, a result that could not be pickled; a worker that died, unless the
  caller says what stands for a job that kills its worker (``lost``: then the span it was doing is
  done again job by job, and only a job that kills a worker alone is lost).
* every worker is ended and waited for before :func:`run_forked` returns or raises, whatever ends
  it (``KeyboardInterrupt``, an exception raised by a signal handler, :class:`WorkLost`).
* a worker never runs the parent's code after the fork: whatever it raises ends in ``os._exit``,
  so no ``finally`` or ``atexit`` of the parent runs twice and no buffered output is written twice.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
from collections import deque
from multiprocessing.connection import Connection, Pipe
from typing import Callable, List, Optional, Sequence, Tuple

#: what a worker answers instead of results when a job raised or its results would not pickle
_FAILED = b"failed"
#: what a worker says once it has started: a death after this is its job's doing
_READY = b"ready"
#: spans handed to a worker ahead of its answers: it starts the next while the parent reads the last
_AHEAD = 2


class WorkLost(Exception):
    """The work could not be done in the workers (see the module's docstring): the caller does it."""


class _Worker:
    """One forked process, its pid, the writing end of its spans and the reading end of its answers."""

    def __init__(self, pid: int, spans: Connection, answers: Connection):
        self.pid = pid
        self.spans = spans
        self.answers = answers
        self.handed: deque = deque()  # (first, end) of the spans handed to it and not answered yet
        self.ready = False  # it has started (and said so)


def run_forked(work: Callable[[int], object], spans: Sequence[Tuple[int, int]], workers: int,
               start: Optional[Callable[[], None]] = None,
               lost: Optional[Callable[[int, str], object]] = None) -> List[object]:
    """``[work(i) for (first, end) in spans for i in range(first, end)]``, computed by ``workers`` forked
    processes (``start()`` first in each); ``spans`` follow each other from 0. Raises :class:`WorkLost`
    when that cannot be done.

    ``lost(index, why)``: what stands for ``work(index)`` when it kills the process doing it (a crash in
    C, the kernel's OOM killer). A worker forked in its place does the span it was doing again, each
    job alone, and a job that kills a worker alone is ``lost``; every other answer stands. Without
    ``lost``, a worker's death raises :class:`WorkLost`.
    """
    crew: List[_Worker] = []

    def fork_one() -> _Worker:
        worker = _fork(work, start, crew)
        crew.append(worker)
        return worker

    try:
        for _ in range(workers):
            fork_one()
        return _gather(crew, spans, fork_one, lost)
    finally:
        end_all(crew)


def end_all(crew: List[_Worker]) -> None:
    """End every worker (SIGTERM to one still busy) and wait for each; the list is emptied."""
    while crew:
        _end(crew.pop())


def _end(worker: _Worker) -> Optional[int]:
    """Close the worker's pipes (an idle worker then ends of itself), SIGTERM it if it still holds
    work, and wait for it: its wait status, or None when it is not ours to wait for (SIGCHLD ignored)."""
    for connection in (worker.spans, worker.answers):
        connection.close()
    if worker.handed:
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except OSError:  # gone already
            pass
    try:
        return os.waitpid(worker.pid, 0)[1]
    except ChildProcessError:
        return None


def _fork(work: Callable[[int], object], start, crew: List[_Worker]) -> _Worker:
    spans_in, spans_out = Pipe(duplex=False)
    answers_in, answers_out = Pipe(duplex=False)
    try:
        pid = os.fork()
    except OSError as exc:
        for connection in (spans_in, spans_out, answers_in, answers_out):
            connection.close()
        raise WorkLost(f"cannot fork a worker: {exc}") from None
    if pid == 0:  # the worker: never returns into the parent's code
        status = 1
        try:
            for connection in [spans_out, answers_in] + [c for w in crew for c in (w.spans, w.answers)]:
                connection.close()  # the parent's ends, its own and its elder siblings'
            if start is not None:
                start()
            _serve(work, spans_in, answers_out)
            status = 0
        finally:
            os._exit(status)
    spans_in.close()
    answers_out.close()
    return _Worker(pid, spans_out, answers_in)


def _serve(work: Callable[[int], object], spans: Connection, answers: Connection) -> None:
    """In a worker: say it is ready, then answer each span handed to it, until its pipe is closed."""
    answers.send_bytes(_READY)
    while True:
        try:
            first, end = pickle.loads(spans.recv_bytes())
        except EOFError:
            return
        try:
            answer = pickle.dumps([work(index) for index in range(first, end)], protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # the parent does the work itself, and meets the error there
            answer = _FAILED
        answers.send_bytes(answer)


def _gather(crew: List[_Worker], spans: Sequence[Tuple[int, int]], fork_one, lost) -> List[object]:
    """Hand the spans out and collect the answers, in the parent's main thread."""
    count = spans[-1][1] if spans else 0
    results: List[object] = [None] * count
    pending = deque(spans)  # (first, end) of the jobs not handed out yet
    waiting = count
    with selectors.DefaultSelector() as selector:
        for worker in list(crew):
            selector.register(worker.answers, selectors.EVENT_READ, worker)
            _hand_ahead(worker, pending)
        while waiting:
            if not any(worker.handed for worker in crew):  # nothing would ever answer: never wait for it
                raise WorkLost(f"{waiting} jobs neither answered nor handed out")
            for key, _ in selector.select():
                worker = key.data
                try:
                    answer = worker.answers.recv_bytes()
                except (EOFError, OSError):
                    if lost is None:
                        raise WorkLost(f"worker {worker.pid} ended before answering") from None
                    if not worker.ready:  # it died starting: no job of it, and perhaps none will start
                        raise WorkLost(f"worker {worker.pid} ended before it was ready") from None
                    selector.unregister(worker.answers)
                    waiting -= _bury(worker, crew, pending, results, lost)
                    if pending:
                        replacement = fork_one()
                        selector.register(replacement.answers, selectors.EVENT_READ, replacement)
                    for other in list(crew):  # the replacement, and any worker left idle meanwhile
                        _hand_ahead(other, pending)
                    continue
                if answer == _READY:
                    worker.ready = True
                    continue
                if answer == _FAILED:
                    raise WorkLost("a job failed in a worker")
                first, end = worker.handed.popleft()
                answered = pickle.loads(answer)
                if len(answered) != end - first:
                    raise WorkLost(f"worker {worker.pid} answered {len(answered)} jobs of {end - first}")
                results[first:end] = answered
                waiting -= end - first
                _hand_ahead(worker, pending)
    return results


def _hand_ahead(worker: _Worker, pending: deque) -> None:
    """Give ``worker`` spans until it has :data:`_AHEAD` of them (or none are left)."""
    while len(worker.handed) < _AHEAD and pending:
        span = pending.popleft()
        try:
            worker.spans.send_bytes(pickle.dumps(span))
        except OSError:  # it has ended: its answers' pipe says so next
            pending.appendleft(span)
            return
        worker.handed.append(span)


def _bury(worker: _Worker, crew: List[_Worker], pending: deque, results: List[object], lost) -> int:
    """A worker died: wait for it. It died doing the first span it held (it does them in order, and
    answers each before the next): each job of that span gets a span of its own, to be done next, and
    a job that was alone in it is answered with ``lost``. Spans it held behind that one go back as
    they were, first in line. How many jobs were answered (0 or 1; 0 when it died idle)."""
    crew.remove(worker)
    held, worker.handed = worker.handed, deque()  # nothing to stop: it is dead
    why = _death(_end(worker))
    if not held:  # it died idle: nothing of the work went with it
        return 0
    (first, end), untouched = held[0], list(held)[1:]
    pending.extendleft(reversed(untouched))
    if end - first > 1:
        pending.extendleft((index, index + 1) for index in reversed(range(first, end)))
        return 0
    results[first] = lost(first, why)
    return 1


def _death(status: Optional[int]) -> str:
    """How a worker ended, in words, from its wait status."""
    if status is None:
        return "ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.WEXITSTATUS(status)}"
