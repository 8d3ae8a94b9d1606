"""The playbook: what the collections agent says and when, as data (YAML), with a schema
that refuses unsafe scripts on load (a pre-verification line that mentions the debt, a
missing mini-Miranda, a transition to a state that does not exist), and the context fields
a call must supply (see ai.context).

Outcome, plan and action names come from ai.vocabulary; the per-call context lives in
ai.context; the LLM system prompt is rendered by ai.prompt; the playbooks a server offers
are kept by `PlaybookRegistry`.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ai.context import COLLECTIONS_FIELDS, CallContext, ContextError, ContextField
from ai.vocabulary import ACTION_REASONS, OUTCOMES, Outcome, PlanKind, StateAction

__all__ = [
    "DEFAULT_PLAYBOOK",
    "MINI_MIRANDA",
    "OUTCOMES",
    "PACKAGED_PLAYBOOKS",
    "PLACEHOLDERS",
    "CallContext",
    "ContextError",
    "Playbook",
    "PlaybookError",
    "PlaybookRegistry",
    "PlaybookSettings",
    "State",
    "UnknownPlaybook",
    "YamlLoader",
    "find_debt_terms",
    "load_playbook",
    "parse_playbook",
    "split_sentences",
]

PACKAGED_PLAYBOOKS = Path(__file__).with_name("playbooks")
DEFAULT_PLAYBOOK = PACKAGED_PLAYBOOKS / "collections.yaml"

MINI_MIRANDA = (
    "This is an attempt to collect a debt by a debt collector, and any information "
    "obtained will be used for that purpose."
)

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

# the only placeholders of settings.apology_line: it is said when the call's context may be broken
_APOLOGY_PLACEHOLDERS = frozenset({"agent_name", "caller_brand"})

# states the scripted policy relies on by name (kind: collections)
REQUIRED_STATES = (
    "greeting", "verify", "disclosure", "ask_amount", "ask_date", "confirm", "ptp_done",
    "callback_ask", "callback_done", "transfer", "no_transfer", "still_there", "no_response",
    "not_understood", "abuse_warning", "abusive", "unverified", "refused",
)

# declared fields only the call can give: a default would invent a fact about a person
_DEBTOR_FACTS = ("debtor_name", "birth_year", "balance", "creditor")

Expect = Literal["none", "year", "offer", "amount", "date", "confirm", "callback_time"]


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
    # the paused agent resumes once the caller has been quiet this long; speech before that
    # counts toward barge_in_min_speech_ms with what came before (gaps between words)
    barge_in_resume_after_ms: int = Field(default=250, ge=0, le=2000)
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
    # said by the media server when a call it accepted cannot go on (its context, engine
    # or speech recognition failed), just before it hangs up; it may name only the agent
    # and the brand ({agent_name}, {caller_brand}): nothing of the call's context
    apology_line: str = "I'm sorry, we are having a technical problem and have to end this call. Goodbye."
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
    plan: PlanKind | None = None  # for expect: offer (any kind but custom)
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
        if self.expect == "offer" and self.plan in (None, "custom"):
            raise ValueError("an offer state needs `plan` (full, settlement or instalment)")
        if self.end and (self.next or self.ask):
            raise ValueError("a state with `end` cannot also have `next` or `ask`")
        if self.action and self.reason not in ACTION_REASONS[self.action]:
            allowed = sorted(r for r in ACTION_REASONS[self.action] if r) or ["none"]
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
    # system prompt template for the LLM policy: a file name beside the playbook (or in the
    # packaged playbooks directory); None = the packaged system_prompt.md
    system_prompt: str | None = None
    context: dict[str, ContextField] = Field(default_factory=dict)
    settings: PlaybookSettings = Field(default_factory=lambda: PlaybookSettings())
    debt_terms: list[str] = Field(default_factory=list)
    intents: dict[str, list[str]] = Field(default_factory=dict)
    routes: Routes = Field(default_factory=lambda: Routes())
    states: dict[str, State] = Field(default_factory=dict)
    # the directory of the file it was loaded from (for its system prompt template)
    _source_dir: Path | None = PrivateAttr(default=None)

    @property
    def source_dir(self) -> Path | None:
        return self._source_dir

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
            problems += self._check_context()
            problems += self._check_states()
            problems += self._check_compliance()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def ref(self) -> str:
        """`name@version`, how calls and the store name this playbook."""
        return f"{self.name}@{self.version}"

    def _check_context(self) -> list[str]:
        problems = [f"context.{name} is a fact about the debtor: it cannot have a default"
                    for name in _DEBTOR_FACTS if (spec := self.context.get(name)) and spec.default is not None]
        for name, types in COLLECTIONS_FIELDS.items():
            spec = self.context.get(name)
            if spec is None:
                problems.append(f"context must declare {name!r} ({' or '.join(types)})")
            elif spec.type not in types:
                problems.append(f"context.{name} must be of type {' or '.join(types)}, not {spec.type}")
        return problems

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
                     self.settings.max_duration_line, self.settings.apology_line]:
            problems += [f"settings: {p}" for p in _placeholder_problems(line)]
        problems += [
            f"settings.apology_line may use only {{agent_name}} and {{caller_brand}}, not {{{f}}}"
            for f in sorted(_fields(self.settings.apology_line) - _APOLOGY_PLACEHOLDERS)
        ]
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
        ctx = _compliance_sample(self)
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
                ("settings.max_duration_line", self.settings.max_duration_line),
                ("settings.apology_line", self.settings.apology_line)]
        for name, st in self.states.items():
            if st.pre_verification:
                out += [(f"states.{name}", line) for line in st.lines()]
        return out

    def state(self, name: str) -> State:
        return self.states[name]

    def apology(self) -> str:
        """`settings.apology_line` rendered; it needs nothing of a call's context, which may
        be what failed."""
        values = {"agent_name": self.agent_name, "caller_brand": self.caller_brand}
        return _render(self.settings.apology_line, values)


# ---- compliance validation ---------------------------------------------------------------

# Placeholder values used only to render lines while checking a playbook's compliance at
# load: they describe no one, and no call ever uses them.
_COMPLIANCE_SAMPLE_DEBTOR = "Sample Debtor"
_COMPLIANCE_SAMPLE_CREDITOR = "Sample Creditor"
_COMPLIANCE_SAMPLE_BALANCE = 4321.0
_COMPLIANCE_SAMPLE_CALLBACK = "+1 202 555 0100"


def _compliance_sample(playbook: Playbook) -> CallContext:
    today = dt.date(2000, 1, 3)
    s = playbook.settings
    return CallContext(
        debtor_name=_COMPLIANCE_SAMPLE_DEBTOR, birth_year=1970,
        balance=_COMPLIANCE_SAMPLE_BALANCE, creditor=_COMPLIANCE_SAMPLE_CREDITOR,
        currency="USD", first_contact=True, callback_number=_COMPLIANCE_SAMPLE_CALLBACK,
        today=today, now=dt.datetime.combine(today, dt.time(12), dt.UTC), timezone="UTC",
        agent_name=playbook.agent_name, company=playbook.company,
        caller_brand=playbook.caller_brand, settlement_pct=s.settlement_pct,
        instalments=s.instalments, transfer_number=s.transfer_number,
    )


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
    playbook = parse_playbook(data, source=str(path))
    playbook._source_dir = path.resolve().parent
    return playbook


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


# ---- the playbooks a server offers -------------------------------------------------------


class UnknownPlaybook(PlaybookError):
    """A call asked for a playbook this server has not loaded."""


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # "1.10" sorts above "1.9"; a non-numeric part sorts below any number
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"[.\-+]", version))


class PlaybookRegistry:
    """Playbooks by name and version, one of them the default.

    `get("name@version")` is that exact playbook, `get("name")` its highest version, and
    `get(None)` the default; anything else raises UnknownPlaybook listing what is loaded.
    """

    def __init__(self, playbooks: Iterable[Playbook], default: Playbook) -> None:
        self._by_ref: dict[str, Playbook] = {}
        for pb in [*playbooks, default]:
            known = self._by_ref.get(pb.ref)
            if known is not None and known is not pb and known != pb:
                raise PlaybookError(f"two different playbooks are named {pb.ref}")
            self._by_ref[pb.ref] = pb
        self.default = default

    @classmethod
    def load(cls, path: Path | str | None = None) -> PlaybookRegistry:
        """The packaged playbooks plus `path`: a playbook file (the default) or a directory
        of them (the default stays the packaged collections playbook). A playbook from
        `path` replaces a packaged one of the same name@version (an edited copy)."""
        packaged = [load_playbook(p) for p in sorted(PACKAGED_PLAYBOOKS.glob("*.yaml"))]
        default = next(pb for pb, p in zip(packaged, sorted(PACKAGED_PLAYBOOKS.glob("*.yaml")),
                                           strict=True) if p == DEFAULT_PLAYBOOK)
        extra: list[Playbook] = []
        if path is not None:
            path = Path(path)
            if path.is_dir():
                files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
                if not files:
                    raise PlaybookError(f"playbook directory {path} holds no *.yaml file")
                extra = [load_playbook(p) for p in files]
            else:
                default = load_playbook(path)
                extra = [default]
        own = {pb.ref for pb in extra}
        return cls([*(pb for pb in packaged if pb.ref not in own), *extra], default)

    def refs(self) -> list[str]:
        """Every loaded playbook as name@version, sorted."""
        return sorted(self._by_ref)

    def get(self, ref: str | None) -> Playbook:
        if ref is None:
            return self.default
        if ref in self._by_ref:
            return self._by_ref[ref]
        name, _, version = ref.partition("@")
        if not version:
            versions = [pb for pb in self._by_ref.values() if pb.name == name]
            if versions:
                return max(versions, key=lambda pb: _version_key(pb.version))
        raise UnknownPlaybook(
            f"unknown playbook {ref!r}; available: {', '.join(self.refs())}"
        )

    def find(self, ref: str | None) -> Playbook | None:
        """As `get`, but None when it is not loaded."""
        try:
            return self.get(ref)
        except UnknownPlaybook:
            return None
