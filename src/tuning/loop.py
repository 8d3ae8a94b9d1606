"""The tuning loop: evaluate the playbook on the training scenarios, stop at the target,
otherwise let the writer propose edits from the failure analysis and the critique approve
them (at most `MAX_REVISIONS` revisions of a proposal), evaluate the candidate, and accept
it only if it scores better on the training scenarios and no worse on the held-out ones.
Every iteration is recorded (scores side by side, the writer's and the critique's texts);
the best candidates per scenario are kept in a Pareto pool, as GEPA does.

One iteration is `step`, shared by the in-memory `tune` (here: `evaluate(playbook,
scenario_set) -> (weighted_score, results)` given by the caller, a direct text simulation
in tests) and the stored runs of tuning.runs (each candidate saved as a prompt version and
evaluated by evaluation runs over the job library).

The writer is any `tuning.writer.Writer`. A proposal with no edits, or one the critique
cannot even read, is sent back with that reason like any other. A candidate is a playbook
and its system-prompt template (`Candidate.template`, None: the playbook's own template
file); a template edit changes the template, and the candidate carries the edited text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ai.playbook import Playbook
from tuning.analysis import ScenarioResult, analyse
from tuning.critique import Problem, Review, review
from tuning.writer import OfflineWriter, Proposal, Writer

__all__ = ["MAX_REVISIONS", "Candidate", "EvaluateCandidate", "Exchange", "Iteration", "Step",
           "TuningResult", "accepts", "exchange", "pareto_front", "scores_of", "step", "tune"]

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

    @property
    def template(self) -> str | None:
        """The approved proposal's system-prompt template, when it changed the template."""
        return self.rounds[-1][1].template if self.approved is not None else None

    @property
    def tokens(self) -> int:
        return sum(int(getattr(p, "tokens", 0) or 0) for p, _ in self.rounds)

    @property
    def cost_usd(self) -> float:
        return sum(float(getattr(p, "cost_usd", 0.0) or 0.0) for p, _ in self.rounds)


def _malformed(detail: str) -> Review:
    return Review(False, [Problem("malformed", "proposal", detail)])


def _review(playbook: Playbook, proposal: Proposal, template: str | None) -> Review:
    """The critique's review, or a rejection naming what is wrong with a proposal it cannot
    read (no edits, something that is not an edit)."""
    edits = list(proposal.edits) if isinstance(proposal.edits, tuple | list) else []
    if not edits:
        return _malformed("the writer proposed no edit")
    odd = next((e for e in edits if not (isinstance(e, BaseModel) and hasattr(e, "description"))), None)
    if odd is not None:
        return _malformed(f"not an edit of the playbook: {str(odd)[:200]!r}")
    try:
        return review(playbook, edits, template)
    except Exception as exc:  # a proposal the critique cannot apply is the writer's fault
        return _malformed(f"the edits cannot be applied: {type(exc).__name__}: {str(exc)[:200]}")


async def exchange(writer: Writer, playbook: Playbook, results: list[ScenarioResult],
                   max_revisions: int = MAX_REVISIONS, *, template: str | None = None) -> Exchange:
    """The writer proposes from the analysis of `results` (for `playbook` and its
    system-prompt `template`, None: the playbook's own file); the critique reviews; a
    rejected proposal is revised (the writer proposes another) at most `max_revisions`
    times."""
    analysis = analyse(results, playbook)
    out = Exchange()
    feedback: list[str] = []
    for _ in range(max_revisions + 1):
        try:
            proposal = await writer.propose(playbook, analysis, list(feedback), template)
        except Exception as exc:  # the writer failed (an LLM's unusable answer): recorded, and no proposal
            out.rounds.append((Proposal((), "error", f"the writer failed: {getattr(exc, 'reason', None) or exc}",
                                       int(getattr(exc, "tokens", 0) or 0),
                                       float(getattr(exc, "cost_usd", 0.0) or 0.0)),
                               _malformed(f"no usable proposal: {type(exc).__name__}: {str(exc)[:300]}")))
            break
        if proposal is None:
            break
        if not isinstance(proposal, Proposal):
            proposal = Proposal((), "malformed", f"the writer answered {str(proposal)[:200]!r}")
        verdict = _review(playbook, proposal, template)
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
    #: the training results the next analysis reads
    results: list[ScenarioResult] = field(default_factory=list, repr=False)
    #: what the caller's evaluation left behind (the stored runs: evaluation ids)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the system-prompt template text (None: the playbook's own template file)
    template: str | None = None


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
    tokens: int = 0
    cost_usd: float = 0.0
    #: the writer's memory after this iteration (to resume after it)
    writer_state: dict[str, Any] = field(default_factory=dict)
    #: the candidate's evaluation (the stored runs: its evaluation ids); {} when none
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TuningResult:
    status: Literal["target_met", "max_iterations", "exhausted"]
    initial: Candidate
    final: Candidate
    iterations: list[Iteration]
    pool: list[Candidate]


def scores_of(results: list[ScenarioResult]) -> dict[str, float]:
    """The score per scenario (the mean of its repeats)."""
    sums: dict[str, list[float]] = {}
    for r in results:
        sums.setdefault(r.scenario.name, []).append(r.score.score)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _dominated(a: dict[str, float], b: dict[str, float]) -> bool:
    """`b` is at least as good as `a` on every scenario they share, and better on one."""
    keys = a.keys() & b.keys()
    return bool(keys) and all(b[k] >= a[k] for k in keys) and any(b[k] > a[k] for k in keys)


def pareto_front(scores: list[dict[str, float]]) -> list[int]:
    """The indexes of the per-scenario score maps no other one dominates."""
    return [i for i, a in enumerate(scores)
            if not any(_dominated(a, b) for j, b in enumerate(scores) if j != i)]


def _pareto(pool: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats on every training scenario (best per scenario)."""
    return [pool[i] for i in pareto_front([c.per_scenario for c in pool])]


def _versioned(playbook: Playbook, base: Playbook, n: int) -> Playbook:
    data = playbook.model_dump(mode="json")
    data["version"] = f"{base.version}+t{n}"
    out = type(playbook).model_validate(data)
    out._source_dir = playbook.source_dir
    return out


#: (the approved playbook, the iteration, its system-prompt template or None for the
#: playbook's own file) -> the candidate as evaluated, named as the caller names it (tune:
#: `version+tN`; a stored run: its new prompt version)
EvaluateCandidate = Callable[[Playbook, int, str | None], Awaitable[Candidate]]


def accepts(candidate: Candidate, current: Candidate, heldout_tolerance: float = 0.0) -> bool:
    """Better on training, and no worse held out (by more than `heldout_tolerance`)."""
    return (candidate.train_score > current.train_score
            and candidate.heldout_score >= current.heldout_score - heldout_tolerance)


@dataclass
class Step:
    """One iteration: its record, the version to go on from, the candidate evaluated (None
    when the critique approved nothing) and whether the writer has nothing left."""

    iteration: Iteration
    current: Candidate
    candidate: Candidate | None
    exhausted: bool


async def step(n: int, writer: Writer, current: Candidate, evaluate_candidate: EvaluateCandidate,
               *, heldout_tolerance: float = 0.0) -> Step:
    """Iteration `n` from `current` (whose training results the analysis reads): the
    writer–critique exchange, the approved candidate evaluated, accepted or not."""
    ex = await exchange(writer, current.playbook, current.results, template=current.template)
    analysis = analyse(current.results, current.playbook).text()
    approved = ex.approved
    if approved is None:
        reason = ("the critique approved no proposal: " + ex.rounds[-1][1].text if ex.rounds
                  else "the writer has nothing left to try")
        it = Iteration(n, current.playbook.ref, current.playbook.ref, current.train_score,
                       current.heldout_score, 0.0, False, current.per_scenario, analysis, ex.text(),
                       reason, ex.tokens, ex.cost_usd, writer.state())
        return Step(it, current, None, not ex.rounds)
    template = ex.template if ex.template is not None else current.template
    cand = await evaluate_candidate(approved[1], n, template)
    accepted = accepts(cand, current, heldout_tolerance)
    reason = ("accepted: better on training, no worse held out" if accepted else
              f"rejected: training {cand.train_score:.1f} vs {current.train_score:.1f}, "
              f"held out {cand.heldout_score:.1f} vs {current.heldout_score:.1f}")
    it = Iteration(n, cand.playbook.ref, current.playbook.ref, cand.train_score, cand.heldout_score,
                   round(cand.train_score - current.train_score, 2), accepted, cand.per_scenario, analysis,
                   ex.text(), reason, ex.tokens, ex.cost_usd, writer.state(), dict(cand.extra))
    return Step(it, cand if accepted else current, cand, False)


async def tune(
    playbook: Playbook, evaluate: Evaluate, *, train: str, heldout: str, target: float,
    max_iterations: int = 5, seed: int = 0, writer: Writer | None = None,
    heldout_tolerance: float = 0.0, on_iteration: Callable[[Iteration], None] | None = None,
    template: str | None = None,
) -> TuningResult:
    """Tune `playbook` until its training score reaches `target` or `max_iterations`
    iterations have run (or the writer has nothing left to try). A candidate is accepted
    when it scores better on training and loses at most `heldout_tolerance` points held out
    (0: none; an LLM debtor's spread may call for a little). `template` is the playbook's
    system-prompt template text (None: its own template file)."""
    writer = writer or OfflineWriter(seed)

    async def evaluated(pb: Playbook, template: str | None = None) -> Candidate:
        (t_score, t_results), (h_score, _) = await asyncio.gather(evaluate(pb, train), evaluate(pb, heldout))
        return Candidate(pb, t_score, h_score, scores_of(t_results), t_results, template=template)

    async def evaluate_candidate(approved: Playbook, n: int, template: str | None) -> Candidate:
        return await evaluated(_versioned(approved, initial.playbook, n), template)

    current = initial = await evaluated(playbook, template)
    pool = [current]
    iterations: list[Iteration] = []
    status: Literal["target_met", "max_iterations", "exhausted"] = "max_iterations"
    for n in range(1, max_iterations + 1):
        if current.train_score >= target:
            status = "target_met"
            break
        done = await step(n, writer, current, evaluate_candidate, heldout_tolerance=heldout_tolerance)
        iterations.append(done.iteration)
        if on_iteration:
            on_iteration(done.iteration)
        if done.candidate is not None:
            pool = _pareto([*pool, done.candidate])
        current = done.current
        if done.exhausted:
            status = "exhausted"
            break
    else:
        if current.train_score >= target:
            status = "target_met"
    return TuningResult(status, initial, current, iterations, pool)
