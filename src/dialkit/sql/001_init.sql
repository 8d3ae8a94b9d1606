-- Calls, their turns, events and outcomes. Idempotent: safe to run more than once.

CREATE TABLE IF NOT EXISTS calls (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    carrier          text NOT NULL,
    direction        text NOT NULL DEFAULT 'outbound',
    status           text NOT NULL DEFAULT 'created'
                     CHECK (status IN ('created', 'in_progress', 'completed', 'failed')),
    failure_reason   text,
    close_code       integer,
    carrier_call_id  text,
    stream_id        text,
    to_number        text,
    playbook         text,
    context          jsonb NOT NULL DEFAULT '{}'::jsonb,
    media            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    ended_at         timestamptz
);
CREATE INDEX IF NOT EXISTS calls_status_idx ON calls (status);
CREATE INDEX IF NOT EXISTS calls_created_idx ON calls (created_at);

CREATE TABLE IF NOT EXISTS turns (
    id                 bigserial PRIMARY KEY,
    call_id            uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq                integer NOT NULL,
    speaker            text NOT NULL CHECK (speaker IN ('agent', 'caller')),
    text               text NOT NULL,
    start_ms           integer NOT NULL,
    end_ms             integer NOT NULL,
    interrupted        boolean NOT NULL DEFAULT false,
    stt_ms             real,
    llm_ttft_ms        real,
    tts_ttfb_ms        real,
    voice_to_voice_ms  real,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (call_id, seq)
);

CREATE TABLE IF NOT EXISTS call_events (
    id       bigserial PRIMARY KEY,
    call_id  uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    t_ms     integer NOT NULL,
    kind     text NOT NULL,
    data     jsonb NOT NULL DEFAULT '{}'::jsonb,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_events_call_idx ON call_events (call_id, id);

CREATE TABLE IF NOT EXISTS call_outcomes (
    call_id         uuid PRIMARY KEY REFERENCES calls (id) ON DELETE CASCADE,
    outcome         text,
    right_party     boolean,
    ptp_amount      numeric(12, 2),
    ptp_date        date,
    ptp_plan        text,
    opt_out         boolean NOT NULL DEFAULT false,
    opt_out_reason  text,
    dispute         boolean NOT NULL DEFAULT false,
    dispute_reason  text,
    hardship        boolean NOT NULL DEFAULT false,
    callback_at     timestamptz,
    callback_text   text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
