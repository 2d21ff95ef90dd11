"""Chunks scored one ahead of the caller: order kept, the next chunk running while the caller works."""

import threading
import time

import pytest

from qaq_assets.lib.scoring.backends.chunk_overlap import overlapped


def test_the_next_chunk_is_tokenised_and_scored_while_the_caller_holds_the_previous_result():
    events, lock = [], threading.Lock()

    def note(event):
        with lock:
            events.append(event)

    def tokenize(chunk):
        note(("tokenize", chunk))
        return chunk * 10

    def score(tokens, on_pass):
        note(("score", tokens))
        on_pass(2, tokens)
        return tokens + 1

    passes = []
    results = []
    for result in overlapped(range(4), tokenize, score, lambda sequences, tokens: passes.append(tokens)):
        time.sleep(0.2)  # the caller commits; meanwhile the next chunk is scored
        note(("caller", result))
        results.append(result)
    assert results == [1, 11, 21, 31]
    # Chunk 1 was scored before the caller finished with chunk 0's result.
    assert events.index(("score", 10)) < events.index(("caller", 1))
    assert passes == [0, 10, 20, 30]  # progress handed back in order, on the caller's thread


def test_an_error_in_a_chunk_reaches_the_caller_and_later_chunks_are_not_scored():
    scored = []

    def score(tokens, on_pass):
        scored.append(tokens)
        if tokens == 1:
            raise RuntimeError("CUDA error: device-side assert triggered")
        time.sleep(0.05)
        return tokens

    results = overlapped(range(10), lambda chunk: chunk, score)
    assert next(results) == 0
    with pytest.raises(RuntimeError, match="device-side assert"):
        next(results)
    time.sleep(0.2)
    assert max(scored) <= 2  # one chunk ahead at most
