"""The lake's upkeep as a job and a nightly schedule: small files compacted, logs checkpointed."""

import dagster as dg

from qaq_assets.defs.resources import LakeResource
from qaq_assets.lib.store.compaction import compact_lake


@dg.op(description="Merge each table's small files (Delta OPTIMIZE) and checkpoint its log.")
def compact_tables(context: dg.OpExecutionContext, lake: LakeResource) -> None:
    compacted = compact_lake(lake.lake())
    for table in compacted:
        context.log.info(table.line())
    context.add_output_metadata(
        {"tables_compacted": len(compacted), "files_merged": sum(t.files_removed for t in compacted)}
    )


@dg.job(description="Compact the lake's small files; older versions stay readable (nothing is vacuumed).")
def compaction_job() -> None:
    compact_tables()


compaction_schedule = dg.ScheduleDefinition(
    name="compact_nightly",
    job=compaction_job,
    cron_schedule="30 4 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Merge small files every night (each run commits a file per table; a landing directory "
    "receiving a few files at a time would otherwise grow thousands).",
)
