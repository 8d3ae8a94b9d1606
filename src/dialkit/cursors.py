"""Page cursors for lists ordered by (created_at, id), newest first: opaque to clients,
the last row's creation time and id, base64url-encoded."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid

__all__ = ["cursor_for", "read_cursor"]


def cursor_for(created_at: dt.datetime | str, row_id: uuid.UUID | str) -> str:
    """The cursor after a row (`created_at` as a datetime or already in ISO form)."""
    when = created_at if isinstance(created_at, str) else created_at.isoformat()
    return base64.urlsafe_b64encode(f"{when}|{row_id}".encode()).decode()


def read_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) in a cursor; ValueError when `cursor` is not one `cursor_for` gave."""
    try:
        when, _, cid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return dt.datetime.fromisoformat(when), uuid.UUID(cid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor this API gave") from None
