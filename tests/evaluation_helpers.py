"""Shared pieces of the evaluation-run tests: a database of their own with the shipped
library, an evaluation-only worker on it, and a playbook with a planted violation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from ai.playbook import load_playbook
from dialkit import db
from dialkit.config import Settings
from dialkit.jobs import EvaluationRuntime, Jobs
from evaluation import library, runs
from evaluation.library_seed import seed_library
from tests.conftest import private_database

#: the default playbook's greeting with the debt named before the debtor is verified
PLANTED_GREETING = ("Hello, this is {agent_name} calling from {caller_brand} about your {creditor}"
                    " balance of {balance}.")


@contextlib.asynccontextmanager
async def library_pool(url: str, max_size: int = 8) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(url, max_size=max_size)
    try:
        await db.migrate(pool)
        await seed_library(pool)
        yield pool
    finally:
        await pool.close()


def library_database_fixtures(prefix: str, *, max_size: int = 8) -> tuple[Any, Any]:
    """The module-scoped fixtures `dburl` (a database of its own named after `prefix`) and
    `pool` (on it, migrated, the shipped library seeded), for
    `dburl, pool = library_database_fixtures("dialkit_…")` at the top of a test module."""

    @pytest_asyncio.fixture(scope="module", loop_scope="session", name="dburl")
    async def dburl(admin_database_url: str) -> AsyncIterator[str]:
        async with private_database(admin_database_url, prefix) as url:
            yield url

    @pytest_asyncio.fixture(scope="module", loop_scope="session", name="pool")
    async def pool(dburl: str) -> AsyncIterator[asyncpg.Pool]:
        async with library_pool(dburl, max_size=max_size) as p:
            yield p

    return dburl, pool


@contextlib.asynccontextmanager
async def eval_worker(url: str, pool: asyncpg.Pool, services: runs.EvaluationServices | None = None,
                      concurrency: int = 4, name: str = "test-eval") -> AsyncIterator[Jobs]:
    """An evaluation-only worker in this event loop; yields its Jobs (to defer with)."""
    jobs = Jobs(Settings(database_url=url), url)
    jobs.evaluation = EvaluationRuntime(pool, services or runs.EvaluationServices())
    await jobs.open()
    jobs.start_evaluation_worker(concurrency, name=name)
    try:
        yield jobs
    finally:
        await jobs.close()
        await asyncio.sleep(0)


def planted_playbook_data() -> dict[str, Any]:
    """The default playbook with the debt named in the greeting, before verification. The
    loader refuses debt words in a state marked pre_verification, so the hand edit also drops
    the mark: the playbook validates, and only the evaluator can catch it."""
    data: dict[str, Any] = load_playbook().model_dump(mode="json", exclude_unset=True)
    greeting = data["states"]["greeting"]
    greeting["pre_verification"] = False
    greeting["say"] = [PLANTED_GREETING]
    return data


async def planted_prompt_version(pool: asyncpg.Pool, name: str) -> str:
    pv = await library.create_prompt_version(pool, name=name, playbook=planted_playbook_data())
    return pv.ref
