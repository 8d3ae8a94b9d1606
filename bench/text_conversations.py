"""Text-mode conversation rate: the scripted policy against every scripted persona on the
conversation engine with a virtual clock, on one process (what evaluation and tuning run
on). Target: at least 200 conversations per second.

    .venv/bin/python bench/text_conversations.py [--seconds 10] [--json]

Prints one JSON object: conversations, seconds, conversations_per_s, per-persona outcome
and simulated call length, the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ai.playbook import load_playbook
from common import machine
from evaluation.personas import list_personas, load_persona
from evaluation.text_call import run_text_call

CLOCK = {"today": "2026-11-21", "now": "2026-11-21T09:00:00"}


async def main(seconds: float) -> dict[str, object]:
    playbook = load_playbook()
    personas = [load_persona(name) for name in list_personas()]
    per_persona: dict[str, dict[str, object]] = {}
    for p in personas:  # one warm-up round, which also records what each call does
        r = await run_text_call(playbook, p, context=CLOCK)
        per_persona[p.name] = {"outcome": r.outcome, "expected": p.expected_outcome,
                               "simulated_s": round(r.seconds, 1), "turns": len(r.turns),
                               "barge_ins": r.barge_ins}
    n = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - start < seconds:
        for p in personas:
            await run_text_call(playbook, p, context=CLOCK)
            n += 1
    wall = time.perf_counter() - start
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "conversations": n,
        "seconds": round(wall, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
        "conversations_per_s": round(n / wall, 1),
        "simulated_call_seconds_per_s": round(
            n / len(personas) * sum(float(v["simulated_s"]) for v in per_persona.values()) / wall
        ),
        "personas": per_persona,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    args = ap.parse_args()
    result = asyncio.run(main(args.seconds))
    print(json.dumps(result, indent=None if args.json else 2))
