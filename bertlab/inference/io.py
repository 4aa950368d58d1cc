"""The inference commands' inputs and outputs: JSON Lines (or text lines) in, JSON Lines out."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bertlab.errors import DataError


@dataclass(frozen=True)
class InputRecord:
    line: int
    fields: dict


def read_inputs(stream: TextIO, name: str) -> list[InputRecord]:
    """JSON Lines (one object per line) or plain text (one `text` per line); blank lines skipped.

    The first non-blank line decides: a line starting with `{` means JSON Lines, and then
    every line must be a JSON object.
    """
    records: list[InputRecord] = []
    json_lines: bool | None = None
    for line_number, line in enumerate(stream, 1):
        line = line.strip()
        if not line:
            continue
        if json_lines is None:
            json_lines = line.startswith("{")
        fields = _parse_json_line(line, name, line_number) if json_lines else {"text": line}
        records.append(InputRecord(line_number, fields))
    return records


def _parse_json_line(line: str, name: str, line_number: int) -> dict:
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(name, f"not valid JSON ({error.msg})", line_number) from None
    if not isinstance(fields, dict):
        raise DataError(name, "expected a JSON object per line", line_number)
    return fields


def read_input_file(path: str) -> tuple[list[InputRecord], str]:
    """Records of a file, or of stdin for `-`; and the name errors use for it."""
    if path == "-":
        return read_inputs(sys.stdin, "<stdin>"), "<stdin>"
    if not Path(path).is_file():
        raise DataError(path, "input file not found")
    with open(path, encoding="utf-8") as stream:
        return read_inputs(stream, path), path


def require_text_fields(
    records: Iterable[InputRecord], required: Sequence[str], optional: Sequence[str], name: str
) -> None:
    """Every record has the `required` fields as strings; `optional` ones are strings or null."""
    for record in records:
        for field_name in required:
            if field_name not in record.fields:
                raise DataError(
                    name,
                    f"missing field {field_name!r} (expected {', '.join(required)})",
                    record.line,
                )
        present = [*required, *(f for f in optional if record.fields.get(f) is not None)]
        for field_name in present:
            value = record.fields[field_name]
            if not isinstance(value, str):
                raise DataError(
                    name, f"field {field_name!r} must be a string, got {value!r}", record.line
                )


def write_json_lines(rows: Iterable[dict], out: str | None) -> None:
    """One JSON object per line into `out`, or stdout."""
    stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
    try:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out:
            stream.close()
