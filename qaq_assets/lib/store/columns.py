"""The column contract: what each stage writes that a later stage reads, declared once.

- :data:`MODEL_IDENTITY`: which model, weights, template and sequence limit scored a row
  (``token_logprobs`` and ``qaq_scores`` carry it; curation refuses a model whose rows mix them);
- :data:`SCORES`: the per-sample scores of ``qaq_scores``, each with who reads it (the scores
  check, the selection rules, ``qaq explain``, the evaluation's single-signal AUROCs);
- :data:`SELECTION_FEATURES`: the ``sample_features`` columns selection reads beside the scores.

``tables.py`` builds the schemas from these, and every reader selects by these names, so a new
score is declared here, computed in ``lib/scoring/metrics.py`` and read by the rule that uses it
(``docs/architecture.md``, "Adding a ..."). Why a row was kept or dropped is the other half of
the contract: ``lib/selection/reasons.py``'s ``ReasonCode``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# The scoring model's identity, in each score row: what a score is keyed by (besides the text).
MODEL_IDENTITY: dict[str, pl.DataType] = {
    "model_id": pl.String,
    "weights_sha256": pl.String,
    "dtype": pl.String,
    "model_fingerprint": pl.String,
    "template_version": pl.String,
    "max_sequence_tokens": pl.Int32,
}

# Lower is cleaner (a negated column), or higher.
LOWER_IS_CLEANER, HIGHER_IS_CLEANER = "lower", "higher"


@dataclass(frozen=True)
class Score:
    """One per-sample score column of ``qaq_scores`` (nats, Float64) and who reads it."""

    name: str
    meaning: str
    # The scores check fails on a null or non-finite value; a score that is null by design (no
    # signal) or can overflow (a ratio of exponentials) is not held to it.
    always_finite: bool = True
    read_by_rules: bool = False
    explained: bool = False  # shown by ``qaq explain``
    curated: bool = False  # copied into each curated version's rows (its plots, summary and export)
    # Evaluated alone as a ranking (AUROC of clean over defective), oriented this way.
    signal: str | None = None
    signal_label: str | None = None

    def oriented(self) -> pl.Expr:
        """The score as a ranking where higher looks cleaner."""
        return -pl.col(self.name) if self.signal == LOWER_IS_CLEANER else pl.col(self.name)


SCORES: tuple[Score, ...] = (
    Score("nll_query", "mean -log p(Q) per query token", read_by_rules=True, explained=True, curated=True),
    Score("nll_query_given_answer", "mean -log p(Q | A), the answer read first", explained=True),
    Score("nll_answer", "mean -log p(A) per answer token"),
    Score(
        "nll_answer_given_query",
        "mean -log p(A | Q)",
        read_by_rules=True,
        signal=LOWER_IS_CLEANER,
        signal_label="-nll_answer_given_query",
    ),
    Score(
        "nll_answer_end",
        "-log p(end of turn | Q, A): the completeness signal (null for a truncated answer)",
        always_finite=False,
        read_by_rules=True,
        explained=True,
        signal=LOWER_IS_CLEANER,
        signal_label="completeness: -nll_answer_end",
    ),
    Score(
        "rmi",
        "nll_query - nll_query_given_answer (QAQ's reverse mutual information)",
        read_by_rules=True,
        explained=True,
        curated=True,
        signal=HIGHER_IS_CLEANER,
        signal_label="rmi",
    ),
    Score(
        "ifd_loss",
        "nll_answer_given_query / nll_answer (Cherry LLM's IFD)",
        read_by_rules=True,
        explained=True,
        curated=True,
    ),
    Score(
        "ifd_ppl",
        "exp(nll_answer_given_query - nll_answer) (Superfiltering's perplexity ratio)",
        always_finite=False,
        explained=True,
    ),
)

SCORE_COLUMNS = tuple(score.name for score in SCORES)
FINITE_SCORES = tuple(score.name for score in SCORES if score.always_finite)
RULE_SCORES = tuple(score.name for score in SCORES if score.read_by_rules)
EXPLAINED_SCORES = tuple(score.name for score in SCORES if score.explained)
CURATED_SCORES = tuple(score.name for score in SCORES if score.curated)
# Summarised in the run's metadata: what explain shows, where every value is a number.
SUMMARISED_SCORES = tuple(score.name for score in SCORES if score.explained and score.always_finite)
SIGNALS: dict[str, pl.Expr] = {score.signal_label: score.oriented() for score in SCORES if score.signal}

# The sample_features columns selection reads beside the scores: the rules' checks and reasons.
# A table written before one existed reads it as null (unknown), which no check holds against.
SELECTION_FEATURES: dict[str, pl.DataType] = {
    # Whether the answer's code parses, is cut off, a stub, another language, ... (codecheck.py).
    "code_status": pl.String,
    # The language of the answer's code, and the one the instruction names (null: none).
    "answer_language": pl.String,
    "requested_language": pl.String,
    # Does the answer's function take the asked-for parameters and use them? (match, mismatch,
    # unused, missing, unknown)
    "signature_status": pl.String,
    # How the answer ends (fence, prose, code): completeness compares answers of one kind.
    "answer_ending": pl.String,
    # The answer run against its record's tests or its instruction's examples, in the sandbox
    # (lib/ingest/execution): passed, failed, error, timeout, raised, ran or not_run; the first
    # failing test and why (or why not run).
    "exec_status": pl.String,
    "exec_detail": pl.String,
}
# The selection features with a few distinct values (statuses, languages): curation holds them as
# categories while it reads and deduplicates, 4 bytes a row instead of a string's 16.
FEW_VALUED_FEATURES = tuple(name for name in SELECTION_FEATURES if name != "exec_detail")
