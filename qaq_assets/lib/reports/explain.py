"""Why a sample was kept or dropped: its decision, its place in its stratum, its scores, and the
query's tokens marked by how much reading the answer first made each one predictable,
``log p(q_t | A, q_<t) - log p(q_t | q_<t)``: from the stored per-token log-probs, or, where
scoring kept each span's sum only (``keep_token_logprobs`` off, the default), scored again on
demand by the model that scored the sample."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from qaq_assets.lib.ingest.execution.run_tests import AGREED, RAISED, RAN
from qaq_assets.lib.reports.export import lineage_record, with_text
from qaq_assets.lib.reports.resolve import resolve_sample
from qaq_assets.lib.scoring.token_lists import with_token_lists
from qaq_assets.lib.selection.rules import KEEP
from qaq_assets.lib.store.columns import EXPLAINED_SCORES
from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, QAQ_SCORES, SAMPLE_FEATURES, TOKEN_LOGPROBS

if TYPE_CHECKING:  # the scoring backend imports torch: only where a token view is scored again
    from qaq_assets.lib.scoring.backends.local import ScoringBackend

NOT_KEPT = (
    "(not kept: scored with keep_token_logprobs off, which stores each span's sum only; configure the model "
    "that scored it (--model) to have them scored now)"
)
# Where the per-token log-probs were not kept (the default), for the UI's examples.
TOKENS_ON_DEMAND = "query tokens: not kept at scoring (keep_token_logprobs off); `qaq explain {sample}` scores them"
SCORED_NOW = "scored now by the model that scored the sample (keep_token_logprobs off stores each span's sum only)"


@dataclass
class Explanation:
    row: dict  # the curated row, with its text
    scores: dict  # the strong model's qaq_scores row (empty if none)
    band: tuple[float, float] | None  # rmi_rank range of the kept samples of the row's stratum
    query_tokens: list[tuple[str, float]]  # (token text, log-prob gained from reading the answer)
    curated_version: int
    model_key: str
    execution: dict | None = None  # the answer run against its tests (sample_features' exec_* columns)
    tokens_kept: bool = True  # False: scored with keep_token_logprobs off (its sums only)
    tokens_note: str = ""  # where the token view came from when it was not stored


def find(lake: Lake, key: str, version: int | str | None = None) -> tuple[dict, dict]:
    """The curated row ``key`` names (see :func:`resolve_sample`) in ``version``, and that
    version's lineage."""
    lineage = lineage_record(lake, version)
    rows = resolve_sample(lake, key, lineage["curated_version"], lineage["input_versions"].get("raw_samples"))
    return with_text(lake, rows.head(1), lineage).row(0, named=True), lineage


def explain_row(
    lake: Lake, row: dict, lineage: dict, tokenizer=None, scorer: Callable[[], ScoringBackend] | None = None
) -> Explanation:
    """Everything behind the decision on a curated ``row`` (with its text; see :func:`find`) of the
    version ``lineage`` describes; ``tokenizer`` (the strong model's) names the query's tokens,
    else they are shown by position. ``scorer`` opens the strong model's backend: where the lists
    were not kept, it scores the sample again for its token view (if it is the model, template
    and sequence limit that scored it)."""
    model_key = lineage["models"][0]["model_key"]
    versions = lineage["input_versions"]
    where = (pl.col("model_key") == model_key) & (pl.col("shard") == row["shard"])
    where &= pl.col("sample_id") == row["sample_id"]
    scores = lake.scan(QAQ_SCORES, versions.get("qaq_scores")).filter(where).collect()
    stored = lake.scan(TOKEN_LOGPROBS).filter(where).select(TOKEN_LOGPROBS.schema.names()).collect()
    logprobs = with_token_lists(lake, stored.head(1)).select("query_logprobs", "query_given_answer_logprobs")
    tokens: list[tuple[str, float]] = []
    tokens_kept = not logprobs.height or logprobs["query_logprobs"][0] is not None
    lists, note = (logprobs.row(0) if logprobs.height and tokens_kept else None), ""
    if logprobs.height and not tokens_kept and scorer is not None:
        lists, note = _scored_now(scorer, stored.row(0, named=True), row)
    if lists is not None:
        alone, after_answer = lists
        names = _token_texts(tokenizer, row["instruction"], len(alone))
        tokens = [(name, given - plain) for name, plain, given in zip(names, alone, after_answer, strict=True)]
    band = None
    if row.get("stratum") is not None:
        kept = lake.scan(CURATED_SUBSET, lineage["curated_version"]).filter(
            (pl.col("stratum") == row["stratum"]) & (pl.col("decision") == KEEP)
        )
        edges = kept.select(low=pl.col("rmi_rank").min(), high=pl.col("rmi_rank").max()).collect().row(0)
        band = None if edges[0] is None else edges
    return Explanation(
        row=row,
        scores=scores.row(0, named=True) if scores.height else {},
        band=band,
        query_tokens=tokens,
        curated_version=lineage["curated_version"],
        model_key=model_key,
        execution=_execution(lake, row, versions.get("sample_features")),
        tokens_kept=tokens_kept,
        tokens_note=note,
    )


def _scored_now(scorer: Callable[[], ScoringBackend], stored: dict, row: dict) -> tuple[tuple | None, str]:
    """The query's log-probs alone and after the answer, scored again by the backend ``scorer``
    opens, with a line saying so; none where that backend would not reproduce the stored scores."""
    backend = scorer()
    try:
        key = backend.identity.score_key()
        differs = [name for name, value in key.items() if stored.get(name) not in (None, value)]
        if differs:
            return (
                None,
                f"(not kept, and the configured model differs from the one that scored it in {', '.join(differs)})",
            )
        scored = next(iter(backend.score_chunks([([row["instruction"]], [row["response"]])])))
    finally:
        backend.close()
    pair = scored.logprobs[0]
    return (pair.query.tolist(), pair.query_given_answer.tolist()), SCORED_NOW


def _execution(lake: Lake, row: dict, version: int | None) -> dict | None:
    scan = lake.scan(SAMPLE_FEATURES, version)
    columns = ("exec_status", "exec_detail", "exec_passed", "exec_total")
    if not set(columns) <= set(scan.collect_schema().names()):
        return None  # features of an older release
    found = scan.filter((pl.col("shard") == row["shard"]) & (pl.col("row_index") == row["row_index"]))
    found = found.select(columns).collect()
    return found.row(0, named=True) if found.height else None


def execution_line(execution: dict | None) -> str:
    """``tests: failed, 1 of 3 passed: assert f(2) == 4: AssertionError (got 5)``, or for an
    answer without tests run alone, ``run alone: raised: the answer's code raised TypeError: ...``."""
    if not execution or execution["exec_status"] is None:
        return "tests: not recorded"
    alone = execution["exec_status"] in (RAN, RAISED, AGREED)
    line = f"{'run alone' if alone else 'tests'}: {execution['exec_status']}"
    if execution["exec_total"]:
        line += f", {execution['exec_passed']} of {execution['exec_total']} passed"
    return line + (f": {execution['exec_detail']}" if execution["exec_detail"] else "")


def _token_texts(tokenizer, text: str, count: int) -> list[str]:
    if tokenizer is None:
        return [f"#{i}" for i in range(count)]
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:count]
    names = [tokenizer.decode([token_id]) for token_id in ids]
    return names + [f"#{i}" for i in range(len(names), count)]


def _score_lines(explained: Explanation) -> list[str]:
    row, scores = explained.row, explained.scores
    lines = [
        f"{row['shard']}:{row['row_index']} sample {row['sample_id']} (curated_subset v{explained.curated_version},"
        f" model {explained.model_key})",
        f"decision: {row['decision']} ({row['reason_code']}): {row['reason']}",
    ]
    if row.get("stratum") is not None:
        low_high = explained.band
        band = "" if low_high is None else f"; kept band of its stratum {low_high[0]:.3f}-{low_high[1]:.3f}"
        lines.append(f"stratum {row['stratum']} of NLL(Q); RMI rank {row['rmi_rank']:.3f}{band}")
    values = ", ".join(f"{name} {scores[name]:.3f}" for name in EXPLAINED_SCORES if scores.get(name) is not None)
    lines.append(f"scores: {values or 'none'}; code: {row.get('code_status')}")
    lines.append(execution_line(explained.execution))
    return lines


def text_report(explained: Explanation, colour: bool = False) -> str:
    """The explanation as terminal text; the query's tokens coloured (green: the answer made the
    token more predictable, red: less) or, without colour, each followed by its gain."""
    parts = []
    for name, gain in explained.query_tokens:
        shown = name.replace("\n", "\\n")
        if colour:
            code = 32 if gain > 0.5 else 31 if gain < -0.5 else 0
            parts.append(f"\x1b[{code}m{shown}\x1b[0m")
        else:
            parts.append(f"{shown}({gain:+.2f})")
    query = "".join(parts) if colour else " ".join(parts)
    lines = _score_lines(explained)
    missing = "(no token log-probs)" if explained.tokens_kept else explained.tokens_note or NOT_KEPT
    heading = "query, token by token (log-prob gained by reading the answer first)"
    if query and explained.tokens_note:
        heading += f", {explained.tokens_note}"
    lines += [f"{heading}:", query or missing]
    return "\n".join(lines)


def html_fragment(explained: Explanation) -> str:
    """The explanation as an HTML fragment: each query token's background green or red by its gain."""
    spans = []
    for name, gain in explained.query_tokens:
        strength = min(abs(gain) / 4, 1.0)
        colour = f"rgba(43,138,62,{strength:.2f})" if gain > 0 else f"rgba(224,49,49,{strength:.2f})"
        spans.append(f'<span title="{gain:+.2f}" style="background:{colour}">{html.escape(name)}</span>')
    lines = "".join(f"<div>{html.escape(line)}</div>" for line in _score_lines(explained))
    return f'<div class="explain">{lines}<pre style="white-space:pre-wrap">{"".join(spans)}</pre></div>'


def _markdown_cell(text: str) -> str:
    shown = text.replace("\n", "\\n").replace("|", "\\|").replace("`", "'").strip() or "␠"
    return f"`{shown}`"


def _shortened(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_fragment(explained: Explanation, tokens: int = 6) -> str:
    """The explanation as Markdown (what the Dagster UI renders): the decision, the scores, and
    the query tokens the answer made most and least predictable."""
    row = explained.row
    lines = [f"#### {row['decision']} · {row['shard']}:{row['row_index']} · {row['reason_code']}", ""]
    lines += [f"> **Q** {_markdown_cell(_shortened(row['instruction'], 240))}", ">"]
    lines += [f"> **A** {_markdown_cell(_shortened(row['response'], 360))}", ""]
    lines += [f"- {line}" for line in _score_lines(explained)[1:]]
    gains = sorted(explained.query_tokens, key=lambda item: -item[1])
    shown = [item for item in gains[:tokens] if item[1] > 0] + [
        item for item in gains[::-1][: tokens // 2] if item[1] < 0
    ]
    if shown:
        lines += ["", "| query token | log-prob gained by reading the answer first |", "|---|---|"]
        lines += [f"| {_markdown_cell(name)} | {gain:+.2f} |" for name, gain in shown]
    elif not explained.tokens_kept:
        sample = f"{row['shard']}:{row['row_index']}"
        lines.append(f"- {TOKENS_ON_DEMAND.format(sample=sample)}")
    return "\n".join(lines) + "\n"


def examples(lake: Lake, version: int | None = None, tokenizer=None, each: int = 3) -> list[Explanation]:
    """Explanations of the top ``each`` kept samples and of one dropped sample per reason that
    occurred (the band's two sides, cut off, other language, tests failed, duplicate, ...)."""
    lineage = lineage_record(lake, version)
    curated = lake.scan(CURATED_SUBSET, lineage["curated_version"])
    order = (["keep_score", "sample_id"], [True, False])
    kept = curated.filter(pl.col("decision") == KEEP).sort(order[0], descending=order[1], nulls_last=True).head(each)
    dropped = (
        curated.filter(pl.col("decision") != KEEP)
        .sort(["reason_code", *order[0]], descending=[False, *order[1]], nulls_last=True)
        .group_by("reason_code", maintain_order=True)
        .head(1)
    )
    picks = [kept.collect(), dropped.collect()]
    chosen = with_text(lake, pl.concat(picks, how="diagonal_relaxed"), lineage)  # one read of the text
    return [explain_row(lake, row, lineage, tokenizer) for row in chosen.iter_rows(named=True)]
