"""The naive reference every peer uses (Cherry_LLM, Data-Juicer): one sample per forward
pass, four separate passes for NLL(Q), NLL(A|Q), NLL(A) and NLL(Q|A), full-vocabulary
log-softmax over every position. Used to check and to time the project's scorer."""

from __future__ import annotations

import numpy as np
import torch

from qaq_assets.lib.scoring.engine.scorer import PairLogprobs, PairTokens
from qaq_assets.lib.scoring.engine.templates import TemplateLayouts


def _span_logprobs(model: torch.nn.Module, context: list[int], span: tuple[int, ...]) -> np.ndarray:
    ids = torch.tensor([list(context) + list(span)], device=next(model.parameters()).device)
    logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    positions = torch.arange(len(context), ids.shape[1], device=ids.device)
    return logprobs[positions - 1, ids[0, positions]].cpu().numpy()


@torch.inference_mode()
def naive_pair_logprobs(model: torch.nn.Module, layouts: TemplateLayouts, pair: PairTokens) -> PairLogprobs:
    query_first, answer_first = layouts.query_first, layouts.answer_first
    return PairLogprobs(
        query=_span_logprobs(model, list(query_first.prefix), pair.query_ids),
        answer_given_query=_span_logprobs(
            model, list(query_first.prefix) + list(pair.query_ids) + list(query_first.middle), pair.answer_ids
        ),
        answer=_span_logprobs(model, list(answer_first.prefix), pair.answer_ids),
        query_given_answer=_span_logprobs(
            model, list(answer_first.prefix) + list(pair.answer_ids) + list(answer_first.middle), pair.query_ids
        ),
    )


def mean_nlls(results: list[PairLogprobs]) -> np.ndarray:
    """(samples, 4): NLL(Q), NLL(A|Q), NLL(A), NLL(Q|A) per sample."""
    return np.array(
        [
            [-r.query.mean(), -r.answer_given_query.mean(), -r.answer.mean(), -r.query_given_answer.mean()]
            for r in results
        ]
    )
