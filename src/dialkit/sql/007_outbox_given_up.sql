-- Outcome webhooks given up after their last attempt (last_error says why). Due rows are
-- the ones neither delivered nor given up; the campaign's deliveries are listed newest
-- first. Idempotent: safe to run more than once.

ALTER TABLE outbox ADD COLUMN IF NOT EXISTS given_up_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_status integer;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz;

CREATE INDEX IF NOT EXISTS outbox_due_idx ON outbox (next_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
DROP INDEX IF EXISTS outbox_pending_idx;
CREATE INDEX IF NOT EXISTS outbox_campaign_idx ON outbox (campaign_id, id);
