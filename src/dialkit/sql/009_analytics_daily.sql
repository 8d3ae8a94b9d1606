-- Campaign analytics, second step: counters per UTC day beside the hourly ones (a month-long
-- report reads ~30 day rows per key and the hour rows of its partial first and last days),
-- integer counters (summed faster than bigint), and rollup pages left half free so the
-- updates of the current hour's rows stay HOT (no index churn) and are pruned in place.
-- analytics_add_counters, analytics_refresh and analytics_rebuild replace the versions of
-- 005_analytics.sql (which describes the design). Idempotent: safe to run more than once.

ALTER TABLE analytics_hourly SET (fillfactor = 50);
ALTER TABLE analytics_latency SET (fillfactor = 50);
ALTER TABLE analytics_daily_latency SET (fillfactor = 50);
ALTER TABLE analytics_hourly
    ALTER COLUMN attempts TYPE integer,
    ALTER COLUMN ended TYPE integer,
    ALTER COLUMN completed TYPE integer,
    ALTER COLUMN voicemail TYPE integer,
    ALTER COLUMN no_answer TYPE integer,
    ALTER COLUMN busy TYPE integer,
    ALTER COLUMN failed TYPE integer,
    ALTER COLUMN canceled TYPE integer,
    ALTER COLUMN right_party TYPE integer,
    ALTER COLUMN promises TYPE integer,
    ALTER COLUMN opt_outs TYPE integer,
    ALTER COLUMN handled TYPE integer,
    ALTER COLUMN greeted TYPE integer,
    ALTER COLUMN abandoned TYPE integer;

-- the same counters per UTC day (reports read whole days here, partial days by the hour)
CREATE TABLE IF NOT EXISTS analytics_daily (
    campaign_id  uuid NOT NULL,
    day          timestamptz NOT NULL,
    local_hour   smallint NOT NULL,
    currency     text NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    ended        integer NOT NULL DEFAULT 0,
    completed    integer NOT NULL DEFAULT 0,
    voicemail    integer NOT NULL DEFAULT 0,
    no_answer    integer NOT NULL DEFAULT 0,
    busy         integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    canceled     integer NOT NULL DEFAULT 0,
    right_party  integer NOT NULL DEFAULT 0,
    promises     integer NOT NULL DEFAULT 0,
    ptp_amount   numeric(18, 2) NOT NULL DEFAULT 0,
    opt_outs     integer NOT NULL DEFAULT 0,
    handled      integer NOT NULL DEFAULT 0,
    handle_ms    bigint NOT NULL DEFAULT 0,
    greeted      integer NOT NULL DEFAULT 0,
    abandoned    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day, local_hour, currency)
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS analytics_daily_day_idx ON analytics_daily (day);

INSERT INTO analytics_daily
SELECT campaign_id, date_trunc('day', hour, 'UTC'), local_hour, currency, sum(attempts),
       sum(ended), sum(completed), sum(voicemail), sum(no_answer), sum(busy), sum(failed),
       sum(canceled), sum(right_party), sum(promises), sum(ptp_amount), sum(opt_outs),
       sum(handled), sum(handle_ms), sum(greeted), sum(abandoned)
FROM analytics_hourly
GROUP BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;

-- Add (sign 1) or take away (sign -1) one ledger row's counters, by the hour and by the day.
CREATE OR REPLACE FUNCTION analytics_add_counters(f analytics_attempts, sign integer)
RETURNS void AS $$
BEGIN
    INSERT INTO analytics_hourly AS h (
        campaign_id, hour, local_hour, currency, attempts, ended, completed, voicemail, no_answer, busy, failed, canceled, right_party, promises, ptp_amount, opt_outs, handled, handle_ms, greeted, abandoned)
    VALUES (f.campaign_id, f.hour, f.local_hour, f.currency, sign * f.attempts, sign * f.ended, sign * f.completed, sign * f.voicemail, sign * f.no_answer, sign * f.busy, sign * f.failed, sign * f.canceled, sign * f.right_party, sign * f.promises, sign * f.ptp_amount, sign * f.opt_outs, sign * f.handled, sign * f.handle_ms, sign * f.greeted, sign * f.abandoned)
    ON CONFLICT (campaign_id, hour, local_hour, currency) DO UPDATE SET
        attempts = h.attempts + EXCLUDED.attempts,
        ended = h.ended + EXCLUDED.ended,
        completed = h.completed + EXCLUDED.completed,
        voicemail = h.voicemail + EXCLUDED.voicemail,
        no_answer = h.no_answer + EXCLUDED.no_answer,
        busy = h.busy + EXCLUDED.busy,
        failed = h.failed + EXCLUDED.failed,
        canceled = h.canceled + EXCLUDED.canceled,
        right_party = h.right_party + EXCLUDED.right_party,
        promises = h.promises + EXCLUDED.promises,
        ptp_amount = h.ptp_amount + EXCLUDED.ptp_amount,
        opt_outs = h.opt_outs + EXCLUDED.opt_outs,
        handled = h.handled + EXCLUDED.handled,
        handle_ms = h.handle_ms + EXCLUDED.handle_ms,
        greeted = h.greeted + EXCLUDED.greeted,
        abandoned = h.abandoned + EXCLUDED.abandoned;
    INSERT INTO analytics_daily AS h (
        campaign_id, day, local_hour, currency, attempts, ended, completed, voicemail, no_answer, busy, failed, canceled, right_party, promises, ptp_amount, opt_outs, handled, handle_ms, greeted, abandoned)
    VALUES (f.campaign_id, date_trunc('day', f.hour, 'UTC'), f.local_hour, f.currency, sign * f.attempts, sign * f.ended, sign * f.completed, sign * f.voicemail, sign * f.no_answer, sign * f.busy, sign * f.failed, sign * f.canceled, sign * f.right_party, sign * f.promises, sign * f.ptp_amount, sign * f.opt_outs, sign * f.handled, sign * f.handle_ms, sign * f.greeted, sign * f.abandoned)
    ON CONFLICT (campaign_id, day, local_hour, currency) DO UPDATE SET
        attempts = h.attempts + EXCLUDED.attempts,
        ended = h.ended + EXCLUDED.ended,
        completed = h.completed + EXCLUDED.completed,
        voicemail = h.voicemail + EXCLUDED.voicemail,
        no_answer = h.no_answer + EXCLUDED.no_answer,
        busy = h.busy + EXCLUDED.busy,
        failed = h.failed + EXCLUDED.failed,
        canceled = h.canceled + EXCLUDED.canceled,
        right_party = h.right_party + EXCLUDED.right_party,
        promises = h.promises + EXCLUDED.promises,
        ptp_amount = h.ptp_amount + EXCLUDED.ptp_amount,
        opt_outs = h.opt_outs + EXCLUDED.opt_outs,
        handled = h.handled + EXCLUDED.handled,
        handle_ms = h.handle_ms + EXCLUDED.handle_ms,
        greeted = h.greeted + EXCLUDED.greeted,
        abandoned = h.abandoned + EXCLUDED.abandoned;
END;
$$ LANGUAGE plpgsql;

-- Bring one attempt's contribution up to date (see the header).
CREATE OR REPLACE FUNCTION analytics_refresh(p_attempt uuid) RETURNS void AS $$
DECLARE
    old analytics_attempts%ROWTYPE;
    new analytics_attempts%ROWTYPE;
    had_old boolean;
    campaign_gone boolean;
BEGIN
    PERFORM 1 FROM attempts WHERE id = p_attempt FOR UPDATE;
    SELECT * INTO old FROM analytics_attempts WHERE attempt_id = p_attempt;
    had_old := FOUND;
    SELECT f.* INTO new FROM analytics_facts f WHERE f.attempt_id = p_attempt;
    IF had_old AND new IS NOT DISTINCT FROM old THEN
        RETURN;
    END IF;
    IF had_old AND new.attempt_id IS NULL THEN
        -- the attempt is gone; when its whole campaign is, so are the campaign's rollups
        SELECT NOT EXISTS (SELECT 1 FROM campaigns WHERE id = old.campaign_id) INTO campaign_gone;
        IF campaign_gone THEN
            DELETE FROM analytics_hourly WHERE campaign_id = old.campaign_id;
            DELETE FROM analytics_daily WHERE campaign_id = old.campaign_id;
            DELETE FROM analytics_latency WHERE campaign_id = old.campaign_id;
            DELETE FROM analytics_daily_latency WHERE campaign_id = old.campaign_id;
            DELETE FROM analytics_attempts WHERE attempt_id = p_attempt;
            RETURN;
        END IF;
    END IF;
    -- counters: only when they or their key changed (a new turn changes only a histogram)
    IF NOT had_old
       OR new.attempt_id IS NULL
       OR (old.campaign_id, old.hour, old.local_hour, old.currency, old.attempts, old.ended,
           old.completed, old.voicemail, old.no_answer, old.busy, old.failed, old.canceled,
           old.right_party, old.promises, old.ptp_amount, old.opt_outs, old.handled,
           old.handle_ms, old.greeted, old.abandoned)
          IS DISTINCT FROM
          (new.campaign_id, new.hour, new.local_hour, new.currency, new.attempts, new.ended,
           new.completed, new.voicemail, new.no_answer, new.busy, new.failed, new.canceled,
           new.right_party, new.promises, new.ptp_amount, new.opt_outs, new.handled,
           new.handle_ms, new.greeted, new.abandoned) THEN
        IF had_old THEN
            PERFORM analytics_add_counters(old, -1);
        END IF;
        IF new.attempt_id IS NOT NULL THEN
            PERFORM analytics_add_counters(new, 1);
        END IF;
    END IF;
    IF (old.campaign_id, old.hour, old.greeting_bucket, old.v2v)
       IS DISTINCT FROM (new.campaign_id, new.hour, new.greeting_bucket, new.v2v) THEN
        PERFORM analytics_move_latency(old, new);
    END IF;
    IF new.attempt_id IS NULL THEN
        DELETE FROM analytics_attempts WHERE attempt_id = p_attempt;
    ELSIF had_old THEN
        UPDATE analytics_attempts SET
            campaign_id = new.campaign_id, hour = new.hour, local_hour = new.local_hour,
            currency = new.currency, call_id = new.call_id, attempts = new.attempts,
            ended = new.ended, completed = new.completed, voicemail = new.voicemail,
            no_answer = new.no_answer, busy = new.busy, failed = new.failed,
            canceled = new.canceled, right_party = new.right_party, promises = new.promises,
            ptp_amount = new.ptp_amount, opt_outs = new.opt_outs, handled = new.handled,
            handle_ms = new.handle_ms, greeted = new.greeted, abandoned = new.abandoned,
            greeting_bucket = new.greeting_bucket, v2v = new.v2v
        WHERE attempt_id = p_attempt;
    ELSE
        INSERT INTO analytics_attempts SELECT (new).*;
    END IF;
END;
$$ LANGUAGE plpgsql;

-- Recompute every rollup of one campaign from the raw rows in a few set-based statements
-- (a repair tool, and the reference the triggers' results are checked against).
CREATE OR REPLACE FUNCTION analytics_rebuild(p_campaign uuid) RETURNS void AS $$
BEGIN
    DELETE FROM analytics_hourly WHERE campaign_id = p_campaign;
    DELETE FROM analytics_daily WHERE campaign_id = p_campaign;
    DELETE FROM analytics_latency WHERE campaign_id = p_campaign;
    DELETE FROM analytics_daily_latency WHERE campaign_id = p_campaign;
    DELETE FROM analytics_attempts WHERE campaign_id = p_campaign;
    INSERT INTO analytics_attempts SELECT * FROM analytics_facts WHERE campaign_id = p_campaign;
    INSERT INTO analytics_hourly
    SELECT campaign_id, hour, local_hour, currency, sum(attempts), sum(ended), sum(completed),
           sum(voicemail), sum(no_answer), sum(busy), sum(failed), sum(canceled),
           sum(right_party), sum(promises), sum(ptp_amount), sum(opt_outs), sum(handled),
           sum(handle_ms), sum(greeted), sum(abandoned)
    FROM analytics_attempts WHERE campaign_id = p_campaign
    GROUP BY campaign_id, hour, local_hour, currency;
    INSERT INTO analytics_daily
    SELECT campaign_id, date_trunc('day', hour, 'UTC'), local_hour, currency, sum(attempts),
           sum(ended), sum(completed), sum(voicemail), sum(no_answer), sum(busy), sum(failed),
           sum(canceled), sum(right_party), sum(promises), sum(ptp_amount), sum(opt_outs),
           sum(handled), sum(handle_ms), sum(greeted), sum(abandoned)
    FROM analytics_hourly WHERE campaign_id = p_campaign
    GROUP BY 1, 2, 3, 4;
    INSERT INTO analytics_latency
    SELECT campaign_id, hour, metric, bucket, count(*)
    FROM (SELECT campaign_id, hour, 1::smallint AS metric, unnest(v2v) AS bucket
          FROM analytics_attempts WHERE campaign_id = p_campaign
          UNION ALL
          SELECT campaign_id, hour, 2::smallint, greeting_bucket
          FROM analytics_attempts
          WHERE campaign_id = p_campaign AND greeting_bucket IS NOT NULL) s
    GROUP BY 1, 2, 3, 4;
    INSERT INTO analytics_daily_latency
    SELECT campaign_id, date_trunc('day', hour, 'UTC'), metric, bucket, sum(n)
    FROM analytics_latency WHERE campaign_id = p_campaign
    GROUP BY 1, 2, 3, 4;
END;
$$ LANGUAGE plpgsql;
