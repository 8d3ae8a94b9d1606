"""The LLM debtor: an OpenAI-compatible chat model plays a `Personality` in a `Backstory`.

The system prompt frames the model as a person receiving an outbound call, gives it the
personality's parameters and the backstory's facts, and tells it to reveal a fact only when
asked and never to invent one beyond them; the model ends the call by writing the stop
marker (`[END_CALL]`). Each agent turn is a user message, each debtor line an assistant
message, through the official `openai` SDK (async), each reply of at most
`max_tokens` (120 when None) with a `timeout_s` (30 s when None) per read and one retry.
"""

from __future__ import annotations

import datetime as dt
import re

from openai.types.chat import ChatCompletionMessageParam

from ai.llm_text import LLMRequestError, LLMSettings, open_client, stream_completion
from evaluation.models import RESISTANCE, TRIGGERS, Backstory, Personality

__all__ = ["END_CALL", "LLMDebtor", "LLMDebtorError", "system_prompt"]

END_CALL = "[END_CALL]"
_BRACKETS = re.compile(r"\[[A-Z_ ]+\]|\*[^*]*\*")  # stage directions the model may add


class LLMDebtorError(RuntimeError):
    """The model could not be reached or gave no usable reply."""


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def system_prompt(personality: Personality, backstory: Backstory, today: dt.date) -> str:
    """The debtor's instructions: who they are, what they know, how they behave."""
    p, b = personality, backstory
    ca = p.can_afford
    limit = _money(min(ca.limit(b.balance), b.balance), b.currency)
    afford = (f"at most {limit} per month in instalments, or at most {limit} at once"
              if ca.instalments_ok else f"at most {limit}, in one payment only (no instalments)")
    if b.answered_by == "third_party":
        who = (f"You are {b.answerer_name or 'someone'} and you answered the phone of "
               f"{b.debtor_name}. You are NOT {b.debtor_name}; you know nothing about their money.")
    elif b.answered_by == "voicemail":
        who = "You are an answering machine: say only a short greeting asking to leave a message."
    else:
        who = f"You are {b.debtor_name}, born in {b.birth_year}."
    lines = [
        "You are playing a person who just picked up an outbound phone call; the messages you",
        "receive are what the caller says, as speech recognition heard it. Answer as that",
        "person would on the phone: one or two short spoken sentences, no stage directions.",
        who,
        "What you know (reveal a fact only when the caller asks for it, and never invent any",
        "fact that is not written here; if asked something you do not know, say you don't know):",
        f"- You have an account with {b.creditor}; its past-due balance is {_money(b.balance, b.currency)}.",
        f"- Today is {today:%A, %B} {today.day}, {today.year}.",
    ]
    if b.monthly_income is not None:
        lines.append(f"- Your monthly income is {_money(b.monthly_income, b.currency)}.")
    lines += [f"- {event}" for event in b.life_events]
    if b.paid_on is not None:
        lines.append(f"- You paid this debt on {b.paid_on:%B} {b.paid_on.day}, {b.paid_on.year}.")
    lines += [
        f"You can pay {afford}, and not before {ca.earliest_days} days from today.",
        f"Willingness to pay, 0 to 1: {p.willingness_to_pay:.1f}. Patience, 0 to 10: {p.patience}.",
    ]
    if b.will_agree:
        lines.append("You would agree to: " + "; ".join(b.will_agree) + ".")
    if b.will_not_agree:
        lines.append("You will not agree to: " + "; ".join(b.will_not_agree) + ".")
    if p.resistance:
        lines.append("How you resist, in this order: "
                     + "; ".join(f"{r} ({RESISTANCE[r]})" for r in p.resistance) + ".")
    if p.anger_triggers:
        lines.append("You get angrier when: " + "; ".join(TRIGGERS[t] for t in p.anger_triggers) + ".")
    if p.calm_triggers:
        lines.append("You calm down when: " + "; ".join(TRIGGERS[t] for t in p.calm_triggers) + ".")
    if p.description:
        lines.append(f"Your character: {p.description}")
    lines += [
        "Never agree to pay more than you can afford. Confirm a summary only if it matches",
        "exactly what you agreed to. Do not say you are an AI.",
        f"When you hang up, or the caller says goodbye, end your message with {END_CALL}.",
    ]
    return "\n".join(lines)


class LLMDebtor:
    """One call's LLM-played debtor (the `Debtor` protocol)."""

    def __init__(self, personality: Personality, backstory: Backstory, config: LLMSettings,
                 *, seed: int, today: dt.date) -> None:
        self.name = personality.name
        self.personality = personality
        self.config = config
        self.seed = seed
        self.words_per_minute = personality.speaking_wpm
        self.interrupt_after_ms: int | None = None  # the model answers whole turns only
        self.hung_up = False
        self.silent = personality.silent
        self.max_tokens = config.max_tokens or 120
        self.messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(personality, backstory, today)}]
        self._client = open_client(config, timeout_s=config.timeout_s or 30.0, max_retries=1)

    def opening(self) -> str | None:
        return None

    def interruption(self, agent_text: str, words_per_minute: float) -> str | None:
        return None

    async def reply(self, agent_text: str) -> str | None:
        if self.hung_up or self.silent:
            return None
        self.messages.append({"role": "user", "content": agent_text})
        try:
            answer = await stream_completion(
                self._client, model=self.config.model, messages=self.messages, timeout_s=None,
                temperature=self.config.temperature, max_tokens=self.max_tokens, seed=self.seed,
            )
        except LLMRequestError as e:
            raise LLMDebtorError(f"debtor model {self.config.model}: {e.error_type}: {e.detail}") from e
        if not answer.chunks:
            raise LLMDebtorError(f"debtor model {self.config.model}: no choices in the reply")
        content = answer.text
        self.messages.append({"role": "assistant", "content": content})
        if END_CALL in content:
            self.hung_up = True
        text = re.sub(r"\s+", " ", _BRACKETS.sub(" ", content)).strip()
        return text or None

    async def close(self) -> None:
        await self._client.close()
