"""What a call session needs from the rest of the system, as protocols.

The application wires PostgreSQL and Redis implementations in; `media` never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ai.conversation.commands import RecordTurn

if TYPE_CHECKING:
    from ai.playbook import Playbook


@dataclass(slots=True)
class CallInfo:
    """A stored call as a session needs it. `playbook_ref` is the playbook it was created
    with (name@version); `playbook` is that playbook once resolved (by the application)."""

    call_id: str
    carrier: str
    context: dict[str, Any] = field(default_factory=dict)
    playbook_ref: str | None = None
    status: str = "created"
    playbook: Playbook | None = None


class CallRecorder(Protocol):
    async def get_call(self, call_id: str) -> CallInfo | None: ...

    async def claim_call(
        self, call_id: str, carrier: str, carrier_call_id: str, stream_id: str, meta: dict[str, Any]
    ) -> bool:
        """Mark a created call in progress; False if another connection already has it."""
        ...

    async def add_turn(self, call_id: str, turn: RecordTurn) -> None: ...

    async def add_event(self, call_id: str, kind: str, t_ms: int, data: dict[str, Any]) -> None: ...

    async def set_outcome(self, call_id: str, fields: dict[str, Any]) -> None: ...

    async def call_ended(
        self, call_id: str, status: str, reason: str | None, close_code: int | None
    ) -> None: ...


class LiveRegistry(Protocol):
    async def register(self, call_id: str, info: dict[str, Any]) -> None: ...

    async def update(self, call_id: str, info: dict[str, Any]) -> None: ...

    async def unregister(self, call_id: str) -> None: ...

    async def count(self) -> int: ...
