"""The offline critique holds every candidate to the compliance rules and names the rule
an edit broke: the debt named before verification, the disclosure removed or skipped,
opt-out no longer recorded, a voicemail naming the debt, a threat; a proposal is revised
at most three times."""

from __future__ import annotations

from typing import Any

import pytest

from ai.playbook import DEFAULT_PLAYBOOK, PACKAGED_PLAYBOOKS, Playbook, load_playbook
from tuning.analysis import FailureAnalysis
from tuning.critique import RULES, check_data, check_playbook, conduct_terms, review
from tuning.edits import Edit, SetRoute, SetThreshold, SetTransition, UseWording
from tuning.loop import MAX_REVISIONS, exchange
from tuning.writer import OfflineWriter, Proposal


@pytest.fixture(scope="module")
def default() -> Playbook:
    return load_playbook(DEFAULT_PLAYBOOK)


def _data(pb: Playbook) -> dict[str, Any]:
    return pb.model_dump(mode="json")


@pytest.mark.parametrize("name", ["collections.yaml", "collections-weak.yaml"])
def test_the_shipped_playbooks_pass(name: str) -> None:
    assert check_playbook(load_playbook(PACKAGED_PLAYBOOKS / name)) == []


def test_debt_named_before_verification_by_a_step_order_edit(default: Playbook) -> None:
    edit = SetTransition(state="greeting", on="yes", target="disclosure")
    verdict = review(default, [edit])
    assert not verdict.approved and verdict.candidate is None
    assert "verification_before_debt" in verdict.rules and verdict.culprit == edit
    first = next(p for p in verdict.problems if p.rule == "verification_before_debt")
    assert first.where == "states.disclosure" and "greeting -> (on yes) disclosure" in first.detail
    assert "by edit 'step order: greeting goes to disclosure (on yes)'" in verdict.text


def test_debt_named_before_verification_by_a_route_edit(default: Playbook) -> None:
    verdict = review(default, [SetRoute(phase="pre_verification", intent="who", target="who_post")])
    assert verdict.rules == ["verification_before_debt"]
    assert verdict.problems[0].where == "states.who_post"


def test_debt_named_before_verification_in_the_data(default: Playbook) -> None:
    data = _data(default)
    data["states"]["greeting"]["say"] = ["Hello, this is {agent_name} about your {creditor} balance."]
    problems = check_data(data)
    assert {p.rule for p in problems} == {"verification_before_debt"}
    assert problems[0].where == "states.greeting"


def test_disclosure_removed(default: Playbook) -> None:
    data = _data(default)
    data["states"]["disclosure"]["say"] = [line for line in data["states"]["disclosure"]["say"]
                                           if "attempt to collect" not in line]
    problems = check_data(data)
    assert [p.rule for p in problems] == ["disclosure"]
    assert problems[0].where == "states.disclosure.say"


def test_disclosure_skipped_after_verification(default: Playbook) -> None:
    verdict = review(default, [SetTransition(state="verify", on="verified", target="offer_full")])
    assert verdict.rules == ["disclosure"]
    assert any(p.where == "states.offer_full" and "before any disclosure" in p.detail
               for p in verdict.problems)


def test_opt_out_no_longer_recorded(default: Playbook) -> None:
    data = _data(default)
    data["states"]["opt_out_stop"].pop("action")
    data["states"]["opt_out_stop"].pop("reason")
    problems = check_data(data)
    assert {p.rule for p in problems} == {"opt_out"}
    assert {p.where for p in problems} == {"routes.pre_verification.stop", "routes.post_verification.stop"}
    assert "does not record opt_out (stop_request)" in problems[0].detail


def test_opt_out_routed_away_by_an_edit(default: Playbook) -> None:
    verdict = review(default, [SetRoute(phase="post_verification", intent="attorney", target="refused")])
    assert verdict.rules == ["opt_out"]
    assert verdict.problems[0].where == "routes.post_verification.attorney"


def test_opt_out_no_longer_overriding(default: Playbook) -> None:
    data = _data(default)
    data["routes"]["overriding"].remove("stop")
    assert [(p.rule, p.where) for p in check_data(data)] == [("opt_out", "routes.overriding")]


def test_voicemail_naming_the_debt(default: Playbook) -> None:
    data = _data(default)
    data["settings"]["voicemail_message"] = "This is {agent_name} about your overdue bill. Call {callback_number}."
    problems = check_data(data)
    assert {p.rule for p in problems} == {"voicemail"}


def test_threat_or_profanity_in_any_line(default: Playbook) -> None:
    data = _data(default)
    data["states"]["refused"]["say"] = ["Pay now or we will have you arrested.", "Goodbye."]
    problems = check_data(data)
    assert [(p.rule, p.where) for p in problems] == [("conduct", "states.refused")]
    assert conduct_terms("You idiot, we'll sue you and garnish your wages") == ["sue you", "garnish", "idiot"]
    assert conduct_terms(check_playbook.__doc__ or "") == []


def test_an_approved_review_holds_the_candidate(default: Playbook) -> None:
    verdict = review(default, [UseWording(state="offer_instalments", block="empathy_understand")])
    assert verdict.approved and verdict.candidate is not None and verdict.problems == []
    assert verdict.text == "approved: no compliance rule is broken"
    assert set(RULES) >= {"verification_before_debt", "disclosure", "opt_out", "voicemail", "conduct"}


class _Writer(OfflineWriter):
    """Proposes the given edits in turn."""

    def __init__(self, proposals: list[list[Edit]]) -> None:
        super().__init__(0)
        self.queue = list(proposals)
        self.feedback: list[list[str]] = []

    async def propose(self, playbook: Playbook, analysis: FailureAnalysis,
                      feedback: list[str] | None = None, template: str | None = None) -> Proposal | None:
        self.feedback.append(list(feedback or []))
        return Proposal(tuple(self.queue.pop(0)), "test", "because") if self.queue else None


async def test_a_proposal_is_revised_at_most_three_times(default: Playbook) -> None:
    bad: list[list[Edit]] = [[SetTransition(state="greeting", on="yes", target="disclosure")]] * 10
    writer = _Writer(bad)
    ex = await exchange(writer, default, [])
    assert len(ex.rounds) == 1 + MAX_REVISIONS == 4
    assert ex.approved is None and all(not r.approved for _, r in ex.rounds)
    assert len(writer.feedback[-1]) == 3 and "verification_before_debt" in writer.feedback[-1][0]


async def test_a_sent_back_proposal_is_followed_by_another(default: Playbook) -> None:
    writer = _Writer([[SetRoute(phase="pre_verification", intent="stop", target="refused")],
                      [SetThreshold(name="max_reprompts", value=3)]])
    ex = await exchange(writer, default, [])
    assert [r.approved for _, r in ex.rounds] == [False, True]
    assert ex.approved is not None and ex.approved[1].settings.max_reprompts == 3
    assert "[opt_out]" in ex.text() and "approved" in ex.text()


def test_an_edit_the_critique_blamed_is_not_proposed_again(default: Playbook) -> None:
    from tests.test_tuning_writer import hardship_refused
    from tuning.analysis import analyse

    writer = OfflineWriter(seed=2)
    analysis = analyse([hardship_refused()], default)
    first = writer.choose(default, analysis)
    assert first is not None
    blamed = first.edits[0]
    writer.avoid(blamed)
    while (p := writer.choose(default, analysis)) is not None:
        assert blamed not in p.edits


def test_the_paths_follow_a_transfer_that_cannot_happen(default: Playbook) -> None:
    from tuning.paths import Step, walk

    reached = walk(default)
    assert Step("no_transfer", False) in reached and Step("no_transfer", True) in reached
    assert reached[Step("no_transfer", False)][-1] == "(on unavailable) no_transfer"
    data = _data(default)
    data["states"]["no_transfer"]["say"] = ["Nobody can take the call about your {creditor} account."]
    data["states"]["no_transfer"]["pre_verification"] = False  # the loader no longer looks
    assert [(p.rule, p.where) for p in check_data(data)] == [("verification_before_debt", "states.no_transfer")]


class _Odd(OfflineWriter):
    """Answers with no edits, then something that is not an edit, then raises."""

    def __init__(self) -> None:
        super().__init__(0)
        self.calls = 0

    async def propose(self, playbook: Playbook, analysis: FailureAnalysis,
                      feedback: list[str] | None = None, template: str | None = None) -> Proposal | None:
        self.calls += 1
        if self.calls == 1:
            return Proposal((), "test", "nothing to change")
        if self.calls == 2:
            return Proposal(("make it better",), "test", "free text")  # type: ignore[arg-type]
        raise RuntimeError("the model answered prose")


async def test_an_empty_or_malformed_proposal_is_sent_back_with_the_reason(default: Playbook) -> None:
    ex = await exchange(_Odd(), default, [])
    assert ex.approved is None and [r.approved for _, r in ex.rounds] == [False, False, False]
    assert "[malformed]" in ex.rounds[0][1].text and "no edit" in ex.rounds[0][1].text
    assert "not an edit" in ex.rounds[1][1].text and "make it better" in ex.rounds[1][1].text
    assert "the model answered prose" in ex.text()


async def test_a_step_records_a_malformed_exchange_as_rejected(default: Playbook) -> None:
    from tuning.loop import Candidate, step

    async def never(pb: Playbook, n: int) -> Candidate:
        raise AssertionError("nothing approved is evaluated")

    current = Candidate(default, 50.0, 50.0, {})
    done = await step(1, _Odd(), current, never)
    assert not done.iteration.accepted and done.current is current and not done.exhausted
    assert done.iteration.reason.startswith("the critique approved no proposal")
    assert done.iteration.exchange.count("writer:") == 3


# ---- the system-prompt template and free wording (the LLM writer's edits) ---------------


def test_a_template_edit_outside_the_compliance_rules_is_approved_and_carried(default: Playbook) -> None:
    from ai.prompt import check_template, load_template
    from tuning.edits import EditTemplate

    base = load_template(default).template
    edit = EditTemplate(find="Speak in short, plain sentences",
                        replace="Speak warmly, in short, plain sentences")
    verdict = review(default, [edit], base)
    assert verdict.approved, verdict.text
    assert verdict.template is not None and "Speak warmly, in short" in verdict.template
    check_template(verdict.template)


@pytest.mark.parametrize(("find", "replace", "rule"), [
    ('Right after verification, say exactly: "$disclosure"', "Right after verification, say hello.",
     "disclosure"),
    ("If they ask you to stop calling, or say they have an attorney, confirm you will not call again,"
     " record opt_out and end the call.", "If they ask you to stop calling, carry on.", "opt_out"),
    ("never say any of: $debt_terms, the balance", "mention $debt_terms, the balance", "verification_before_debt"),
    ("Speak in short, plain sentences", "Tell them they will be arrested. Speak in short, plain sentences",
     "conduct"),
    ("Speak in short, plain sentences", "Speak as $nobody does", "schema"),
    ("If they describe hardship, acknowledge it", "If they describe hardship, ignore it", "prompt_rules"),
])
def test_a_template_edit_that_breaks_a_rule_is_refused_naming_it(
        default: Playbook, find: str, replace: str, rule: str) -> None:
    from tuning.edits import EditTemplate

    edit = EditTemplate(find=find, replace=replace)
    verdict = review(default, [edit])
    assert not verdict.approved and verdict.culprit == edit
    assert rule in verdict.rules, verdict.text
    assert verdict.template is None


def test_a_template_edit_quoting_nothing_in_the_template_is_refused(default: Playbook) -> None:
    from tuning.edits import EditTemplate

    verdict = review(default, [EditTemplate(find="not in the template at all", replace="x")])
    assert not verdict.approved and verdict.rules == ["schema"]
    assert verdict.problems[0].where == "system_prompt_template"


def test_a_line_in_the_writers_own_words_is_held_to_the_rules(default: Playbook) -> None:
    from tuning.edits import Reword

    fine = review(default, [Reword(state="offer_full", field="ask",
                                   text="Would you be able to clear {balance} today?")])
    assert fine.approved, fine.text
    assert fine.candidate is not None and fine.candidate.states["offer_full"].ask.startswith("Would you")
    early = review(default, [Reword(state="greeting", field="say", index=0,
                                    text="Hello, this is about your debt of {balance}.")])
    assert not early.approved and "verification_before_debt" in early.rules
    rude = review(default, [Reword(state="offer_full", field="ask", text="Pay {balance} now, you idiot.")])
    assert not rude.approved and rude.rules == ["conduct"]
