"""Strings that came from a peer, made safe to log, store and send back.

A carrier (or anyone who opens a media WebSocket) controls event names, digits, formats and
ids; a reason built from them must not flood a log line, forge one (newlines, terminal
escapes), or break the 125-byte limit of a WebSocket close frame.
"""

from __future__ import annotations

import unicodedata

#: characters kept of a peer-derived string in a reason or a log field
PEER_TEXT_CHARS = 200
#: a close frame's payload is at most 125 bytes: 2 for the code, 123 for the reason
CLOSE_REASON_BYTES = 123


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def peer_text(value: object, limit: int = PEER_TEXT_CHARS) -> str:
    """`value` as one printable line of at most `limit` characters: control and format
    characters (and lone surrogates) escaped, the rest cut with a note of how much was cut.
    Applying it twice changes nothing."""
    text = value if isinstance(value, str) else str(value)
    pieces = [_escape(ch) for ch in text[: limit + 1]]
    if len(text) <= limit and sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    out: list[str] = []
    size = 0
    for i, piece in enumerate(pieces):
        note = f"… ({len(text) - i} more chars)"
        if size + len(piece) + len(note) > limit:
            return "".join(out) + note
        out.append(piece)
        size += len(piece)
    return "".join(out)  # not reached: `pieces` is longer than the limit


def close_reason(reason: str) -> bytes:
    """The reason of a close frame: UTF-8, cut to 123 bytes on a character boundary."""
    data = peer_text(reason).encode("utf-8")
    if len(data) <= CLOSE_REASON_BYTES:
        return data
    return data[:CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
