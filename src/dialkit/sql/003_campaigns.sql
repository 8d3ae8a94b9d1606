-- Campaigns: their leads, dial attempts, do-not-call lists, the outcome-webhook outbox and
-- the audit log. Idempotent: safe to run more than once.

CREATE TABLE IF NOT EXISTS campaigns (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL,
    playbook_name     text NOT NULL,
    playbook_version  text NOT NULL,
    carrier           text NOT NULL CHECK (carrier IN ('twilio', 'exotel')),
    caller_id         text NOT NULL,
    status            text NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'running', 'paused', 'completed', 'canceled')),
    status_reason     text,
    max_concurrent    integer NOT NULL CHECK (max_concurrent > 0),
    max_attempts      integer NOT NULL CHECK (max_attempts > 0),
    starts_at         timestamptz,
    ends_at           timestamptz,
    webhook_url       text,
    -- signs outcome webhooks (HMAC-SHA256); shown once, when the campaign is created
    webhook_secret    text NOT NULL,
    -- the rest of the validated campaign (campaigns.models.CampaignSettings)
    settings          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE INDEX IF NOT EXISTS campaigns_running_idx ON campaigns (status) WHERE deleted_at IS NULL;

-- pending: never dialled; retry / callback: waiting for next_at; dialing: an attempt is
-- live; done: nothing more to do (spoke, promised, disputed...); dnc: on a do-not-call list;
-- exhausted: max attempts or retries used up; canceled: its campaign was cancelled
CREATE TABLE IF NOT EXISTS leads (
    id               bigserial PRIMARY KEY,
    campaign_id      uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    account_ref      text NOT NULL,
    name             text NOT NULL,
    phone            text NOT NULL,
    country          text NOT NULL,
    zones            text[] NOT NULL,
    amount_due       numeric(14, 2) NOT NULL,
    currency         text NOT NULL,
    due_date         date NOT NULL,
    custom           jsonb NOT NULL DEFAULT '{}'::jsonb,
    line             integer,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'retry', 'callback', 'dialing', 'done', 'dnc',
                                      'exhausted', 'canceled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_at          timestamptz,
    callback_at      timestamptz,
    last_state       text,
    last_outcome     text,
    conversation_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, account_ref)
);
CREATE INDEX IF NOT EXISTS leads_due_idx ON leads (campaign_id, next_at NULLS FIRST, id)
    WHERE state IN ('pending', 'retry', 'callback');
CREATE INDEX IF NOT EXISTS leads_phone_idx ON leads (phone);

-- One row per dial. States and their order: campaigns.attempts.
CREATE TABLE IF NOT EXISTS attempts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id  uuid REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id      bigint REFERENCES leads (id) ON DELETE CASCADE,
    call_id      uuid REFERENCES calls (id) ON DELETE SET NULL,
    carrier      text NOT NULL,
    carrier_sid  text,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'dialing', 'ringing', 'in_progress', 'completed',
                                  'no_answer', 'busy', 'failed', 'canceled', 'voicemail')),
    error        text,
    local_hour   smallint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    dialed_at    timestamptz,
    answered_at  timestamptz,
    ended_at     timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- never two live attempts for one lead, whatever the number of schedulers
CREATE UNIQUE INDEX IF NOT EXISTS attempts_one_live_idx ON attempts (lead_id)
    WHERE state IN ('queued', 'dialing', 'ringing', 'in_progress');
CREATE INDEX IF NOT EXISTS attempts_live_idx ON attempts (campaign_id)
    WHERE state IN ('queued', 'dialing', 'ringing', 'in_progress');
CREATE UNIQUE INDEX IF NOT EXISTS attempts_carrier_sid_idx ON attempts (carrier, carrier_sid)
    WHERE carrier_sid IS NOT NULL;
CREATE INDEX IF NOT EXISTS attempts_lead_idx ON attempts (lead_id, created_at);
CREATE INDEX IF NOT EXISTS attempts_campaign_idx ON attempts (campaign_id, created_at);
CREATE INDEX IF NOT EXISTS attempts_call_idx ON attempts (call_id);

-- campaign_id NULL: the global list
CREATE TABLE IF NOT EXISTS dnc (
    id           bigserial PRIMARY KEY,
    phone        text NOT NULL,
    campaign_id  uuid REFERENCES campaigns (id) ON DELETE CASCADE,
    reason       text,
    source       text NOT NULL DEFAULT 'api',
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS dnc_phone_scope_idx
    ON dnc (phone, COALESCE(campaign_id, '00000000-0000-0000-0000-000000000000'::uuid));

-- Outcome webhooks waiting for (or done with) delivery: written in the transaction that
-- records the outcome, delivered at least once, with `idempotency_key` sent along.
CREATE TABLE IF NOT EXISTS outbox (
    id               bigserial PRIMARY KEY,
    campaign_id      uuid REFERENCES campaigns (id) ON DELETE CASCADE,
    event            text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    url              text NOT NULL,
    payload          jsonb NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_at          timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_pending_idx ON outbox (next_at) WHERE delivered_at IS NULL;

-- Append-only: rows are never updated; they are deleted only past the retention period
-- (campaigns.audit.purge).
CREATE TABLE IF NOT EXISTS audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    action        text NOT NULL,
    subject_type  text NOT NULL,
    subject_id    text,
    data          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_subject_idx ON audit_log (subject_type, subject_id, at);

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'audit_log is append-only';
    END IF;
    IF current_setting('dialkit.audit_purge', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'audit_log rows are removed only by the retention purge';
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
