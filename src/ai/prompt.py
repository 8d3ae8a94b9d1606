"""The LLM system prompt: a template file rendered from playbook data and the call's context.

The template is `string.Template` text ($name placeholders, $$ for a dollar sign): the
packaged `playbooks/system_prompt.md`, or the file a playbook names in `system_prompt`
(looked up beside the playbook, then among the packaged playbooks), so tuning edits text,
not code. The plans, outcomes and tools it lists come from ai.vocabulary and ai.tools.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path

from ai.context import CallContext
from ai.extract import spoken_date
from ai.playbook import MINI_MIRANDA, PACKAGED_PLAYBOOKS, Playbook, PlaybookError
from ai.tools import tools_doc
from ai.vocabulary import OUTCOMES, PLAN_KINDS

__all__ = [
    "DEFAULT_TEMPLATE", "PROMPT_FIELDS", "check_template", "load_template", "render_system_prompt",
]

DEFAULT_TEMPLATE = PACKAGED_PLAYBOOKS / "system_prompt.md"

_SCRIPT_STATES = ("greeting", "verify", "disclosure", "offer_full", "offer_settlement",
                  "offer_instalments", "ask_amount", "ptp_done", "wrong_party")
#: every placeholder a system prompt template may use
PROMPT_FIELDS = frozenset({
    "agent_name", "company", "caller_brand", "debtor_name", "birth_year", "creditor",
    "balance", "today", "today_spoken", "timezone", "settlement_amount", "settlement_pct",
    "instalments", "instalment_amount", "callback_number", "transfer_number", "debt_terms",
    "disclosure", "plans", "outcomes", "tools", *(f"script_{s}" for s in _SCRIPT_STATES),
})


def _template_path(playbook: Playbook) -> Path:
    name = playbook.system_prompt
    if name is None:
        return DEFAULT_TEMPLATE
    if Path(name).name != name:
        raise PlaybookError(f"playbook {playbook.ref}: system_prompt must be a file name, got {name!r}")
    for folder in (playbook.source_dir, PACKAGED_PLAYBOOKS):
        if folder is not None and (folder / name).is_file():
            return folder / name
    raise PlaybookError(f"playbook {playbook.ref}: system prompt template {name!r} not found")


def check_template(text: str, where: str = "system prompt template") -> string.Template:
    """`text` as a template, checked: valid $ placeholders, every one of PROMPT_FIELDS;
    raises PlaybookError naming `where`."""
    template = string.Template(text)
    if not template.is_valid():
        raise PlaybookError(f"{where} has a bad $ placeholder")
    unknown = set(template.get_identifiers()) - PROMPT_FIELDS
    if unknown:
        raise PlaybookError(
            f"{where} uses unknown placeholders {sorted(unknown)} "
            f"(known: {', '.join(sorted(PROMPT_FIELDS))})"
        )
    return template


@functools.lru_cache(maxsize=64)
def _read_template(path: Path, mtime_ns: int) -> string.Template:
    # keyed by modification time too: an edited template (tuning) is read again
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlaybookError(f"cannot read system prompt template {path}: {e}") from e
    return check_template(text, f"system prompt template {path}")


def load_template(playbook: Playbook) -> string.Template:
    """The playbook's system prompt template, checked; raises PlaybookError."""
    path = _template_path(playbook)
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError as e:
        raise PlaybookError(f"cannot read system prompt template {path}: {e}") from e
    return _read_template(path, mtime_ns)


def render_system_prompt(
    playbook: Playbook, ctx: CallContext, template: string.Template | None = None
) -> str:
    """The system prompt for an LLM agent that follows `playbook` on the call `ctx`, from
    `template` (checked by check_template) or the playbook's own template file."""
    v = ctx.template_values(ptp_amount="<amount>", ptp_date="<date>", callback_time="<when>")
    s = playbook.settings

    def lines(state: str) -> str:
        st = playbook.states.get(state)
        if st is None:
            return ""
        say = st.say
        if st.say_repeat_contact is not None and not ctx.first_contact:
            say = st.say_repeat_contact
        return " ".join(x.format_map(v) for x in [*say, *([st.ask] if st.ask else [])])

    values = {
        "agent_name": ctx.agent_name,
        "company": ctx.company,
        "caller_brand": ctx.caller_brand,
        "debtor_name": ctx.debtor_name,
        "birth_year": str(ctx.birth_year),
        "creditor": ctx.creditor,
        "balance": v["balance"],
        "today": ctx.today.isoformat(),
        "today_spoken": spoken_date(ctx.today),
        "timezone": ctx.timezone,
        "settlement_amount": v["settlement_amount"],
        "settlement_pct": f"{ctx.settlement_pct:g}",
        "instalments": str(ctx.instalments),
        "instalment_amount": v["instalment_amount"],
        "callback_number": ctx.callback_number,
        "transfer_number": ctx.transfer_number or s.transfer_number
        or "none (offer a callback instead)",
        "debt_terms": ", ".join(playbook.debt_terms),
        "disclosure": lines("disclosure") or MINI_MIRANDA,
        "plans": "\n".join(f'- "{k}": {doc}' for k, doc in PLAN_KINDS.items()),
        "outcomes": "\n".join(f'- "{k}": {doc}' for k, doc in OUTCOMES.items()),
        "tools": tools_doc(),
        **{f"script_{st}": lines(st) for st in _SCRIPT_STATES},
    }
    return (template or load_template(playbook)).substitute(values).rstrip() + "\n"

