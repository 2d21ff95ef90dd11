"""Scoring on a real local Ray cluster gives exactly the local backend's scores."""

import polars as pl
import pytest

from qaq_assets.lib.ingest.shard_reader import read_shard
from qaq_assets.lib.scoring.backends.local import LocalBackend, ScorerOptions
from qaq_assets.lib.scoring.engine.models import ModelSpec
from qaq_assets.lib.scoring.engine.scorer import PairScorer
from qaq_assets.lib.scoring.engine.templates import build_layouts
from qaq_assets.lib.scoring.shard_scoring import score_shard
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import SCORE_CACHE
from qaq_assets_tests.helpers import CODE_PAIRS, FUSED_FORWARD, TINY, rows_of

ray = pytest.importorskip("ray", reason="the ray backend needs Ray: pip install 'qaq-assets[ray]'")

pytestmark = pytest.mark.slow  # a Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as error:  # noqa: BLE001 - any failure to start means this machine cannot run Ray
        pytest.skip(f"Ray cannot start on this machine: {error}")
    yield ray.cluster_resources()
    ray.shutdown()


def test_ray_replicas_score_exactly_like_the_local_backend(ray_cluster, tmp_path, make_shard, tiny_model):
    from qaq_assets.lib.scoring.backends.ray import RayBackend

    assert ray_cluster["CPU"] == 2
    samples = read_shard(make_shard("s", CODE_PAIRS), "s").samples
    layouts = build_layouts("auto", tiny_model.tokenizer)
    local = score_shard(
        Lake(tmp_path / "local"),
        samples,
        "s",
        LocalBackend(
            tiny_model, PairScorer(tiny_model.model, layouts, tiny_model.tokenizer.pad_token_id), ScorerOptions()
        ),
        commit_every=3,
    )

    backend = RayBackend(ModelSpec.parse(TINY), device="cpu", dtype="float32", replicas=2)
    try:
        assert len(backend.actors) == 2
        assert backend.identity.fingerprint == tiny_model.fingerprint
        assert backend.describe_forward().startswith(FUSED_FORWARD)
        ray_lake = Lake(tmp_path / "ray")
        remote = score_shard(ray_lake, samples, "s", backend, commit_every=3)
    finally:
        backend.close()
    assert remote.samples_scored == len(CODE_PAIRS) and remote.forward_calls > 0
    assert rows_of(remote).equals(rows_of(local))  # row by row, every log-prob
    # Same cache schema and chunked commits: 12 samples in chunks of 3.
    history = ray_lake.delta_table(SCORE_CACHE).history()
    assert sum(1 for h in history if h["operationParameters"].get("mode") == "Append") == 4


def test_the_graph_scores_on_ray_when_configured(ray_cluster, lake, make_shard):
    import dagster as dg

    from qaq_assets.definitions import build_assets, build_resources
    from qaq_assets.defs.partitions import SHARDS
    from qaq_assets.lib.settings import Settings
    from qaq_assets.lib.store.tables import QAQ_SCORES
    from qaq_assets_tests.helpers import register_files

    settings = Settings(lake=lake.root, models=(TINY,), dtype="float32", backend="ray", ray_replicas=2)
    resources, assets = build_resources(settings), build_assets(settings)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SHARDS, register_files(lake, [make_shard("s", CODE_PAIRS)]))
    assert dg.materialize([assets[0]], partition_key="s", instance=instance, resources=resources).success
    key = dg.MultiPartitionKey({"shard": "s", "model": "tiny"})
    result = dg.materialize(assets[1:3], partition_key=key, instance=instance, resources=resources)
    assert result.success
    assert result.asset_materializations_for_node("token_logprobs")[0].metadata["backend"].value == "ray"
    assert lake.scan(QAQ_SCORES).select(pl.len()).collect().item() == len(CODE_PAIRS)
