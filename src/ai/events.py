"""What the engine feeds a policy: the call started, the caller spoke, silence, DTMF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(slots=True)
class CallStarted:
    pass


@dataclass(slots=True)
class UserTurn:
    text: str


@dataclass(slots=True)
class Silence:
    count: int  # consecutive silences so far


@dataclass(slots=True)
class DtmfEntry:
    digits: str
    terminated_by: Literal["#", "timeout", "max"]


@dataclass(slots=True)
class MachineDetected:
    source: Literal["carrier", "classifier"]


PolicyEvent = CallStarted | UserTurn | Silence | DtmfEntry | MachineDetected
