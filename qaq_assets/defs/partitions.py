"""Partitions: one dynamic partition per landed shard file, crossed with the scoring models."""

import dagster as dg

SHARDS = "shards"
shard_partitions = dg.DynamicPartitionsDefinition(name=SHARDS)


def shard_model_partitions(model_keys: list[str]) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"model": dg.StaticPartitionsDefinition(model_keys), "shard": shard_partitions})


def shard_and_model(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["shard"], keys["model"]
