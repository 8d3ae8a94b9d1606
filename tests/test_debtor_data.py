"""The shipped personalities and scenario sets ship inside the wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from evaluation.library_data import DATA_DIR, load_personalities
from tests.test_packaging import wheel  # noqa: F401  (the fixture)


def test_one_personality_per_kind_of_debtor() -> None:
    personalities = load_personalities()
    resistance = {r for p in personalities.values() for r in p.resistance}
    assert {"dispute", "anger", "stalling", "hardship", "hang_up", "wrong_person", "already_paid",
            "ask_human", "opt_out", "callback"} <= resistance
    assert any(p.interrupts for p in personalities.values())
    assert any(p.silent for p in personalities.values())


@pytest.mark.slow
def test_wheel_carries_the_shipped_data(wheel: Path) -> None:  # noqa: F811
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected = {f"evaluation/library_data/{p.relative_to(DATA_DIR).as_posix()}"
                for p in DATA_DIR.rglob("*.yaml")}
    assert len(expected) >= 16 and expected <= names
