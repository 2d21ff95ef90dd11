"""One worker process per device: chunks spread over replicas, results in order, scores as on one device."""

import os

import pytest

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends.device_pool import DevicePoolBackend, device_pool
from qaq_assets.lib.scoring.backends.local import (
    LocalBackend,
    ScorerOptions,
    ScoringReplica,
    identity_of,
    local_devices,
    split_chunk,
)
from qaq_assets.lib.scoring.engine.models import ModelSpec
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets_tests.helpers import CODE_PAIRS, TINY, rows_of


def test_every_visible_gpu_gets_a_replica_unless_one_device_is_named():
    assert local_devices("auto", visible_gpus=0) == ["cpu"]
    assert local_devices("auto", visible_gpus=4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert local_devices("cuda", visible_gpus=2) == ["cuda:0", "cuda:1"]
    assert local_devices("cuda:1", visible_gpus=4) == ["cuda:1"]
    assert local_devices("cpu", visible_gpus=4) == ["cpu"]


@pytest.fixture(scope="module")
def two_workers(tiny_model):
    options = ScorerOptions()
    identity = identity_of(tiny_model, options.scorer(tiny_model), options.max_sequence_tokens)
    # Two CPU "devices": the same code path as two GPUs, one spawned process each.
    pool = device_pool(ModelSpec.parse(TINY), ["cpu", "cpu"], "float32", options, identity)
    yield pool
    pool.shutdown()


@pytest.mark.slow
def test_the_pool_scores_a_shard_exactly_as_one_device_does(two_workers, tiny_model, tmp_path, make_shard):
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    options = ScorerOptions()
    single = LocalBackend(tiny_model, options.scorer(tiny_model), options)
    one_lake, two_lake = Lake(tmp_path / "one"), Lake(tmp_path / "two")
    one = score_shard(one_lake, samples, "s", single, commit_every=2)
    progress = []
    spread = score_shard(two_lake, samples, "s", two_workers, commit_every=2, on_progress=progress.append)
    assert rows_of(two_lake, spread).equals(rows_of(one_lake, one))  # row by row, every log-prob, in order
    assert progress[-1].samples_done == len(CODE_PAIRS)  # progress per chunk, from the driver
    assert two_workers.describe_forward().endswith(", 2 devices")


@pytest.mark.slow
def test_chunks_come_back_in_order_from_worker_processes(two_workers):
    chunks = [([query], [answer]) for query, answer in CODE_PAIRS]
    scored = list(two_workers.score_chunks(chunks))
    assert [len(s.tokens) for s in scored] == [1] * len(CODE_PAIRS)
    replicas = {s.replica for s in scored}
    assert all(r.startswith("cpu (pid ") and f"pid {os.getpid()})" not in r for r in replicas)
    again = list(two_workers.score_chunks(reversed(chunks)))
    for first, second in zip(scored, reversed(again), strict=True):
        assert first.logprobs[0].query_given_answer.tolist() == second.logprobs[0].query_given_answer.tolist()


@pytest.mark.slow
def test_the_same_model_on_the_same_devices_reuses_its_pool(two_workers, tiny_model):
    options = ScorerOptions()
    identity = identity_of(tiny_model, options.scorer(tiny_model), options.max_sequence_tokens)
    assert device_pool(ModelSpec.parse(TINY), ["cpu", "cpu"], "float32", options, identity) is two_workers


@pytest.mark.slow
def test_a_worker_that_loads_another_model_breaks_the_pool_with_the_reason(tiny_model):
    from concurrent.futures.process import BrokenProcessPool

    options = ScorerOptions()
    wrong = identity_of(tiny_model, options.scorer(tiny_model), options.max_sequence_tokens)
    other_seed = ModelSpec.parse("random:tiny-llama:7")
    pool = DevicePoolBackend(other_seed, ["cpu"], "float32", options, wrong)
    try:
        with pytest.raises(BrokenProcessPool):
            list(pool.score_chunks([(["q"], ["a"])]))
    finally:
        pool.shutdown()


def test_overlapped_chunks_score_like_chunks_in_turn_with_progress_on_the_callers_thread(
    tiny_model, tmp_path, make_shard
):
    import threading

    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    options = ScorerOptions()

    def backend(overlap):
        return LocalBackend(tiny_model, options.scorer(tiny_model), options, overlap)

    turn_lake, overlap_lake = Lake(tmp_path / "turn"), Lake(tmp_path / "overlap")
    in_turn = score_shard(turn_lake, samples, "s", backend(False), commit_every=3)
    threads = set()
    overlapped = score_shard(
        overlap_lake,
        samples,
        "s",
        backend(True),
        commit_every=3,
        on_progress=lambda progress: threads.add(threading.current_thread()),
    )
    assert rows_of(overlap_lake, overlapped).equals(rows_of(turn_lake, in_turn))
    assert threads == {threading.current_thread()}
    assert overlapped.forward_calls == in_turn.forward_calls


def test_chunks_split_into_near_equal_contiguous_parts():
    chunk = ([f"q{i}" for i in range(7)], [f"a{i}" for i in range(7)])
    parts = split_chunk(chunk, 3)
    assert [len(queries) for queries, _ in parts] == [2, 3, 2]
    assert [q for queries, _ in parts for q in queries] == chunk[0]
    assert [a for _, answers in parts for a in answers] == chunk[1]
    assert split_chunk((["q"], ["a"]), 4) == [(["q"], ["a"])]  # no empty parts
    assert split_chunk(([], []), 4) == []


def test_a_replica_on_a_gpu_tokenises_the_next_part_while_one_scores_and_returns_the_whole_chunk():
    import threading

    import torch

    # A replica on the CPU, given the parts a GPU replica uses.
    replica = ScoringReplica(ModelSpec.parse(TINY), "cpu", "float32", ScorerOptions(), torch.get_num_threads())
    assert replica.parts == 1  # on a CPU, every core scores: no overlap
    chunk = tuple(map(list, zip(*CODE_PAIRS, strict=True)))
    whole = replica.score(chunk, "r")

    tokenized_on = []
    real_tokenize = replica._tokenize

    def tokenize(part):
        tokenized_on.append(threading.current_thread().name)
        return real_tokenize(part)

    replica._tokenize, replica.parts = tokenize, 3
    in_parts = replica.score(chunk, "r")
    assert len(tokenized_on) == 3 and all(name.startswith("qaq-tokenize") for name in tokenized_on)
    assert in_parts.replica == "r" and in_parts.tokens == whole.tokens
    for together, apart in zip(whole.logprobs, in_parts.logprobs, strict=True):
        for field in ("query", "answer_given_query", "answer", "query_given_answer", "answer_end"):
            assert getattr(together, field) == pytest.approx(getattr(apart, field), abs=1e-5)
    assert in_parts.real_tokens == whole.real_tokens
    assert in_parts.forward_calls >= 3  # at least one pass per part
