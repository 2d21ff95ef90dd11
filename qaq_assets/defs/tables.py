"""The lake's tables as Dagster shows them: one asset spec per table, with its columns, written
by the step that writes it, so the UI's lineage is the data flow."""

import dagster as dg

from qaq_assets.lib.store.tables import TableSpec


def column_schema(table: TableSpec) -> dg.TableSchema:
    """The table's columns and their types, as the asset's page lists them."""
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in table.schema.items()])


def table_metadata(table: TableSpec) -> dict:
    """What the UI shows of a table: its columns and its name."""
    return {"dagster/column_schema": column_schema(table), "dagster/table_name": table.name}


def table_spec(table: TableSpec, description: str, kinds=frozenset({"polars", "deltalake"}), **spec) -> dg.AssetSpec:
    """``table`` as an asset (the Delta table of that name in the lake), written with ``kinds``;
    ``spec``: AssetSpec's other fields (group, deps, automation condition)."""
    return dg.AssetSpec(table.name, description=description, kinds=set(kinds), metadata=table_metadata(table), **spec)
