-- The scheduler's bookkeeping on dial attempts. Idempotent: safe to run more than once.

-- set once, when the attempt's end has been turned into the lead's next state (retry,
-- callback, done...): the status webhook and the call's end may both try, only one acts
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS settled_at timestamptz;

-- reconciliation: attempts still in flight, oldest first
CREATE INDEX IF NOT EXISTS attempts_in_flight_idx ON attempts (updated_at)
    WHERE state IN ('queued', 'dialing', 'ringing', 'in_progress');
-- the failure-rate window: a campaign's last ended attempts
CREATE INDEX IF NOT EXISTS attempts_ended_idx ON attempts (campaign_id, ended_at DESC)
    WHERE ended_at IS NOT NULL;
-- calls left in progress by a node that died
CREATE INDEX IF NOT EXISTS calls_in_progress_idx ON calls (started_at) WHERE status = 'in_progress';
-- due call-backs come first: found without walking the pending leads
CREATE INDEX IF NOT EXISTS leads_callback_due_idx ON leads (campaign_id, next_at)
    WHERE state = 'callback';
-- how the attempt ended for its lead's retry rules (no_answer, busy, failed, voicemail),
-- or null when it is not retried (a conversation, an opt-out...)
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS disposition text;
CREATE INDEX IF NOT EXISTS attempts_lead_disposition_idx ON attempts (lead_id, disposition)
    WHERE disposition IS NOT NULL;
