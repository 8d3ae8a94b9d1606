"""`dialkit campaign demo` end to end, as a user runs it: its own embedded PostgreSQL
(whatever DATABASE_URL says), the emulated carriers, the analytics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_campaign_demo_runs_offline_and_prints_analytics(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DIALKIT_DATA_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "from dialkit.cli import main; main()", "campaign", "demo",
         "--leads", "4", "--seed", "3"],
        env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 leads accepted" in done.stdout
    assert "completed: exhausted 4" in done.stdout
    assert "analytics: demo" in done.stdout and "attempts" in done.stdout
