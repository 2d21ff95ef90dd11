"""The column contract (lib/store/columns.py) holds the tables, the rules, explain, the evaluation
and the checks: each reads by the contract's names, and what the contract declares is written."""

import math

import polars as pl
import pytest

from qaq_assets.lib.reports.evaluation import evaluate
from qaq_assets.lib.reports.explain import Explanation, text_report
from qaq_assets.lib.scoring.metrics import scores_from_logprobs
from qaq_assets.lib.selection.config import DIFF, STRATEGIES, SelectionConfig
from qaq_assets.lib.selection.curation import Candidates
from qaq_assets.lib.selection.rules import select
from qaq_assets.lib.store.columns import (
    CURATED_SCORES,
    EXPLAINED_SCORES,
    FINITE_SCORES,
    MODEL_IDENTITY,
    RULE_SCORES,
    SCORE_COLUMNS,
    SCORES,
    SELECTION_FEATURES,
    SIGNALS,
)
from qaq_assets.lib.store.tables import (
    CURATED_SUBSET,
    QAQ_SCORES,
    SAMPLE_FEATURES,
    TOKEN_LISTS,
    TOKEN_LOGPROBS,
    TOKEN_SUMS,
)


def test_the_tables_hold_what_the_contract_declares():
    assert {name: QAQ_SCORES.schema[name] for name in SCORE_COLUMNS} == dict.fromkeys(SCORE_COLUMNS, pl.Float64)
    for table in (TOKEN_LOGPROBS, QAQ_SCORES):
        assert {name: table.schema[name] for name in MODEL_IDENTITY} == MODEL_IDENTITY, table.name
    assert {name: SAMPLE_FEATURES.schema[name] for name in SELECTION_FEATURES} == SELECTION_FEATURES
    assert set(CURATED_SCORES) <= set(CURATED_SUBSET.schema.names())
    assert len(set(SCORE_COLUMNS)) == len(SCORES)


def _token_rows(truncated: bool) -> pl.LazyFrame:
    # Rows with their lists, as with_token_lists gives them.
    schema = {**TOKEN_LOGPROBS.schema, **TOKEN_LISTS, **TOKEN_SUMS}
    base = dict.fromkeys(schema)
    row = {
        **base,
        "sample_id": "a",
        "answer_truncated": truncated,
        "query_logprobs": [-1.0, -3.0],
        "query_given_answer_logprobs": [-1.0, -1.0],
        "answer_logprobs": [-2.0, -2.0],
        "answer_given_query_logprobs": [-1.0, -2.0],
        "answer_end_logprobs": [-0.5],
    }
    return pl.DataFrame([row], schema=schema).lazy()


def test_scoring_writes_every_declared_score_and_the_finite_ones_are_finite():
    whole = scores_from_logprobs(_token_rows(truncated=False)).collect()
    assert whole.columns == QAQ_SCORES.schema.names()
    assert all(math.isfinite(whole[name][0]) for name in SCORE_COLUMNS)
    cut = scores_from_logprobs(_token_rows(truncated=True)).collect()
    # Scores not held to being finite may be null by design: the end of a cut answer is no signal.
    assert cut["nll_answer_end"][0] is None and "nll_answer_end" not in FINITE_SCORES
    assert all(math.isfinite(cut[name][0]) for name in FINITE_SCORES)


def _candidates(rows: int = 60) -> pl.DataFrame:
    """Exactly the columns the contract says selection reads, nothing else."""
    return pl.DataFrame(
        {
            "shard": ["s"] * rows,
            "sample_id": [f"id{i:03d}" for i in range(rows)],
            **{
                name: [((i * 7919 + 13 * k) % 97) / 10 + 0.1 for i in range(rows)] for k, name in enumerate(RULE_SCORES)
            },
            "code_status": ["valid"] * rows,
            **{name: [None] * rows for name in SELECTION_FEATURES if name != "code_status"},
        },
        schema_overrides={name: dtype for name, dtype in SELECTION_FEATURES.items()},
    )


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != DIFF] + [DIFF])
def test_every_rule_runs_on_the_contract_columns_alone(strategy):
    frame = _candidates()
    decided = select(strategy, frame, frame if strategy == DIFF else None, SelectionConfig(min_stratum_size=5))
    assert decided.height == frame.height and decided["decision"].is_in(["keep", "drop"]).all()


def test_explain_shows_the_declared_scores():
    scores = {name: float(i) + 0.5 for i, name in enumerate(SCORE_COLUMNS)}
    row = {
        "shard": "s",
        "row_index": 0,
        "sample_id": "a",
        "decision": "keep",
        "reason_code": "rmi_in_band",
        "reason": "rmi_in_band",
        "code_status": "valid",
        "instruction": "q",
        "response": "a",
    }
    text = text_report(Explanation(row, scores, None, [], 1, "m"))
    shown = {name for name in SCORE_COLUMNS if f"{name} {scores[name]:.3f}" in text}
    assert shown == set(EXPLAINED_SCORES)


def test_the_evaluation_ranks_by_each_declared_signal():
    frame = _candidates(40).with_columns(
        label=pl.when(pl.int_range(pl.len()) % 4 == 0).then(pl.lit("chatty")).otherwise(pl.lit("clean"))
    )
    candidates = Candidates(
        canonical=frame.select("shard", "sample_id", "label").with_columns(row_index=pl.int_range(pl.len())),
        dropped=pl.DataFrame(),
        strong=frame.drop("label"),
        weak=None,
        shards=["s"],
        pending_shards=[],
        input_versions={},
        models=[],
        benchmarks=[],
    )
    evaluation = evaluate(candidates, [0.25], strategies=["random"])
    assert set(evaluation.signals["signal"]) == set(SIGNALS) == {s.signal_label for s in SCORES if s.signal}
