"""Forked worker processes that compute ``work(index)`` for spans of indexes, answered in order.

Why not ``multiprocessing.Pool``: its worker-handler thread waits on the results pipe as well as
on the workers, so while a report is in that pipe it wakes, polls and waits again, over and over,
and the reports come in through two more threads of the parent. Measured on 1,000 snapshots on two
CPUs, the parent used about 0.5 s of CPU while the workers scanned, on a CPU the workers need.
Here the parent's main thread alone hands out spans and receives their results (about 0.2 s of
CPU for the same run): each worker has a pipe for its spans and one for its answers, and
``selectors`` tells which answer came in.

What the callers rely on:

* results come back in index order, or :class:`WorkLost` is raised: a worker that died or could not
  be forked, a job that raised, a result that could not be pickled. Nothing is retried here.
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
        self.handed: deque = deque()  # span numbers handed to it and not answered yet


def run_forked(work: Callable[[int], object], spans: Sequence[Tuple[int, int]], workers: int,
               start: Optional[Callable[[], None]] = None) -> List[object]:
    """``[work(i) for (first, end) in spans for i in range(first, end)]``, computed by ``workers`` forked
    processes (``start()`` first in each); raises :class:`WorkLost` when that cannot be done."""
    crew: List[_Worker] = []
    try:
        for _ in range(workers):
            crew.append(_fork(work, start, crew))
        return _gather(crew, spans)
    finally:
        end_all(crew)


def end_all(crew: List[_Worker]) -> None:
    """End every worker (SIGTERM to one still busy) and wait for each; the list is emptied."""
    while crew:
        worker = crew.pop()
        for connection in (worker.spans, worker.answers):
            connection.close()  # with its spans' pipe closed, an idle worker ends of itself
        if worker.handed:
            _signal_quietly(worker.pid, signal.SIGTERM)
        _reap(worker.pid)


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
    """In a worker: answer each span handed to it, until its pipe is closed."""
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


def _gather(crew: List[_Worker], spans: Sequence[Tuple[int, int]]) -> List[object]:
    """Hand the spans out and collect the answers, in the parent's main thread."""
    answered: List[Optional[list]] = [None] * len(spans)
    waiting = len(spans)
    upcoming = iter(range(len(spans)))
    with selectors.DefaultSelector() as selector:
        for worker in crew:
            selector.register(worker.answers, selectors.EVENT_READ, worker)
            for _ in range(_AHEAD):
                _hand(worker, spans, next(upcoming, None))
        while waiting:
            for key, _ in selector.select():
                worker = key.data
                try:
                    answer = worker.answers.recv_bytes()
                except (EOFError, OSError):
                    raise WorkLost(f"worker {worker.pid} ended before answering") from None
                if answer == _FAILED:
                    raise WorkLost("a job failed in a worker")
                answered[worker.handed.popleft()] = pickle.loads(answer)
                waiting -= 1
                _hand(worker, spans, next(upcoming, None))
    return [result for results in answered for result in results]


def _hand(worker: _Worker, spans: Sequence[Tuple[int, int]], number: Optional[int]) -> None:
    if number is None:
        return
    try:
        worker.spans.send_bytes(pickle.dumps(tuple(spans[number])))
    except OSError:  # it has ended: its answers' pipe says so next
        raise WorkLost(f"worker {worker.pid} ended before its work was handed out") from None
    worker.handed.append(number)


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def _reap(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return
