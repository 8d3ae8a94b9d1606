"""Shared benchmark helpers: machine description, percentiles, free ports, a throwaway
PostgreSQL database, and the carrier-side pacing analysis of received audio.

Pacing analysis (see BENCHMARKS.md, "Concurrent echo calls", for the definition): a
carrier plays what it receives back to back; a *run* starts at the first received chunk
and again whenever the carrier's buffer ran dry. Chunk j of a run starting at frame
offset f_j is ideally sent at  A0 + max(0, f_j - L) × 20 ms  (A0 = arrival of the run's
first chunk, L = lead frames the server sends ahead). Its pacing error is arrival minus
that ideal time. A chunk that arrives after the carrier finished playing everything
before it is *late*: the caller hears a gap, and a new run starts.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np

FRAME_S = 0.02


def machine() -> dict[str, str | int]:
    """nproc, CPU model and RAM, as BENCHMARKS.md records them."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024 / 1024
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "ram": f"{ram_gb:.1f} GiB",
        "python": platform.python_version(),
    }


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else 0.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def local_postgres_url() -> str | None:
    """DATABASE_URL, else this machine's PostgreSQL on :5432 when it answers, else None
    (the caller then starts the embedded one)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return LOCAL_POSTGRES if port_open(5432) else None


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh database on admin_url's server for one run, dropped afterwards. Falls back to
    admin_url itself when the role may not create databases."""
    import asyncio

    import asyncpg

    name = f"dialkit_bench_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
    except Exception:
        yield admin_url
        return
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Pacing:
    """The carrier-side view of one call's outbound audio (see the module docstring)."""

    errors_ms: list[float] = field(default_factory=list)  # one per received chunk
    late_frames: int = 0  # frames in chunks that arrived after the buffer ran dry
    gaps: int = 0  # runs after the first one
    gap_ms: float = 0.0  # silence the caller heard between runs


def analyse_pacing(arrivals: Sequence[float], frames: Sequence[int], lead_frames: int) -> Pacing:
    """arrivals[j]: when chunk j arrived (s); frames[j]: how many 20 ms frames it holds."""
    out = Pacing()
    run_start = 0.0
    run_frames = 0  # frames received in the current run before this chunk
    played_until = float("-inf")  # when the carrier will have played everything so far
    for j, (t, n) in enumerate(zip(arrivals, frames, strict=True)):
        if j == 0 or t > played_until:
            if j > 0:
                out.late_frames += n
                out.gaps += 1
                out.gap_ms += (t - played_until) * 1000
            run_start, run_frames, played_until = t, 0, t
        ideal = run_start + max(0, run_frames - lead_frames) * FRAME_S
        out.errors_ms.append((t - ideal) * 1000)
        run_frames += n
        played_until += n * FRAME_S
    return out


def profile_top(path: str, n: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions of a py-spy raw (collapsed) profile: `self` (% of samples where the
    function is the leaf) and `total` (% of samples where it is anywhere on the stack;
    the event loop's own frames, on every stack, are left out)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, _, count_s = line.rstrip("\n").rpartition(" ")
            if not stack or not count_s.isdigit():
                continue
            count = int(count_s)
            # "fn (path/file.py:123)" -> "fn (path/file.py)": one entry per function
            frames = [fr.rsplit(":", 1)[0] + ")" if fr.endswith(")") else fr
                      for fr in stack.split(";")]
            samples += count
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for fn in set(frames):
                total[fn] = total.get(fn, 0) + count

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        everywhere = {fn for fn, c in total.items() if c >= 0.75 * samples}
        ranked = sorted(((fn, c) for fn, c in d.items() if fn not in everywhere),
                        key=lambda kv: -kv[1])[:n]
        return [(fn, round(100 * c / max(1, samples), 1)) for fn, c in ranked]

    return {"self": top(own), "total": top(total)}
