"""The tuning loop: evaluate the playbook on the training scenarios, stop at the target,
otherwise let the writer propose edits from the failure analysis and the critique approve
them (at most `MAX_REVISIONS` revisions of a proposal), evaluate the candidate, and accept
it only if it scores better on the training scenarios and no worse on the held-out ones.
Every iteration is recorded (scores side by side, the writer's and the critique's texts);
the best candidates per scenario are kept in a Pareto pool, as GEPA does.

`evaluate(playbook, scenario_set) -> (weighted_score, results)` is given by the caller (the
evaluation runs over the job library, or a direct text simulation in tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from ai.playbook import Playbook
from tuning.analysis import ScenarioResult, analyse
from tuning.critique import Review, review
from tuning.writer import OfflineWriter, Proposal

__all__ = ["MAX_REVISIONS", "Candidate", "Exchange", "Iteration", "TuningResult", "exchange", "tune"]

MAX_REVISIONS = 3

Evaluate = Callable[[Playbook, str], Awaitable[tuple[float, list[ScenarioResult]]]]


@dataclass
class Exchange:
    """One writer–critique exchange: each proposal with the critique's review, the last
    one approved or none (`approved` None)."""

    rounds: list[tuple[Proposal, Review]] = field(default_factory=list)

    @property
    def approved(self) -> tuple[Proposal, Playbook] | None:
        if self.rounds and self.rounds[-1][1].approved:
            p, r = self.rounds[-1]
            assert r.candidate is not None
            return p, r.candidate
        return None

    def text(self) -> str:
        return "\n\n".join(f"writer:\n{p.text}\ncritique: {r.text}" for p, r in self.rounds)


def exchange(writer: OfflineWriter, playbook: Playbook, results: list[ScenarioResult],
             max_revisions: int = MAX_REVISIONS) -> Exchange:
    """The writer proposes from the analysis of `results`; the critique reviews; a
    rejected proposal is revised (the writer proposes another) at most `max_revisions`
    times."""
    analysis = analyse(results, playbook)
    out = Exchange()
    feedback: list[str] = []
    for _ in range(max_revisions + 1):
        proposal = writer.propose(playbook, analysis, feedback)
        if proposal is None:
            break
        verdict = review(playbook, list(proposal.edits))
        out.rounds.append((proposal, verdict))
        if verdict.approved:
            break
        if verdict.culprit is not None:
            writer.avoid(verdict.culprit)
        feedback.append(verdict.text)
    return out


@dataclass
class Candidate:
    playbook: Playbook
    train_score: float
    heldout_score: float
    per_scenario: dict[str, float]


@dataclass
class Iteration:
    n: int
    prompt_version: str
    parent: str
    train_score: float
    heldout_score: float
    delta: float
    accepted: bool
    per_scenario: dict[str, float]
    analysis: str = ""
    exchange: str = ""
    reason: str = ""


@dataclass
class TuningResult:
    status: Literal["target_met", "max_iterations", "exhausted"]
    initial: Candidate
    final: Candidate
    iterations: list[Iteration]
    pool: list[Candidate]


def _scores(results: list[ScenarioResult]) -> dict[str, float]:
    return {r.scenario.name: r.score.score for r in results}


def _pareto(pool: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats on every training scenario (best per scenario)."""
    def dominated(a: Candidate, b: Candidate) -> bool:
        keys = a.per_scenario.keys() & b.per_scenario.keys()
        return bool(keys) and all(b.per_scenario[k] >= a.per_scenario[k] for k in keys) and any(
            b.per_scenario[k] > a.per_scenario[k] for k in keys)
    return [c for c in pool if not any(dominated(c, o) for o in pool if o is not c)]


def _versioned(playbook: Playbook, base: Playbook, n: int) -> Playbook:
    data = playbook.model_dump(mode="json")
    data["version"] = f"{base.version}+t{n}"
    out = type(playbook).model_validate(data)
    out._source_dir = playbook.source_dir
    return out


async def tune(
    playbook: Playbook, evaluate: Evaluate, *, train: str, heldout: str, target: float,
    max_iterations: int = 5, seed: int = 0, writer: OfflineWriter | None = None,
    heldout_tolerance: float = 0.0, on_iteration: Callable[[Iteration], None] | None = None,
) -> TuningResult:
    """Tune `playbook` until its training score reaches `target` or `max_iterations`
    iterations have run (or the writer has nothing left to try). A candidate is accepted
    when it scores better on training and loses at most `heldout_tolerance` points held out
    (0: none; an LLM debtor's spread may call for a little)."""
    writer = writer or OfflineWriter(seed)
    train_score, train_results = await evaluate(playbook, train)
    heldout_score, _ = await evaluate(playbook, heldout)
    current = initial = Candidate(playbook, train_score, heldout_score, _scores(train_results))
    pool = [current]
    iterations: list[Iteration] = []
    status: Literal["target_met", "max_iterations", "exhausted"] = "max_iterations"
    for n in range(1, max_iterations + 1):
        if current.train_score >= target:
            status = "target_met"
            break
        ex = exchange(writer, current.playbook, train_results)
        approved = ex.approved
        analysis = analyse(train_results, current.playbook).text()
        if approved is None:
            it = Iteration(n, current.playbook.ref, current.playbook.ref, current.train_score, current.heldout_score, 0.0,
                           False, current.per_scenario, analysis, ex.text(),
                           "the critique approved no proposal" if ex.rounds else "the writer has nothing left to try")
            iterations.append(it)
            if on_iteration:
                on_iteration(it)
            if not ex.rounds:
                status = "exhausted"
                break
            continue
        candidate_pb = _versioned(approved[1], initial.playbook, n)
        c_train, c_results = await evaluate(candidate_pb, train)
        c_heldout, _ = await evaluate(candidate_pb, heldout)
        cand = Candidate(candidate_pb, c_train, c_heldout, _scores(c_results))
        accepted = c_train > current.train_score and c_heldout >= current.heldout_score - heldout_tolerance
        reason = ("accepted: better on training, no worse held out" if accepted else
                  f"rejected: training {c_train:.1f} vs {current.train_score:.1f}, "
                  f"held out {c_heldout:.1f} vs {current.heldout_score:.1f}")
        it = Iteration(n, candidate_pb.ref, current.playbook.ref, c_train, c_heldout, c_train - current.train_score,
                       accepted, cand.per_scenario, analysis, ex.text(), reason)
        iterations.append(it)
        if on_iteration:
            on_iteration(it)
        pool = _pareto([*pool, cand])
        if accepted:
            current, train_results = cand, c_results
    else:
        if current.train_score >= target:
            status = "target_met"
    return TuningResult(status, initial, current, iterations, pool)
