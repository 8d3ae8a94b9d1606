"""The playbook schema (refuses unsafe scripts with clear errors) and the scripted policy
(a deterministic walk through the collections flow and its side roads)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai.events import CallStarted, DtmfEntry, MachineDetected, PolicyEvent, Silence, UserTurn
from ai.playbook import (
    DEFAULT_PLAYBOOK,
    MINI_MIRANDA,
    CallContext,
    Playbook,
    PlaybookError,
    YamlLoader,
    find_debt_terms,
    load_playbook,
    parse_playbook,
)
from ai.playbook_policy import ScriptedPolicy, ScriptedPolicyFactory
from ai.prompt import render_system_prompt
from ai.types import Action, PolicyOutput, Say
from evaluation.personas import load_persona

# the simulator's demo debtor, on a fixed clock
CONTEXT = {**load_persona("cooperative").context(), "today": "2026-11-21", "now": "2026-11-21T09:00:00"}


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    assert isinstance(data, dict)
    return data


def _variant(raw: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(raw)


# ---- schema ------------------------------------------------------------------------------


def test_default_playbook_loads_with_settings(playbook: Playbook) -> None:
    assert playbook.kind == "collections"
    s = playbook.settings
    assert (s.endpointing_ms, s.max_reprompts, s.settlement_pct, s.instalments) == (700, 2, 60, 3)
    assert s.transfer_number is None and s.filler_lines
    # the YAML 1.1 booleans trap: `on`, `yes` and `no` must stay strings
    assert playbook.states["greeting"].on == {"yes": "verify", "no": "not_available"}
    assert list(playbook.intents)[:2] == ["attorney", "stop"]


def test_load_from_path(tmp_path: Path, raw: dict[str, Any]) -> None:
    data = _variant(raw)
    data["name"] = "custom"
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_playbook(path).name == "custom"


def test_rejects_greeting_that_mentions_the_balance(raw: dict[str, Any]) -> None:
    data = _variant(raw)
    data["states"]["greeting"]["say"] = ["Hello, I'm calling about your balance of {balance}."]
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    msg = str(err.value)
    assert "states.greeting" in msg
    assert "uses {balance}, which reveals the debt" in msg
    assert "mentions balance, 4,321 dollars" in msg  # the validation-only sample balance


def test_rejects_debt_words_in_pre_verification_lines(raw: dict[str, Any]) -> None:
    data = _variant(raw)
    data["states"]["wrong_party"]["say"][0] = "Sorry, we are trying to collect from John."
    data["settings"]["voicemail_message"] = "Please call about your overdue account."
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    msg = str(err.value)
    assert "states.wrong_party: pre-verification line mentions collect" in msg
    assert "settings.voicemail_message: pre-verification line mentions account, overdue" in msg


def test_rejects_reference_to_missing_state(raw: dict[str, Any]) -> None:
    data = _variant(raw)
    data["states"]["offer_full"]["on"]["no"] = "offer_nothing"
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data, source="bad.yaml")
    assert "invalid playbook bad.yaml" in str(err.value)
    assert "states.offer_full.on.no refers to state 'offer_nothing', which does not exist" in str(
        err.value
    )


def test_rejects_missing_required_state_and_unknown_route_intent(raw: dict[str, Any]) -> None:
    data = _variant(raw)
    del data["states"]["confirm"]
    data["routes"]["post_verification"]["teleport"] = "dispute"
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    assert "missing required state 'confirm'" in str(err.value)
    assert "routes use intent 'teleport', which is not defined in intents" in str(err.value)


def test_rejects_disclosure_without_mini_miranda(raw: dict[str, Any]) -> None:
    data = _variant(raw)
    data["states"]["disclosure"]["say"] = ["Hi {debtor_first_name}, about your bill."]
    with pytest.raises(PlaybookError, match="must contain the mini-Miranda"):
        parse_playbook(data)


def test_rejects_unknown_placeholder_and_bad_regex(raw: dict[str, Any]) -> None:
    data = _variant(raw)
    data["states"]["refused"]["say"] = ["Bye {nickname}."]
    data["intents"]["yes"].append("(unclosed")
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    assert "unknown placeholder {nickname}" in str(err.value)
    assert "intents.yes: bad regex '(unclosed'" in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(PlaybookError, match="not valid YAML"):
        load_playbook(bad)
    with pytest.raises(PlaybookError, match="cannot read playbook"):
        load_playbook(tmp_path / "absent.yaml")


def test_system_prompt_carries_rules_flow_and_actions(playbook: Playbook) -> None:
    prompt = render_system_prompt(
        playbook, CallContext.from_dict({**CONTEXT, "debtor_name": "Ana Ruiz", "balance": 99.5}, playbook)
    )
    assert "Ana Ruiz" in prompt and "99 dollars and 50 cents" in prompt
    assert MINI_MIRANDA in prompt
    assert "Acme Services" in prompt and "year of birth" in prompt
    for action in ("promise_to_pay", "schedule_callback", "record_dispute", "opt_out", "end_call"):
        assert action in prompt
    later = render_system_prompt(playbook, CallContext.from_dict({**CONTEXT, "first_contact": False}, playbook))
    assert MINI_MIRANDA not in later and "This is a debt collector." in later


# ---- scripted policy ---------------------------------------------------------------------


def _run(policy: ScriptedPolicy, *events: PolicyEvent | str) -> list[list[PolicyOutput]]:
    outs = []
    for ev in (CallStarted(), *events):
        outs.append(policy.handle(UserTurn(ev) if isinstance(ev, str) else ev))
    return outs


def _said(outs: list[PolicyOutput]) -> str:
    return " ".join(o.text for o in outs if isinstance(o, Say))


def _actions(outs: list[list[PolicyOutput]]) -> list[Action]:
    return [o for turn in outs for o in turn if isinstance(o, Action)]


def _ended(outs: list[list[PolicyOutput]], outcome: str) -> None:
    last = outs[-1]
    assert isinstance(last[-1], Action) and last[-1].kind == "end_call"
    assert last[-1].data == {"outcome": outcome}
    assert any(isinstance(o, Say) for o in last)  # a goodbye comes before end_call
    for turn in outs[:-1]:
        assert all(not (isinstance(o, Action) and o.kind == "end_call") for o in turn)


def _policy(playbook: Playbook, **ctx: Any) -> ScriptedPolicy:
    return ScriptedPolicy(playbook, {**CONTEXT, **ctx})


async def test_respond_streams_one_sentence_per_say(playbook: Playbook) -> None:
    policy = ScriptedPolicyFactory(playbook)({**CONTEXT})
    assert policy.name == "playbook"
    outs = [o async for o in policy.respond([], CallStarted())]
    assert [o.text for o in outs if isinstance(o, Say)] == [
        "Hello, this is Alex calling from Acme Services.",
        "May I please speak with John Smith?",
    ]
    assert policy.state == "greeting" and policy.outcome is None


def test_full_flow_with_dtmf_year_and_custom_offer(playbook: Playbook) -> None:
    p = _policy(playbook)
    outs = _run(p, "Yes, speaking.", DtmfEntry("1984", "#"), "No.", "No way.", "Nope.",
                "I could do two hundred dollars on the 15th.", "Yes.")
    assert MINI_MIRANDA in _said(outs[2])
    assert "750 dollars" in _said(outs[3]) and "416 dollars and 67 cents" in _said(outs[4])
    assert "200 dollars on Tuesday, December 15" in _said(outs[6])
    kinds = [a.kind for a in _actions(outs)]
    assert kinds == ["right_party_verified", "promise_to_pay", "end_call"]
    assert _actions(outs)[1].data == {
        "amount": 200.0, "date": "2026-12-15", "plan": "custom", "instalments": None
    }
    _ended(outs, "promise_to_pay")
    assert p.outcome == "promise_to_pay" and p.handle(UserTurn("hello?")) == []


def test_settlement_accepted_and_corrected_date(playbook: Playbook) -> None:
    p = _policy(playbook)
    outs = _run(p, "This is John.", "1984", "I can't.", "Okay, I can do that.", "Friday.",
                "Actually, make it December 4th.", "Yes, that's right.")
    assert "Friday, November 27" in _said(outs[5])
    assert "Friday, December 4" in _said(outs[6])
    ptp = _actions(outs)[1]
    assert ptp.kind == "promise_to_pay"
    assert ptp.data == {"amount": 750.0, "date": "2026-12-04", "plan": "settlement",
                        "instalments": None}


def test_repeat_contact_uses_short_disclosure(playbook: Playbook) -> None:
    outs = _run(_policy(playbook, first_contact=False), "yes", "1984")
    assert "This is a debt collector." in _said(outs[2])
    assert MINI_MIRANDA not in _said(outs[2])


def test_failed_verification_never_reveals_the_debt(playbook: Playbook) -> None:
    p = _policy(playbook)
    outs = _run(p, "Yes it is.", "1975", "Nineteen seventy six.")
    _ended(outs, "unverified")
    ctx = CallContext.from_dict(CONTEXT, playbook)
    for turn in outs:
        assert find_debt_terms(_said(turn), playbook, ctx) == []
    assert "right_party_verified" not in [a.kind for a in _actions(outs)]


def test_voicemail_is_limited_content(playbook: Playbook) -> None:
    outs = _run(_policy(playbook), MachineDetected("carrier"))
    said = _said(outs[1])
    assert "John Smith" in said and "800-555-0199" in said
    assert find_debt_terms(said, playbook, CallContext.from_dict(CONTEXT, playbook)) == []
    assert [a.kind for a in _actions(outs)] == ["voicemail", "end_call"]
    _ended(outs, "voicemail")


def test_silence_reprompts_then_gives_up(playbook: Playbook) -> None:
    p = _policy(playbook)
    outs = _run(p, "yes", Silence(1), Silence(2), Silence(3))
    assert _said(outs[2]).startswith("Are you still there?")
    assert "year of birth" in _said(outs[2])
    assert _said(outs[3]).startswith("Are you still there?")
    _ended(outs, "no_response")


def test_abuse_gets_one_warning_then_the_call_ends(playbook: Playbook) -> None:
    p = _policy(playbook)
    outs = _run(p, "yes", "1984", "Go to hell.", "You f***ing idiot.")
    assert "respectful" in _said(outs[3]) and "full balance" in _said(outs[3])
    _ended(outs, "abusive")


def test_attorney_opts_out(playbook: Playbook) -> None:
    outs = _run(_policy(playbook), "yes", "1984", "Talk to my lawyer.")
    assert _actions(outs)[-2].data == {"reason": "attorney"}
    _ended(outs, "opt_out")


def test_stop_request_before_verification(playbook: Playbook) -> None:
    outs = _run(_policy(playbook), "Don't call this number again.")
    first = _actions(outs)[0]
    assert (first.kind, first.data) == ("opt_out", {"reason": "stop_request"})
    _ended(outs, "opt_out")


def test_callback_asks_when_then_schedules(playbook: Playbook) -> None:
    p = _policy(playbook)
    outs = _run(p, "Can you call me back later? I'm driving.", "Monday at 10 am")
    assert "When would be a good time" in _said(outs[1])
    cb = _actions(outs)[0]
    assert cb.kind == "schedule_callback" and cb.data["at"] == "2026-11-23T10:00:00"
    assert "Monday, November 23 at 10 AM" in _said(outs[2])
    _ended(outs, "callback")


def test_hardship_after_declined_instalments_asks_what_they_can_afford(playbook: Playbook) -> None:
    outs = _run(_policy(playbook), "yes", "1984", "no", "no", "No.", "I lost my job.")
    assert _actions(outs)[-1].kind == "hardship"
    assert "How much could you pay" in _said(outs[-1])


def test_human_request_without_and_with_transfer_number(
    playbook: Playbook, raw: dict[str, Any]
) -> None:
    p = _policy(playbook)
    outs = _run(p, "yes", "1984", "Can I speak to a supervisor?")
    assert "call you back" in _said(outs[-1])
    assert p.outcome is None and p.state == "callback_ask"
    data = _variant(raw)
    data["settings"]["transfer_number"] = "+12025550150"
    outs = _run(_policy(parse_playbook(data)), "yes", "1984", "I want a real person.")
    assert [a.kind for a in _actions(outs)][-2:] == ["transfer", "end_call"]
    assert _actions(outs)[-2].data["number"] == "+12025550150"
    _ended(outs, "transferred")


def test_not_understood_reprompts_then_closes(playbook: Playbook) -> None:
    outs = _run(_policy(playbook), "yes", "1984", "purple", "banana", "elephant")
    assert _said(outs[3]).startswith("Sorry, I didn't catch that.")
    assert "full balance" in _said(outs[3])
    _ended(outs, "refused")
