"""JSON request bodies: strict parsing (UTF-8, bounded nesting) and the check that every
value can be kept by PostgreSQL's jsonb and text columns."""

from __future__ import annotations

import json
import math
from typing import Any

#: what a stored call body may hold: PostgreSQL's jsonb takes no NUL character and only
#: valid Unicode, the JSON codec only 64-bit integers and a bounded nesting
MAX_BODY_DEPTH = 32
MAX_BODY_STRING = 10_000
_INT64 = (-(2**63), 2**63 - 1)


class BodyError(ValueError):
    """A request body that is not JSON the server can store; the message says where and
    why, `field` is the path of the value refused (None for the body as a whole)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field[:120] if field else None
        super().__init__(f"{self.field}: {reason}" if self.field else reason)


def _constant(name: str) -> float:
    # kept until the walk below can name where it was; Python's json reads NaN / Infinity
    return float(name)


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON (UTF-8), or BodyError with the reason. Whether the store can keep
    every value is `check_storable`'s to say, after the fields' own validation."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_constant)
    except RecursionError:
        raise BodyError(f"body is nested deeper than {MAX_BODY_DEPTH} levels") from None
    except ValueError as exc:
        raise BodyError(f"body is not valid JSON: {str(exc)[:120]}") from None
    return value


def _text_problem(text: str, max_string: int = MAX_BODY_STRING) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode)"
    if len(text) > max_string:
        return f"is longer than {max_string} characters"
    return None


def check_storable(value: Any, max_string: int = MAX_BODY_STRING) -> None:
    """Raise BodyError naming the first value (by its path) the store could not keep:
    finite numbers only (no NaN, Infinity, or 1e400), 64-bit integers, text without NUL and
    with no unpaired surrogate, at most `max_string` characters, nesting at most
    MAX_BODY_DEPTH."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_BODY_DEPTH:
            raise BodyError(f"nested deeper than {MAX_BODY_DEPTH} levels", path)
        if isinstance(item, str):
            if (problem := _text_problem(item, max_string)) is not None:
                raise BodyError(f"text {problem}", path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BodyError(f"must be a finite number, got {item}", path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not _INT64[0] <= item <= _INT64[1]:
                raise BodyError("integer out of range (at most 64 bits)", path)
        elif isinstance(item, dict):
            for key, child in item.items():
                if (problem := _text_problem(key, max_string)) is not None:
                    raise BodyError(f"a key {problem}", path or None)
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


