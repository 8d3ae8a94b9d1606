"""Agent prompt versions (table `prompt_versions`): a playbook, its LLM system-prompt
template and LLM parameters under `name@version`, with notes, tags, an active flag and run
statistics.

A version is checked when it is stored: its playbook by ai.playbook (the same schema and
compliance checks as a playbook file; its `name` and `version` are set to the prompt
version's, so calls record `name@version`), its template by ai.prompt.check_template.
Once used (`mark_used`, or run statistics recorded), its content (playbook, template, LLM
parameters) never changes: `update_prompt_version` then stores the change as the next
version of the name, whose `parent_id` is the version it came from. Notes, tags and the
active flag are bookkeeping and change in place. A used version cannot be deleted (the
database refuses both too).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ai.context import CallContext
from ai.playbook import Playbook, PlaybookError, YamlLoader, parse_playbook
from ai.prompt import check_template, load_template, render_system_prompt
from evaluation.library_errors import Conflict, Executor, Invalid, NotFound, invalid, transaction

__all__ = [
    "CONTENT_FIELDS", "LlmParams", "PromptVersion", "create_prompt_version",
    "delete_prompt_version", "get_prompt_version", "list_prompt_versions", "mark_used",
    "record_run_stats", "set_active", "update_prompt_version",
]

#: what a used version never changes
CONTENT_FIELDS = ("playbook", "system_prompt_template", "llm")


class LlmParams(BaseModel):
    """How the LLM agent runs this prompt; None: the server's setting."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1, max_length=200,
                              description="chat model (DIALKIT_OPENAI_MODEL when null)")
    temperature: float = Field(default=0.3, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    voice: str | None = Field(default=None, min_length=1, max_length=200,
                              description="TTS voice (DIALKIT_ELEVENLABS_VOICE_ID when null)")


@dataclass(frozen=True)
class PromptVersion:
    id: int
    name: str
    version: int
    parent_id: int | None
    #: the playbook as stored (a mapping); `playbook()` validates it
    playbook_data: dict[str, Any]
    system_prompt_template: str
    llm: LlmParams
    notes: str
    tags: list[str]
    active: bool
    used_at: dt.datetime | None
    runs: int
    successes: int
    total_duration_s: float
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    @property
    def avg_duration_s(self) -> float | None:
        return self.total_duration_s / self.runs if self.runs else None

    def playbook(self) -> Playbook:
        """The playbook, validated (named `name@version` of this prompt version)."""
        if "playbook" not in self._cache:
            self._cache["playbook"] = parse_playbook(self.playbook_data, source=self.ref)
        playbook: Playbook = self._cache["playbook"]
        return playbook

    def template(self) -> string.Template:
        if "template" not in self._cache:
            self._cache["template"] = check_template(self.system_prompt_template,
                                                     f"{self.ref} system_prompt_template")
        template: string.Template = self._cache["template"]
        return template

    def render_system_prompt(self, playbook: Playbook, ctx: CallContext) -> str:
        """The LLM system prompt for one call, from this version's template (the
        `system_prompt_renderer` of ai.llm_openai.ChatCompletionsPolicyFactory)."""
        return render_system_prompt(playbook, ctx, self.template())


_COLUMNS = ("id, name, version, parent_id, playbook, system_prompt_template, llm, notes, tags,"
            " active, used_at, runs, successes, total_duration_s, created_at, updated_at, created_by")


def _version(row: asyncpg.Record) -> PromptVersion:
    data = dict(row)
    data["playbook_data"] = data.pop("playbook")
    data["llm"] = LlmParams.model_validate(data["llm"])
    data["tags"] = list(data["tags"])
    return PromptVersion(**data)


class _PlainYaml(YamlLoader):
    """No aliases: `*name` references can expand a small text into an enormous document."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _playbook_mapping(playbook: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(playbook, str):
        try:
            playbook = yaml.load(playbook, Loader=_PlainYaml)
        except yaml.YAMLError as exc:
            raise Invalid(f"playbook: not valid YAML: {exc}", field="playbook") from None
    if not isinstance(playbook, Mapping):
        raise Invalid("playbook: must be a mapping (a JSON object, or YAML text of one)",
                      field="playbook")
    return dict(playbook)


def checked_content(name: str, version: int, playbook: Mapping[str, Any] | str,
                    template: str | None, llm: LlmParams | Mapping[str, Any] | None
                    ) -> tuple[dict[str, Any], str, LlmParams]:
    """(playbook mapping, template text, LLM parameters), validated; raises Invalid."""
    data = {**_playbook_mapping(playbook), "name": name, "version": str(version)}
    try:
        parsed = parse_playbook(data, source=f"{name}@{version}")
    except PlaybookError as exc:
        raise Invalid(f"playbook: {exc}", field="playbook") from None
    if parsed.kind != "collections":
        raise Invalid(f"playbook: a prompt version holds a collections playbook, not {parsed.kind}",
                      field="playbook")
    try:
        text = load_template(parsed).template if template is None else check_template(
            template, "system_prompt_template").template
    except PlaybookError as exc:
        raise Invalid(f"system_prompt_template: {exc}", field="system_prompt_template") from None
    try:
        params = llm if isinstance(llm, LlmParams) else LlmParams.model_validate(llm or {})
    except ValidationError as exc:
        raise invalid(exc, "llm") from None
    return parsed.model_dump(mode="json", exclude_unset=True), text, params


def _name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", name):
        raise Invalid("name: lower-case letters, digits, '.', '_' and '-', starting with a letter"
                      " or digit (at most 100)", field="name")
    return name


async def create_prompt_version(
    db: Executor, *, name: str, playbook: Mapping[str, Any] | str,
    system_prompt_template: str | None = None, llm: LlmParams | Mapping[str, Any] | None = None,
    notes: str = "", tags: list[str] | None = None, active: bool = True,
    parent: int | str | None = None, actor: str | None = None,
) -> PromptVersion:
    """The next version of `name` (1 for a new name). `system_prompt_template` None: the
    playbook's own template file (ai.prompt). `parent` (id or ref) defaults to the name's
    latest version. Raises Invalid naming the problem."""
    _name(name)
    async with transaction(db) as conn:
        # one writer per name at a time: versions are numbered without gaps or clashes
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('prompt_versions:' || $1))", name)
        latest = await conn.fetchrow("SELECT id, version FROM prompt_versions WHERE name = $1"
                                     " ORDER BY version DESC LIMIT 1", name)
        version = latest["version"] + 1 if latest else 1
        parent_id = latest["id"] if latest else None
        if parent is not None:
            try:
                parent_id = (await get_prompt_version(conn, parent)).id
            except NotFound as exc:
                raise Invalid(f"parent: {exc.reason}", field="parent") from None
        data, text, params = checked_content(name, version, playbook, system_prompt_template, llm)
        row = await conn.fetchrow(
            f"INSERT INTO prompt_versions (name, version, parent_id, playbook, system_prompt_template,"
            f" llm, notes, tags, active, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            f" RETURNING {_COLUMNS}",
            name, version, parent_id, data, text, params.model_dump(mode="json"), notes,
            list(tags or []), active, actor)
        return _version(row)


async def get_prompt_version(db: Executor, ref: int | str) -> PromptVersion:
    """By id, `name@version`, or a name alone (its highest active version); NotFound."""
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        ident = int(ref)
        row = await db.fetchrow(f"SELECT {_COLUMNS} FROM prompt_versions WHERE id = $1",
                                ident) if ident < 2**63 else None
    else:
        name, at, version = ref.partition("@")
        if at:
            if not (version.isascii() and version.isdigit()) or len(version) > 9:
                raise NotFound(f"no prompt version {ref[:100]!r} (name@version, the version a"
                               " whole number)", field="prompt_version")
            row = await db.fetchrow(f"SELECT {_COLUMNS} FROM prompt_versions"
                                    " WHERE name = $1 AND version = $2", name, int(version))
        else:
            row = await db.fetchrow(f"SELECT {_COLUMNS} FROM prompt_versions WHERE name = $1"
                                    " AND active ORDER BY version DESC LIMIT 1", name)
    if row is None:
        raise NotFound(f"no prompt version {str(ref)[:100]!r}", field="prompt_version")
    return _version(row)


async def list_prompt_versions(db: Executor, *, name: str | None = None, tag: str | None = None,
                               active: bool | None = None, limit: int = 100,
                               after: int = 0) -> list[PromptVersion]:
    """Versions by id (oldest first) after id `after`, filtered by name, tag and flag."""
    where: list[str] = ["id > $1"]
    args: list[Any] = [after]
    for sql, value in (("name = {}", name), ("{} = ANY (tags)", tag), ("active = {}", active)):
        if value is not None:
            args.append(value)
            where.append(sql.format(f"${len(args)}"))
    args.append(limit)
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM prompt_versions WHERE {' AND '.join(where)}"
                          f" ORDER BY id LIMIT ${len(args)}", *args)
    return [_version(r) for r in rows]


async def update_prompt_version(db: Executor, ref: int | str, changes: Mapping[str, Any],
                                actor: str | None = None) -> tuple[PromptVersion, bool]:
    """Apply `changes` (playbook, system_prompt_template, llm, notes, tags, active); returns
    (the version holding them, whether it is a new one). A used version's content change
    becomes the next version (parent: this one, notes/tags/active: the change's or this
    one's); everything else changes in place."""
    unknown = set(changes) - {*CONTENT_FIELDS, "notes", "tags", "active"}
    if unknown:
        raise Invalid(f"{sorted(unknown)[0]}: cannot be changed", field=sorted(unknown)[0])
    async with transaction(db) as conn:
        current = await get_prompt_version(conn, ref)
        # locked, so a concurrent mark_used cannot slip in between the check and the write
        await conn.execute("SELECT 1 FROM prompt_versions WHERE id = $1 FOR UPDATE", current.id)
        current = await get_prompt_version(conn, current.id)
        content = {
            "playbook": changes.get("playbook", current.playbook_data),
            "system_prompt_template": changes.get("system_prompt_template",
                                                  current.system_prompt_template),
            "llm": changes.get("llm", current.llm),
        }
        data, text, params = checked_content(current.name, current.version, content["playbook"],
                                             content["system_prompt_template"], content["llm"])
        same = (data == current.playbook_data and text == current.system_prompt_template
                and params == current.llm)
        notes = changes.get("notes", current.notes)
        tags = list(changes.get("tags", current.tags))
        active = changes.get("active", current.active)
        if current.used_at is not None and not same:
            created = await create_prompt_version(
                conn, name=current.name, playbook=data, system_prompt_template=text, llm=params,
                notes=notes, tags=tags, active=active, parent=current.id, actor=actor)
            return created, True
        row = await conn.fetchrow(
            f"UPDATE prompt_versions SET playbook = $2, system_prompt_template = $3, llm = $4,"
            f" notes = $5, tags = $6, active = $7, updated_at = now() WHERE id = $1"
            f" RETURNING {_COLUMNS}", current.id, data, text, params.model_dump(mode="json"),
            notes, tags, active)
        return _version(row), False


async def set_active(db: Executor, ref: int | str, active: bool) -> PromptVersion:
    current = await get_prompt_version(db, ref)
    row = await db.fetchrow(f"UPDATE prompt_versions SET active = $2, updated_at = now()"
                            f" WHERE id = $1 RETURNING {_COLUMNS}", current.id, active)
    return _version(row)


async def delete_prompt_version(db: Executor, ref: int | str) -> PromptVersion:
    """Delete an unused version that no other version came from; Conflict otherwise."""
    async with transaction(db) as conn:
        current = await get_prompt_version(conn, ref)
        await conn.execute("SELECT 1 FROM prompt_versions WHERE id = $1 FOR UPDATE", current.id)
        current = await get_prompt_version(conn, current.id)
        if current.used_at is not None:
            raise Conflict(f"prompt version {current.ref} was used on {current.used_at:%Y-%m-%d}:"
                           " it cannot be deleted (deactivate it instead)", field="prompt_version")
        child = await conn.fetchval("SELECT name || '@' || version FROM prompt_versions"
                                    " WHERE parent_id = $1 ORDER BY id LIMIT 1", current.id)
        if child is not None:
            raise Conflict(f"prompt version {current.ref} is the parent of {child}: it cannot be"
                           " deleted", field="prompt_version")
        await conn.execute("DELETE FROM prompt_versions WHERE id = $1", current.id)
        return current


async def mark_used(db: Executor, prompt_version_id: int) -> PromptVersion:
    """From now on this version's content is fixed (the first use's time is kept)."""
    row = await db.fetchrow(f"UPDATE prompt_versions SET used_at = coalesce(used_at, now())"
                            f" WHERE id = $1 RETURNING {_COLUMNS}", prompt_version_id)
    if row is None:
        raise NotFound(f"no prompt version {prompt_version_id}", field="prompt_version")
    return _version(row)


async def record_run_stats(db: Executor, prompt_version_id: int, runs: int, successes: int,
                           duration_s: float) -> PromptVersion:
    """Add a finished run's figures: `runs` calls, `successes` of them passed, `duration_s`
    seconds of calls in all. The version counts as used."""
    if runs < 0 or not 0 <= successes <= runs:
        raise Invalid(f"successes: must be from 0 to runs ({runs}), got {successes}", field="successes")
    if duration_s < 0:
        raise Invalid(f"duration_s: must be at least 0, got {duration_s}", field="duration_s")
    row = await db.fetchrow(
        f"UPDATE prompt_versions SET runs = runs + $2, successes = successes + $3,"
        f" total_duration_s = total_duration_s + $4, used_at = coalesce(used_at, now()),"
        f" updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        prompt_version_id, runs, successes, float(duration_s))
    if row is None:
        raise NotFound(f"no prompt version {prompt_version_id}", field="prompt_version")
    return _version(row)
