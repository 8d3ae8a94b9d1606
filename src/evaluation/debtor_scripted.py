"""The scripted debtor: a `Personality` in a `Backstory`, played by rule on what the agent
means (`evaluation.understanding`), never on its exact words.

It answers who it is (or is a third party, or a voicemail, per `answered_by`), gives its
birth year only when asked, resists with its tactics in order, keeps a mood (anger rises
with its anger triggers and falls with its calm triggers; past its patience it swears, or
hangs up when hanging up is one of its tactics), accepts an offer only when the amount is
within what it can afford and its willingness allows, otherwise counters, pleads hardship
or stalls; gives a date no earlier than it can pay; confirms a restatement only when it
matches what it agreed to. A `random.Random(seed)` picks among phrasings, so one seed
gives one transcript.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from evaluation.models import Backstory, Personality
from evaluation.understanding import Facts, Meaning, understand

__all__ = ["ScriptedDebtor"]

# tactics that answer the debt's mere mention; the others answer an offer
_REACTIVE = ("dispute", "already_paid", "opt_out", "callback", "ask_human")
_CALLBACK_TIMES = ("tomorrow at 5 pm", "Monday at noon", "tomorrow morning at 10",
                   "Thursday at 6 pm")
_LONG_TURN_WORDS = 45


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _money(amount: float) -> str:
    return f"{amount:,.0f} dollars" if amount == int(amount) else f"{amount:,.2f} dollars"


class ScriptedDebtor:
    """Plays one scenario's debtor in one call. `reply(agent_text)` is what they say back
    (None: silence); `hung_up` is set once they end the call or heard the goodbye."""

    def __init__(self, personality: Personality, backstory: Backstory, *, seed: int,
                 today: dt.date) -> None:
        self.personality = personality
        self.backstory = backstory
        self.name = personality.name
        self.rng = random.Random(seed)
        self.today = today
        self.facts = Facts(backstory.debtor_name, backstory.balance, backstory.creditor, today)
        self.first_name = backstory.debtor_name.split()[0]
        self.words_per_minute = personality.speaking_wpm
        self.interrupt_after_ms = personality.interrupt_after_ms if personality.interrupts else None
        self.hung_up = False
        self.anger = 0
        self.calm = 0
        self.tactics = [t for t in personality.resistance if t not in ("hang_up", "wrong_person")]
        self.identified = False
        self.declines = 0
        self.stance: str | None = None  # a terminal tactic already taken (dispute, opt_out, ...)
        self.agreed: float | None = None  # the amount (per payment) agreed to
        self.agreed_date: dt.date | None = None
        self.asked: list[frozenset[str]] = []
        self.last_reply: str | None = None
        self.interruptions = 0
        self._last_offer: tuple[str, float | None] | None = None

    # ---- the Debtor protocol -------------------------------------------------------------

    def opening(self) -> str | None:
        """What the callee says on answering: only a voicemail speaks first."""
        if self.backstory.answered_by != "voicemail":
            return None
        who = self.backstory.answerer_name or self.first_name
        return f"Hi, you've reached {who}. I can't take your call right now. Please leave a message after the tone."

    async def reply(self, agent_text: str) -> str | None:
        return self.answer(agent_text)

    def interruption(self, agent_text: str, words_per_minute: float) -> str | None:
        """A backchannel barged in on an agent turn that runs past `interrupt_after_ms`."""
        if self.hung_up or self.interrupt_after_ms is None or self.interruptions >= 2:
            return None
        if len(agent_text.split()) * 60_000 / words_per_minute <= self.interrupt_after_ms:
            return None
        self.interruptions += 1
        return self.rng.choice(("Sorry, go ahead.", "Go on.", "Mm-hmm."))

    # ---- answering -------------------------------------------------------------------------

    def answer(self, agent_text: str) -> str | None:
        if self.hung_up:
            return None
        m = understand(agent_text, self.facts)
        if "goodbye" in m:
            self.hung_up = True
            return None
        p, b = self.personality, self.backstory
        if p.silent or b.answered_by == "voicemail":
            return None
        self._mood(m)
        if b.answered_by == "third_party":
            text = self._third_party(m)
        elif self.anger > p.patience and "hang_up" in p.resistance:
            self.hung_up = True
            if "opt_out" in self.tactics and self.stance != "opt_out":
                text = self._tactic("opt_out", m)  # the last word before hanging up
            else:
                text = self._pick("I'm done with this.", "I don't have time for this.") + " Bye."
        else:
            text = self._debtor(m)
        if text is not None:
            self.last_reply = text
        return text

    def _mood(self, m: Meaning) -> None:
        triggers: list[str] = []
        if "debt_named" in m:
            triggers.append("debt_named")
        offer = m.offer
        if offer is not None:
            key = (offer, m.amount)
            if self.declines and (offer == "full" or key == self._last_offer):
                triggers.append("pressure")
            self._last_offer = key
        questions = frozenset(m.acts & {"identity_request", "verification", "offer_full",
                                        "offer_settlement", "offer_instalments", "ask_amount",
                                        "date_question", "callback_question"})
        if questions and questions in self.asked[-2:]:
            triggers.append("repeated_question")
        if questions:
            self.asked.append(questions)
        if m.words > _LONG_TURN_WORDS and "question" not in m:
            triggers.append("long_turn")
        for act, trigger in (("threat", "threat"), ("empathy", "empathy"),
                             ("offer_instalments", "payment_plan"),
                             ("offer_settlement", "settlement_offer"),
                             ("callback_offer", "callback_offer"), ("disclosure", "clear_disclosure")):
            if act in m:
                triggers.append(trigger)
        for t in triggers:
            if t in self.personality.anger_triggers:
                self.anger += 1
            if t in self.personality.calm_triggers:
                self.anger = max(0, self.anger - 1)
                self.calm += 1

    @property
    def resolve(self) -> float:
        return self.personality.willingness_to_pay + 0.1 * self.calm - 0.1 * self.anger

    def _pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def _third_party(self, m: Meaning) -> str | None:
        b = self.backstory
        if "wrong_person" in self.personality.resistance:
            if m.acts & {"identity_request", "verification", "debt_named", "question"}:
                return self._pick("Sorry, there's nobody here by that name. You have the wrong number.",
                                  "You've got the wrong number. I don't know anyone called "
                                  f"{self.first_name}.")
            return None
        if "name_question" in m:
            return f"This is {b.answerer_name}." if b.answerer_name else "Who's asking?"
        if "identity_request" in m or "verification" in m:
            return self._pick(f"{self.first_name} isn't here right now. Can I take a message?",
                              f"No, I'm not {self.first_name}. They're not home right now.")
        if "debt_named" in m:
            return "I don't know anything about that."
        if "question" in m:
            return f"Sorry, {self.first_name} isn't available."
        return None

    def _debtor(self, m: Meaning) -> str | None:
        p, b = self.personality, self.backstory
        asked = m.offer or m.acts & {"identity_request", "verification", "ask_amount",
                                     "date_question", "confirmation", "callback_question"}
        if "not_understood" in m and self.last_reply and not asked:
            return self.last_reply
        if "transfer" in m and "question" not in m:
            return None
        if "identity_request" in m or "name_question" in m:
            if "wrong_person" in p.resistance:
                self.stance = "wrong_person"
                return "No, you have the wrong number."
            again = self.identified
            self.identified = True
            if "verification" not in m:
                if again:
                    return "Yes, I told you, it's me."
                if "anger" in p.resistance:
                    return self._pick("Yeah, it's me. Who is this?", "Speaking. Who's calling?")
                return self._pick(f"Yes, this is {self.first_name}.", f"Speaking, this is {self.first_name}.",
                                  "Yes, that's me.")
        if "verification" in m:
            year = b.birth_year
            text = self._pick(f"It's {year}.", f"I was born in {year}.", f"{year}.")
            return text + (" What is this about?" if "anger" in p.resistance else "")
        if "still_there" in m:
            return "Yes, I'm here."
        wants_money = bool(m.offer or m.acts & {"ask_amount", "date_question", "confirmation"})
        if self.stance is not None and (wants_money or "debt_named" in m):
            return self._tactic(self.stance, m)
        if self.tactics and self.tactics[0] in _REACTIVE and (wants_money or "debt_named" in m):
            return self._tactic(self.tactics.pop(0), m)
        if "callback_question" in m:
            return self._pick(*_CALLBACK_TIMES).capitalize() + "."
        if "confirmation" in m:
            return self._confirm(m)
        if m.offer is not None or "ask_amount" in m:
            return self._offer(m)
        if "date_question" in m:
            if self.agreed is None:
                return self._offer(m)
            return self._date()
        if "threat" in m:
            return "Are you threatening me?" if self.anger else "I don't appreciate that."
        if "callback_offer" in m and "question" in m:
            return "No, now is fine." if "callback" not in self.tactics else self._tactic("callback", m)
        if "question" in m:
            return self._pick("Sorry, what do you mean?", "I'm not sure what you're asking.")
        if "disclosure" in m or "debt_named" in m:
            return "Okay."
        return None

    def _tactic(self, tactic: str, m: Meaning) -> str:
        b = self.backstory
        angry = self.anger > self.personality.patience
        if tactic in ("dispute", "already_paid", "opt_out", "callback", "ask_human"):
            self.stance = tactic
        if tactic == "dispute":
            return self._pick(f"That's not my debt. I never had an account with {b.creditor}.",
                              "I don't owe that. I'm disputing it.")
        if tactic == "already_paid":
            when = f" on {b.paid_on:%B} {_ordinal(b.paid_on.day)}" if b.paid_on else ""
            return f"I already paid that{when}. I have the receipt."
        if tactic == "opt_out":
            if angry:
                return "Stop calling me, you bloodsucking bastards. Don't ever call this number again."
            return self._pick("Stop calling me. Don't call this number again.",
                              "Please take my number off your list and stop calling me.")
        if tactic == "callback":
            if "callback_question" in m:
                return self._pick(*_CALLBACK_TIMES).capitalize() + "."
            return f"I'm at work right now. Can you call me back {self._pick(*_CALLBACK_TIMES)}?"
        if tactic == "ask_human":
            if "callback_question" in m:
                return self._pick(*_CALLBACK_TIMES).capitalize() + "."
            return self._pick("I want to talk to a real person.", "Can I speak to a human, please?")
        if tactic == "hardship":
            event = b.life_events[0] if b.life_events else "Money is really tight right now."
            return event.rstrip(".") + ". I can't afford that."
        if tactic == "stalling":
            return self._pick("I need to think about it.", "I don't know, I'd have to look at my budget first.",
                              "I'm not sure. I can't decide that right now.")
        # anger
        if angry:
            return "This is bullshit. I'm not paying you people anything."
        return self._pick("Are you kidding me? No, I'm not paying that.", "No. Why do you people keep calling me?")

    def _affordable(self, m: Meaning) -> bool:
        ca, balance = self.personality.can_afford, self.backstory.balance
        limit = ca.limit(balance)
        if m.offer == "instalments":
            per = m.amount if m.amount is not None else balance / (m.count or 1)
            return ca.instalments_ok and per <= limit + 0.005
        amount = m.amount if m.amount is not None else balance
        return amount <= limit + 0.005

    def _offer(self, m: Meaning) -> str:
        ca = self.personality.can_afford
        limit = min(ca.limit(self.backstory.balance), self.backstory.balance)
        willing = self.resolve >= 0.5
        if m.offer is not None and willing and self._affordable(m):
            self.agreed = m.amount if m.amount is not None else self.backstory.balance
            text = {"full": self._pick("Yes, I can pay the full amount.", "Okay, I can pay all of it."),
                    "settlement": self._pick("Yes, that works for me.", "Okay, I can do that."),
                    "instalments": self._pick("Yes, I can manage that each month.",
                                              "Okay, monthly payments work for me.")}[m.offer]
            return text + (" " + self._date() if "date_question" in m else "")
        if m.offer is not None:
            self.declines += 1
        if self.tactics and not (self.declines > 1 and willing and limit > 0):
            return self._tactic(self.tactics.pop(0), m)
        if willing and limit > 0 and (self.declines > 1 or "ask_amount" in m or m.offer is None):
            self.agreed = limit
            per = " a month" if ca.instalments_ok and limit < self.backstory.balance else ""
            lead = "I can't do that. " if m.offer is not None else ""
            text = f"{lead}The most I could pay is {_money(limit)}{per}."
            return text + (" " + self._date() if "date_question" in m else "")
        if not willing and self.declines > 2:
            return "No. I'm not going to pay anything right now."
        return self._pick("No, that's more than I can pay.", "No, that's too much for me.")

    def _date(self) -> str:
        earliest = self.personality.can_afford.earliest_days
        d = self.today + dt.timedelta(days=max(earliest, self.rng.choice((2, 3, 5, 7))))
        self.agreed_date = d
        return f"On {d:%B} {_ordinal(d.day)}."

    def _confirm(self, m: Meaning) -> str:
        if self.agreed is None:
            return "No, I haven't agreed to anything."
        amounts = [m.amount] if m.amount is not None else m.amounts
        same_amount = not amounts or any(abs(a - self.agreed) < 0.01 for a in amounts)
        same_date = m.date is None or self.agreed_date is None or m.date == self.agreed_date
        if same_amount and same_date:
            return self._pick("Yes, that's right.", "Yes, that's correct.")
        when = f" on {self.agreed_date:%B} {_ordinal(self.agreed_date.day)}" if self.agreed_date else ""
        return f"No, that's not right. I said {_money(self.agreed)}{when}."

    def state(self) -> dict[str, Any]:
        """The debtor's mood and commitments, for a test or a log."""
        return {"anger": self.anger, "calm": self.calm, "stance": self.stance,
                "agreed": self.agreed, "agreed_date": self.agreed_date, "hung_up": self.hung_up}
