"""Both carrier emulators at once, playing calls out by fate: for `dialkit campaign demo`
and whole-campaign tests, offline.

    async with running_carriers(seed=7) as carriers:
        settings = base.model_copy(update=carriers.settings())  # point dialkit at them
        ...                                                      # run the campaign
        await carriers.idle()                                    # every call over

The same fates serve both carriers (looked up by the dialled number); by default a seeded
mix (`SeededFates`) with quiet callees, or persona lines when `lines` names personas and
`speech` (STT, TTS) voices them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from emulators.carrier_line import LineChoice, Speech
from emulators.exotel_api import ExotelApi, running_exotel_api
from emulators.fates import CallbackRecord, FateBook, FateKind, FateSource, Quirks, SeededFates
from emulators.twilio_api import TwilioApi, running_twilio_api


@dataclass
class Carriers:
    twilio: TwilioApi
    exotel: ExotelApi

    def settings(self) -> dict[str, Any]:
        """dialkit `Settings` fields that point its carrier call control at the emulators."""
        return {
            "twilio_account_sid": self.twilio.account_sid,
            "twilio_auth_token": SecretStr(self.twilio.auth_token),
            "twilio_api_base": self.twilio.base_url,
            "exotel_account_sid": self.exotel.account_sid,
            "exotel_api_key": SecretStr(self.exotel.api_key),
            "exotel_api_token": SecretStr(self.exotel.api_token),
            "exotel_api_base": self.exotel.base_url,
        }

    @property
    def callbacks(self) -> list[CallbackRecord]:
        return [*self.twilio.callbacks, *self.exotel.callbacks]

    async def idle(self, timeout_s: float = 300.0) -> None:
        """Wait until every call placed so far has ended and its callbacks were delivered."""
        calls = [c.done for c in self.twilio.calls.values() if c.fate is not None]
        calls += [c.done for c in self.exotel.calls.values() if c.fate is not None]
        await asyncio.wait_for(asyncio.gather(*(done.wait() for done in calls)), timeout_s)


@asynccontextmanager
async def running_carriers(
    seed: int = 0,
    *,
    fates: FateBook | FateSource | None = None,
    weights: Mapping[FateKind, float] | None = None,
    lines: Sequence[LineChoice] = (),
    quirks: Quirks | None = None,
    speech: Speech | None = None,
) -> AsyncIterator[Carriers]:
    """Start the Twilio and Exotel emulators on 127.0.0.1 with `fates`, or with a seeded mix
    (`seed`, `weights` per fate, `lines` for answered calls, `quirks` for every call)."""
    book = fates if fates is not None else SeededFates(seed, weights, lines, quirks)
    async with running_twilio_api(fates=book, speech=speech) as twilio, running_exotel_api(
        fates=book, speech=speech
    ) as exotel:
        yield Carriers(twilio, exotel)
