"""Jobs over the asset graph, one per stage: what sensors, schedules and the CLI launch."""

import dagster as dg

from qaq_assets.defs.partitions import shard_partitions

# Each stage's group: the tables its steps write together.
ingest_job = dg.define_asset_job(
    "ingest_job", selection=dg.AssetSelection.groups("ingest"), partitions_def=shard_partitions
)
scoring_job = dg.define_asset_job("scoring_job", selection=dg.AssetSelection.groups("scoring"))
curation_job = dg.define_asset_job("curation_job", selection=dg.AssetSelection.groups("selection"))
