"""Embedded pipeline latency on simulated calls: caller stops speaking → first agent audio
frame sent, and where the time goes (endpointing, STT, policy, TTS, pacing).

    python bench/pipeline_latency.py [--personas cooperative,hardship] [--json]

Uses DATABASE_URL, else PostgreSQL on 127.0.0.1:5432, else the embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import local_postgres_url
from dialkit.config import Settings
from dialkit.logs import setup_logging
from dialkit.providers import build_providers
from dialkit.server import start_server
from evaluation.audio_call import run_simulated_call


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return round(values[k], 1)


async def main(personas: list[str]) -> dict[str, object]:
    setup_logging("WARNING")
    settings = Settings(database_url=local_postgres_url(), data_dir=Path(tempfile.mkdtemp()))
    providers = await build_providers(settings)
    runner, port = await start_server(settings, providers, port=0)
    url = f"http://127.0.0.1:{port}"
    phone_v2v: list[float] = []
    rows: list[dict[str, float]] = []
    outcomes = {}
    try:
        for name in personas:
            result = await run_simulated_call(url, name, providers.stt, providers.tts, max_seconds=240)
            outcomes[name] = result.outcome
            phone_v2v += result.latencies_ms
            async with providers_pool(runner) as pool:
                found = await pool.fetch(
                    "SELECT stt_ms, llm_ttft_ms, tts_ttfb_ms, voice_to_voice_ms FROM turns"
                    " WHERE call_id = $1 AND speaker = 'agent' AND stt_ms IS NOT NULL"
                    " AND voice_to_voice_ms IS NOT NULL", uuid.UUID(result.call_id))
            rows += [dict(r) for r in found]
    finally:
        await runner.cleanup()
    endpointing = providers.playbook.settings.endpointing_ms
    v2v = [r["voice_to_voice_ms"] for r in rows]
    # per turn: v2v = endpointing + recognition + policy + synthesis + the rest (pacing, hops)
    recog = [r["stt_ms"] - endpointing for r in rows]
    policy = [r["llm_ttft_ms"] or 0.0 for r in rows]
    synth = [r["tts_ttfb_ms"] or 0.0 for r in rows]
    rest = [r["voice_to_voice_ms"] - r["stt_ms"] - (r["llm_ttft_ms"] or 0) - (r["tts_ttfb_ms"] or 0)
            for r in rows]
    return {
        "personas": personas,
        "outcomes": outcomes,
        "agent_turns": len(rows),
        "endpointing_ms": endpointing,
        "v2v_p50_ms": pct(v2v, 50),
        "v2v_p95_ms": pct(v2v, 95),
        "phone_v2v_p50_ms": pct(phone_v2v, 50),
        "phone_v2v_p95_ms": pct(phone_v2v, 95),
        "breakdown_p50_ms": {
            "endpointing_silence": endpointing,
            "recognition_after_endpoint": pct(recog, 50),
            "policy_first_text": pct(policy, 50),
            "tts_first_audio": pct(synth, 50),
            "rest": pct(rest, 50),
        },
        "breakdown_p95_ms": {
            "recognition_after_endpoint": pct(recog, 95),
            "policy_first_text": pct(policy, 95),
            "tts_first_audio": pct(synth, 95),
            "rest": pct(rest, 95),
        },
        "mean_v2v_ms": round(statistics.mean(v2v), 1) if v2v else None,
        "note": "v2v (server): last voiced caller frame seen by the VAD → first agent audio "
        "chunk sent; phone v2v: caller's last speech frame sent → first audible agent frame "
        "played at the simulated phone.",
    }


class providers_pool:
    def __init__(self, runner: object) -> None:
        from dialkit.server import STATE

        self.pool = runner.app[STATE].pool  # type: ignore[attr-defined]

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return self.pool

    async def __aexit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--personas", default="cooperative,hardship")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(main(args.personas.split(",")))
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
