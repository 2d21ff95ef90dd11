"""How the command line runs the asset graph: its jobs in process, in batches of partitions, with
dead runs reaped, pool waits bounded and stop signals honoured. Dagster wiring lives in defs/."""
