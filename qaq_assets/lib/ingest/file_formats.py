"""Files as rows: every input format a user brings, read into ``(row_number, record, preview)``.

A record is a dict (one JSON object, one table row) or a :class:`BadRecord` (a row that cannot
be one: malformed JSON, over the size limit, not UTF-8); ``preview`` is the row's first
characters, kept with a quarantined row. Formats (by content where the suffix is ambiguous):

- JSON Lines (``.jsonl``, ``.ndjson``, ``.json``), gzipped too: one record per line, read with
  a bounded line length (a newline-free gigabyte stays a bounded read);
- JSON (``.json``, ``.jsonl`` alike, gzipped too): a top-level array of records (Alpaca's
  ``alpaca_data.json``), or an object holding one under a key (``{"data": [...]}``); a cut
  array yields its whole records and one quarantined row for the rest;
- Parquet and Arrow IPC (a Hugging Face ``save_to_disk`` folder's ``data-*.arrow`` stream
  files, or Arrow files) through pyarrow, in record batches;
- CSV and TSV (gzipped too), row by row: a bad row (not UTF-8, a quote never closed, a wrong
  number of fields) is quarantined alone.

Row numbers count from 1: a JSONL file's line, an array's element, a table's row.
Plain Python and pyarrow only (no polars), so a bare scoring machine reads shards too.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from qaq_assets.lib.errors import QaqError

MAX_RAW_CHARS = 2000
UTF8_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20
# A whole-file JSON document is parsed in memory: past this, JSON Lines is the format to use.
MAX_JSON_DOCUMENT_BYTES = 4 << 30
_BATCH_ROWS = 4096

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".tsv": "tsv", ".arrow": "arrow"}
DATA_SUFFIXES = (
    *JSON_SUFFIXES,
    *(suffix + ".gz" for suffix in JSON_SUFFIXES),
    ".parquet",
    ".csv",
    ".tsv",
    ".csv.gz",
    ".tsv.gz",
    ".arrow",
)
# Files a Hugging Face dataset folder holds beside its data: never records.
METADATA_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}

Row = tuple[int, "dict | BadRecord", str]


class ShardReadError(QaqError):
    """A shard file that cannot be read as its format at all."""


class BadRecord(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def is_data_file(path: Path) -> bool:
    """Whether ``path`` names a file of a supported format (a dataset's metadata is not)."""
    name = path.name.lower()
    return name.endswith(DATA_SUFFIXES) and name not in METADATA_FILES


def detect_format(path: Path) -> str:
    """``json`` (JSON Lines or a JSON document, told apart by content), ``parquet``, ``csv``,
    ``tsv`` or ``arrow``; :class:`ShardReadError` for any other suffix."""
    name = path.name.lower()
    stem = name.removesuffix(".gz")
    for suffix in JSON_SUFFIXES:
        if stem.endswith(suffix):
            return "json"
    for suffix, fmt in TABLE_SUFFIXES.items():
        if stem.endswith(suffix) and (name == stem or fmt in ("csv", "tsv")):
            return fmt
    supported = ", ".join(DATA_SUFFIXES)
    raise ShardReadError(f"{path}: unsupported file type (supported: {supported}, or a directory of them)")


def iter_rows(path: Path, max_record_bytes: int) -> Iterator[Row]:
    """Every row of ``path`` as ``(row_number, record or BadRecord, preview)``."""
    fmt = detect_format(path)
    try:
        if fmt == "json":
            yield from _iter_json(path, max_record_bytes)
        else:
            yield from _iter_table(path, fmt, max_record_bytes)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ShardReadError(f"{path}: cannot read as {fmt}: {error}") from error


def open_source(path: Path) -> BinaryIO:
    """``path`` opened for reading without following a symbolic link: a registered file swapped
    for a link to another (outside the landing directory) after its checks is refused, not read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ShardReadError(f"{path}: is now a symbolic link (registered as a file): not followed") from None
        raise
    return os.fdopen(descriptor, "rb")


def _open(path: Path):
    handle = open_source(path)
    return gzip.GzipFile(fileobj=handle, mode="rb") if path.name.lower().endswith(".gz") else handle


def _iter_json(path: Path, max_record_bytes: int) -> Iterator[Row]:
    # Sniffed with room for a whole first record, whatever the record limit.
    if _is_json_document(path, max(max_record_bytes, _READ_CHUNK)):
        yield from _iter_json_document(path, max_record_bytes)
    else:
        yield from _iter_jsonl(path, max_record_bytes)


def _is_json_document(path: Path, limit: int) -> bool:
    """Whether a JSON file holds one document (an array, or an object holding one) rather than
    JSON Lines (one object per line, whose first line may be a bad record).

    Lines: the first line parses whole and more follow, or the second line is a whole object
    (the first is a bad record). Otherwise a document: a first line starting with ``[`` or
    ``{`` that does not parse alone (pretty-printed), a one-line array, or a one-line object
    holding a list of records and no record field of its own (minified)."""
    with _open(path) as handle:
        lines = (line for line, _ in _bounded_lines(handle, limit) if line.strip())
        first = next(lines, b"").removeprefix(UTF8_BOM).strip()
        second = next(lines, None)
    value = _parsed(first)
    if second is not None and (value is not None or isinstance(_parsed(second), dict)):
        return False
    if isinstance(value, dict):
        holds = any(isinstance(v, list) and v and all(isinstance(i, dict) for i in v) for v in value.values())
        return holds and not any(name in value for name in RECORD_FIELDS)
    return first.startswith((b"[", b"{"))


def _parsed(line: bytes) -> Any:
    """``line`` as JSON, or None where it is not a whole JSON value."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


# A top-level object with one of these is a record, not a document holding records.
RECORD_FIELDS = ("instruction", "prompt", "question", "query", "messages", "conversations", "conversation")


def _bounded_lines(handle, limit: int) -> Iterator[tuple[bytes, int]]:
    """Each line as (its first ``limit + 1`` bytes at most, its full length in bytes): a line
    longer than ``limit`` is skipped to its newline in 1 MiB reads, never held whole."""
    while line := handle.readline(limit + 1):
        length = len(line)
        if length > limit and not line.endswith(b"\n"):
            while rest := handle.readline(_READ_CHUNK):
                length += len(rest)
                if rest.endswith(b"\n"):
                    break
        yield line, length


def _preview(raw: bytes) -> str:
    return raw[: MAX_RAW_CHARS * 4].decode("utf-8", errors="replace")[:MAX_RAW_CHARS]


def too_large(length: int, limit: int) -> BadRecord:
    return BadRecord("record_too_large", f"{length} bytes > limit {limit} (--max-record-bytes)")


def parse_record(text: str, escaped: bool = True) -> dict | BadRecord:
    """One JSON text as a record, or why it is not one. ``escaped`` (the text holds a ``\\u``
    escape) is the only way a lone surrogate or a NUL can arrive: otherwise no walk is needed."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return BadRecord("malformed_json", str(error))
    except RecursionError:
        return BadRecord("too_deeply_nested", "JSON nested deeper than Python parses")
    return checked_record(record, escaped)


def checked_record(record: Any, walk: bool = True) -> dict | BadRecord:
    """``record`` if it is an object whose keys and strings UTF-8 can store (no NUL, no lone
    surrogate), else why not."""
    if not isinstance(record, dict):
        return BadRecord("not_an_object", f"JSON {type(record).__name__}")
    return (text_problem(record) if walk else None) or record


def _iter_jsonl(path: Path, max_record_bytes: int) -> Iterator[Row]:
    parsed_any = seen_any = False
    with _open(path) as handle:
        for line_number, (raw_line, length) in enumerate(_bounded_lines(handle, max_record_bytes), start=1):
            if line_number == 1 and raw_line.startswith(UTF8_BOM):
                raw_line, length = raw_line[len(UTF8_BOM) :], length - len(UTF8_BOM)
            if not raw_line.strip():
                continue
            preview = _preview(raw_line)
            if length > max_record_bytes:
                yield line_number, too_large(length, max_record_bytes), preview
                continue
            seen_any = True
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield line_number, BadRecord("invalid_utf8", str(error)), preview
                continue
            record = parse_record(text, escaped=b"\\u" in raw_line)
            parsed_any = parsed_any or not (isinstance(record, BadRecord) and record.reason == "malformed_json")
            yield line_number, record, preview
    if seen_any and not parsed_any:
        raise ShardReadError(f"{path}: no line is valid JSON; the file is not JSON Lines or a JSON document")


def _iter_json_document(path: Path, max_record_bytes: int) -> Iterator[Row]:
    with _open(path) as handle:
        data = handle.read(MAX_JSON_DOCUMENT_BYTES + 1)
    if len(data) > MAX_JSON_DOCUMENT_BYTES:
        limit = MAX_JSON_DOCUMENT_BYTES >> 30
        raise ShardReadError(f"{path}: a JSON document over {limit} GiB; convert it to JSON Lines")
    try:
        text = data.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ShardReadError(f"{path}: not UTF-8 ({error})") from None
    start = len(text) - len(text.lstrip())
    if text.startswith("[", start):
        yield from _iter_array(text, start, max_record_bytes)
        return
    for index, value in enumerate(_records_list(path, text), start=1):
        raw = json.dumps(value, ensure_ascii=False)
        size = len(raw.encode("utf-8"))
        record = too_large(size, max_record_bytes) if size > max_record_bytes else checked_record(value)
        yield index, record, raw[:MAX_RAW_CHARS]


# Keys under which datasets keep their records, in the order they are looked for.
RECORD_LIST_KEYS = ("data", "train", "examples", "instances", "rows", "records", "samples", "items")


def _records_list(path: Path, text: str) -> list:
    """The list of records in a JSON object ``{"data": [...], ...}`` (the one list, or the one
    under a known key)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ShardReadError(f"{path}: not valid JSON ({error}); a cut file?") from None
    except RecursionError:
        raise ShardReadError(f"{path}: JSON nested deeper than Python parses") from None
    lists = [key for key, value in document.items() if isinstance(value, list)]
    key = next((k for k in RECORD_LIST_KEYS if k in lists), lists[0] if len(lists) == 1 else None)
    if key is None:
        found = ", ".join(document) or "none"
        raise ShardReadError(
            f'{path}: a JSON object with no list of records (keys: {found}); expected e.g. {{"data": [...]}}'
        )
    return document[key]


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _iter_array(text: str, start: int, max_record_bytes: int) -> Iterator[Row]:
    """The elements of the JSON array at ``text[start]``, one by one: a cut or broken element
    ends the file with one quarantined row holding the rest."""
    decoder = json.JSONDecoder()
    position = _skip_space(text, start + 1)
    index = 0
    while position < len(text) and text[position] != "]":
        index += 1
        preview = text[position : position + MAX_RAW_CHARS]
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            yield index, BadRecord("malformed_json", f"{error}; the rest of the array is unreadable (cut?)"), preview
            return
        except RecursionError:
            yield index, BadRecord("too_deeply_nested", "JSON nested deeper than Python parses"), preview
            return
        raw = text[position:end]
        size = len(raw.encode("utf-8"))
        if size > max_record_bytes:
            yield index, too_large(size, max_record_bytes), raw[:MAX_RAW_CHARS]
        else:
            yield index, checked_record(value, "\\u" in raw), raw[:MAX_RAW_CHARS]
        position = _skip_space(text, end)
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
    if position >= len(text):  # no closing bracket: the file ends inside the array
        yield index + 1, BadRecord("malformed_json", "the array is not closed: the file is cut short"), ""


def _iter_table(path: Path, fmt: str, max_record_bytes: int) -> Iterator[Row]:
    if fmt in ("csv", "tsv"):
        yield from _iter_csv(path, "\t" if fmt == "tsv" else ",", max_record_bytes)
        return
    row_number = 0
    for batch in _table_batches(path, fmt):
        for record in batch.to_pylist():
            row_number += 1
            preview = json.dumps(record, default=str, ensure_ascii=False)
            if len(preview.encode("utf-8")) > max_record_bytes:
                yield row_number, too_large(len(preview.encode("utf-8")), max_record_bytes), preview[:MAX_RAW_CHARS]
                continue
            yield row_number, checked_record(record), preview[:MAX_RAW_CHARS]


def _table_batches(path: Path, fmt: str):
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with open_source(path) as handle:
                yield from pq.ParquetFile(handle).iter_batches(batch_size=_BATCH_ROWS)
        elif fmt == "arrow":
            yield from _arrow_batches(path)
    except (pa.ArrowException, ValueError) as error:
        name = {"parquet": "Parquet", "arrow": "Arrow"}.get(fmt, fmt.upper())
        raise ShardReadError(f"{path}: cannot read as {name}: {str(error).splitlines()[0]}") from error


def _arrow_batches(path: Path):
    import pyarrow as pa

    # save_to_disk writes the streaming format; an Arrow file (Feather v2) starts with its magic.
    with open_source(path) as handle:
        magic = handle.read(6)
        handle.seek(0)
        if magic == b"ARROW1":
            reader = pa.ipc.open_file(handle)
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)
            return
        yield from pa.ipc.open_stream(handle)


def _iter_csv(path: Path, delimiter: str, max_record_bytes: int) -> Iterator[Row]:
    """CSV/TSV rows as text fields (an id of ``007`` stays ``007``), quoted newlines inside values
    (code answers have them), a header row naming the columns. Read row by row, so a bad row is
    quarantined alone: bytes that are not UTF-8 (never guessed as another encoding), a quote never
    closed (the rows after it are read again from the next line), a wrong number of fields."""
    import csv

    with _open(path) as handle:
        lines = _Lines(handle)
        header_line = lines.next_line()
        if header_line is None or not header_line.strip(b"\r\n"):
            raise ShardReadError(f"{path}: no header row")
        try:
            header_text = header_line.removeprefix(UTF8_BOM).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ShardReadError(f"{path}: the header row is not UTF-8 ({error.reason})") from None
        header = next(csv.reader([header_text], delimiter=delimiter), [])
        row_number = 0
        while True:
            reader = csv.reader(lines.decoded(), delimiter=delimiter, strict=True)
            try:
                for fields in reader:
                    row_number += 1
                    raw, utf8 = lines.record_bytes(), lines.record_is_utf8()
                    lines.record_done()
                    preview = raw.decode("utf-8", "replace")[:MAX_RAW_CHARS]
                    if not utf8:
                        yield row_number, BadRecord("invalid_utf8", "the row's bytes are not UTF-8"), preview
                    elif len(raw) > max_record_bytes:
                        yield row_number, too_large(len(raw), max_record_bytes), preview
                    elif len(fields) != len(header):
                        detail = f"{len(fields)} fields where the header has {len(header)}"
                        yield row_number, BadRecord("malformed_csv", detail), preview
                    else:
                        yield row_number, checked_record(dict(zip(header, fields, strict=True))), preview
                return
            except csv.Error as error:
                # The row is bad (a quote never closed swallows the file's rest): it alone.
                row_number += 1
                first = lines.restart_after_first_line()
                never_closed = "unexpected end of data" in str(error)
                detail = f"{error}: a quoted value is never closed" if never_closed else str(error)
                yield row_number, BadRecord("malformed_csv", detail), first.decode("utf-8", "replace")[:MAX_RAW_CHARS]


class _Lines:
    """A file's physical lines, fed to :mod:`csv` decoded, remembering the current record's."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.pushed_back: list[bytes] = []
        self.record: list[bytes] = []

    def next_line(self) -> bytes | None:
        if self.pushed_back:
            return self.pushed_back.pop()
        line = self.handle.readline()
        return line or None

    def decoded(self) -> Iterator[str]:
        while (line := self.next_line()) is not None:
            self.record.append(line)
            # Undecodable bytes survive as surrogates so parsing goes on; the row is then refused.
            yield line.decode("utf-8", "surrogateescape")

    def record_bytes(self) -> bytes:
        return b"".join(self.record)

    def record_is_utf8(self) -> bool:
        try:
            self.record_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def record_done(self) -> None:
        self.record = []

    def restart_after_first_line(self) -> bytes:
        """Drop the current record's first line; its other lines are read again. Returns it."""
        first, *rest = self.record or [b""]
        self.pushed_back.extend(reversed(rest))
        self.record = []
        return first


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
