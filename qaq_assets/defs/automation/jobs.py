"""Jobs over the asset graph, one per stage: what sensors, schedules and the CLI launch."""

import dagster as dg

from qaq_assets.defs.partitions import shard_partitions

ingest_job = dg.define_asset_job("ingest_job", selection=["raw_samples"], partitions_def=shard_partitions)
scoring_job = dg.define_asset_job("scoring_job", selection=["token_logprobs", "qaq_scores"])
curation_job = dg.define_asset_job("curation_job", selection=["curated_subset"])
