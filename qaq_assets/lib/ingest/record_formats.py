"""Record formats without a dataframe library: which fields hold a record's instruction and
response, how a JSONL line becomes a record or a reason to quarantine it, and the identity
of a pair. Plain Python, so a bare scoring machine (torch and numpy, no polars) reads shards
with it too (:func:`read_pairs`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qaq_assets.lib.errors import QaqError

INSTRUCTION_FIELDS = ("instruction", "prompt", "question", "query")
RESPONSE_FIELDS = ("response", "output", "completion", "answer")
# Alpaca's "input" is extra context for the instruction, or the instruction itself when alone.
CONTEXT_FIELD = "input"
MAX_RAW_CHARS = 2000
DEFAULT_MAX_RECORD_BYTES = 1_000_000


class ShardReadError(QaqError):
    """A shard file that cannot be read as JSONL or Parquet at all."""


class BadRecord(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl.gz", ".json.gz", ".ndjson.gz")):
        return "jsonl.gz"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ShardReadError(f"{path}: unsupported file type (expected .jsonl, .jsonl.gz or .parquet)")


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


def _from_messages(messages: Any) -> tuple[str | None, str | None]:
    if not isinstance(messages, list):
        raise BadRecord("wrong_type", "field 'messages' is not a list")
    instruction = response = None
    for turn in messages:
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise BadRecord("wrong_type", "a message is not an object with string 'content'")
        role = turn.get("role")
        if role == "user" and instruction is None:
            instruction = turn["content"]
        elif role == "assistant" and instruction is not None and response is None:
            response = turn["content"]
    return instruction, response


def extract_pair(record: dict) -> tuple[str, str, set[str]]:
    """Instruction, response and the field names consumed, or raise :class:`BadRecord`."""
    used: set[str] = set()
    if "messages" in record:
        instruction, response = _from_messages(record["messages"])
        used.add("messages")
    else:
        instruction = _first_field(record, INSTRUCTION_FIELDS, used)
        context = _string_field(record, CONTEXT_FIELD)
        if context is not None:
            used.add(CONTEXT_FIELD)
            if instruction is None or not instruction.strip():
                instruction = context
            elif context.strip():
                instruction = f"{instruction}\n\n{context}"
        response = _first_field(record, RESPONSE_FIELDS, used)
    if instruction is None:
        raise BadRecord("missing_instruction", "no instruction/prompt/input field or user message")
    if response is None:
        raise BadRecord("missing_response", "no response/output/completion field or assistant message")
    if not instruction.strip():
        raise BadRecord("empty_instruction", "instruction is empty or whitespace")
    if not response.strip():
        raise BadRecord("empty_response", "response is empty or whitespace")
    return instruction, response, used


def record_id_of(record: dict) -> str | None:
    value = record.get("id")
    if value is None or isinstance(value, (str, int)) and not isinstance(value, bool):
        return None if value is None else str(value)
    raise BadRecord("wrong_type", f"field 'id' is {type(value).__name__}")


UTF8_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20


def _bounded_lines(handle, limit: int) -> Iterator[tuple[bytes, int]]:
    """Each line as (its first ``limit + 1`` bytes at most, its full length in bytes): a line
    longer than ``limit`` is skipped to its newline in 1 MiB reads, never held whole (a
    newline-free, decompressed gigabyte stays a bounded read)."""
    while line := handle.readline(limit + 1):
        length = len(line)
        if length > limit and not line.endswith(b"\n"):
            while rest := handle.readline(_READ_CHUNK):
                length += len(rest)
                if rest.endswith(b"\n"):
                    break
        yield line, length


def text_problem(record: dict) -> BadRecord | None:
    """A lone surrogate (UTF-8 cannot store it) or a NUL anywhere in the record's keys and
    string values. Walked with a stack: nesting depth never recurses."""
    stack: list[tuple[str, object]] = [("", record)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((f"{where}.{key}" if where else str(key), key))
                stack.append((f"{where}.{key}" if where else str(key), item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            # The field's name may hold the bad character itself: escape it for the message.
            where = where.encode("utf-8", "backslashreplace").decode("utf-8")
            if "\x00" in value:
                return BadRecord("nul_character", f"field {where!r} contains a NUL character")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                return BadRecord("invalid_unicode", f"field {where!r} has a lone surrogate: {error.reason}")
    return None


def iter_jsonl(path: Path, fmt: str, max_record_bytes: int) -> Iterator[tuple[int, dict | BadRecord, str]]:
    opener = gzip.open if fmt == "jsonl.gz" else open
    parsed_any = False
    seen_any = False
    try:
        with opener(path, "rb") as handle:
            for line_number, (raw_line, length) in enumerate(_bounded_lines(handle, max_record_bytes), start=1):
                if line_number == 1 and raw_line.startswith(UTF8_BOM):
                    raw_line, length = raw_line[len(UTF8_BOM) :], length - len(UTF8_BOM)
                if not raw_line.strip():
                    continue
                seen_any = True
                preview = raw_line[: MAX_RAW_CHARS * 4].decode("utf-8", errors="replace")[:MAX_RAW_CHARS]
                if length > max_record_bytes:
                    yield (
                        line_number,
                        BadRecord("record_too_large", f"{length} bytes > limit {max_record_bytes}"),
                        preview,
                    )
                    continue
                try:
                    text = raw_line.decode("utf-8")
                except UnicodeDecodeError as error:
                    yield line_number, BadRecord("invalid_utf8", str(error)), preview
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    yield line_number, BadRecord("malformed_json", str(error)), preview
                    continue
                except RecursionError:
                    yield line_number, BadRecord("too_deeply_nested", "JSON nested deeper than Python parses"), preview
                    continue
                parsed_any = True
                if not isinstance(record, dict):
                    yield line_number, BadRecord("not_an_object", f"JSON {type(record).__name__}"), preview
                    continue
                # Lone surrogates and NULs can only arrive as \u escapes: skip the walk otherwise.
                escaped = b"\\u" in raw_line
                yield line_number, (text_problem(record) if escaped else None) or record, preview
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ShardReadError(f"{path}: cannot read as {fmt}: {error}") from error
    if seen_any and not parsed_any:
        raise ShardReadError(f"{path}: no line is valid JSON; the file is not JSONL")


def read_pairs(path: str | Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[tuple[str, str]]:
    """(instruction, response) of every valid record of a JSONL or JSONL.gz file, in order;
    rows that ``read_shard`` would quarantine are skipped."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "parquet":
        raise ShardReadError(f"{path}: Parquet needs polars; the plain reader takes JSONL")
    for _, record, _ in iter_jsonl(path, fmt, max_record_bytes):
        if isinstance(record, BadRecord):
            continue
        try:
            instruction, response, _ = extract_pair(record)
        except BadRecord:
            continue
        yield instruction, response
