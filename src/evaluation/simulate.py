"""What `dialkit call --simulate` needs around the simulation entry points: the shipped
scenario a `--persona` name means, and a simulated call shown as the CLI's JSON object."""

from __future__ import annotations

from typing import Any

from evaluation.library_data import SCENARIO_SETS, load_personalities, load_scenario_set
from evaluation.models import Personality, Scenario, SimulatedCall

__all__ = ["SimulationChoiceError", "SimulationView", "find_scenario"]


class SimulationChoiceError(ValueError):
    """A name that is no shipped scenario and no shipped personality."""


def find_scenario(name: str) -> tuple[Scenario, Personality]:
    """The shipped scenario called `name` (the default set first), or else the first
    shipped scenario played by the personality called `name`."""
    personalities = load_personalities()
    scenarios = [s for set_name in SCENARIO_SETS for s in load_scenario_set(set_name)]
    chosen = next((s for s in scenarios if s.name == name), None)
    chosen = chosen or next((s for s in scenarios if s.personality == name), None)
    if chosen is None:
        names = sorted({s.name for s in scenarios} | set(personalities))
        raise SimulationChoiceError(f"unknown scenario or personality {name!r}; choose from: {', '.join(names)}")
    return chosen, personalities[chosen.personality]


class SimulationView:
    """A `SimulatedCall` as the simulate command prints it (`as_json`: the same keys in
    text and audio mode; `persona` names the scenario played)."""

    def __init__(self, call: SimulatedCall, *, carrier: str = "text", wav: str | None = None) -> None:
        self.call = call
        self.carrier = carrier
        self.wav = wav

    @property
    def status(self) -> str:
        return self.call.status

    def as_json(self) -> dict[str, Any]:
        c = self.call
        f = c.outcome_fields
        ptp = None
        if f.get("ptp_amount") is not None:
            ptp = {"amount": f["ptp_amount"], "date": f.get("ptp_date"), "plan": f.get("ptp_plan")}
        turns = [t.model_dump() for t in c.turns]
        return {
            "call_id": c.call_id, "persona": c.scenario,
            "carrier": self.carrier, "mode": c.mode, "status": c.status,
            "failure_reason": c.failure_reason, "outcome": c.outcome, "promise_to_pay": ptp,
            "opt_out": bool(f.get("opt_out")), "turns": turns,
            "latencies_ms": [t["voice_to_voice_ms"] for t in turns
                             if t["speaker"] == "agent" and t["voice_to_voice_ms"] is not None],
            "barge_ins": c.barge_ins, "stages": c.stages, "wav": self.wav,
        }
