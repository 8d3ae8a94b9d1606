"""The offline critique: holds a candidate playbook to the compliance rules and, when it
fails, says which rule and where. A tuned playbook that fails any rule is never accepted,
whatever it scores.

The rules (`RULES`): the loader's own validation (`schema`, and its mini-Miranda and
pre-verification checks, reported as `disclosure` and `verification_before_debt`); no path
from the greeting to a line naming the debt that skips the verified transition
(`verification_before_debt`); the disclosure still given, and given before anything else
after verification (`disclosure`); a stop request or an attorney still routed, before and
after verification, to a state that records the opt-out and ends the call (`opt_out`); a
voicemail message free of the debt (`voicemail`); no threat or profanity in any line
(`conduct`).

A system-prompt template edit (tuning.edits.EditTemplate) is held to the same rules as the
template is read by an LLM agent (`check_template_text`): the template still loads
(ai.prompt.check_template: `schema`); it still tells the agent to say the disclosure
(`$disclosure`: `disclosure`); every line of its compliance block (the lines under
"Compliance rules", and any line using `$disclosure` or `$debt_terms`) is kept word for
word, a removed or changed one reported under the rule it states (`verification_before_debt`,
`disclosure`, `opt_out`, `conduct`, else `prompt_rules`); and no threat, profanity or
insult is added (`conduct`).

`review(base, edits, template)` applies the edits one at a time, so a problem the base
playbook or template did not have is blamed on the edit that brought it.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ai.context import CallContext

# the loader's own compliance helpers, reused so the critique and the loader agree on what
# a debt term and the mini-Miranda are
from ai.playbook import (
    _DEBT_PLACEHOLDERS,
    MINI_MIRANDA,
    Playbook,
    PlaybookError,
    _compliance_sample,
    _fields,
    _squash,
    find_debt_terms,
    parse_playbook,
)
from ai.prompt import check_template, load_template
from evaluation.compliance import PROFANITY, THREATS
from tuning.edits import Edit, EditRejected, apply_edits, apply_template_edits
from tuning.paths import VERIFIED, edges, waits, walk

__all__ = ["RULES", "Problem", "Review", "check_data", "check_playbook", "check_template_text",
           "compliance_lines", "conduct_terms", "review"]

RULES: dict[str, str] = {
    "schema": "the playbook loads (ai.playbook validation)",
    "verification_before_debt": "nothing about the debt is said before the right party is verified",
    "disclosure": "the mini-Miranda is given, first thing after verification",
    "opt_out": "a stop request or an attorney ends the call and records the opt-out",
    "voicemail": "the voicemail message does not mention the debt",
    "conduct": "no threat, profanity or insult in any line",
    "prompt_rules": "the system-prompt template keeps its compliance instructions word for word",
}

# the evaluator's own lexicons, so the critique refuses a line the evaluator would count as
# a violation; insults the evaluator does not list (harassment, 12 CFR 1006.14) are added
_INSULTS = re.compile(r"\b(idiot\w*|moron\w*|stupid|liar|deadbeat|loser|pathetic)\b", re.IGNORECASE)
_CONDUCT = (THREATS, PROFANITY, _INSULTS)

_DEBT_COLLECTOR = "debt collector"


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule broken, where (a state or setting), and what shows it."""

    rule: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.detail}"


@dataclass
class Review:
    """The critique's verdict on a proposal. `culprit` is the edit that brought the first
    new problem (or was rejected as invalid); `text` is the critique's reasons as written."""

    approved: bool
    problems: list[Problem] = field(default_factory=list)
    culprit: Edit | None = None
    candidate: Playbook | None = None
    #: the candidate's system-prompt template when an edit changed it (None: unchanged)
    template: str | None = None

    @property
    def rules(self) -> list[str]:
        return sorted({p.rule for p in self.problems})

    @property
    def text(self) -> str:
        if self.approved:
            return "approved: no compliance rule is broken"
        blame = f" by edit {self.culprit.description()!r}" if self.culprit is not None else ""
        return f"rejected{blame}: " + "; ".join(str(p) for p in self.problems)


def conduct_terms(text: str) -> list[str]:
    """Threat, profanity and insult words in `text`."""
    found = [m.group(0).lower() for pattern in _CONDUCT for m in pattern.finditer(text)]
    return list(dict.fromkeys(found))


def _debt_words(line: str, playbook: Playbook, ctx: CallContext, *, company: bool = True) -> list[str]:
    """The debt terms and debt placeholders of a line template. `company` False lets the
    line name the collection company (the disclosure turn names it before the mini-Miranda)."""
    placeholders = _DEBT_PLACEHOLDERS if company else _DEBT_PLACEHOLDERS - {"company"}
    found = [f"{{{f}}}" for f in sorted(_fields(line) & placeholders)]
    values = ctx.template_values()
    if not company:
        values["company"] = playbook.caller_brand
    try:
        rendered = line.format_map(values)
    except (KeyError, ValueError, IndexError):
        rendered = line
    return found + find_debt_terms(rendered, playbook, ctx)


def _loader_rule(message: str) -> str:
    if message.startswith("settings.voicemail_message"):
        return "voicemail"
    if "mini-Miranda" in message or "say_repeat_contact must say" in message:
        return "disclosure"
    if "pre-verification line" in message:
        return "verification_before_debt"
    return "schema"


def _disclosure_cut(lines: list[str], marker: str) -> int | None:
    """Index of the line that gives the disclosure, or None."""
    return next((i for i, line in enumerate(lines) if marker in _squash(line)), None)


def _disclosing(playbook: Playbook, name: str) -> bool:
    st = playbook.states[name]
    first = _disclosure_cut(st.say, _squash(MINI_MIRANDA)) is not None
    repeat = st.say_repeat_contact is None or _disclosure_cut(st.say_repeat_contact, _DEBT_COLLECTOR) is not None
    return first and repeat


def _check_verification(playbook: Playbook, ctx: CallContext) -> list[Problem]:
    out = []
    for step, path in walk(playbook).items():
        if step.verified:
            continue
        for line in playbook.states[step.state].lines():
            found = _debt_words(line, playbook, ctx)
            if found:
                out.append(Problem(
                    "verification_before_debt", f"states.{step.state}",
                    f"says {', '.join(found)} before verification, reached by {' -> '.join(path)}",
                ))
                break
    return out


def _check_disclosure(playbook: Playbook, ctx: CallContext) -> list[Problem]:
    starts = {nxt for step in walk(playbook) for how, nxt in edges(playbook, step)
              if how == f"on {VERIFIED}" and not step.verified and nxt.state in playbook.states}
    out: list[Problem] = []
    if not starts:
        return [Problem("disclosure", "states", "no state is entered on verification")]
    for start in sorted(starts, key=lambda s: s.state):
        # right after verification the call must reach the disclosure before it waits
        name, hops = start.state, 0
        while not _disclosing(playbook, name):
            st = playbook.states[name]
            if waits(st) or st.end or not st.next or hops > len(playbook.states):
                out.append(Problem("disclosure", f"states.{name}",
                                   f"entered on verification ({start.state}) before any disclosure, "
                                   "and the call goes on without it"))
                break
            name, hops = st.next, hops + 1
        # and no line names the debt before the disclosure, on any path
        seen = {start}
        queue = deque([start])
        while queue:
            step = queue.popleft()
            st = playbook.states[step.state]
            lines, disclosing = st.say, _disclosing(playbook, step.state)
            if disclosing:
                lines = st.say[:_disclosure_cut(st.say, _squash(MINI_MIRANDA))]
            for line in lines:
                found = _debt_words(line, playbook, ctx, company=not disclosing)
                if found:
                    out.append(Problem("disclosure", f"states.{step.state}",
                                       f"says {', '.join(found)} before the disclosure: {line!r}"))
                    break
            if disclosing:
                continue
            for _, nxt in edges(playbook, step):
                if nxt not in seen and nxt.state in playbook.states:
                    seen.add(nxt)
                    queue.append(nxt)
    return list(dict.fromkeys(out))


_OPT_OUT = {"stop": "stop_request", "attorney": "attorney"}


def _check_opt_out(playbook: Playbook) -> list[Problem]:
    out = []
    for intent, reason in _OPT_OUT.items():
        if not playbook.intents.get(intent):
            out.append(Problem("opt_out", f"intents.{intent}", "the intent is missing or empty"))
        if intent not in playbook.routes.overriding:
            out.append(Problem("opt_out", "routes.overriding",
                               f"{intent} no longer wins over what the current state waits for"))
        for phase in ("pre_verification", "post_verification"):
            target = getattr(playbook.routes, phase).get(intent)
            where = f"routes.{phase}.{intent}"
            if target is None:
                out.append(Problem("opt_out", where, "not routed: the request would be ignored"))
                continue
            name, hops = target, 0
            while (st := playbook.states.get(name)) is not None and st.next and not st.end and hops < 50:
                if st.action == "opt_out":
                    break
                name, hops = st.next, hops + 1
            if st is None or st.action != "opt_out" or st.reason != reason:
                out.append(Problem("opt_out", where,
                                   f"goes to {target}, which does not record opt_out ({reason})"))
            elif not st.end and not st.next:
                out.append(Problem("opt_out", where, f"{name} records the opt-out but does not end the call"))
            elif st.end and st.end != "opt_out":
                out.append(Problem("opt_out", where, f"{name} ends the call as {st.end}, not opt_out"))
            if phase == "pre_verification" and st is not None and not st.pre_verification:
                out.append(Problem("opt_out", where, f"{name} is not a pre-verification state"))
    return out


def _all_lines(playbook: Playbook) -> list[tuple[str, str]]:
    s = playbook.settings
    out = [(f"states.{name}", line) for name, st in playbook.states.items() for line in st.lines()]
    out += [("settings.voicemail_message", s.voicemail_message),
            ("settings.recovery_line", s.recovery_line),
            ("settings.greeting_filler", s.greeting_filler),
            ("settings.max_duration_line", s.max_duration_line),
            ("settings.apology_line", s.apology_line)]
    return out + [("settings.filler_lines", line) for line in s.filler_lines]


def check_playbook(playbook: Playbook) -> list[Problem]:
    """Every compliance problem of an already loaded playbook (empty: compliant)."""
    ctx = _compliance_sample(playbook)
    problems = _check_verification(playbook, ctx) + _check_disclosure(playbook, ctx)
    problems += _check_opt_out(playbook)
    found = _debt_words(playbook.settings.voicemail_message, playbook, ctx)
    if found:
        problems.append(Problem("voicemail", "settings.voicemail_message", f"mentions {', '.join(found)}"))
    for where, line in _all_lines(playbook):
        words = conduct_terms(line)
        if words:
            problems.append(Problem("conduct", where, f"{', '.join(words)} in {line!r}"))
    return problems


def _loader_problems(message: str) -> list[Problem]:
    reasons = message.split(": ", 1)[-1].split("; ")
    return [Problem(_loader_rule(r), re.split(r"[: ]", r, maxsplit=1)[0] or "playbook", r) for r in reasons]


def check_data(data: Any, source: str = "<candidate>") -> list[Problem]:
    """Every compliance problem of playbook data (a mapping, as a writer or a file gives
    it): the loader's refusals by rule, then the critique's own checks."""
    try:
        playbook = parse_playbook(data, source=source)
    except PlaybookError as e:
        return _loader_problems(str(e))
    return check_playbook(playbook)


_TEMPLATE = "system_prompt_template"
_DISCLOSURE = re.compile(r"\$\{?disclosure\b")
_COMPLIANCE_PLACEHOLDER = re.compile(r"\$\{?(disclosure|debt_terms)\b")
# which rule a compliance line of the template states, by what it speaks of (first match)
_LINE_RULES = (
    (_DISCLOSURE, "disclosure"),
    (re.compile(r"stop calling|attorney|opt_out", re.I), "opt_out"),
    (re.compile(r"threaten|profanity|abusive", re.I), "conduct"),
    (re.compile(r"\$\{?debt_terms\b|verif|not the debtor|disclose", re.I), "verification_before_debt"),
)


def compliance_lines(template: str) -> list[str]:
    """The lines of a template that state compliance rules: its "Compliance rules" heading
    and the lines under it (to the next blank line), and any line using $disclosure or
    $debt_terms; stripped, in order."""
    out: list[str] = []
    block = False
    for raw in template.splitlines():
        line = raw.strip()
        if line.lower().startswith("compliance rules"):
            block = True
        elif not line:
            block = False
        if line and (block or _COMPLIANCE_PLACEHOLDER.search(line)):
            out.append(line)
    return list(dict.fromkeys(out))


def _line_rule(line: str) -> str:
    return next((rule for pattern, rule in _LINE_RULES if pattern.search(line)), "prompt_rules")


def check_template_text(base: str, text: str) -> list[Problem]:
    """What a candidate template `text` breaks that the `base` template it was edited from
    kept (see the module docstring); empty: compliant."""
    try:
        check_template(text)
    except PlaybookError as e:
        return [Problem("schema", _TEMPLATE, str(e))]
    problems: list[Problem] = []
    kept = {line.strip() for line in text.splitlines()}
    if _DISCLOSURE.search(base) and not _DISCLOSURE.search(text):
        problems.append(Problem("disclosure", _TEMPLATE,
                                "no longer tells the agent to say the disclosure ($disclosure)"))
    for line in compliance_lines(base):
        if line not in kept:
            problems.append(Problem(_line_rule(line), _TEMPLATE,
                                    f"the compliance instruction {line[:160]!r} was changed or removed"))
    added = [w for w in conduct_terms(text) if w not in conduct_terms(base)]
    if added:
        problems.append(Problem("conduct", _TEMPLATE, f"adds {', '.join(added)}"))
    return problems


def _base_template(base: Playbook, template: str | None) -> str:
    if template is not None:
        return template
    try:
        return load_template(base).template
    except PlaybookError:
        return ""


def _problems_of(base: Playbook, edits: list[Edit], template: str
                 ) -> tuple[Playbook | None, str, list[Problem]]:
    try:
        candidate = apply_edits(base, edits)
        text = apply_template_edits(template, edits)
    except EditRejected as e:
        if not e.invalid:
            where = _TEMPLATE if e.edit.target_kind == "template" else "edit"
            return None, template, [Problem("schema", where, e.reason)]
        return None, template, _loader_problems(e.reason)
    problems = check_playbook(candidate)
    if text != template:
        problems += check_template_text(template, text)
    return candidate, text, problems


def review(base: Playbook, edits: list[Edit], template: str | None = None) -> Review:
    """The critique of `edits` applied to `base` and its system-prompt `template` (None:
    the playbook's own template file): approved when the result loads and breaks no rule;
    otherwise the problems, with the edit that brought the first new one. An approved
    review's `template` is the edited template when an edit changed it."""
    text = _base_template(base, template)
    already = set(check_playbook(base))
    # the last prefix is the whole proposal: its result is the verdict's
    candidate, edited, problems = _problems_of(base, [], text) if not edits else (None, text, [])
    for i in range(len(edits)):
        candidate, edited, problems = _problems_of(base, edits[: i + 1], text)
        new = [p for p in problems if p not in already]
        if new:
            return Review(False, new, edits[i], None)
    changed = edited if edited != text else None
    return Review(not problems, problems, None, candidate, changed)
