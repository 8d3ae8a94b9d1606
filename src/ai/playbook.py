"""The playbook: what the collections agent says and when, as data (YAML), with a schema
that refuses unsafe scripts on load (a pre-verification line that mentions the debt, a
missing mini-Miranda, a transition to a state that does not exist).

Also renders the playbook as an LLM system prompt, and the per-call template values
(spoken money and dates) shared by the scripted and the LLM policies.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ai.extract import spoken_date, spoken_money

__all__ = [
    "DEFAULT_PLAYBOOK",
    "MINI_MIRANDA",
    "OUTCOMES",
    "PLACEHOLDERS",
    "CallContext",
    "PlanKind",
    "Playbook",
    "PlaybookError",
    "PlaybookSettings",
    "State",
    "YamlLoader",
    "find_debt_terms",
    "load_playbook",
    "render_system_prompt",
    "split_sentences",
]

DEFAULT_PLAYBOOK = Path(__file__).with_name("playbooks") / "collections.yaml"

MINI_MIRANDA = (
    "This is an attempt to collect a debt by a debt collector, and any information "
    "obtained will be used for that purpose."
)

Outcome = Literal[
    "promise_to_pay", "wrong_party", "opt_out", "dispute", "already_paid", "callback",
    "refused", "no_response", "abusive", "voicemail", "unverified", "transferred",
]
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]

PLACEHOLDERS = frozenset({
    "agent_name", "company", "caller_brand", "debtor_name", "debtor_first_name", "balance",
    "creditor", "settlement_amount", "instalment_amount", "instalments", "ptp_amount",
    "ptp_date", "callback_number", "callback_time",
})
# placeholders whose values reveal the debt, so never allowed before verification
_DEBT_PLACEHOLDERS = frozenset({
    "company", "balance", "creditor", "settlement_amount", "instalment_amount", "instalments",
    "ptp_amount", "ptp_date",
})

# states the scripted policy relies on by name (kind: collections)
REQUIRED_STATES = (
    "greeting", "verify", "disclosure", "ask_amount", "ask_date", "confirm", "ptp_done",
    "callback_ask", "callback_done", "transfer", "no_transfer", "still_there", "no_response",
    "not_understood", "abuse_warning", "abusive", "unverified", "refused",
)

PlanKind = Literal["full", "settlement", "instalment", "custom"]
Expect = Literal["none", "year", "offer", "amount", "date", "confirm", "callback_time"]
StateAction = Literal["record_dispute", "opt_out", "hardship", "wrong_party"]
_ACTION_REASONS: dict[str, set[str | None]] = {
    "record_dispute": {"disputed", "already_paid"},
    "opt_out": {"stop_request", "attorney"},
    "hardship": {None},
    "wrong_party": {None},
}


class PlaybookError(ValueError):
    """A playbook that cannot be used; the message says what and where."""


class PlaybookSettings(BaseModel):
    """Timing and negotiation knobs; the media session reads the timing ones too."""

    model_config = ConfigDict(extra="forbid")

    endpointing_ms: int = 700
    reprompt_after_ms: int = 7000
    max_reprompts: int = 2
    max_call_seconds: int = 900
    barge_in_min_speech_ms: int = 700
    # caller speech that pauses the agent (carrier `clear`, audio kept) before it reaches
    # barge_in_min_speech_ms and cuts it off; a shorter stretch (a cough, "mhm", "okay")
    # lets it resume, unless its transcript has words that are not a backchannel.
    # 0, or >= barge_in_min_speech_ms, turns the pause off (cut only).
    barge_in_pause_ms: int = Field(default=100, ge=0, le=2000)
    greeting_deadline_ms: int = 2000
    dtmf_timeout_ms: int = 3000
    dtmf_max_digits: int = 8
    echo_delay_ms: int = Field(default=500, ge=0, le=5000)
    settlement_pct: float = Field(default=60, gt=0, le=100)
    instalments: int = Field(default=3, ge=2)
    transfer_number: str | None = None
    voicemail_message: str = (
        "Hello, this is {agent_name} from {caller_brand} with a message for {debtor_name}. "
        "Please call us back at {callback_number}. Thank you."
    )
    filler_lines: list[str] = Field(default_factory=lambda: ["One moment.", "Let me check."])
    # lines the conversation engine says itself (never hard-coded in media): after a reply
    # that failed before a word was said, when the greeting is late, and at max duration
    recovery_line: str = "Sorry, could you say that again?"
    greeting_filler: str = "Hello?"
    max_duration_line: str = "I'm sorry, we have run out of time for this call. Goodbye."
    # what a caller says over the agent without taking the turn ("mhm", "okay"): the agent
    # pauses and resumes instead of being cut off; matched on the whole transcript
    backchannels: list[str] = Field(default_factory=lambda: [
        "mhm", "mm hmm", "mm", "hmm", "uh huh", "uh-huh", "okay", "ok", "right", "yeah",
        "yes", "sure", "i see", "got it", "alright", "all right",
    ])


class State(BaseModel):
    """One step of the script. `say` is spoken on entry; `ask` is the question the state
    waits on (repeated on a reprompt); `on` maps an intent (or engine event such as
    `verified`) to the next state; `next` continues without waiting; `end` closes the call
    with that outcome; `returns` makes it an aside that goes back to the state it
    interrupted."""

    model_config = ConfigDict(extra="forbid")

    say: list[str] = Field(default_factory=list)
    say_repeat_contact: list[str] | None = None  # replaces `say` when first_contact is false
    ask: str | None = None
    ask_by_plan: dict[PlanKind, str] = Field(
        default_factory=dict
    )
    pre_verification: bool = False
    expect: Expect = "none"
    plan: Literal["full", "settlement", "instalment"] | None = None  # for expect: offer
    on: dict[str, str] = Field(default_factory=dict)
    next: str | None = None
    end: Outcome | None = None
    returns: bool = False
    action: StateAction | None = None
    reason: str | None = None
    # the stage of the call this state belongs to, when several states are one stage (a
    # retry of the verification is still the verification); default: the state's name
    stage: str | None = None

    @model_validator(mode="after")
    def _check(self) -> State:
        if self.expect == "offer" and self.plan is None:
            raise ValueError("an offer state needs `plan` (full, settlement or instalment)")
        if self.end and (self.next or self.ask):
            raise ValueError("a state with `end` cannot also have `next` or `ask`")
        if self.action and self.reason not in _ACTION_REASONS[self.action]:
            allowed = sorted(r for r in _ACTION_REASONS[self.action] if r) or ["none"]
            raise ValueError(f"action {self.action} needs reason in {allowed}, got {self.reason!r}")
        return self

    def lines(self) -> list[str]:
        return [*self.say, *(self.say_repeat_contact or []), *([self.ask] if self.ask else []),
                *self.ask_by_plan.values()]


class Routes(BaseModel):
    """Intent -> state, before and after right-party verification. `overriding` intents win
    over whatever the current state is waiting for (a stop request beats an amount)."""

    model_config = ConfigDict(extra="forbid")

    overriding: list[str] = Field(default_factory=list)
    pre_verification: dict[str, str] = Field(default_factory=dict)
    post_verification: dict[str, str] = Field(default_factory=dict)


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    kind: Literal["collections", "echo"] = "collections"
    agent_name: str
    company: str
    caller_brand: str
    settings: PlaybookSettings = Field(default_factory=lambda: PlaybookSettings())
    debt_terms: list[str] = Field(default_factory=list)
    intents: dict[str, list[str]] = Field(default_factory=dict)
    routes: Routes = Field(default_factory=lambda: Routes())
    states: dict[str, State] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _version_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("version"), int | float):
            data = {**data, "version": str(data["version"])}
        return data

    @model_validator(mode="after")
    def _check(self) -> Playbook:
        problems: list[str] = []
        for intent, patterns in self.intents.items():
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as e:
                    problems.append(f"intents.{intent}: bad regex {p!r}: {e}")
        if self.kind == "collections":
            problems += self._check_states()
            problems += self._check_compliance()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _check_states(self) -> list[str]:
        problems = [f"missing required state {s!r}" for s in REQUIRED_STATES if s not in self.states]
        targets: list[tuple[str, str]] = []
        for name, st in self.states.items():
            targets += [(f"states.{name}.on.{k}", v) for k, v in st.on.items()]
            if st.next:
                targets.append((f"states.{name}.next", st.next))
            if not (st.end or st.next or st.ask or st.returns or st.expect != "none"):
                problems.append(f"states.{name} is a dead end: give it end, next, ask or returns")
        for phase in ("pre_verification", "post_verification"):
            targets += [(f"routes.{phase}.{k}", v) for k, v in getattr(self.routes, phase).items()]
        for where, target in targets:
            if target not in self.states:
                problems.append(f"{where} refers to state {target!r}, which does not exist")
        routed = set(self.routes.overriding) | set(self.routes.pre_verification) | set(
            self.routes.post_verification
        )
        problems += [f"routes use intent {i!r}, which is not defined in intents"
                     for i in sorted(routed - set(self.intents))]
        for name, st in self.states.items():
            for line in st.lines():
                problems += [f"states.{name}: {p}" for p in _placeholder_problems(line)]
        for line in [self.settings.voicemail_message, *self.settings.filler_lines,
                     self.settings.recovery_line, self.settings.greeting_filler,
                     self.settings.max_duration_line]:
            problems += [f"settings: {p}" for p in _placeholder_problems(line)]
        return problems

    def _check_compliance(self) -> list[str]:
        problems: list[str] = []
        if "disclosure" in self.states:
            st = self.states["disclosure"]
            if _squash(MINI_MIRANDA) not in _squash(" ".join(st.say)):
                problems.append(f"states.disclosure.say must contain the mini-Miranda: {MINI_MIRANDA!r}")
            if st.say_repeat_contact is not None and "debt collector" not in _squash(
                " ".join(st.say_repeat_contact)
            ):
                problems.append("states.disclosure.say_repeat_contact must say 'debt collector'")
        ctx = CallContext.from_dict({}, self)
        values = ctx.template_values()
        for name, line in self.pre_verification_lines():
            for field in _fields(line) & _DEBT_PLACEHOLDERS:
                problems.append(
                    f"{name}: pre-verification line uses {{{field}}}, which reveals the debt: {line!r}"
                )
            found = find_debt_terms(_render(line, values), self, ctx)
            if found:
                problems.append(
                    f"{name}: pre-verification line mentions {', '.join(found)}: {line!r}"
                )
        return problems

    def pre_verification_lines(self) -> list[tuple[str, str]]:
        """(where, template) for every line that may be spoken before the right party is
        verified, including to a voicemail or a third party."""
        out = [("caller_brand", self.caller_brand),
               ("settings.voicemail_message", self.settings.voicemail_message)]
        out += [("settings.filler_lines", line) for line in self.settings.filler_lines]
        out += [("settings.recovery_line", self.settings.recovery_line),
                ("settings.greeting_filler", self.settings.greeting_filler),
                ("settings.max_duration_line", self.settings.max_duration_line)]
        for name, st in self.states.items():
            if st.pre_verification:
                out += [(f"states.{name}", line) for line in st.lines()]
        return out

    def state(self, name: str) -> State:
        return self.states[name]


# ---- per-call context --------------------------------------------------------------------


@dataclass
class CallContext:
    """The call's context dict with defaults filled in, plus derived offer amounts."""

    debtor_name: str
    birth_year: int
    balance: float
    creditor: str
    currency: str
    first_contact: bool
    callback_number: str
    today: dt.date
    now: dt.datetime
    agent_name: str
    company: str
    caller_brand: str
    settlement_pct: float
    instalments: int

    @classmethod
    def from_dict(cls, context: dict[str, Any] | None, playbook: Playbook) -> CallContext:
        c = dict(context or {})
        today = c.get("today") or dt.date.today()
        if isinstance(today, str):
            today = dt.date.fromisoformat(today)
        now = c.get("now")
        if isinstance(now, str):
            now = dt.datetime.fromisoformat(now)
        if now is None:
            now = dt.datetime.combine(today, dt.datetime.now().time().replace(microsecond=0))
        return cls(
            debtor_name=str(c.get("debtor_name") or "John Smith"),
            birth_year=int(c.get("birth_year") or 1984),
            balance=float(c["balance"]) if c.get("balance") is not None else 1250.0,
            creditor=str(c.get("creditor") or "Northwind Bank"),
            currency=str(c.get("currency") or "USD"),
            first_contact=bool(c.get("first_contact", True)),
            callback_number=str(c.get("callback_number") or "800-555-0199"),
            today=today,
            now=now,
            agent_name=str(c.get("agent_name") or playbook.agent_name),
            company=str(c.get("company") or playbook.company),
            caller_brand=str(c.get("caller_brand") or playbook.caller_brand),
            settlement_pct=float(c.get("settlement_pct") or playbook.settings.settlement_pct),
            instalments=int(c.get("instalments") or playbook.settings.instalments),
        )

    @property
    def debtor_first_name(self) -> str:
        return self.debtor_name.split()[0] if self.debtor_name.split() else self.debtor_name

    @property
    def settlement_amount(self) -> float:
        return round(self.balance * self.settlement_pct / 100, 2)

    @property
    def instalment_amount(self) -> float:
        return round(self.balance / self.instalments, 2)

    def money(self, amount: float) -> str:
        return spoken_money(amount, self.currency)

    def template_values(self, **extra: Any) -> dict[str, str]:
        values = {
            "agent_name": self.agent_name,
            "company": self.company,
            "caller_brand": self.caller_brand,
            "debtor_name": self.debtor_name,
            "debtor_first_name": self.debtor_first_name,
            "balance": self.money(self.balance),
            "creditor": self.creditor,
            "settlement_amount": self.money(self.settlement_amount),
            "instalment_amount": self.money(self.instalment_amount),
            "instalments": str(self.instalments),
            "ptp_amount": self.money(self.balance),
            "ptp_date": spoken_date(self.today, self.today),
            "callback_number": self.callback_number,
            "callback_time": "at a better time",
        }
        values.update({k: str(v) for k, v in extra.items()})
        return values


# ---- text helpers ------------------------------------------------------------------------


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        return set()


def _placeholder_problems(template: str) -> list[str]:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        return [f"bad template {template!r}: {e}"]
    return [f"unknown placeholder {{{f}}} in {template!r} (known: {', '.join(sorted(PLACEHOLDERS))})"
            for f in fields if f not in PLACEHOLDERS]


def _render(template: str, values: dict[str, str]) -> str:
    return template.format_map(values)


def find_debt_terms(text: str, playbook: Playbook, ctx: CallContext | None = None) -> list[str]:
    """Debt terms (word-boundary, case-insensitive) in `text`: the playbook's list plus,
    given a context, the balance in words and digits and the creditor's name."""
    terms = list(playbook.debt_terms)
    if ctx is not None:
        whole = f"{ctx.balance:,.2f}".removesuffix(".00")
        terms += [ctx.money(ctx.balance), whole, whole.replace(",", ""), ctx.creditor]
    low = text.lower()
    return [t for t in dict.fromkeys(terms)
            if t and re.search(rf"(?<![\w$]){re.escape(t.lower())}(?!\w)", low)]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def split_sentences(text: str) -> list[str]:
    """Split on sentence ends so each piece can go to the TTS on its own."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


# ---- loading -----------------------------------------------------------------------------


class YamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so intent names
    such as `yes`, `no` and the key `on` stay strings."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_playbook(path: Path | str | None = None) -> Playbook:
    """Load and validate a playbook (None = the packaged default). Raises PlaybookError
    naming the file and every problem found."""
    path = Path(path) if path is not None else DEFAULT_PLAYBOOK
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YamlLoader)
    except OSError as e:
        raise PlaybookError(f"cannot read playbook {path}: {e}") from e
    except yaml.YAMLError as e:
        raise PlaybookError(f"playbook {path} is not valid YAML: {e}") from e
    return parse_playbook(data, source=str(path))


def parse_playbook(data: Any, source: str = "<playbook>") -> Playbook:
    """Validate an already-parsed playbook mapping (see load_playbook)."""
    if not isinstance(data, dict):
        raise PlaybookError(f"playbook {source} must be a mapping, got {type(data).__name__}")
    try:
        return Playbook.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            msgs.append(f"{loc}: {msg}" if loc else msg)
        raise PlaybookError(f"invalid playbook {source}: " + "; ".join(msgs)) from None


# ---- LLM system prompt -------------------------------------------------------------------

_ACTIONS_DOC = """\
- right_party_verified {} : the person confirmed the year of birth
- wrong_party {} : the person is not the debtor (say nothing about the debt)
- promise_to_pay {"amount": float, "date": "YYYY-MM-DD", "plan": "full"|"settlement"|"instalment"|"custom", "instalments": int|null}
- schedule_callback {"at": ISO-8601 datetime or null, "text": what they said}
- record_dispute {"reason": "disputed"|"already_paid", "text": what they said}
- opt_out {"reason": "stop_request"|"attorney"}
- hardship {"text": what they said}
- transfer {"number": str, "reason": str}
- end_call {"outcome": one of %s} : always the last thing you do"""


def render_system_prompt(playbook: Playbook, context: dict[str, Any] | None = None) -> str:
    """A system prompt for an LLM agent that follows this playbook for one call."""
    ctx = CallContext.from_dict(context, playbook)
    v = ctx.template_values(ptp_amount="<amount>", ptp_date="<date>", callback_time="<when>")
    s = playbook.settings

    def lines(state: str) -> str:
        st = playbook.states.get(state)
        if st is None:
            return ""
        say = st.say
        if st.say_repeat_contact is not None and not ctx.first_contact:
            say = st.say_repeat_contact
        return " ".join(_render(x, v) for x in [*say, *([st.ask] if st.ask else [])])

    disclosure = lines("disclosure") or MINI_MIRANDA
    terms = ", ".join(playbook.debt_terms)
    parts = [
        f"You are {ctx.agent_name}, a courteous phone agent for {ctx.company}, calling "
        f"{ctx.debtor_name} on an outbound call. Speak in short, plain sentences that a "
        "text-to-speech voice reads well: one idea per sentence, no lists, no symbols. "
        f"Say money as words a voice reads (\"{ctx.money(ctx.balance)}\", never \"$\") and "
        f"dates like \"{spoken_date(ctx.today)}\".",
        "",
        "Call facts (never read them out before the person is verified):",
        f"- debtor: {ctx.debtor_name}; year of birth on file: {ctx.birth_year} (never say it)",
        f"- creditor: {ctx.creditor}; balance: {v['balance']}; today: {ctx.today.isoformat()}",
        f"- offers, in this order: the full balance; a settlement of {v['settlement_amount']} "
        f"({s.settlement_pct:g}% of the balance); {ctx.instalments} monthly payments of "
        f"{v['instalment_amount']}; then ask what they can pay and when.",
        f"- callback number: {ctx.callback_number}; transfer number: "
        f"{s.transfer_number or 'none (offer a callback instead)'}",
        "",
        "Compliance rules (these override everything else):",
        f"1. Until the person confirms the year of birth, introduce yourself only as {ctx.agent_name} "
        f"from {ctx.caller_brand}, and never say any of: {terms}, the balance, the creditor, "
        f"or {ctx.company}.",
        "2. Verify the right party by asking for the year of birth. If it does not match twice, "
        "say you cannot discuss the matter and ask them to call back.",
        f"3. Right after verification, say exactly: \"{disclosure}\"",
        "4. If the person is not the debtor, apologise, leave only a request to call "
        f"{ctx.caller_brand} at {ctx.callback_number}, and end the call. Never disclose the debt "
        "to anyone else.",
        "5. If they ask you to stop calling, or say they have an attorney, confirm you will not "
        "call again, record opt_out and end the call.",
        "6. If they dispute the debt, record the dispute, tell them validation information will "
        "be sent in writing, and end the call. If they say they already paid, record it, say it "
        "will be verified, and end the call.",
        "7. If they describe hardship, acknowledge it, record hardship and offer the instalment "
        "plan or ask what they can afford.",
        "8. Never threaten, never use profanity, never make false or misleading statements, and "
        "never pressure. If they are abusive, give one calm warning; the second time, end the "
        "call politely (outcome abusive).",
        "9. A promise to pay needs an amount and a date: read both back and get a yes before "
        "recording promise_to_pay.",
        "10. If they want a call back, ask when (if they have not said), record "
        "schedule_callback and end the call.",
        "",
        "The script, for wording and order:",
        f"- greeting: {lines('greeting')}",
        f"- verification: {lines('verify')}",
        f"- disclosure and purpose: {lines('disclosure')}",
        f"- full payment: {lines('offer_full')}",
        f"- settlement: {lines('offer_settlement')}",
        f"- instalments: {lines('offer_instalments')}",
        f"- own offer: {lines('ask_amount')}",
        f"- closing after a promise: {lines('ptp_done')}",
        f"- wrong person: {lines('wrong_party')}",
        "",
        "Actions you can take (tools):",
        _ACTIONS_DOC % ", ".join(OUTCOMES),
    ]
    return "\n".join(parts)
