"""Plain-text views of a curated version: decisions by reason and, when the data carries
planted labels, how many defects the selection removed."""

from __future__ import annotations

import base64
import html
import json

import polars as pl

from qaq_assets.lib.errors import LakeError
from qaq_assets.lib.selection.curation import with_reason_code
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET

CLEAN_LABELS = ("none", "clean", "")


def markdown_counts(frame: pl.DataFrame, column: str) -> str:
    """A Markdown table of rows per value of ``column`` (for run metadata)."""
    counts = frame.group_by(column).len().sort("len", descending=True)
    lines = [f"| {column} | rows |", "|---|---|"]
    lines += [f"| {value} | {n} |" for value, n in counts.iter_rows()]
    return "\n".join(lines)


def label_table(curated: pl.DataFrame) -> pl.DataFrame:
    """Per label: rows in the input, rows kept, and the share of them removed."""
    return (
        curated.filter(pl.col("label").is_not_null())
        .group_by("label")
        .agg(input=pl.len(), kept=(pl.col("decision") == KEEP).sum())
        .with_columns(removed_pct=(100 * (1 - pl.col("kept") / pl.col("input"))).round(1))
        .sort("label")
    )


def defect_rates(curated: pl.DataFrame) -> tuple[float, float] | None:
    """Defect rate of the input and of the kept set, over labelled rows."""
    labelled = curated.filter(pl.col("label").is_not_null())
    if labelled.height == 0:
        return None
    defect = ~pl.col("label").is_in(CLEAN_LABELS)
    kept = labelled.filter(pl.col("decision") == KEEP)
    rate_in = labelled.select(defect.mean()).item()
    rate_kept = kept.select(defect.mean()).item() if kept.height else 0.0
    return float(rate_in), float(rate_kept)


def summary_text(lake: Lake, version: int | str | None = None) -> str:
    from qaq_assets.lib.reports.export import lineage_record

    version = lineage_record(lake, version)["curated_version"]  # one check for every command
    curated = lake.scan(CURATED_SUBSET, version).collect()
    if curated.height == 0:
        return f"curated_subset version {version} is empty: no shard was scored by every model"
    kept = curated.filter(pl.col("decision") == KEEP).height
    lines = [
        f"curated_subset version {version}: {curated.height} rows, {kept} kept "
        f"({100 * kept / curated.height:.1f}%), strategy {curated['strategy'][0]}",
        "",
        "decisions by reason:",
    ]
    by_reason = with_reason_code(curated).group_by("decision", "reason_code").len().sort("len", descending=True)
    lines += [f"  {decision:5} {reason:24} {n}" for decision, reason, n in by_reason.iter_rows()]
    rates = defect_rates(curated)
    if rates is not None:
        lines += ["", "planted labels (never read by scoring):"]
        lines += [
            f"  {label:16} input {n_in:4}  kept {n_kept:4}  removed {pct:5.1f}%"
            for label, n_in, n_kept, pct in label_table(curated).iter_rows()
        ]
        unlabelled = curated.filter(pl.col("label").is_null())
        if unlabelled.height:
            unlabelled_kept = unlabelled.filter(pl.col("decision") == KEEP).height
            lines.append(
                f"  {'(no label)':16} input {unlabelled.height:4}  kept {unlabelled_kept:4}  (not in the defect rate)"
            )
        lines.append(f"  defect rate: input {100 * rates[0]:.1f}% -> kept {100 * rates[1]:.1f}%")
    return "\n".join(lines)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:boundary] if boundary > limit // 2 else cut).rstrip() + "…"


def top_kept(curated: pl.DataFrame, count: int = 10) -> pl.DataFrame:
    """The kept rows the selection ranked highest (``keep_score``, ties by sample id)."""
    return (
        curated.filter(pl.col("decision") == KEEP)
        .sort(["keep_score", "sample_id"], descending=[True, False], nulls_last=True)
        .head(count)
    )


def _changes_since_previous(lake: Lake, version: int) -> str:
    from qaq_assets.lib.reports.resolve import previous_version
    from qaq_assets.lib.reports.version_diff import diff_versions, summary_lines

    previous = previous_version(lake, version)
    if previous is None:
        return "the first curated version: nothing to compare it with"
    try:
        return "\n".join(summary_lines(diff_versions(lake, previous, version)))
    except LookupError as error:
        return str(error)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def html_report(lake: Lake, version: int | str | None = None, tokenizer=None) -> str:
    """A self-contained HTML page (plots embedded) of one curated version and its lineage."""
    from qaq_assets.lib.reports.explain import examples, html_fragment
    from qaq_assets.lib.reports.export import lineage_record, with_text
    from qaq_assets.lib.reports.plots import curation_png
    from qaq_assets.lib.reports.resolve import resolve_version

    version = resolve_version(lake, version)
    curated = lake.scan(CURATED_SUBSET, version).collect()
    if curated.height == 0:
        raise LakeError(f"curated_subset version {version} in {lake.root} is empty")
    try:
        record = lineage_record(lake, version)
        lineage = json.dumps(record, indent=2, default=str)
        kept = with_text(lake, top_kept(curated), record)
    except LookupError as error:
        lineage = str(error)
        kept = top_kept(curated).with_columns(instruction=pl.lit("(text unknown: no lineage)"), response=pl.lit(""))
    picture = base64.b64encode(curation_png(curated)).decode()
    try:
        explained = "".join(html_fragment(item) for item in examples(lake, version, tokenizer))
    except LookupError as error:
        explained = html.escape(str(error))
    rows = "".join(
        f"<tr><td class=id>{html.escape(r['shard'])}:{r['row_index']}</td><td>{_number(r['keep_score'])}</td>"
        f"<td>{'' if r.get('stratum') is None else r['stratum']}</td><td>{_number(r.get('rmi_rank'))}</td>"
        f"<td>{_number(r['rmi'])}</td><td><pre>{html.escape(shorten(r['instruction'], 300))}</pre></td>"
        f"<td><pre>{html.escape(shorten(r['response'], 400))}</pre></td></tr>"
        for r in kept.iter_rows(named=True)
    )
    changes = _changes_since_previous(lake, version)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>qaq-assets curation v{version}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}pre{{white-space:pre-wrap;margin:0}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
td.id{{white-space:nowrap}}</style></head>
<body><h1>Curated subset, Delta version {version}</h1>
<pre>{html.escape(summary_text(lake, version))}</pre>
<h2>Scores and decisions</h2>
<img alt="RMI, NLL(Q) and decisions" src="data:image/png;base64,{picture}" style="max-width:100%">
<h2>Kept samples (top {len(kept)} by keep_score)</h2>
<p>keep_score is the closeness of the sample's RMI rank to its stratum band's middle (band rules), the
strong/weak rank difference (diff), or the baseline's own score: ties are common, and rank within the
stratum says more.</p>
<table><tr><th>row</th><th>keep_score</th><th>stratum</th><th>RMI rank in stratum</th><th>rmi</th><th>instruction</th>
<th>response</th></tr>{rows}</table>
<h2>What changed since the previous version</h2><pre>{html.escape(changes)}</pre>
<h2>Why: a few kept and dropped samples</h2>
<p>Each query token is shaded by how much reading the answer first made it more (green) or less (red)
predictable: log p(q_t | A, q_&lt;t) - log p(q_t | q_&lt;t), from the stored token log-probs.</p>
{explained}
<h2>Lineage</h2><pre>{html.escape(lineage)}</pre></body></html>
"""
