"""The LLM writer: asks an OpenAI-compatible chat model for playbook edits that fix what a
failure analysis shows (the Writer protocol of the tuning loop, like tuning.writer's
OfflineWriter).

Each request sends the failure analysis (FailureAnalysis.text()), the playbook's tunable
parts (the negotiation chain, the routes, every state's lines, questions and transitions,
the thresholds), the vetted wording blocks (tuning.blocks.WORDING_BLOCKS) an edit may use,
the compliance rules the critique holds it to (tuning.critique.RULES), the current
system-prompt template, the critique's feedback on the proposals it sent back, and the
edits it blamed. The model answers one JSON object:

    {"rationale": "...", "symptom": "hardship_refused" | null,
     "edits": [{"kind": "offer_order", "steps": [...]}, {"kind": "wording", ...}, ...]}

with the typed edits of tuning.edits: offer_order, wording (a vetted block), route,
transition, threshold, negotiation, line (a state's line or question in the model's own
words) and template (one exact passage of the system-prompt template replaced). The
critique holds the model's own words to the compliance rules like any other line, and a
template edit to the template's rules (tuning.critique.check_template_text); an approved
template edit travels with the candidate and is saved with its prompt version.

The reply is parsed strictly: not JSON, not an object, unknown or missing keys, no edits,
an edit of an unknown kind or with bad fields, an edit the critique already blamed, or a
proposal made before: the model is told why and asked once more (`attempts`, 2 in all by
default); if that reply is no better, `propose` returns a proposal with no edits whose
`error` (and rationale) gives the reason, symptom "malformed", with the whole exchange, its
tokens and cost, for the loop to record and send back like any rejected proposal (the
tuning loop's exchange rejects a proposal without edits: "the writer proposed no edit"); the
next request tells the model why its reply was refused. A request that fails (timeout,
HTTP error, connection) gives the same, symptom "request_failed". `propose` never returns
None and never raises for what the model or its server did: the model is asked every time.

Tokens are the server's own count (`stream_options={"include_usage": True}`; the emulator
gives it too); a server that gives none gets an estimate of four characters a token, and the
proposal's text says so. Cost is `PRICES` (USD per 1M tokens, input and output, a model name
matched by its longest listed prefix) and 0 for a model not listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from ai.llm_text import Completion, LLMRequestError, LLMSettings, open_client, stream_completion
from ai.playbook import Playbook, PlaybookError
from ai.prompt import load_template
from tuning.analysis import SYMPTOMS, FailureAnalysis
from tuning.blocks import WORDING_BLOCKS
from tuning.critique import RULES
from tuning.edits import MAX_LINE_CHARS, NEGOTIATION_STEPS, THRESHOLDS, Edit, edit_adapter
from tuning.writer import Proposal, negotiation_chain

__all__ = ["PRICES", "LLMProposal", "LLMWriter", "cost_usd", "estimate_tokens", "parse_reply"]

#: USD per 1M tokens (input, output), by model name prefix (the longest listed prefix of a
#: model's name prices it: "gpt-4o-mini-2024-07-18" is gpt-4o-mini); a model not listed costs 0
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}

MAX_EDITS = 8


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """What `model` charges for the tokens (0 for a model PRICES does not list)."""
    prefix = max((p for p in PRICES if model.startswith(p)), key=len, default=None)
    if prefix is None:
        return 0.0
    inp, out = PRICES[prefix]
    return (prompt_tokens * inp + completion_tokens * out) / 1_000_000


def estimate_tokens(text: str) -> int:
    """A rough token count (four characters a token) when the server gives none."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class LLMProposal(Proposal):
    """A proposal from the model, with the whole exchange that produced it."""

    #: the requests' messages and the model's replies, in order, as sent and received
    exchange: str = ""
    #: True when `tokens` is an estimate (the server gave no usage)
    estimated: bool = False
    #: why there are no edits (the model's reply could not be used, or the request
    #: failed); "" for a proposal with edits
    error: str = ""

    @property
    def text(self) -> str:
        counted = "estimated" if self.estimated else "counted by the server"
        return (super().text + f"\n(tokens {self.tokens}, {counted}; cost ${self.cost_usd:.6f})\n"
                + self.exchange)


class _Unusable(ValueError):
    pass


def _edit_error(i: int, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"edits[{i}]{'.' + loc if loc else ''}: {first['msg']}"


def parse_reply(text: str) -> tuple[list[Edit], str, str | None]:
    """(edits, rationale, symptom) from the model's reply; raises ValueError saying what is
    wrong with it (strict: one JSON object with `rationale`, `edits` and optionally
    `symptom`, nothing else)."""
    if not text.strip():
        raise _Unusable("the reply is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Unusable(f"the reply is not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict):
        raise _Unusable(f"the reply is JSON but not an object (a {type(data).__name__})")
    unknown = sorted(set(data) - {"rationale", "symptom", "edits"})
    if unknown:
        raise _Unusable(f"the reply has unknown keys {unknown} (only rationale, symptom, edits)")
    rationale = data.get("rationale")
    if not isinstance(rationale, str) or not rationale.strip():
        raise _Unusable("rationale: missing or not a non-empty string")
    symptom = data.get("symptom")
    if symptom is not None and symptom not in SYMPTOMS:
        raise _Unusable(f"symptom: {symptom!r} is none of {', '.join(SYMPTOMS)} (or null)")
    raw = data.get("edits")
    if not isinstance(raw, list):
        raise _Unusable("edits: missing or not a list")
    if not raw:
        raise _Unusable("edits: the reply proposes no edit")
    if len(raw) > MAX_EDITS:
        raise _Unusable(f"edits: {len(raw)} edits, at most {MAX_EDITS} at a time")
    edits: list[Edit] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _Unusable(f"edits[{i}]: not an object")
        try:
            edits.append(edit_adapter.validate_python(item))
        except ValidationError as e:
            raise _Unusable(_edit_error(i, e)) from None
    return edits, rationale.strip(), symptom


_KINDS = f"""\
- {{"kind": "offer_order", "steps": [...]}}: the negotiation after the disclosure, steps in this
  order (each of {", ".join(NEGOTIATION_STEPS)} at most once); a declined step leads to the next,
  the last to refused; a step the playbook lacks is added from vetted templates.
- {{"kind": "wording", "state": STATE, "block": BLOCK}}: the state uses a vetted wording block
  (above): a "say" block is spoken first on entry, an "ask" block replaces the state's question;
  a block lists the states it fits (none listed: any state after verification).
- {{"kind": "route", "phase": "pre_verification" | "post_verification", "intent": INTENT,
  "target": STATE}}: where an intent leads before or after verification (a missing standard
  state such as hardship is added).
- {{"kind": "transition", "state": STATE, "on": INTENT_OR_EVENT | null, "target": STATE}}: which
  state follows (null: the state's `next`; otherwise one of the `on` keys it already has).
- {{"kind": "threshold", "name": NAME, "value": INTEGER}}: {"; ".join(f"{n} in {lo}..{hi}" for n, (lo, hi) in THRESHOLDS.items())}.
- {{"kind": "negotiation", "settlement_pct": 1-100 | null, "instalments": 2-24 | null}}: the settlement
  share of the balance (percent) and the number of monthly instalments.
- {{"kind": "line", "state": STATE, "field": "say" | "ask", "index": N, "text": TEXT}}: the state's
  say line N (0-based) or its question ("ask", index ignored) in new words, at most
  {MAX_LINE_CHARS} characters; {{placeholders}} as the playbook's lines use them.
- {{"kind": "template", "find": PASSAGE, "replace": TEXT}}: the exact passage of the system-prompt
  template (it must occur once) becomes TEXT ("" deletes it)."""


def _blocks() -> str:
    out = []
    for name, b in WORDING_BLOCKS.items():
        fits = ", ".join(b.fits) if b.fits else "any state after verification"
        out.append(f"- {name} ({b.field}, {b.purpose}; fits {fits}): {b.text!r}")
    return "\n".join(out)


SYSTEM = f"""\
You improve the playbook and the system prompt of a debt-collection phone agent. Calls were
simulated and scored; the user message gives the failure analysis, the playbook's tunable
parts and the agent's system-prompt template. Propose the few edits most likely to fix the
heaviest failures.

Compliance is not negotiable: a critique rejects any proposal that breaks one of these rules,
whatever it would score:
{chr(10).join(f"- {k}: {v}" for k, v in RULES.items())}

Vetted wording blocks (id, field, purpose, the states it fits, text), safe to use as they are:
{_blocks()}
You may also write a state's line or question in your own words ("line" edits) and edit the
system-prompt template ("template" edits). The template's compliance rules (the numbered
lines under "Compliance rules", and the lines using $disclosure or $debt_terms) must stay
word for word; its $placeholders are the only ones it may use.

Edit kinds (JSON objects):
{_KINDS}

Answer with one JSON object and nothing else:
{{"rationale": "why these edits fix the failures, in one or two sentences",
  "symptom": one of {", ".join(SYMPTOMS)} (the failure addressed) or null,
  "edits": [one to {MAX_EDITS} edit objects, applied in order]}}"""


def _tunable(playbook: Playbook) -> str:
    """The parts of `playbook` an edit can change, as YAML."""
    s = playbook.settings
    states: dict[str, Any] = {}
    for name, st in playbook.states.items():
        view: dict[str, Any] = {}
        if st.pre_verification:
            view["pre_verification"] = True
        for key in ("say", "say_repeat_contact", "ask", "on", "next", "end", "action"):
            value = getattr(st, key)
            if value:
                view[key] = value
        states[name] = view
    data = {
        "negotiation_after_disclosure": [*negotiation_chain(playbook), "refused"],
        "settings": {**{n: getattr(s, n) for n in THRESHOLDS},
                     "settlement_pct": s.settlement_pct, "instalments": s.instalments},
        "intents": sorted(playbook.intents),
        "routes": {"pre_verification": playbook.routes.pre_verification,
                   "post_verification": playbook.routes.post_verification},
        "states": states,
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None)


class LLMWriter:
    """Proposes playbook and template edits from a chat model at `settings` (see the
    module's text). It remembers every proposal made (`tried`) and
    every edit the critique blamed (`avoided`), tells the model about both and refuses a
    reply that repeats them; `tokens` and `cost_usd` total what the writer has spent.
    `ask_usage` False leaves `stream_options` out of the request, for a server that refuses
    it (tokens are then estimated)."""

    def __init__(self, settings: LLMSettings, *, seed: int = 0, attempts: int = 2,
                 ask_usage: bool = True) -> None:
        if attempts < 1:
            raise ValueError("attempts: at least 1")
        self.settings = settings
        self.seed = seed
        self.attempts = attempts
        self.ask_usage = ask_usage
        self.timeout_s = settings.timeout_s or 120.0
        self.tried: list[str] = []
        self.avoided: list[str] = []
        #: why the model's last unusable replies were refused (told to it in the next request)
        self.unusable: list[str] = []
        self.tokens = 0
        self.cost_usd = 0.0

    # -- the Writer protocol ---------------------------------------------------------

    def avoid(self, edit: Edit) -> None:
        """Never propose `edit` again (the critique blamed it on a rule)."""
        key = edit.model_dump_json()
        if key not in self.avoided:
            self.avoided.append(key)

    def state(self) -> dict[str, Any]:
        return {"seed": self.seed, "tried": list(self.tried), "avoided": list(self.avoided),
                "unusable": list(self.unusable), "tokens": self.tokens, "cost_usd": self.cost_usd}

    def restore(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.tried = [str(k) for k in state.get("tried", [])]
        self.avoided = [str(k) for k in state.get("avoided", [])]
        self.unusable = [str(k) for k in state.get("unusable", [])]
        self.tokens = int(state.get("tokens", 0))
        self.cost_usd = float(state.get("cost_usd", 0.0))

    async def propose(self, playbook: Playbook, analysis: FailureAnalysis,
                      feedback: list[str], template: str | None = None) -> Proposal:
        """The model's proposal for `analysis` (with the critique's `feedback` on the
        proposals it sent back) on `playbook` and its system-prompt `template` (None: the
        playbook's own template file); one without edits, `error` saying why, when the
        model gave none usable or the request failed."""
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": self.request(playbook, analysis, feedback, template)},
        ]
        log: list[str] = []
        tokens, cost, estimated = 0, 0.0, False
        reason = ""
        for attempt in range(self.attempts):
            log += [f"{m['role']}:\n{m['content']}" for m in (messages if attempt == 0 else messages[-1:])]
            try:
                answer = await self._ask(messages)
            except LLMRequestError as e:
                why = (f"the model did not answer within {self.timeout_s:g} s" if e.kind == "timeout"
                       else f"the request failed: {e.message}")
                return self._none("request_failed", why, log, tokens, cost, estimated)
            used, spent, guessed = self._usage(answer, messages)
            tokens, cost, estimated = tokens + used, cost + spent, estimated or guessed
            log.append(f"assistant:\n{answer.text}")
            try:
                edits, rationale, symptom = parse_reply(answer.text)
                self._check_new(edits)
            except _Unusable as e:
                reason = str(e)
                log.append(f"rejected: {reason}")
                messages += [{"role": "assistant", "content": answer.text},
                             {"role": "user", "content": f"That reply cannot be used: {reason}. "
                                                         "Answer again with the JSON object only."}]
                continue
            proposal = LLMProposal(
                tuple(edits), symptom or (analysis.kinds()[:1] or ["llm"])[0], rationale,
                tokens, cost, exchange=self._log(log), estimated=estimated)
            self.tried.append(proposal.key)
            self._spent(tokens, cost)
            return proposal
        tries = f" ({self.attempts} replies)" if self.attempts > 1 else ""
        self.unusable = [*self.unusable, reason][-5:]
        return self._none("malformed", f"the model gave no usable proposal{tries}: {reason}",
                          log, tokens, cost, estimated)

    def _none(self, symptom: str, why: str, log: list[str], tokens: int, cost: float,
              estimated: bool) -> LLMProposal:
        self._spent(tokens, cost)
        return LLMProposal((), symptom, why, tokens, cost, exchange=self._log(log),
                           estimated=estimated, error=why)

    # -- the request -----------------------------------------------------------------

    def request(self, playbook: Playbook, analysis: FailureAnalysis, feedback: list[str],
                template: str | None = None) -> str:
        """The user message for one proposal."""
        parts = [f"Failure analysis of {playbook.ref}:\n{analysis.text() or 'no failure recorded'}",
                 f"The playbook's tunable parts:\n{_tunable(playbook)}",
                 "The agent's system-prompt template (\"template\" edits quote a passage of it"
                 f" exactly):\n{self._template(playbook, template)}"]
        if feedback:
            parts.append("The critique sent earlier proposals back:\n"
                         + "\n".join(f"- {f}" for f in feedback))
        if self.avoided:
            parts.append("Never propose these edits again (the critique blamed them):\n"
                         + "\n".join(f"- {k}" for k in self.avoided))
        if self.unusable:
            parts.append("Earlier replies of yours could not be used:\n"
                         + "\n".join(f"- {r}" for r in self.unusable))
        if self.tried:
            parts.append("Already proposed (propose something else):\n"
                         + "\n".join(f"- {k}" for k in self.tried))
        return "\n\n".join(parts)

    @staticmethod
    def _template(playbook: Playbook, template: str | None) -> str:
        if template is not None:
            return template
        try:
            return load_template(playbook).template
        except PlaybookError as e:
            return f"(not available: {e})"

    def _check_new(self, edits: list[Edit]) -> None:
        for i, edit in enumerate(edits):
            if edit.model_dump_json() in self.avoided:
                raise _Unusable(f"edits[{i}] ({edit.description()}) was already blamed by the critique")
        key = " | ".join(e.model_dump_json() for e in edits)
        if key in self.tried:
            raise _Unusable("the same edits were already proposed")

    async def _ask(self, messages: list[dict[str, str]]) -> Completion:
        s = self.settings
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if self.ask_usage else {}
        async with open_client(s, timeout_s=self.timeout_s, max_retries=0) as client:
            return await stream_completion(
                client, model=s.model, messages=messages, timeout_s=self.timeout_s,  # type: ignore[arg-type]
                temperature=s.temperature, max_tokens=s.max_tokens or 2000, seed=self.seed,
                response_format={"type": "json_object"}, **extra)

    def _usage(self, answer: Completion, messages: list[dict[str, str]]) -> tuple[int, float, bool]:
        if answer.usage is not None:
            p, c, guessed = answer.usage.prompt_tokens, answer.usage.completion_tokens, False
        else:
            p = estimate_tokens("".join(m["content"] for m in messages))
            c, guessed = estimate_tokens(answer.text), True
        return p + c, cost_usd(self.settings.model, p, c), guessed

    def _spent(self, tokens: int, cost: float) -> None:
        self.tokens += tokens
        self.cost_usd += cost

    def _log(self, log: list[str]) -> str:
        return f"model {self.settings.model}\n" + "\n\n".join(log)
