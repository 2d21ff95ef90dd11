"""Prompt templates: the token ids placed around the query and answer in each order.

A sequence is ``prefix + first segment + middle + second segment``. Segments are
tokenised on their own and spliced in, so a span is the same token ids in [Q;A] and
[A;Q], and template tokens are never part of a span. Tokens after the second segment
cannot change causal log-probs of earlier ones, so no suffix is ever computed.

Templates change the numbers, so each has a version that is stored with every score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PLAIN = "plain"
CHAT = "chat"
AUTO = "auto"  # chat when the tokenizer has a chat template, else plain
# v2: the [Q;A] order also scores the end of the answer's turn (the completeness signal).
TEMPLATE_VERSIONS = {PLAIN: "plain-v2", CHAT: "chat-v2"}
# The reverse direction as the QAQ authors render it: the model is asked which
# problem an answer responds to, and the query is scored as the assistant's reply.
REVERSE_INSTRUCTION = (
    "Given an answer, write the most likely problem or instruction this answer responds to.\n\nAnswer:\n"
)
_QUERY_MARK = "\ue000QUERY\ue000"
_ANSWER_MARK = "\ue000ANSWER\ue000"


@dataclass(frozen=True)
class OrderLayout:
    """Token ids before the first segment, between the two segments, and the scored end after
    the second (the end of the answer's turn in [Q;A]; none in [A;Q])."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    end: tuple[int, ...] = ()


@dataclass(frozen=True)
class TemplateLayouts:
    version: str
    query_first: OrderLayout  # [Q;A]: yields NLL(Q) and NLL(A|Q)
    answer_first: OrderLayout  # [A;Q]: yields NLL(A) and NLL(Q|A)

    @property
    def overhead(self) -> int:
        """Template tokens of the longer order (bounds the segments' token budget)."""
        orders = (self.query_first, self.answer_first)
        return max(len(layout.prefix) + len(layout.middle) + len(layout.end) for layout in orders)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` alone, without special tokens added by the tokenizer."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_each(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """:func:`encode` of every text, in one call: a fast tokenizer encodes a batch on all cores
    (and faster than text by text on one), each text still alone."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def document_end_id(tokenizer) -> int:
    """The token that ends a document for the plain template: end-of-text where the vocabulary
    has one, else the EOS token."""
    vocab = tokenizer.get_vocab()
    for candidate in ("<|endoftext|>", "<|end_of_text|>", "</s>"):
        if candidate in vocab:
            return vocab[candidate]
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no end-of-text or EOS token to end an answer")
    return tokenizer.eos_token_id


def document_start_id(tokenizer) -> int:
    """The token that opens a document: the first token needs something to be predicted from.

    A tokenizer that adds a BOS token itself (Gemma, Llama 3) was trained with it; one that
    does not (SmolLM2, GPT-2 style) separated documents with an end-of-text token."""
    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer("x")["input_ids"][:1] == [bos]:
        return bos
    vocab = tokenizer.get_vocab()
    for candidate in ("<|endoftext|>", "<|end_of_text|>", "</s>"):
        if candidate in vocab:
            return vocab[candidate]
    for token_id in (bos, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    raise ValueError("the tokenizer has no BOS/EOS token to open a sequence; use a chat template")


def _split_rendered(
    tokenizer, messages: list[dict], first_mark: str, second_mark: str, scored_end: bool = False
) -> OrderLayout:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    before, found_first, rest = rendered.partition(first_mark)
    between, found_second, after = rest.partition(second_mark)
    if not (found_first and found_second):
        raise ValueError("the chat template does not render message contents verbatim")
    prefix = encode(tokenizer, before)
    if not prefix:
        prefix = [document_start_id(tokenizer)]
    # The turn's end marker (e.g. <|im_end|>) is the first token after the message.
    end = tuple(encode(tokenizer, after)[:1]) if scored_end else ()
    if scored_end and not end:
        end = (document_end_id(tokenizer),)
    return OrderLayout(prefix=tuple(prefix), middle=tuple(encode(tokenizer, between)), end=end)


def build_layouts(template: str, tokenizer) -> TemplateLayouts:
    """Layouts of both orders for ``template`` (``plain``, ``chat`` or ``auto``) under ``tokenizer``."""
    if template == AUTO:
        template = CHAT if getattr(tokenizer, "chat_template", None) else PLAIN
    if template == PLAIN:
        start = (document_start_id(tokenizer),)
        middle = tuple(encode(tokenizer, "\n\n"))
        return TemplateLayouts(
            TEMPLATE_VERSIONS[PLAIN],
            query_first=OrderLayout(prefix=start, middle=middle, end=(document_end_id(tokenizer),)),
            answer_first=OrderLayout(prefix=start, middle=middle),
        )
    if template == CHAT:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat' needs a tokenizer with a chat template; use template 'plain'")
        query_first = _split_rendered(
            tokenizer,
            [{"role": "user", "content": _QUERY_MARK}, {"role": "assistant", "content": _ANSWER_MARK}],
            _QUERY_MARK,
            _ANSWER_MARK,
            scored_end=True,
        )
        answer_first = _split_rendered(
            tokenizer,
            [
                {"role": "user", "content": REVERSE_INSTRUCTION + _ANSWER_MARK},
                {"role": "assistant", "content": _QUERY_MARK},
            ],
            _ANSWER_MARK,
            _QUERY_MARK,
        )
        return TemplateLayouts(TEMPLATE_VERSIONS[CHAT], query_first=query_first, answer_first=answer_first)
    raise ValueError(f"unknown template {template!r}; choose from {sorted([*TEMPLATE_VERSIONS, AUTO])}")
