"""Scenarios from a short brief ("three hardship cases, one hostile"): offline from
templates with a seed, or by an LLM when one is configured (OpenAI chat completions, any
OpenAI-compatible `base_url`), its JSON answer validated as evaluation.models.Scenario.

Offline, the brief's words pick the kinds of debtor (hardship, hostile, dispute, ...; all
kinds when none is named) and each kind picks the personality that resists that way; the
seed draws the people (fictional names, 555-01xx numbers), balances, years and life events,
so one brief and one seed always give the same scenarios.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ai.llm_text import LLMRequestError, LLMSettings, open_client, stream_completion
from evaluation.models import Backstory, Personality, Scenario

__all__ = ["KINDS", "GenerationError", "GenerationTimeout", "NoPersonality",
           "generate_offline", "generate_with_llm", "kinds_for", "parse_llm_scenarios"]


class GenerationError(RuntimeError):
    """The scenarios could not be generated: the reason says why (the brief names no kind a
    personality plays, the LLM failed, timed out or answered something that is not valid)."""


class NoPersonality(GenerationError):
    """No personality in the library can play the kind of debtor the brief asks for."""


class GenerationTimeout(GenerationError):
    """The LLM did not answer in time."""


@dataclass(frozen=True)
class Kind:
    keywords: tuple[str, ...]
    #: the resistance tactic a personality needs to play it (None: the most willing payer)
    resistance: str | None
    expected_outcomes: tuple[str, ...]
    life_events: tuple[str, ...]
    will_agree: tuple[str, ...] = ()
    will_not_agree: tuple[str, ...] = ()
    answered_by: str = "debtor"
    income: tuple[int, int] | None = (2500, 6000)


KINDS: dict[str, Kind] = {
    "cooperative": Kind(("cooperative", "willing", "easy", "pays", "pay in full"), None,
                        ("promise_to_pay",), ("I just started a new job", "I got a bonus at work"),
                        ("paying the full balance this week",)),
    "hardship": Kind(("hardship", "job loss", "lost job", "lost their job", "unemploy", "sick",
                      "illness", "medical", "afford", "struggl", "broke"), "hardship",
                     ("promise_to_pay", "refused"),
                     ("lost my job {months} months ago", "My hours were cut at work",
                      "I have medical bills after a surgery"),
                     ("a monthly payment of at most {small} dollars",),
                     ("paying the full balance", "a lump-sum settlement"), income=(600, 1600)),
    "hostile": Kind(("hostile", "angry", "rude", "abusive", "aggressive", "yell", "swear"), "anger",
                    ("opt_out", "abusive", "hung_up", "refused"), ("I have had many collection calls about this",),
                    (), ("any payment on this call",)),
    "wrong-person": Kind(("wrong person", "wrong number", "third party", "relative", "roommate"),
                         "wrong_person", ("wrong_party",), (), answered_by="third_party", income=None),
    "dispute": Kind(("dispute", "not mine", "not my debt", "fraud", "identity theft", "never owed"),
                    "dispute", ("dispute",), ("I never opened an account with this creditor",),
                    ("receiving validation in writing",), ("paying anything before validation",)),
    "already-paid": Kind(("already paid", "paid already", "paid it", "settled"), "already_paid",
                         ("already_paid",), ("I paid the balance online {paid_days} days ago",),
                         ("sending proof of payment",), ("paying again",)),
    "callback": Kind(("call back", "callback", "busy", "later", "at work", "driving"), "callback",
                     ("callback",), ("I am at work and cannot talk now",),
                     ("a call back tomorrow evening",)),
    "opt-out": Kind(("stop calling", "opt out", "opt-out", "do not call", "attorney", "lawyer"),
                    "opt_out", ("opt_out",), ("I have an attorney handling my debts",)),
    "staller": Kind(("stall", "think about", "undecided", "avoid"), "stalling",
                    ("callback", "refused"), ("I want to talk it over with my family first",)),
    "human-asker": Kind(("human", "real person", "supervisor", "manager"), "ask_human",
                        ("transferred", "callback"), ("I do not trust automated calls",)),
}

_FIRST = ("Avery", "Jordan", "Morgan", "Casey", "Riley", "Quinn", "Harper", "Rowan", "Emerson",
          "Sawyer", "Dakota", "Reese", "Finley", "Marlow", "Hollis", "Tatum")
_LAST = ("Ashdown", "Bramwell", "Calloway", "Dunmore", "Ellery", "Fairbank", "Garrow",
         "Hartwell", "Iverson", "Kestrel", "Lindqvist", "Merriweather", "Northcott", "Pellham")
_CREDITORS = ("Northwind Bank", "Harbor Credit Union", "Summit Card Services",
              "Lakeside Medical Group", "Brightline Telecom", "Maple Auto Finance")
#: area code → time zone (the numbers are 555-01xx, reserved for fiction)
_AREAS = (("202", "America/New_York"), ("312", "America/Chicago"),
          ("415", "America/Los_Angeles"), ("617", "America/New_York"), ("713", "America/Chicago"))


def kinds_for(brief: str) -> list[str]:
    """The kinds of debtor a brief names, in the order it names them (all when none)."""
    text = " " + re.sub(r"[^a-z0-9]+", " ", brief.lower()) + " "
    found: list[tuple[int, str]] = []
    for name, kind in KINDS.items():
        where = [text.find(" " + k) for k in kind.keywords if " " + k in text]
        if where:
            found.append((min(where), name))
    return [name for _, name in sorted(found)] or list(KINDS)


def _personality_for(kind_name: str, personalities: Mapping[str, Personality]) -> str:
    kind = KINDS[kind_name]
    live = sorted(personalities.values(), key=lambda p: p.name)
    if kind.resistance is None:
        calm = [p for p in live if not p.silent and "anger" not in p.resistance]
        if not calm:
            raise NoPersonality(f"brief: no personality can play a {kind_name} debtor")
        return max(calm, key=lambda p: p.willingness_to_pay).name
    # the one that resists that way first (the least willing to pay among those), then any
    ranked = sorted((p.resistance.index(kind.resistance), p.willingness_to_pay, p.name)
                    for p in live if kind.resistance in p.resistance)
    if not ranked:
        raise NoPersonality(f"brief: no personality resists by {kind.resistance} (for a"
                              f" {kind_name} debtor); known: {', '.join(p.name for p in live) or 'none'}")
    return ranked[0][2]


def generate_offline(brief: str, count: int, seed: int,
                     personalities: Mapping[str, Personality], *, today: dt.date | None = None
                     ) -> list[Scenario]:
    """`count` scenarios from templates; the same brief and seed give the same ones."""
    words = " ".join(brief.lower().split())
    rng = random.Random(f"{seed}|{words}")
    # the brief's digest in the names: two briefs with one seed name their scenarios apart
    tag = hashlib.sha256(words.encode()).hexdigest()[:6]
    today = today or dt.date(2026, 12, 1)
    kinds = kinds_for(brief)
    out: list[Scenario] = []
    for i in range(count):
        kind_name = kinds[i % len(kinds)]
        name = f"gen-{kind_name}-{seed}-{tag}-{i + 1}"
        out.append(_from_template(name, kind_name, rng, today,
                                  _personality_for(kind_name, personalities)))
    return out


def _from_template(name: str, kind_name: str, rng: random.Random, today: dt.date,
                   personality: str) -> Scenario:
    kind = KINDS[kind_name]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    area, zone = rng.choice(_AREAS)
    balance = round(rng.uniform(150, 9000), 2)
    values = {"months": rng.randint(1, 8), "small": int(rng.choice((50, 75, 100, 150))),
              "paid_days": rng.randint(3, 40)}
    events = [e.format(**values) for e in rng.sample(kind.life_events, min(1, len(kind.life_events)))]
    income = rng.randrange(*kind.income, 50) if kind.income else None
    creditor = rng.choice(_CREDITORS)
    backstory = Backstory(
        debtor_name=f"{first} {last}", birth_year=rng.randint(1950, 2000), creditor=creditor,
        balance=balance, due_date=today - dt.timedelta(days=rng.randint(30, 400)),
        callback_number=f"800-555-01{rng.randint(0, 99):02d}", timezone=zone,
        phone=f"+1{area}55501{rng.randint(0, 99):02d}", first_contact=rng.random() < 0.8,
        answered_by=kind.answered_by,  # type: ignore[arg-type]
        answerer_name=rng.choice(_FIRST) if kind.answered_by == "third_party" else None,
        monthly_income=income, life_events=events,
        will_agree=[a.format(**values) for a in kind.will_agree],
        will_not_agree=[a.format(**values) for a in kind.will_not_agree],
        paid_on=today - dt.timedelta(days=values["paid_days"]) if kind_name == "already-paid" else None,
    )
    about = f"A {kind_name} debtor: {first} {last} owes {creditor} {balance:,.2f} USD."
    return Scenario(
        name=name, description=about[:2000], personality=personality,
        backstory=backstory, weight=3, expected_outcomes=list(kind.expected_outcomes),  # type: ignore[arg-type]
        tags=["generated", kind_name],
    )


# ---- with an LLM -----------------------------------------------------------------------


def _instructions(count: int, personalities: Mapping[str, Personality]) -> str:
    who = "\n".join(f'- "{p.name}": {p.description or "no description"} (resists by: '
                    f'{", ".join(p.resistance) or "nothing"})' for p in personalities.values())
    schema = json.dumps(Scenario.model_json_schema())
    return (
        "You write test scenarios for a debt-collection voice agent: a simulated debtor (one of"
        " the personalities below) in a situation. Answer with one JSON object and nothing else:"
        f' {{"scenarios": [...]}} holding exactly {count} scenarios. Each follows this JSON'
        f" schema: {schema}\n"
        "Rules: every person, creditor and amount is fictional; phone numbers are +1 followed by"
        " a 3-digit area code and 55501 and two digits (the 555-01xx range); names are lower-case"
        " letters, digits and dashes, unique; weight is 1 to 5 (how often such a debtor comes"
        " up); expected_outcomes lists what a good agent reaches, the best first.\n"
        f"Personalities (use one of these names in `personality`):\n{who}"
    )


async def generate_with_llm(brief: str, count: int, seed: int,
                            personalities: Mapping[str, Personality], llm: LLMSettings
                            ) -> list[Scenario]:
    """Ask the model for `count` scenarios fitting `brief` (the whole answer within
    `llm.timeout_s`, 60 s when None); GenerationError when it fails, times out, or answers
    anything but valid scenarios of known personalities."""
    timeout_s = llm.timeout_s or 60.0
    params: dict[str, Any] = {} if llm.max_tokens is None else {"max_tokens": llm.max_tokens}
    async with open_client(llm, timeout_s=timeout_s, max_retries=0) as client:
        try:
            answer = await stream_completion(
                client, model=llm.model, timeout_s=timeout_s, temperature=llm.temperature,
                seed=seed, response_format={"type": "json_object"},
                messages=[{"role": "system", "content": _instructions(count, personalities)},
                          {"role": "user", "content": f"Brief: {brief}"}],
                **params,
            )
        except LLMRequestError as exc:
            if exc.kind == "timeout":
                raise GenerationTimeout(f"the LLM did not answer within {timeout_s:g} s") from None
            if exc.kind == "status":
                raise GenerationError(f"the LLM refused: HTTP {exc.status}: {exc.detail[:200]}") from None
            raise GenerationError(f"the LLM request failed: {exc.error_type}: {exc.detail[:200]}") from None
    return parse_llm_scenarios(answer.text, count, personalities)


def parse_llm_scenarios(text: str, count: int, personalities: Mapping[str, Personality]
                        ) -> list[Scenario]:
    """The model's answer as scenarios (the first `count`); GenerationError naming the
    problem otherwise."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise GenerationError(f"the LLM's answer is not JSON ({exc}): {text[:200]!r}") from None
    items = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise GenerationError('the LLM\'s answer has no "scenarios" list')
    if len(items) < count:
        raise GenerationError(f"asked for {count} scenarios, the LLM wrote {len(items)}")
    out: list[Scenario] = []
    for i, item in enumerate(items[:count]):
        try:
            scenario = Scenario.model_validate(item)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise GenerationError(f"the LLM's scenario {i + 1} is invalid: {where}: {first['msg']}") from None
        if scenario.personality not in personalities:
            raise GenerationError(f"the LLM's scenario {i + 1} names an unknown personality"
                                  f" {scenario.personality!r}")
        tags = list(dict.fromkeys([*scenario.tags, "generated", "llm"]))
        out.append(scenario.model_copy(update={"tags": tags}))
    if len({s.name for s in out}) != len(out):
        raise GenerationError("the LLM gave two scenarios the same name")
    return out
