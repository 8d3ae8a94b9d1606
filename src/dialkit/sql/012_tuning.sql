-- Tuning runs (tuning.runs): a prompt version improved iteration by iteration by the
-- writer-critique loop, each candidate a new prompt version evaluated by evaluation runs.
CREATE TABLE IF NOT EXISTS tuning_runs (
    id                        bigserial PRIMARY KEY,
    prompt_version_id         bigint NOT NULL REFERENCES prompt_versions (id),
    -- the request as given (tuning.run_store.TuningSpec): train set or scenarios with
    -- weights, held-out set or scenarios, target, max_iterations, repeat, seed, writer
    spec                      jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    status                    text NOT NULL DEFAULT 'PENDING'
                              CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    current_iteration         integer NOT NULL DEFAULT 0 CHECK (current_iteration >= 0),
    initial_train_score       double precision,
    initial_heldout_score     double precision,
    initial_train_evaluation_id   bigint REFERENCES evaluations (id),
    initial_heldout_evaluation_id bigint REFERENCES evaluations (id),
    final_prompt_version_id   bigint REFERENCES prompt_versions (id),
    final_train_score         double precision,
    final_heldout_score       double precision,
    -- why it ended as it did (target met, max iterations, nothing left to try, the error)
    outcome                   text,
    error                     text,
    cancel_requested          boolean NOT NULL DEFAULT false,
    actor                     text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    started_at                timestamptz,
    finished_at               timestamptz
);
CREATE INDEX IF NOT EXISTS tuning_runs_status ON tuning_runs (status, id);
CREATE INDEX IF NOT EXISTS tuning_runs_prompt_version ON tuning_runs (prompt_version_id, id);

CREATE TABLE IF NOT EXISTS tuning_iterations (
    run_id                 bigint NOT NULL REFERENCES tuning_runs (id) ON DELETE CASCADE,
    n                      integer NOT NULL CHECK (n >= 1),
    -- the candidate (the parent itself when the critique approved nothing)
    prompt_version_id      bigint NOT NULL REFERENCES prompt_versions (id),
    parent_id              bigint NOT NULL REFERENCES prompt_versions (id),
    train_score            double precision NOT NULL,
    heldout_score          double precision NOT NULL,
    per_scenario           jsonb NOT NULL DEFAULT '{}',
    delta                  double precision NOT NULL,
    accepted               boolean NOT NULL,
    reason                 text NOT NULL,
    train_evaluation_id    bigint REFERENCES evaluations (id),
    heldout_evaluation_id  bigint REFERENCES evaluations (id),
    analysis               text NOT NULL DEFAULT '',
    exchange               text NOT NULL DEFAULT '',
    tokens                 integer NOT NULL DEFAULT 0,
    cost_usd               double precision NOT NULL DEFAULT 0,
    -- the writer's memory after this iteration (a resumed run restores it)
    writer_state           jsonb NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, n)
);
