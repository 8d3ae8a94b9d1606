"""Every kind of playbook edit applies, re-validates with the loader and reads back from
its JSON form; an edit that cannot apply, or whose result the loader refuses, is rejected
with the reason; the base playbook is never changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ai.playbook import PACKAGED_PLAYBOOKS, Playbook, load_playbook, parse_playbook
from tuning.blocks import WORDING_BLOCKS
from tuning.edits import (
    Edit,
    EditRejected,
    SetNegotiation,
    SetOfferOrder,
    SetRoute,
    SetThreshold,
    SetTransition,
    UseWording,
    apply_edit,
    apply_edits,
    edit_adapter,
)
from tuning.writer import negotiation_chain

WEAK = PACKAGED_PLAYBOOKS / "collections-weak.yaml"


@pytest.fixture(scope="module")
def weak() -> Playbook:
    return load_playbook(WEAK)


def test_the_weak_playbook_loads_as_a_packaged_playbook(weak: Playbook) -> None:
    assert weak.ref == "collections-weak@1"
    assert negotiation_chain(weak) == ["ask_amount", "offer_instalments"]
    assert "offer_settlement" not in weak.states
    assert weak.routes.post_verification["hardship"] == "refused"
    assert weak.settings.max_reprompts == 0


def test_step_order(weak: Playbook) -> None:
    out = apply_edit(weak, SetTransition(state="ask_date", on="no", target="ask_amount"))
    assert out.states["ask_date"].on["no"] == "ask_amount"
    out = apply_edit(weak, SetTransition(state="disclosure", target="offer_full"))
    assert out.states["disclosure"].next == "offer_full"


def test_offers_and_their_order_add_a_missing_offer(weak: Playbook) -> None:
    edit = SetOfferOrder(steps=["offer_full", "offer_settlement", "offer_instalments", "ask_amount"])
    out = apply_edit(weak, edit)
    assert negotiation_chain(out) == list(edit.steps)
    assert out.states["ask_amount"].on["no"] == "refused"
    settlement = out.states["offer_settlement"]
    assert settlement.plan == "settlement" and "{settlement_amount}" in (settlement.ask or "")
    assert edit.description() == ("offers: offer_full -> offer_settlement -> offer_instalments"
                                  " -> ask_amount -> refused")


def test_negotiation_terms(weak: Playbook) -> None:
    out = apply_edit(weak, SetNegotiation(settlement_pct=50, instalments=6))
    assert (out.settings.settlement_pct, out.settings.instalments) == (50, 6)


def test_wording_blocks(weak: Playbook) -> None:
    out = apply_edits(weak, [UseWording(state="offer_instalments", block="empathy_hardship"),
                             UseWording(state="ask_amount", block="clear_ask_amount")])
    assert out.states["offer_instalments"].say[0] == WORDING_BLOCKS["empathy_hardship"].text
    assert out.states["ask_amount"].ask == "How much could you pay, and on what date?"


def test_routes_add_the_vetted_hardship_step(weak: Playbook) -> None:
    assert "hardship" not in weak.states
    out = apply_edit(weak, SetRoute(phase="post_verification", intent="hardship", target="hardship"))
    assert out.routes.post_verification["hardship"] == "hardship"
    st = out.states["hardship"]
    assert st.action == "hardship" and st.next == "offer_instalments"
    out = apply_edit(weak, SetRoute(phase="post_verification", intent="hardship", target="offer_instalments"))
    assert out.routes.post_verification["hardship"] == "offer_instalments"


@pytest.mark.parametrize(("name", "value"), [("endpointing_ms", 800), ("reprompt_after_ms", 8000),
                                             ("max_reprompts", 2), ("barge_in_min_speech_ms", 700)])
def test_thresholds(weak: Playbook, name: str, value: int) -> None:
    out = apply_edit(weak, SetThreshold(name=name, value=value))  # type: ignore[arg-type]
    assert getattr(out.settings, name) == value


EVERY_KIND: list[Edit] = [
    SetTransition(state="disclosure", target="offer_full"),
    SetOfferOrder(steps=["offer_full", "offer_instalments"]),
    SetNegotiation(instalments=4),
    UseWording(state="confirm", block="clear_confirm"),
    SetRoute(phase="post_verification", intent="hardship", target="hardship"),
    SetThreshold(name="endpointing_ms", value=700),
]


@pytest.mark.parametrize("edit", EVERY_KIND, ids=lambda e: e.kind)
def test_every_kind_revalidates_and_round_trips(weak: Playbook, edit: Edit, tmp_path: Path) -> None:
    before = weak.model_dump(mode="json")
    out = apply_edit(weak, edit)
    assert out != weak and weak.model_dump(mode="json") == before  # the base is untouched
    path = tmp_path / "edited.yaml"  # an edited playbook is a playbook file like any other
    path.write_text(yaml.safe_dump(out.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    assert load_playbook(path).model_dump(mode="json") == out.model_dump(mode="json")
    assert out.source_dir == weak.source_dir
    assert edit_adapter.validate_json(edit.model_dump_json()) == edit
    assert edit.description()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (SetTransition(state="disclosure", target="nowhere"), "the playbook has no state 'nowhere'"),
        (SetTransition(state="greeting", on="maybe", target="verify"), "does not handle 'maybe'"),
        (SetThreshold(name="endpointing_ms", value=50), "endpointing_ms must be within 200..2000, not 50"),
        (SetThreshold(name="max_reprompts", value=0), "max_reprompts is already 0"),
        (UseWording(state="greeting", block="clear_offer_full"), "is written for offer_full, not 'greeting'"),
        (UseWording(state="greeting", block="no_such_block"), "unknown wording block 'no_such_block'"),
        (SetRoute(phase="post_verification", intent="hardship", target="refused"), "already goes there"),
        (SetRoute(phase="post_verification", intent="sulk", target="refused"), "no intent 'sulk'"),
        (SetOfferOrder(steps=["offer_full", "offer_full"]), "a step appears twice"),
        (SetNegotiation(), "nothing to change"),
    ],
)
def test_an_edit_that_cannot_apply_is_rejected_with_the_reason(weak: Playbook, edit: Edit, reason: str) -> None:
    with pytest.raises(EditRejected) as err:
        apply_edit(weak, edit)
    assert reason in err.value.reason and not err.value.invalid
    assert err.value.edit == edit


def test_an_edit_the_loader_refuses_is_rejected_with_its_reason(weak: Playbook) -> None:
    # an edit built past its own field checks: the loader still refuses the result
    edit = SetNegotiation.model_construct(kind="negotiation", settlement_pct=None, instalments=1)
    with pytest.raises(EditRejected) as err:
        apply_edit(weak, edit)
    assert err.value.invalid
    assert "settings.instalments: Input should be greater than or equal to 2" in err.value.reason


def test_a_vetted_question_in_a_pre_verification_state_is_refused_by_the_loader(weak: Playbook) -> None:
    data = weak.model_dump(mode="json")
    data["states"]["offer_full"]["pre_verification"] = True  # someone's odd playbook
    odd = parse_playbook({**data, "states": {**data["states"], "offer_full": {
        **data["states"]["offer_full"], "ask": "Can you manage it today?"}}})
    with pytest.raises(EditRejected) as err:
        apply_edit(odd, UseWording(state="offer_full", block="clear_offer_full"))
    assert err.value.invalid and "pre-verification line" in err.value.reason
