"""Partitions: one dynamic partition per landed shard file, crossed with the scoring models."""

import dagster as dg

SHARDS = "shards"
MULTI_KEY_SEPARATOR = "|"
# Tags that make a run materialize a range of partitions (Dagster's single-run backfills).
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
shard_partitions = dg.DynamicPartitionsDefinition(name=SHARDS)


def shard_model_partitions(model_keys: list[str]) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"model": dg.StaticPartitionsDefinition(model_keys), "shard": shard_partitions})


def shards_by_model(context: dg.AssetExecutionContext) -> dict[str, list[str]]:
    """The shards of a run's partitions (one, or a range), by model."""
    shards: dict[str, list[str]] = {}
    for key in context.partition_keys:
        model, shard = key.split(MULTI_KEY_SEPARATOR)  # dimensions in name order: model|shard
        shards.setdefault(model, []).append(shard)
    return shards
