"""The migrations ship inside the package: a built wheel carries them, and a non-editable
install migrates a database with `dialkit migrate` from outside the source tree."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dialkit import db

ROOT = Path(__file__).resolve().parents[1]
PACKAGED_SQL = ROOT / "src" / "dialkit" / "sql"


def test_migrations_are_read_from_the_package() -> None:
    files = db.migration_files()
    on_disk = sorted(p.name for p in PACKAGED_SQL.glob("[0-9][0-9][0-9]_*.sql"))
    assert [f.name for f in files] == on_disk
    assert files[0].name == "001_init.sql"
    assert "CREATE TABLE" in files[0].read_text(encoding="utf-8")


def test_missing_migrations_are_an_error_not_an_empty_schema(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a migration")
    for where in (tmp_path, tmp_path / "absent"):
        with pytest.raises(RuntimeError, match="no migrations"):
            db.migration_files(where)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A wheel built from a copy of the project, so the build leaves nothing in the tree."""
    work = tmp_path_factory.mktemp("wheel")
    project = work / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(project)],
        check=True, cwd=work, capture_output=True, timeout=300,
    )
    (built,) = out.glob("dialkit-*.whl")
    yield built


@pytest.mark.slow
def test_wheel_carries_every_migration(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        inside = {n: zf.read(n) for n in zf.namelist() if n.startswith("dialkit/sql/")}
    expected = {f"dialkit/sql/{p.name}": p.read_bytes() for p in PACKAGED_SQL.glob("*.sql")}
    assert expected and inside == expected


@pytest.mark.slow
def test_wheel_carries_the_console(wheel: Path) -> None:
    console = ROOT / "src" / "dialkit" / "console"
    expected = {f"dialkit/console/{p.relative_to(console).as_posix()}": p.read_bytes()
                for p in console.rglob("*") if p.is_file()}
    with zipfile.ZipFile(wheel) as zf:
        inside = {n: zf.read(n) for n in zf.namelist() if n.startswith("dialkit/console/")}
    assert "dialkit/console/index.html" in expected and inside == expected


@pytest.mark.slow
def test_installed_wheel_migrates_from_outside_the_tree(
    wheel: Path, admin_database_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=120,
    )
    name = f"dialkit_wheel_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(admin_database_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    asyncio.run(_admin(admin_database_url, f'CREATE DATABASE "{name}"'))
    try:
        run_dir = tmp_path / "elsewhere"
        run_dir.mkdir()
        env = {
            **os.environ,
            # the installed copy first; the dependencies come from this interpreter's site-packages
            "PYTHONPATH": str(target),
            "DATABASE_URL": url,
            "DIALKIT_DATA_DIR": str(run_dir / "data"),
            "DIALKIT_LOG_LEVEL": "WARNING",
        }
        where = subprocess.run(
            [sys.executable, "-c", "from dialkit import db; print(db.__file__); print(db.SQL_DIR)"],
            env=env, cwd=run_dir, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()
        assert all(Path(p).is_relative_to(target) for p in where), where
        cli = [str(target / "bin" / "dialkit"), "migrate"]
        first = subprocess.run(cli, env=env, cwd=run_dir, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "applied: 001_init.sql" in first.stderr
        again = subprocess.run(cli, env=env, cwd=run_dir, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "nothing (up to date)" in again.stderr, again.stderr
        versions, tables = asyncio.run(_schema(url))
        assert versions == sorted(p.name for p in PACKAGED_SQL.glob("*.sql"))
        assert {"calls", "turns", "call_events", "call_outcomes"} <= tables
    finally:
        asyncio.run(_admin(admin_database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _schema(url: str) -> tuple[list[str], set[str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        versions = [r["version"] for r in rows]
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {r["tablename"] for r in rows}
    finally:
        await conn.close()
    return versions, tables
