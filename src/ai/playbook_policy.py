"""The scripted policy: a deterministic state machine that walks a playbook (greeting,
right-party verification, disclosure, negotiation, promise to pay) and handles the side
roads (wrong person, dispute, hardship, call-back, stop, abuse, silence, voicemail, DTMF,
a request for a human). No network, no model: the honest offline policy.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from ai.context import CallContext
from ai.conversation.history import actions_in
from ai.events import CallStarted, DtmfEntry, MachineDetected, PolicyEvent, Silence, UserTurn
from ai.extract import (
    parse_amount,
    parse_date,
    parse_datetime,
    parse_year,
    spoken_date,
    spoken_datetime,
)
from ai.playbook import Playbook, State, load_playbook, split_sentences
from ai.types import Action, ActionKind, Message, PolicyOutput, Say
from ai.vocabulary import PlanKind

__all__ = ["ScriptedPolicy", "ScriptedPolicyFactory"]

_MAX_VERIFY_FAILURES = 2
#: how a history shows the disclosure was given (the words every playbook's must contain)
MINI_MIRANDA_MARK = "attempt to collect a debt"
# keys of State.on that the engine follows itself, never matched as caller intents
_ENGINE_EVENTS = frozenset({"verified", "mismatch", "failed", "done", "unavailable"})


@dataclass
class _Plan:
    kind: PlanKind = "custom"
    amount: float | None = None
    date: dt.date | None = None
    instalments: int | None = None


class ScriptedPolicy:
    """One call's scripted agent. `respond` yields a `Say` per sentence and `Action`s;
    the response that ends the call finishes with an `end_call` action."""

    name = "playbook"

    def __init__(
        self, playbook: Playbook, context: Mapping[str, Any] | CallContext
    ) -> None:
        """`context` is the call's context (validated here; ContextError when it does not
        satisfy the playbook) or an already validated CallContext."""
        if playbook.kind != "collections":
            raise ValueError(f"ScriptedPolicy needs a collections playbook, got {playbook.kind!r}")
        self.playbook = playbook
        self.ctx = context if isinstance(context, CallContext) else CallContext.from_dict(
            context, playbook
        )
        self.state: str = "start"
        self.outcome: str | None = None
        self.verified = False
        self.plan = _Plan()
        self.callback_at: dt.datetime | None = None
        self._declined: set[str] = set()
        self._verify_failures = 0
        self._abuse = 0
        self._misses = 0
        self._disclose_first = False
        # the sentences of the disclosure as said, and whether the caller missed part of it
        # (talked over it): then it is said again before the call goes on
        self._disclosure: list[str] = []
        self._disclosure_unheard: list[str] = []
        self._out: list[PolicyOutput] = []
        self._intents = [
            (name, [re.compile(p, re.IGNORECASE) for p in patterns])
            for name, patterns in playbook.intents.items()
        ]

    @property
    def stage(self) -> str:
        """The stage of the call (the state's `stage`, else its name); the engine records
        the sequence."""
        st = self.playbook.states.get(self.state)
        return (st.stage if st is not None else None) or self.state

    def take_over(self, history: list[Message]) -> None:
        """Carry on a call another policy has been running (an LLM that failed), from the
        stage it reached: never greeting again once the greeting was said, never verifying
        again once the right party is verified, never repeating the disclosure, and
        continuing the offers after the last one made."""
        said = [m.content for m in history if m.role == "assistant" and m.content.strip()]
        if not said or self.state != "start":
            return
        done = set(actions_in(history))
        disclosed = any(MINI_MIRANDA_MARK in " ".join(line.lower().split()) for line in said)
        self.verified = disclosed or "right_party_verified" in done
        if not self.verified:
            asked_year = re.search(r"\b(year of birth|born|birth year)\b", said[-1].lower())
            self.state = "verify" if asked_year else "greeting"
            return
        if not disclosed:
            self._disclose_first = True
            self.state = "verify"
            return
        self.state = "offer_full"
        offers = [(name, st) for name, st in self.playbook.states.items() if st.expect == "offer"]
        for i, (name, st) in enumerate(offers):
            assert st.plan is not None
            if i and any(self.ctx.money(self._offer_amount(st.plan)) in line for line in said):
                self.state = name
                self._declined.update(n for n, _ in offers[:i])

    # ---- protocol ------------------------------------------------------------------------

    async def respond(
        self, history: list[Message], event: PolicyEvent
    ) -> AsyncIterator[PolicyOutput]:
        self.heard(history)
        for item in self.handle(event):
            yield item

    def heard(self, history: list[Message]) -> None:
        """Note what the caller heard (the engine's history keeps only what was played): a
        disclosure they talked over is owed again, from its first sentence not heard."""
        if not self._disclosure or self._disclosure_unheard:
            return
        said = " ".join(" ".join(m.content.split()) for m in history if m.role == "assistant")
        for i, sentence in enumerate(self._disclosure):
            if " ".join(sentence.split()) not in said:
                self._disclosure_unheard = self._disclosure[i:]
                self._disclosure = []
                return
        self._disclosure = []  # heard in full: nothing more to check

    def handle(self, event: PolicyEvent) -> list[PolicyOutput]:
        """The synchronous core of `respond` (same outputs, as a list)."""
        self._out = []
        if self.outcome is not None:
            return []
        if self._disclose_first:  # verified by the policy before us, not yet disclosed
            self._disclose_first = False
            self._enter(self.playbook.state("verify").on["verified"])
            return self._out
        if isinstance(event, CallStarted):
            if self.state == "start":
                self._enter("greeting")
        elif isinstance(event, MachineDetected):
            self._voicemail()
        elif isinstance(event, Silence):
            self._silence(event.count)
        elif isinstance(event, DtmfEntry):
            self._dtmf(event.digits)
        elif isinstance(event, UserTurn):
            self._text(event.text)
        return self._out

    # ---- output helpers ------------------------------------------------------------------

    def _values(self) -> dict[str, str]:
        extra: dict[str, Any] = {}
        if self.plan.amount is not None:
            extra["ptp_amount"] = self.ctx.money(self.plan.amount)
        if self.plan.date is not None:
            extra["ptp_date"] = spoken_date(self.plan.date, self.ctx.today)
        if self.callback_at is not None:
            extra["callback_time"] = "on " + spoken_datetime(self.callback_at, self.ctx.today)
        return self.ctx.template_values(**extra)

    def _say(self, *templates: str) -> None:
        values = self._values()
        for template in templates:
            for sentence in split_sentences(template.format_map(values)):
                self._out.append(Say(sentence))

    def _act(self, kind: ActionKind, **data: Any) -> None:
        self._out.append(Action(kind, data))

    def _end(self, outcome: str) -> None:
        self.outcome = outcome
        self._act("end_call", outcome=outcome)

    def _ask(self, st: State | None = None) -> None:
        st = st or self.playbook.state(self.state)
        ask = st.ask_by_plan.get(self.plan.kind) or st.ask
        if ask:
            self._say(ask)

    # ---- state machine -------------------------------------------------------------------

    def _enter(self, name: str, text: str = "") -> None:
        st = self.playbook.state(name)
        if st.returns:  # an aside: say it, then repeat the question we were on
            self._say(*st.say)
            self._ask()
            return
        if st.expect == "offer" and name in self._declined and "no" in st.on:
            self._enter(st.on["no"], text)
            return
        if name == "transfer" and not self.playbook.settings.transfer_number:
            self._enter(st.on["unavailable"], text)
            return
        if name == "callback_ask" and text:
            when = parse_datetime(text, self.ctx.now)
            if when is not None:
                self._schedule_callback(when, text)
                return
        self.state = name
        if st.action == "record_dispute":
            self._act("record_dispute", reason=st.reason, text=text)
        elif st.action == "opt_out":
            self._act("opt_out", reason=st.reason)
        elif st.action == "hardship":
            self._act("hardship", text=text)
        elif st.action == "wrong_party":
            self._act("wrong_party")
        lines = st.say
        if st.say_repeat_contact is not None and not self.ctx.first_contact:
            lines = st.say_repeat_contact
        start = len(self._out)
        self._say(*lines)
        if name == self.playbook.state("verify").on.get("verified"):
            self._disclosure = [o.text for o in self._out[start:] if isinstance(o, Say)]
        if name == "transfer":
            self._act("transfer", number=self.playbook.settings.transfer_number,
                      reason="caller asked for a person")
        if st.end:
            self._end(st.end)
        elif st.next:
            self._enter(st.next, text)
        else:
            self._ask(st)

    def _schedule_callback(self, when: dt.datetime | None, text: str) -> None:
        self.callback_at = when
        self._act("schedule_callback", at=when.isoformat() if when else None, text=text)
        self._enter(self.playbook.state("callback_ask").on["done"])

    def _voicemail(self) -> None:
        self.state = "voicemail"
        self._say(self.playbook.settings.voicemail_message)
        self._act("voicemail")
        self._end("voicemail")

    def _silence(self, count: int) -> None:
        if self.state == "start":
            self._enter("greeting")
            return
        if count <= self.playbook.settings.max_reprompts:
            self._enter("still_there")
        else:
            self._enter("no_response")

    def _give_up(self) -> None:
        self._enter("refused" if self.verified else "unverified")

    def _dtmf(self, digits: str) -> None:
        st = self.playbook.state(self.state)
        digits = digits.strip("#*")
        if st.expect == "year" and digits:
            self._year(st, int(digits) if len(digits) == 4 else parse_year(digits, self.ctx.today))
        elif st.expect in ("offer", "confirm") and digits in ("1", "2"):
            self._text("yes" if digits == "1" else "no")
        elif st.expect == "amount" and digits.isdigit():
            self._text(f"{digits} dollars")
        else:
            self._miss()

    def _miss(self) -> None:
        self._misses += 1
        if self._misses > self.playbook.settings.max_reprompts:
            self._give_up()
        else:
            self._enter("not_understood")

    def _match(self, text: str) -> list[str]:
        found = [name for name, regexes in self._intents if any(r.search(text) for r in regexes)]
        if self.state == "greeting" and "yes" not in found:
            first = re.escape(self.ctx.debtor_first_name.lower())
            if re.search(rf"\b(this is|it's|i'm|i am|yes|speaking)\b.*\b{first}\b", text.lower()):
                found.append("yes")
        return found

    def _text(self, text: str) -> None:
        if self.state == "start":
            self._enter("greeting")
            return
        text = text.strip()
        found = self._match(text)
        routes = (self.playbook.routes.post_verification if self.verified
                  else self.playbook.routes.pre_verification)
        st = self.playbook.state(self.state)
        if self._disclosure_unheard and not any(
            i in found and i in routes for i in self.playbook.routes.overriding
        ):
            # they spoke over the disclosure, so what they said answers nothing we asked
            # after it: say the rest of the disclosure, then ask again
            unheard, self._disclosure_unheard = self._disclosure_unheard, []
            self._out.extend(Say(sentence) for sentence in unheard)
            self._ask(st)
            return
        self._disclosure_unheard = []
        if "abuse" in found:
            self._abuse += 1
            if self._abuse >= 2 and not ({"stop", "attorney"} & set(found)):
                self._enter("abusive")
                return
            if self._abuse == 1:
                self._say(*self.playbook.state("abuse_warning").say)
        for intent in self.playbook.routes.overriding:
            if intent in found and intent in routes and routes[intent] != self.state:
                self._misses = 0
                self._enter(routes[intent], text)
                return
        if self._slot(st, text, found):
            self._misses = 0
            return
        for intent in found:
            if intent in routes and intent not in self.playbook.routes.overriding:
                self._misses = 0
                self._enter(routes[intent], text)
                return
        for intent in found:
            if intent in st.on and intent not in _ENGINE_EVENTS:
                if st.expect == "offer" and intent == "no":
                    self._declined.add(self.state)
                self._misses = 0
                self._enter(st.on[intent], text)
                return
        if "abuse" in found:
            self._ask(st)  # the warning was the answer; repeat the question
            return
        self._miss()

    # ---- what each kind of state waits for -----------------------------------------------

    def _slot(self, st: State, text: str, found: list[str]) -> bool:
        """Handle the value the current state waits for; False when the text has none."""
        if st.expect == "year":
            year = parse_year(text, self.ctx.today)
            if year is None:
                return False
            self._year(st, year)
            return True
        if st.expect == "callback_time":
            self._schedule_callback(parse_datetime(text, self.ctx.now), text)
            return True
        amount = parse_amount(text)
        date = parse_date(text, self.ctx.today)
        if date is not None and date < self.ctx.today:
            date = None
        if st.expect == "offer":
            assert st.plan is not None
            offered = self._offer_amount(st.plan)
            if amount is not None and "no" in found and amount >= offered - 0.005:
                amount = None  # "I can't pay 1,250 dollars" is a no, not an offer
            if amount is not None:
                self._custom(amount)
            elif "yes" in found and "no" not in found:
                self.plan = _Plan(kind=st.plan, amount=offered,
                                  instalments=self.ctx.instalments if st.plan == "instalment" else None)
            else:
                return False
            self._after_plan(date)
            return True
        if st.expect == "amount":
            if amount is None:
                return False
            self._custom(amount)
            self._after_plan(date)
            return True
        if st.expect == "date":
            if date is None:
                return False
            if amount is not None:
                self._custom(amount)
            self._after_plan(date)
            return True
        if st.expect == "confirm":
            same_amount = amount is None or abs(amount - (self.plan.amount or 0)) < 0.005
            same_date = date is None or date == self.plan.date
            if "yes" in found and "no" not in found and same_amount and same_date:
                self._promise()
                return True
            if amount is None and date is None:
                return False
            if amount is not None and abs(amount - (self.plan.amount or 0)) > 0.005:
                self._custom(amount)
            self._after_plan(date)
            return True
        return False

    def _year(self, st: State, year: int | None) -> None:
        if year is not None and year == self.ctx.birth_year:
            self.verified = True
            self._act("right_party_verified")
            self._enter(st.on["verified"])
            return
        self._verify_failures += 1
        if self._verify_failures >= _MAX_VERIFY_FAILURES:
            self._enter(st.on["failed"])
        else:
            self._enter(st.on["mismatch"])

    def _offer_amount(self, plan: str) -> float:
        if plan == "settlement":
            return self.ctx.settlement_amount
        if plan == "instalment":
            return self.ctx.instalment_amount
        return self.ctx.balance

    def _custom(self, amount: float) -> None:
        amount = min(amount, self.ctx.balance)
        kind: PlanKind = "full" if amount >= self.ctx.balance - 0.005 else "custom"
        keep = self.plan.kind == "instalment" and abs(amount - (self.plan.amount or 0)) < 0.005
        if not keep:
            self.plan = _Plan(kind=kind, amount=amount, date=self.plan.date)

    def _after_plan(self, date: dt.date | None) -> None:
        if date is not None:
            self.plan.date = date
        self._enter("confirm" if self.plan.date is not None else "ask_date")

    def _promise(self) -> None:
        assert self.plan.amount is not None and self.plan.date is not None
        self._act(
            "promise_to_pay",
            amount=float(self.plan.amount),
            date=self.plan.date.isoformat(),
            plan=self.plan.kind,
            instalments=self.plan.instalments,
        )
        self._enter(self.playbook.state("confirm").on["yes"])


class ScriptedPolicyFactory:
    """`factory(context, playbook) -> ScriptedPolicy` for one call
    (ai.protocols.PolicyFactory); `playbook` None = the factory's own."""

    def __init__(self, playbook: Playbook | None = None) -> None:
        self.playbook = playbook or load_playbook()

    def __call__(
        self, context: Mapping[str, Any], playbook: Playbook | None = None
    ) -> ScriptedPolicy:
        return ScriptedPolicy(playbook or self.playbook, context)
