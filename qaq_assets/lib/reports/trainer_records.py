"""One kept sample as a record of each export format, in the shape trainers read as they are.

- messages: OpenAI/TRL ``messages`` (role, content), every turn; a conversation that came with
  tool calls and tool results is written back as it came (``tool_calls``, ``tool_call_id``,
  ``name``), with its ``tools``.
- ShareGPT: LLaMA-Factory's roles (``human``, ``gpt``, ``function_call``, ``observation``),
  the system prompt in ``system``, tool definitions in ``tools`` (a JSON string).
- Alpaca: LLaMA-Factory's Alpaca (``instruction``, ``input``, ``output``, ``system``, and the
  earlier exchanges as ``history``: ``[[user, assistant], ...]``).
- original: the record as it came (see :mod:`qaq_assets.lib.ingest.lossless_json`).
- Parquet: the text columns and a ``messages`` column for every row (:func:`messages_column`).
"""

from __future__ import annotations

import json

import polars as pl

from qaq_assets.lib.ingest import lossless_json
from qaq_assets.lib.ingest.record_fields import ALPACA, MESSAGES, PAIR, SHAREGPT

SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
_TOOL_KEYS = ("tool_calls", "function_call", "tool_call_id")


def turns_of(row: dict) -> list[dict]:
    """A sample's whole conversation (roles user, assistant, system, tool)."""
    return row["conversation"] or [
        {"role": "user", "content": row["instruction"]},
        {"role": "assistant", "content": row["response"]},
    ]


def original_of(row: dict) -> dict | None:
    """The record as it came, where ingest kept it."""
    if not row.get("original"):
        return None
    return lossless_json.decoded(
        json.loads(row["original"]), {"instruction": row["instruction"], "response": row["response"]}
    )


def tool_conversation(row: dict) -> tuple[list[dict], object] | None:
    """The OpenAI messages as they came, and the record's ``tools``, where they call tools."""
    original = original_of(row)
    if original is None or row.get("record_style") != MESSAGES:
        return None
    for value in original.values():
        if isinstance(value, list) and value and all(isinstance(turn, dict) for turn in value):
            if any(key in turn for turn in value for key in _TOOL_KEYS) or any(
                turn.get("role") in ("tool", "function") for turn in value
            ):
                return value, original.get("tools")
    return None


def trainer_record(row: dict, fmt: str) -> dict:
    """One kept sample as a record of ``fmt`` (``original``: the record as it came)."""
    if fmt == "original":
        original = original_of(row)
        if original is not None:
            return original
        # Ingested by a release that kept no original: the shape it came in.
        style = row.get("record_style") or PAIR
        fmt = {MESSAGES: "messages-jsonl", SHAREGPT: "sharegpt-jsonl", ALPACA: "alpaca-jsonl"}.get(style, "pair")
    ids = {"id": row["id"], "sample_id": row["sample_id"]}
    tools = tool_conversation(row)
    if fmt == "messages-jsonl":
        if tools is not None:
            messages, definitions = tools
            return {"messages": messages, **({"tools": definitions} if definitions else {}), **ids}
        return {"messages": turns_of(row), **ids}
    if fmt == "sharegpt-jsonl":
        return {**_sharegpt(row, tools), **ids}
    turns = turns_of(row)
    system = next((t["content"] for t in turns if t["role"] == "system"), None)
    if fmt == "alpaca-jsonl":
        record = {"instruction": row["instruction"], "input": "", "output": row["response"]}
        history = _history(turns)
        if history is not None:
            record = {"instruction": history[-1][0], "input": "", "output": history[-1][1], "history": history[:-1]}
    else:
        record = {"instruction": row["instruction"], "response": row["response"]}
    return {**record, **({"system": system} if system is not None else {}), **ids}


def _history(turns: list[dict]) -> list[list[str]] | None:
    """A conversation of alternating user and assistant turns as ``[[user, assistant], ...]``;
    None where it is not one (a single exchange, or tool turns)."""
    dialogue = [turn for turn in turns if turn["role"] != "system"]
    roles = [turn["role"] for turn in dialogue]
    if len(dialogue) < 4 or len(dialogue) % 2 or roles != ["user", "assistant"] * (len(dialogue) // 2):
        return None
    return [[dialogue[i]["content"], dialogue[i + 1]["content"]] for i in range(0, len(dialogue), 2)]


def _sharegpt(row: dict, tools: tuple[list[dict], object] | None) -> dict:
    if tools is None:
        turns = turns_of(row)
        system = next((t["content"] for t in turns if t["role"] == "system"), None)
        conversation = [
            {"from": SHAREGPT_ROLES[t["role"]], "value": t["content"]} for t in turns if t["role"] != "system"
        ]
        return {"conversations": conversation, **({"system": system} if system is not None else {})}
    messages, definitions = tools
    conversation, system = [], None
    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "system":
            system = content
        elif role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            calls = message.get("tool_calls") or [{"function": message["function_call"]}]
            for call in calls:
                function = call.get("function", call)
                arguments = function.get("arguments", "{}")
                try:
                    arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
                except json.JSONDecodeError:
                    pass  # kept as the text it is
                value = json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)
                conversation.append({"from": "function_call", "value": value})
        elif role in ("tool", "function"):
            conversation.append({"from": "observation", "value": content})
        else:
            conversation.append({"from": SHAREGPT_ROLES.get(role, "human"), "value": content})
    record = {"conversations": conversation}
    if system is not None:
        record["system"] = system
    if definitions:
        record["tools"] = json.dumps(definitions, ensure_ascii=False)
    return record


def messages_column() -> pl.Expr:
    """Every row's turns as ``messages`` (role, content), single-turn rows included."""
    pair = pl.concat_list(
        pl.struct(role=pl.lit("user"), content=pl.col("instruction")),
        pl.struct(role=pl.lit("assistant"), content=pl.col("response")),
    )
    return pl.when(pl.col("conversation").is_not_null()).then(pl.col("conversation")).otherwise(pair).alias("messages")
