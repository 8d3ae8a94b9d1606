"""Structured, typed edits over a playbook's tunable fields, each with a description for
the audit trail:

- `SetTransition`: which state follows which (a state's `next` or one of its `on` keys);
- `SetOfferOrder`: the negotiation chain after the disclosure (offer_full,
  offer_settlement, offer_instalments, ask_amount in any order; a declined step leads to
  the next, the last to `refused`), adding a missing offer from the vetted templates;
- `SetNegotiation`: the settlement share and the number of instalments;
- `UseWording`: a vetted wording block (blocks.WORDING_BLOCKS) said by, or asked in, a state;
- `SetRoute`: where an intent goes before or after verification;
- `SetThreshold`: endpointing, reprompt timing, reprompts allowed, barge-in speech;
- `Reword`: a state's line or question in the writer's own words (the LLM writer);
- `EditTemplate`: one exact passage of the system-prompt template replaced (the LLM writer).

`apply_edits` works on a copy of the playbook's data and re-validates the result with
ai.playbook.parse_playbook; an edit that cannot apply, or that makes an invalid playbook,
raises `EditRejected` with the reason. `EditTemplate` changes the template's text, not the
playbook: `apply_edits` passes it by and `apply_template_edits` applies it. Whether a valid
result is also compliant is the critique's call (tuning.critique).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ai.playbook import Playbook, PlaybookError, parse_playbook
from tuning.blocks import STATE_TEMPLATES, WORDING_BLOCKS, state_template

__all__ = [
    "NEGOTIATION_STEPS",
    "THRESHOLDS",
    "Edit",
    "EditRejected",
    "EditTemplate",
    "Reword",
    "SetNegotiation",
    "SetOfferOrder",
    "SetRoute",
    "SetThreshold",
    "SetTransition",
    "UseWording",
    "apply_edit",
    "apply_edits",
    "apply_template_edits",
    "describe",
    "edit_adapter",
]

#: the steps SetOfferOrder may chain after the disclosure
NEGOTIATION_STEPS = ("offer_full", "offer_settlement", "offer_instalments", "ask_amount")

#: tunable thresholds and the range a tuned value must stay in
THRESHOLDS: dict[str, tuple[int, int]] = {
    "endpointing_ms": (200, 2000),
    "reprompt_after_ms": (2000, 20_000),
    "max_reprompts": (0, 5),
    "barge_in_min_speech_ms": (100, 2000),
}


class EditRejected(ValueError):
    """An edit that cannot be applied, or (`invalid`) whose result the loader refuses; the
    reason says why (the loader's own words when `invalid`)."""

    def __init__(self, edit: _Edit, reason: str, *, invalid: bool = False) -> None:
        super().__init__(f"{edit.description()}: {reason}")
        self.edit = edit
        self.reason = reason
        self.invalid = invalid


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: what the edit changes: the playbook's data, or the system-prompt template's text
    target_kind: ClassVar[Literal["playbook", "template"]] = "playbook"

    def description(self) -> str:
        raise NotImplementedError

    def change(self, data: dict[str, Any]) -> None:
        """Apply the edit to playbook data in place (raise EditRejected when it cannot)."""
        raise NotImplementedError

    def _state(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        states = data.get("states") or {}
        if name not in states:
            raise EditRejected(self, f"the playbook has no state {name!r}")
        st: dict[str, Any] = states[name]
        return st


class SetTransition(_Edit):
    """`state` continues to `target`: through its `next` (`on` None) or on the intent or
    engine event `on`, which the state must already handle."""

    kind: Literal["transition"] = "transition"
    state: str
    on: str | None = None
    target: str

    def description(self) -> str:
        via = "next" if self.on is None else f"on {self.on}"
        return f"step order: {self.state} goes to {self.target} ({via})"

    def change(self, data: dict[str, Any]) -> None:
        st = self._state(data, self.state)
        self._state(data, self.target)
        if self.on is None:
            if not st.get("next"):
                raise EditRejected(self, f"state {self.state!r} has no next step to change")
            st["next"] = self.target
        else:
            on = st.get("on") or {}
            if self.on not in on:
                raise EditRejected(self, f"state {self.state!r} does not handle {self.on!r}")
            on[self.on] = self.target


class SetOfferOrder(_Edit):
    """The negotiation after the disclosure: `steps` in this order, each declined step
    leading to the next and the last to `refused`. A step the playbook lacks is added from
    the vetted templates."""

    kind: Literal["offer_order"] = "offer_order"
    steps: list[Literal["offer_full", "offer_settlement", "offer_instalments", "ask_amount"]] = Field(
        min_length=1
    )

    def description(self) -> str:
        return "offers: " + " -> ".join([*self.steps, "refused"])

    def change(self, data: dict[str, Any]) -> None:
        if len(set(self.steps)) != len(self.steps):
            raise EditRejected(self, "a step appears twice")
        disclosure = self._state(data, "disclosure")
        if not disclosure.get("next"):
            raise EditRejected(self, "the disclosure has no next step to lead into the offers")
        states = data["states"]
        for name in self.steps:
            if name not in states:
                states[name] = state_template(name)
        disclosure["next"] = self.steps[0]
        for here, after in zip(self.steps, [*self.steps[1:], "refused"], strict=True):
            states[here].setdefault("on", {})["no"] = after


class SetNegotiation(_Edit):
    """The settlement share of the balance (percent) and the number of monthly instalments."""

    kind: Literal["negotiation"] = "negotiation"
    settlement_pct: float | None = Field(default=None, gt=0, le=100)
    instalments: int | None = Field(default=None, ge=2, le=24)

    def description(self) -> str:
        parts = []
        if self.settlement_pct is not None:
            parts.append(f"settlement at {self.settlement_pct:g}% of the balance")
        if self.instalments is not None:
            parts.append(f"{self.instalments} monthly instalments")
        return "negotiation: " + (", ".join(parts) or "unchanged")

    def change(self, data: dict[str, Any]) -> None:
        if self.settlement_pct is None and self.instalments is None:
            raise EditRejected(self, "nothing to change")
        settings = data.setdefault("settings", {})
        if self.settlement_pct is not None:
            settings["settlement_pct"] = self.settlement_pct
        if self.instalments is not None:
            settings["instalments"] = self.instalments


class UseWording(_Edit):
    """State `state` uses the vetted wording block `block`: a `say` block is spoken first on
    entry (once), an `ask` block replaces its question."""

    kind: Literal["wording"] = "wording"
    state: str
    block: str

    def description(self) -> str:
        b = WORDING_BLOCKS.get(self.block)
        what = f"{b.purpose} line" if b and b.field == "say" else "question"
        text = b.text if b else "?"
        return f"wording: {self.state} {'says' if b and b.field == 'say' else 'asks'} {text!r} ({what} {self.block})"

    def change(self, data: dict[str, Any]) -> None:
        block = WORDING_BLOCKS.get(self.block)
        if block is None:
            raise EditRejected(self, f"unknown wording block {self.block!r}; known: {', '.join(sorted(WORDING_BLOCKS))}")
        if block.fits and self.state not in block.fits:
            raise EditRejected(self, f"block {self.block!r} is written for {', '.join(block.fits)}, not {self.state!r}")
        st = self._state(data, self.state)
        if block.field == "ask":
            if not st.get("ask"):
                raise EditRejected(self, f"state {self.state!r} asks nothing to reword")
            if st["ask"] == block.text:
                raise EditRejected(self, f"state {self.state!r} already asks that")
            st["ask"] = block.text
            return
        say = list(st.get("say") or [])
        if block.text in say:
            raise EditRejected(self, f"state {self.state!r} already says that")
        st["say"] = [block.text, *say]


class SetRoute(_Edit):
    """Intent `intent` leads to `target` (before or after verification). A target the
    playbook lacks but the vetted templates hold (e.g. `hardship`) is added."""

    kind: Literal["route"] = "route"
    phase: Literal["pre_verification", "post_verification"]
    intent: str
    target: str

    def description(self) -> str:
        when = "before" if self.phase == "pre_verification" else "after"
        return f"route: {self.intent} {when} verification goes to {self.target}"

    def change(self, data: dict[str, Any]) -> None:
        if self.intent not in (data.get("intents") or {}):
            raise EditRejected(self, f"the playbook has no intent {self.intent!r}")
        states = data.setdefault("states", {})
        if self.target not in states:
            if self.target not in STATE_TEMPLATES:
                raise EditRejected(self, f"the playbook has no state {self.target!r}")
            states[self.target] = state_template(self.target)
        routes = data.setdefault("routes", {}).setdefault(self.phase, {})
        if routes.get(self.intent) == self.target:
            raise EditRejected(self, "the route already goes there")
        routes[self.intent] = self.target


class SetThreshold(_Edit):
    """A timing or reprompt threshold (THRESHOLDS names them and their allowed ranges)."""

    kind: Literal["threshold"] = "threshold"
    name: Literal["endpointing_ms", "reprompt_after_ms", "max_reprompts", "barge_in_min_speech_ms"]
    value: int

    def description(self) -> str:
        return f"threshold: {self.name} = {self.value}"

    def change(self, data: dict[str, Any]) -> None:
        low, high = THRESHOLDS[self.name]
        if not low <= self.value <= high:
            raise EditRejected(self, f"{self.name} must be within {low}..{high}, not {self.value}")
        settings = data.setdefault("settings", {})
        if settings.get(self.name) == self.value:
            raise EditRejected(self, f"{self.name} is already {self.value}")
        settings[self.name] = self.value


#: the longest text a writer may put into one line of the playbook
MAX_LINE_CHARS = 400
#: the longest passage a template edit may replace or write, and the longest template
MAX_PASSAGE_CHARS = 4000
MAX_TEMPLATE_CHARS = 20_000


class Reword(_Edit):
    """State `state` says line `index` of its `say` (field "say") or asks its question
    (field "ask") in new words. The words are the writer's, so the loader's checks and the
    critique's (nothing about the debt before verification, the disclosure kept, no threat
    or insult) are all that stand between them and a call."""

    kind: Literal["line"] = "line"
    state: str
    field: Literal["say", "ask"]
    index: int = Field(default=0, ge=0)
    text: str = Field(min_length=1, max_length=MAX_LINE_CHARS)

    def description(self) -> str:
        where = f"{self.state}.ask" if self.field == "ask" else f"{self.state}.say[{self.index}]"
        return f"wording: {where} becomes {self.text!r}"

    def change(self, data: dict[str, Any]) -> None:
        st = self._state(data, self.state)
        text = " ".join(self.text.split())
        if not text:
            raise EditRejected(self, "the new line is blank")
        if self.field == "ask":
            if not st.get("ask"):
                raise EditRejected(self, f"state {self.state!r} asks nothing to reword")
            if st["ask"] == text:
                raise EditRejected(self, f"state {self.state!r} already asks that")
            st["ask"] = text
            return
        say = list(st.get("say") or [])
        if self.index >= len(say):
            raise EditRejected(self, f"state {self.state!r} has {len(say)} say lines, no line {self.index}")
        if say[self.index] == text:
            raise EditRejected(self, f"line {self.index} of {self.state!r} already says that")
        say[self.index] = text
        st["say"] = say


class EditTemplate(_Edit):
    """The passage `find` of the system-prompt template (which must occur exactly once)
    becomes `replace` ("" deletes it)."""

    target_kind: ClassVar[Literal["playbook", "template"]] = "template"
    kind: Literal["template"] = "template"
    find: str = Field(min_length=1, max_length=MAX_PASSAGE_CHARS)
    replace: str = Field(max_length=MAX_PASSAGE_CHARS)

    def description(self) -> str:
        def clip(t: str) -> str:
            return t if len(t) <= 80 else t[:77] + "..."
        return f"system prompt: {clip(self.find)!r} becomes {clip(self.replace)!r}"

    def change(self, data: dict[str, Any]) -> None:
        """A template edit leaves the playbook as it is (apply_template_edits applies it)."""

    def change_text(self, text: str) -> str:
        found = text.count(self.find)
        if found == 0:
            raise EditRejected(self, "the passage to replace is not in the template")
        if found > 1:
            raise EditRejected(self, f"the passage to replace occurs {found} times; quote a longer one")
        if self.find == self.replace:
            raise EditRejected(self, "the replacement is the passage itself")
        out = text.replace(self.find, self.replace)
        if len(out) > MAX_TEMPLATE_CHARS:
            raise EditRejected(self, f"the template would be {len(out)} characters, at most {MAX_TEMPLATE_CHARS}")
        return out


Edit = Annotated[
    SetTransition | SetOfferOrder | SetNegotiation | UseWording | SetRoute | SetThreshold | Reword
    | EditTemplate,
    Field(discriminator="kind"),
]
#: reads an edit back from its JSON form (`edit.model_dump()`), for the audit trail
edit_adapter: TypeAdapter[Edit] = TypeAdapter(Edit)


def describe(edit: Edit) -> str:
    return edit.description()


def apply_edits(playbook: Playbook, edits: list[Edit]) -> Playbook:
    """The playbook with `edits` applied in order and re-validated. Raises EditRejected
    naming the first edit that cannot apply, or the one after which the playbook no longer
    validates (with the loader's reasons)."""
    data = copy.deepcopy(playbook.model_dump(mode="json"))
    for edit in edits:
        edit.change(data)
        try:
            parse_playbook(data, source=playbook.ref)
        except PlaybookError as e:
            raise EditRejected(edit, str(e), invalid=True) from None
    result = parse_playbook(data, source=playbook.ref)
    result._source_dir = playbook.source_dir
    return result


def apply_template_edits(text: str, edits: list[Edit]) -> str:
    """`text` (a system-prompt template) with the template edits among `edits` applied in
    order; the others are passed by. Raises EditRejected naming the first that cannot apply."""
    for edit in edits:
        if isinstance(edit, EditTemplate):
            text = edit.change_text(text)
    return text


def apply_edit(playbook: Playbook, edit: Edit) -> Playbook:
    return apply_edits(playbook, [edit])
