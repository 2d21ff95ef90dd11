"""Prompt templates: the token ids placed around the query and answer in each order.

A sequence is ``prefix + first segment + middle + second segment``. Segments are
tokenised on their own and spliced in, so a span is the same token ids in [Q;A] and
[A;Q], and template tokens are never part of a span. Tokens after the second segment
cannot change causal log-probs of earlier ones, so no suffix is ever computed.

Templates change the numbers, so each has a version that is stored with every score.
"""

from __future__ import annotations

from dataclasses import dataclass

PLAIN = "plain"
CHAT = "chat"
AUTO = "auto"  # chat when the tokenizer has a chat template, else plain
TEMPLATE_VERSIONS = {PLAIN: "plain-v1", CHAT: "chat-v1"}
# The reverse direction as the QAQ authors render it: the model is asked which
# problem an answer responds to, and the query is scored as the assistant's reply.
REVERSE_INSTRUCTION = (
    "Given an answer, write the most likely problem or instruction this answer responds to.\n\nAnswer:\n"
)
_QUERY_MARK = "\ue000QUERY\ue000"
_ANSWER_MARK = "\ue000ANSWER\ue000"


@dataclass(frozen=True)
class OrderLayout:
    """Token ids before the first segment and between the two segments."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]


@dataclass(frozen=True)
class TemplateLayouts:
    version: str
    query_first: OrderLayout  # [Q;A]: yields NLL(Q) and NLL(A|Q)
    answer_first: OrderLayout  # [A;Q]: yields NLL(A) and NLL(Q|A)

    @property
    def overhead(self) -> int:
        """Template tokens of the longer order (bounds the segments' token budget)."""
        return max(
            len(self.query_first.prefix) + len(self.query_first.middle),
            len(self.answer_first.prefix) + len(self.answer_first.middle),
        )


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` alone, without special tokens added by the tokenizer."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


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


def _split_rendered(tokenizer, messages: list[dict], first_mark: str, second_mark: str) -> OrderLayout:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    before, found_first, rest = rendered.partition(first_mark)
    between, found_second, _ = rest.partition(second_mark)
    if not (found_first and found_second):
        raise ValueError("the chat template does not render message contents verbatim")
    prefix = encode(tokenizer, before)
    if not prefix:
        prefix = [document_start_id(tokenizer)]
    return OrderLayout(prefix=tuple(prefix), middle=tuple(encode(tokenizer, between)))


def build_layouts(template: str, tokenizer) -> TemplateLayouts:
    """Layouts of both orders for ``template`` (``plain``, ``chat`` or ``auto``) under ``tokenizer``."""
    if template == AUTO:
        template = CHAT if getattr(tokenizer, "chat_template", None) else PLAIN
    if template == PLAIN:
        start = (document_start_id(tokenizer),)
        middle = tuple(encode(tokenizer, "\n\n"))
        layout = OrderLayout(prefix=start, middle=middle)
        return TemplateLayouts(TEMPLATE_VERSIONS[PLAIN], query_first=layout, answer_first=layout)
    if template == CHAT:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat' needs a tokenizer with a chat template; use template 'plain'")
        query_first = _split_rendered(
            tokenizer,
            [{"role": "user", "content": _QUERY_MARK}, {"role": "assistant", "content": _ANSWER_MARK}],
            _QUERY_MARK,
            _ANSWER_MARK,
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
