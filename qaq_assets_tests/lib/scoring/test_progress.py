"""Progress while a shard scores: a first line before any pass, then every pass; a fully cached
re-run loads no model at all."""

import dagster as dg

import qaq_assets.lib.scoring.backends.policy as policy
from qaq_assets.defs.partitions import SHARDS
from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends.local import DeferredLocalBackend, LocalBackend, ScorerOptions
from qaq_assets.lib.scoring.engine.scorer import PairScorer
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets_tests.helpers import CODE_PAIRS, graph, register_files


def test_progress_is_reported_before_the_first_pass_and_after_every_pass(lake, make_shard, tiny_model):
    scorer = PairScorer(
        tiny_model.model,
        build_layouts("plain", tiny_model.tokenizer),
        tiny_model.tokenizer.pad_token_id,
        batch_tokens=256,  # several passes inside the one chunk
    )
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    reports = []
    result = score_shard(
        lake,
        samples,
        "s",
        LocalBackend(tiny_model, scorer, ScorerOptions()),
        commit_every=256,
        on_progress=lambda p: reports.append((p.samples_done, p.tokens_done, p.samples_committed)),
    )
    assert reports[0] == (0, 0, 0)
    passes = reports[1:-1]  # before the chunk's commit
    assert len(passes) == result.forward_calls > 2
    assert all(committed == 0 for _, _, committed in passes)
    assert [tokens for _, tokens, _ in passes] == sorted({tokens for _, tokens, _ in passes})  # grows each pass
    assert reports[-1][0] == reports[-1][2] == len(CODE_PAIRS)


def test_run_log_progress_and_a_cached_rerun_that_loads_no_model(lake, make_shard, monkeypatch):
    shards = register_files(lake, [make_shard("s", CODE_PAIRS)])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, shards)
    resources, (raw, token_logprobs, qaq_scores, _) = graph(lake)
    assert dg.materialize([raw], partition_key="s", instance=instance, resources=resources).success
    key = dg.MultiPartitionKey({"shard": "s", "model": "tiny"})
    first = dg.materialize([token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources)
    messages = [event.user_message for event in instance.all_logs(first.run_id)]
    assert f"scoring s with tiny: {len(CODE_PAIRS)} samples to score, 0 already scored (cache)" in messages
    assert any(m.startswith(f"s/tiny: {len(CODE_PAIRS)}/{len(CODE_PAIRS)} samples, ") for m in messages)

    def no_load(*_args, **_kwargs):
        raise AssertionError("a fully cached shard loaded its model")

    monkeypatch.setattr(policy, "cached_model", no_load)
    again = dg.materialize([token_logprobs, qaq_scores], partition_key=key, instance=instance, resources=resources)
    metadata = again.asset_materializations_for_node("token_logprobs")[0].metadata
    assert metadata["samples_from_cache"].value == len(CODE_PAIRS) and metadata["samples_scored"].value == 0
    assert metadata["forward"].value == DeferredLocalBackend.NOT_RUN


def test_the_time_left_is_measured_after_the_first_samples_not_from_the_model_load():
    import time

    from qaq_assets.lib.scoring.shard_scoring import ScoringProgress

    progress = ScoringProgress(samples_total=100)
    progress.started -= 600  # ten minutes of loading and compiling before the first pass ended
    assert progress.eta_seconds is None  # nothing done yet
    progress.samples_committed = 10
    assert progress.eta_seconds is None  # one point: no rate yet
    time.sleep(0.2)
    progress.samples_committed = 20
    eta = progress.eta_seconds
    # 10 samples since the first 10: 80 left take 8 times that (~1.6 s here), where the rate from
    # the start, load included, would say over 2,400 s. Generous for a loaded machine.
    assert eta is not None and 0 < eta < 240
