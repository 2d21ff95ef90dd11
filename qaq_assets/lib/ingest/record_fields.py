"""Records as samples: which fields hold a record's instruction, response or conversation, and
the identity of a pair. Plain Python (no polars), so a bare scoring machine reads shards too
(:func:`read_pairs`).

A record is one of:
- a pair: ``instruction`` / ``prompt`` / ``question`` / ``query`` and ``response`` / ``output`` /
  ``completion`` / ``answer``, with Alpaca's ``input`` appended to the instruction (or the
  instruction itself when alone) and an optional ``system`` prompt;
- a conversation: ``messages`` (OpenAI: ``role``/``content``) or ``conversations`` /
  ``conversation`` (ShareGPT: ``from``/``value``, ``human``/``gpt``/``system``, and the common
  variants), of any number of turns.

What is scored, QAQ's (Q, A): A is the conversation's last assistant turn, Q the dialogue before
it: the user's text alone when it is one user turn, else every turn as ``User: ...`` /
``Assistant: ...`` paragraphs. The system turn is kept (and exported) but not scored. The whole
conversation is stored with the sample wherever it holds more than one exchange or a system turn.
``--fields ROLE=FIELD`` names the field of a role where the usual names do not apply.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qaq_assets.lib.ingest.config import IngestConfig
from qaq_assets.lib.ingest.file_formats import BadRecord, iter_rows

_DEFAULTS = IngestConfig()  # the declared defaults

INSTRUCTION_FIELDS = ("instruction", "prompt", "question", "query")
RESPONSE_FIELDS = ("response", "output", "completion", "answer")
CONVERSATION_FIELDS = ("messages", "conversations", "conversation")
# A record's own tests: KodCode's ``test``, OpenCodeInstruct's ``unit_tests``, MBPP's ``test_list``.
TESTS_FIELDS = ("tests", "test", "unit_tests", "test_list")
CONTEXT_FIELD, SYSTEM_FIELD, ID_FIELD = "input", "system", "id"
USER, ASSISTANT, SYSTEM, TOOL = "user", "assistant", "system", "tool"
ROLE_ALIASES = {
    **dict.fromkeys(("user", "human", "prompter", "customer", "question"), USER),
    **dict.fromkeys(("assistant", "gpt", "bot", "model", "chatgpt", "ai", "answer", "gpt4"), ASSISTANT),
    **dict.fromkeys(("system", "developer"), SYSTEM),
    **dict.fromkeys(("tool", "function", "ipython", "observation", "function_call", "tool_call"), TOOL),
}
_ROLE_KEYS, _CONTENT_KEYS = ("role", "from", "speaker", "author"), ("content", "value", "text")
_TITLES = {USER: "User", ASSISTANT: "Assistant", TOOL: "Tool"}
# How a record came: written back in the same shape by `qaq export --format original`.
PAIR, ALPACA, MESSAGES, SHAREGPT = "pair", "alpaca", "messages", "sharegpt"


@dataclass(frozen=True)
class FieldMap:
    """Which field holds each role, where the usual names do not apply (``--fields``)."""

    instruction: str | None = None
    response: str | None = None
    input: str | None = None
    system: str | None = None
    id: str | None = None
    conversation: str | None = None
    tests: str | None = None

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> FieldMap:
        """``["instruction=prompt", "response=completion"]`` (checked by the setting's declaration)."""
        return cls(**dict(item.split("=", 1) for item in items))

    def names(self, role: str, usual: tuple[str, ...]) -> tuple[str, ...]:
        named = getattr(self, role)
        return (named,) if named else usual


@dataclass
class Sample:
    instruction: str  # QAQ's Q: the user's text, or the dialogue before the scored answer
    response: str  # QAQ's A: the (last) assistant turn
    conversation: list[dict] | None  # every turn, roles normalised; None for one plain exchange
    style: str  # pair, alpaca, messages or sharegpt
    used: set[str] = field(default_factory=set)  # the record's fields consumed
    tests: str | None = None  # the record's own tests, run against the response at ingest


def normalise_text(text: str) -> str:
    """Canonical form used for identity: NFC, LF newlines, no trailing spaces per line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def sample_id_for(instruction: str, response: str) -> str:
    """Stable id of a pair: hash of its normalised instruction and response."""
    payload = normalise_text(instruction) + "\x1e" + normalise_text(response)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def text_sha(text: str) -> str:
    """Exact-content hash (scores depend on exact text, so the cache key does too)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _string_field(record: dict, name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecord("wrong_type", f"field {name!r} is {type(value).__name__}, expected string")
    return value


def _first_field(record: dict, names: tuple[str, ...], used: set[str]) -> str | None:
    for name in names:
        if (value := _string_field(record, name)) is not None:
            used.add(name)
            return value
    return None


def _content(value: Any, where: str) -> str:
    """A turn's text: a string, or the text parts of a list of content parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        texts = [p.get("text") for p in value if p.get("type", "text") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
    raise BadRecord("wrong_type", f"{where} has no text content")


def _turns(value: Any, name: str) -> tuple[list[dict], str]:
    """The turns of a conversation field, roles normalised, and its style."""
    if not isinstance(value, list):
        raise BadRecord("wrong_type", f"field {name!r} is not a list of turns")
    turns, style = [], MESSAGES
    for index, turn in enumerate(value, start=1):
        if not isinstance(turn, dict):
            raise BadRecord("wrong_type", f"turn {index} of {name!r} is not an object")
        role_key = next((key for key in _ROLE_KEYS if key in turn), None)
        content_key = next((key for key in _CONTENT_KEYS if key in turn), None)
        calls = turn.get("tool_calls") or turn.get("function_call")
        if role_key is None or (content_key is None and not calls):
            raise BadRecord("wrong_type", f"turn {index} of {name!r} has no role/from and content/value")
        style = SHAREGPT if role_key == "from" else style
        raw_role = turn[role_key]
        role = ROLE_ALIASES.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise BadRecord("unknown_role", f"turn {index} of {name!r} has role {raw_role!r}")
        content = turn.get(content_key) if content_key else None
        if calls:  # an assistant's tool call: scored as the text of the call, beside any words
            text = _content(content, f"turn {index} of {name!r}") if content else ""
            turns.append({"role": role, "content": "\n".join(filter(None, [text, _calls_text(calls)]))})
        else:
            turns.append({"role": role, "content": _content(content, f"turn {index} of {name!r}")})
    return turns, style


def _calls_text(calls: Any) -> str:
    """OpenAI tool calls (or a legacy function_call) as text: ``name(arguments)`` per call."""
    calls = calls if isinstance(calls, list) else [calls]
    rendered = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else {}
        arguments = function.get("arguments", "")
        arguments = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        rendered.append(f"{function.get('name', 'tool')}({arguments})")
    return "\n".join(rendered)


def _render(history: list[dict]) -> str:
    """The dialogue before the scored answer, as QAQ's Q."""
    if len(history) == 1 and history[0]["role"] == USER:
        return history[0]["content"]
    return "\n\n".join(f"{_TITLES[turn['role']]}: {turn['content']}" for turn in history)


def _from_conversation(turns: list[dict], style: str, used: set[str]) -> Sample:
    answered = [i for i, t in enumerate(turns) if t["role"] == ASSISTANT and any(u["role"] == USER for u in turns[:i])]
    if not answered:
        if not any(turn["role"] == USER for turn in turns):
            raise BadRecord("missing_instruction", "no user turn")
        raise BadRecord("missing_response", "no assistant turn after a user turn")
    last = answered[-1]
    history = [turn for turn in turns[:last] if turn["role"] != SYSTEM]
    dialogue = [turn for turn in turns if turn["role"] != SYSTEM]
    whole = len(dialogue) > 2 or len(dialogue) != len(turns) or last != len(turns) - 1
    return Sample(_render(history), turns[last]["content"], turns if whole else None, style, used)


def extract_sample(record: dict, fields: FieldMap = FieldMap()) -> Sample:
    """The sample a record holds, or raise :class:`BadRecord` saying why it holds none. Field
    names match whatever their case (a spreadsheet's ``Instruction`` column is ``instruction``)."""
    folded, original_names = _case_folded(record)
    sample = _extract(folded, fields)
    sample.tests = _tests(folded, fields.names("tests", TESTS_FIELDS), sample.used)
    sample.used = {original_names.get(name, name) for name in sample.used}
    return sample


def _case_folded(record: dict) -> tuple[dict, dict[str, str]]:
    """``record`` plus each field under its lower-case name where no field has that name, and
    what each added name stands for."""
    added = {key.lower(): key for key in record if isinstance(key, str) and key.lower() not in record}
    if not added:
        return record, {}
    return {**record, **{lower: record[key] for lower, key in added.items()}}, added


def _tests(record: dict, names: tuple[str, ...], used: set[str]) -> str | None:
    """The record's tests as one text: a string, or a list of strings (asserts) one per line."""
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            raise BadRecord(
                "wrong_type",
                f"field {name!r} is {type(value).__name__}, expected tests as a string or a list of strings",
            )
        used.add(name)
        return value if value.strip() else None
    return None


def _extract(record: dict, fields: FieldMap) -> Sample:
    used: set[str] = set()
    for name in fields.names("conversation", CONVERSATION_FIELDS):
        if name in record:
            used.add(name)
            turns, style = _turns(record[name], name)
            system = _first_field(record, fields.names("system", (SYSTEM_FIELD,)), used)
            if system is not None and not any(turn["role"] == SYSTEM for turn in turns):
                turns.insert(0, {"role": SYSTEM, "content": system})
            return _checked(_from_conversation(turns, style, used))
    instruction = _first_field(record, fields.names("instruction", INSTRUCTION_FIELDS), used)
    context = _first_field(record, fields.names("input", (CONTEXT_FIELD,)), used)
    if context is not None:
        if instruction is None or not instruction.strip():
            instruction = context
        elif context.strip():
            instruction = f"{instruction}\n\n{context}"
    response = _first_field(record, fields.names("response", RESPONSE_FIELDS), used)
    system = _first_field(record, fields.names("system", (SYSTEM_FIELD,)), used)
    if instruction is None:
        raise BadRecord("missing_instruction", "no instruction/prompt/question/query/input field or conversation")
    if response is None:
        raise BadRecord("missing_response", "no response/output/completion/answer field or assistant turn")
    conversation = None
    if system is not None and system.strip():
        conversation = [
            {"role": SYSTEM, "content": system},
            {"role": USER, "content": instruction},
            {"role": ASSISTANT, "content": response},
        ]
    style = ALPACA if {"output", CONTEXT_FIELD} & used else PAIR
    return _checked(Sample(instruction, response, conversation, style, used))


def _checked(sample: Sample) -> Sample:
    if not sample.instruction.strip():
        raise BadRecord("empty_instruction", "instruction is empty or whitespace")
    if not sample.response.strip():
        raise BadRecord("empty_response", "response is empty or whitespace")
    return sample


def record_id_of(record: dict, fields: FieldMap = FieldMap()) -> str | None:
    value = _case_folded(record)[0].get(fields.id or ID_FIELD)
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return None if value is None else str(value)
    raise BadRecord("wrong_type", f"field {fields.id or ID_FIELD!r} is {type(value).__name__}")


def read_pairs(path: str | Path, max_record_bytes: int = _DEFAULTS.max_record_bytes) -> Iterator[tuple[str, str]]:
    """(instruction, response) of every valid record of a file, in order; rows that
    ``read_shard`` would quarantine are skipped."""
    for _, record, _ in iter_rows(Path(path), max_record_bytes):
        if isinstance(record, BadRecord):
            continue
        try:
            sample = extract_sample(record)
        except BadRecord:
            continue
        yield sample.instruction, sample.response
