"""The offline writer: chooses playbook edits likely to fix what a failure analysis shows.

Each symptom (tuning.analysis.SYMPTOMS) has remedies, bundles of edits tried in order (a
hardship sent to a refusal: route hardship to an empathetic hardship step that offers
instalments; the full balance not offered first: put offer_full first in the negotiation; a call-back
asked for and refused: route the request to the call-back step;
a question repeated or not followed: the clearer vetted question, and one reprompt when the
call ended at the debtor's puzzled answer; giving up at the first answer not
understood: allow reprompts; barge-ins: longer endpointing and barge-in speech). The writer
proposes the remedy of the heaviest symptom (the summed weight of the scenarios showing it),
skipping remedies that would change nothing and ones already tried; when the critique sends
a proposal back it proposes a different one. A symptom's first remedy is the writer's best
guess; its alternatives come in an order drawn from the seed, so a seed gives the same
proposals and another seed explores them in another order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ai.playbook import Playbook
from tuning.analysis import FailureAnalysis
from tuning.blocks import WORDING_BLOCKS
from tuning.edits import (
    NEGOTIATION_STEPS,
    Edit,
    EditRejected,
    SetOfferOrder,
    SetRoute,
    SetThreshold,
    UseWording,
    apply_edits,
)

__all__ = ["OfflineWriter", "Proposal", "Writer", "negotiation_chain"]


@dataclass(frozen=True)
class Proposal:
    """Edits to apply together, the symptom they answer, and the writer's reasons."""

    edits: tuple[Edit, ...]
    symptom: str
    rationale: str
    #: what the proposal cost a model (0 for the offline writer)
    tokens: int = 0
    cost_usd: float = 0.0

    @property
    def key(self) -> str:
        return " | ".join(e.model_dump_json() if hasattr(e, "model_dump_json") else repr(e) for e in self.edits)

    @property
    def text(self) -> str:
        """The writer's text, as the audit trail records it."""
        lines = [f"- {e.description() if hasattr(e, 'description') else repr(e)}" for e in self.edits]
        return self.rationale + "\n" + "\n".join(lines)


@runtime_checkable
class Writer(Protocol):
    """What the tuning loop asks of a writer (the offline one here, an LLM's in
    tuning.writer_llm): a proposal from the failure analysis and the critique's reasons for
    the ones it sent back (None when it has nothing left to propose; `template` is the
    playbook's system-prompt template text, None for its own template file), an edit never to
    propose again, and its memory as JSON, stored with each iteration so a resumed run
    proposes what the interrupted one would have."""

    async def propose(self, playbook: Playbook, analysis: FailureAnalysis,
                      feedback: list[str], template: str | None = None) -> Proposal | None: ...

    def avoid(self, edit: Edit) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


def negotiation_chain(playbook: Playbook) -> list[str]:
    """The states the negotiation walks after the disclosure when each is declined."""
    chain: list[str] = []
    st = playbook.states.get("disclosure")
    name = st.next if st is not None else None
    while name and name in playbook.states and name not in chain and name != "refused":
        chain.append(name)
        name = playbook.states[name].on.get("no")
    return chain


def _order(steps: list[str]) -> SetOfferOrder:
    """The negotiation edit for `steps` (the chain's own steps that no edit can place, such
    as a custom state, are left out; duplicates keep their first place)."""
    kept = [s for s in dict.fromkeys(steps) if s in NEGOTIATION_STEPS]
    return SetOfferOrder.model_validate({"steps": kept})


# the steps an agreement leads to: they come into play with any offer
_AFTER_AGREEMENT = ("ask_date", "confirm")


def _vetted_questions(playbook: Playbook, states: Sequence[str]) -> list[Edit]:
    """The vetted question for each of `states` that asks something else (a step moved
    into the call should ask its question the clear way)."""
    out: list[Edit] = []
    for name in dict.fromkeys(states):
        st = playbook.states.get(name)
        block = next((b for b, w in WORDING_BLOCKS.items() if w.field == "ask" and w.fits == (name,)), None)
        if block and (st is None or (st.ask and st.ask != WORDING_BLOCKS[block].text)):
            if st is not None:
                out.append(UseWording(state=name, block=block))
    return out


def _full_first(playbook: Playbook) -> Iterator[list[Edit]]:
    rest = [s for s in negotiation_chain(playbook) if s != "offer_full"]
    for steps in (["offer_full", *rest],
                  ["offer_full", "offer_settlement", "offer_instalments", "ask_amount"]):
        order = _order(steps)
        yield [order, *_vetted_questions(playbook, [*order.steps, *_AFTER_AGREEMENT])]
        yield [order]


def _with_offer(playbook: Playbook, offer: str) -> Iterator[list[Edit]]:
    chain = negotiation_chain(playbook)
    if offer in chain:
        return
    offers = [s for s in chain if s != "ask_amount"]
    tail = ["ask_amount"] if "ask_amount" in chain or "ask_amount" in playbook.states else []
    first = [s for s in offers if s == "offer_full"] or ["offer_full"]
    middle = [s for s in offers if s != "offer_full"]
    for steps in ([*first, *middle, offer, *tail], [*first, offer, *middle, *tail]):
        order = _order(steps)
        yield [order, *_vetted_questions(playbook, [*order.steps, *_AFTER_AGREEMENT])]
        yield [order]


def _hardship(playbook: Playbook) -> Iterator[list[Edit]]:
    yield [SetRoute(phase="post_verification", intent="hardship", target="hardship"),
           *_empathy("offer_instalments", playbook)]
    yield [SetRoute(phase="post_verification", intent="hardship", target="offer_instalments"),
           UseWording(state="offer_instalments", block="empathy_hardship")]
    yield from _with_offer(playbook, "offer_instalments")


def _empathy(state: str, playbook: Playbook) -> list[Edit]:
    st = playbook.states.get(state)
    if st is None or WORDING_BLOCKS["empathy_understand"].text in st.say:
        return []
    return [UseWording(state=state, block="empathy_understand")]


def _said(template: str, text: str) -> bool:
    """`text` contains the line `template` as spoken (its placeholders filled in)."""
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.search(".+?".join(re.escape(p) for p in parts), text) is not None


def _clearer(playbook: Playbook, analysis: FailureAnalysis) -> Iterator[list[Edit]]:
    asked = " ".join(s.evidence for s in analysis.of("unclear_question"))
    # the states whose question was repeated first, then every state a vetted question fits
    names = [n for n, st in playbook.states.items() if st.ask and _said(st.ask, asked)]
    # best guess: the repeated question and every later step of the negotiation, asked
    # the vetted way (a debtor who did not follow one curt question will not follow the next)
    # and a debtor who did not follow it, and was hung up on, should hear it again
    gave_up = any(", call ended " in s.evidence for s in analysis.of("unclear_question"))
    again = [SetThreshold(name="max_reprompts", value=1)] if gave_up and playbook.settings.max_reprompts < 1 else []
    yield [*_vetted_questions(playbook, [*names, *negotiation_chain(playbook), *_AFTER_AGREEMENT]), *again]
    names += [n for n in playbook.states if n not in names]
    for name in names:
        for block_id, block in WORDING_BLOCKS.items():
            if block.field == "ask" and name in block.fits:
                yield [UseWording(state=name, block=block_id)]


def _callback(playbook: Playbook) -> Iterator[list[Edit]]:
    for phase in ("post_verification", "pre_verification"):
        if getattr(playbook.routes, phase).get("callback") != "callback_ask":
            yield [SetRoute(phase=phase, intent="callback", target="callback_ask")]  # type: ignore[arg-type]


def _patience(playbook: Playbook) -> Iterator[list[Edit]]:
    s = playbook.settings
    yield [SetThreshold(name="max_reprompts", value=max(2, s.max_reprompts + 1))]
    yield [SetThreshold(name="reprompt_after_ms", value=max(7000, s.reprompt_after_ms))]


def _barge_in(playbook: Playbook) -> Iterator[list[Edit]]:
    s = playbook.settings
    yield [SetThreshold(name="barge_in_min_speech_ms", value=max(700, s.barge_in_min_speech_ms + 200)),
           SetThreshold(name="endpointing_ms", value=max(700, s.endpointing_ms))]
    yield [SetThreshold(name="barge_in_min_speech_ms", value=max(900, s.barge_in_min_speech_ms + 400))]


def _courtesy(playbook: Playbook) -> Iterator[list[Edit]]:
    for state in ("offer_settlement", "offer_instalments", "ask_amount", "hardship"):
        for block in ("empathy_understand", "empathy_find_way"):
            yield [UseWording(state=state, block=block)]


class OfflineWriter:
    """Proposes edits from a failure analysis, deterministically for a seed. It remembers
    every proposal it made (`tried`), so it never proposes the same one twice in a run, and
    every edit the critique blamed (`avoided`), so no later bundle carries it."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.tried: set[str] = set()
        self.avoided: set[str] = set()

    def avoid(self, edit: Edit) -> None:
        """Never propose `edit` again, in any bundle (the critique blamed it on a rule)."""
        self.avoided.add(edit.model_dump_json())

    def _remedies(self, kind: str, playbook: Playbook, analysis: FailureAnalysis) -> Iterator[list[Edit]]:
        match kind:
            case "hardship_refused":
                yield from _hardship(playbook)
            case "full_not_offered_first":
                yield from _full_first(playbook)
            case "no_settlement":
                yield from _with_offer(playbook, "offer_settlement")
            case "no_instalments":
                yield from _with_offer(playbook, "offer_instalments")
            case "callback_ignored":
                yield from _callback(playbook)
            case "unclear_question":
                yield from _clearer(playbook, analysis)
            case "gave_up_early":
                yield from _patience(playbook)
            case "cut_off":
                yield from _barge_in(playbook)
            case "curt":
                yield from _courtesy(playbook)

    def candidates(self, playbook: Playbook, analysis: FailureAnalysis) -> list[Proposal]:
        """Every proposal for this analysis, best first: heavier symptoms first (equal
        weights in SYMPTOMS order, the likelier cause first); within a symptom its first
        remedy (the writer's best guess), then its alternatives in a seeded order."""
        kinds = analysis.kinds()
        rng = random.Random(f"{self.seed}:{playbook.ref}:{','.join(kinds)}")
        out: list[Proposal] = []
        for kind in kinds:
            where = ", ".join(dict.fromkeys(s.scenario for s in analysis.of(kind)))
            evidence = analysis.of(kind)[0].evidence
            remedies = [edits for edits in self._remedies(kind, playbook, analysis) if edits]
            alternatives = remedies[1:]
            rng.shuffle(alternatives)
            for edits in remedies[:1] + alternatives:
                p = Proposal(tuple(edits), kind, f"{kind} in {where} (weight {analysis.weight_of(kind)}): {evidence}")
                if p.key not in {q.key for q in out} and _changes(playbook, p):
                    out.append(p)
        return out

    def state(self) -> dict[str, Any]:
        """What it has tried and avoided (JSON), to resume a run where it stopped."""
        return {"kind": "offline", "seed": self.seed, "tried": sorted(self.tried),
                "avoided": sorted(self.avoided)}

    def restore(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.tried = set(state.get("tried", []))
        self.avoided = set(state.get("avoided", []))

    async def propose(self, playbook: Playbook, analysis: FailureAnalysis,
                      feedback: list[str] | None = None, template: str | None = None) -> Proposal | None:
        """`choose` (the Writer protocol's form; the offline writer edits the playbook only,
        so `template` is not read)."""
        return self.choose(playbook, analysis, feedback)

    def choose(self, playbook: Playbook, analysis: FailureAnalysis,
               feedback: list[str] | None = None) -> Proposal | None:
        """The best proposal not tried yet (None when nothing is left to try). `feedback`
        is the critique's reasons for the proposals it sent back, kept in the audit trail;
        the proposals themselves are already marked tried."""
        for p in self.candidates(playbook, analysis):
            if p.key not in self.tried and not any(e.model_dump_json() in self.avoided for e in p.edits):
                self.tried.add(p.key)
                return p
        return None


def _changes(playbook: Playbook, proposal: Proposal) -> bool:
    """The proposal applies and changes the playbook (an edit it cannot apply, or one that
    changes nothing, is not worth a critique's time; one the loader rejects still goes to
    the critique, which says why)."""
    try:
        return apply_edits(playbook, list(proposal.edits)) != playbook
    except EditRejected as e:
        return e.invalid
