"""Chunks scored one ahead of the driver, so a GPU does not wait between them.

Within a chunk the scorer keeps the device fed (pass n+1 is launched before pass n is
read). Between chunks, run one after another, it would idle while the driver commits the
last chunk to the lake and the next chunk is tokenised. Here the next chunk is tokenised on
one thread and scored on another while the caller handles the previous result; progress
callbacks are handed back to the calling thread (loggers and Dagster's context stay on the
thread that owns them).
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

Chunk = TypeVar("Chunk")
Tokens = TypeVar("Tokens")
Result = TypeVar("Result")
OnPass = Callable[[int, int], None]
# How often a waiting caller delivers queued progress (and notices signals).
POLL_SECONDS = 0.1


def overlapped(
    chunks: Iterable[Chunk],
    tokenize: Callable[[Chunk], Tokens],
    score: Callable[[Tokens, OnPass | None], Result],
    on_pass: OnPass | None = None,
) -> Iterator[Result]:
    """``score(tokenize(chunk))`` for each chunk, in order, with the next chunk tokenised and
    scored while the caller works on the current result."""
    reports: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
    relay = (lambda sequences, tokens: reports.put((sequences, tokens))) if on_pass else None

    def deliver() -> None:
        while on_pass is not None and not reports.empty():
            on_pass(*reports.get())

    def finished(future: Future[Result]) -> Result:
        while True:
            try:
                result = future.result(timeout=POLL_SECONDS)
            except FutureTimeout:
                deliver()
                continue
            deliver()
            return result

    tokenizing = ThreadPoolExecutor(1, thread_name_prefix="qaq-tokenize")
    scoring = ThreadPoolExecutor(1, thread_name_prefix="qaq-score")
    in_flight: deque[Future[Result]] = deque()
    try:
        for chunk in chunks:
            tokens = tokenizing.submit(tokenize, chunk)
            in_flight.append(scoring.submit(lambda tokens=tokens: score(tokens.result(), relay)))
            if len(in_flight) > 1:
                yield finished(in_flight.popleft())
        while in_flight:
            yield finished(in_flight.popleft())
    finally:
        # A caller that stops early (an error, a signal) waits for the running chunk only.
        for executor in (scoring, tokenizing):
            executor.shutdown(wait=True, cancel_futures=True)
