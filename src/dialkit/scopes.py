"""API scopes (read < write < admin: each implies the ones before it) and the refusal an
authenticator raises."""

from __future__ import annotations

from typing import Literal, get_args

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)


def allows(granted: Scope, needed: Scope) -> bool:
    """Whether a key of scope `granted` may call a route that needs `needed`."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


class Denied(Exception):
    """A request refused by authentication: 401 (no or unknown key) or 403 (scope too low)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)
