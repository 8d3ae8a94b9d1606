-- Evaluation runs (evaluation.runs): a prompt version played against frozen scenarios,
-- one row per (scenario, repeat) call; the calls run as jobs on the `evaluation` queue.
CREATE TABLE IF NOT EXISTS evaluations (
    id                 bigserial PRIMARY KEY,
    prompt_version_id  bigint NOT NULL REFERENCES prompt_versions (id),
    -- the request as given (evaluation.runs.EvaluationSpec)
    spec               jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    status             text NOT NULL DEFAULT 'PENDING'
                       CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED')),
    calls_total        integer NOT NULL CHECK (calls_total >= 1),
    calls_done         integer NOT NULL DEFAULT 0 CHECK (calls_done >= 0),
    calls_failed       integer NOT NULL DEFAULT 0 CHECK (calls_failed >= 0),
    weighted_score     double precision CHECK (weighted_score BETWEEN 0 AND 100),
    pass_k             double precision CHECK (pass_k BETWEEN 0 AND 1),
    -- why a FAILED run failed: how many calls and the first error
    error              text,
    label              text CHECK (length(label) <= 200),
    actor              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    CHECK (calls_done <= calls_total AND calls_failed <= calls_done)
);
CREATE INDEX IF NOT EXISTS evaluations_status ON evaluations (status, id);
CREATE INDEX IF NOT EXISTS evaluations_prompt_version ON evaluations (prompt_version_id, id);
CREATE INDEX IF NOT EXISTS evaluations_label ON evaluations (label, id) WHERE label IS NOT NULL;

CREATE TABLE IF NOT EXISTS evaluation_calls (
    evaluation_id  bigint NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    idx            integer NOT NULL CHECK (idx >= 0),
    -- frozen at creation: later edits of the library do not change a run
    scenario       jsonb NOT NULL,
    personality    jsonb NOT NULL,
    weight         integer NOT NULL CHECK (weight BETWEEN 1 AND 5),
    repeat         integer NOT NULL CHECK (repeat >= 0),
    seed           bigint NOT NULL,
    status         text NOT NULL DEFAULT 'PENDING'
                   CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED')),
    call_id        text,
    -- evaluation.models.SimulatedCall (transcript and actions) and CallScore
    call           jsonb,
    score          jsonb,
    error          text,
    duration_s     double precision,
    started_at     timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (evaluation_id, idx)
);
