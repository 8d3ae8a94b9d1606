-- Campaign analytics rollups, kept up to date by triggers on attempts, calls, turns,
-- call_events and call_outcomes, so a report sums a few thousand pre-aggregated rows instead
-- of scanning every attempt. Idempotent: safe to run more than once.
--
-- Design (campaigns.analytics reads these tables; its docstring defines every figure):
-- * analytics_attempts is a ledger: one row per campaign attempt holding exactly what that
--   attempt contributes to the rollups right now (its bucket key, its counters and its
--   latency-histogram buckets). Any change to an attempt or to its call's records calls
--   analytics_refresh(attempt), which recomputes the contribution from the raw rows (the view
--   analytics_facts, the one definition), subtracts the ledger's old contribution, adds the
--   new one and stores it. So an attempt counts once however often its terminal state is
--   re-applied, and an upgrade (completed -> voicemail) moves it from one counter to the
--   other; a deleted row takes away exactly what it added.
-- * analytics_hourly: counters per (campaign, UTC hour of attempts.created_at, the lead's
--   local hour of the attempt, lead currency); analytics_daily: the same per UTC day, so a
--   month-long report reads ~30 day rows per key plus the hour rows of its partial first
--   and last days. Counters are integers (summed faster than bigint); handle_ms is bigint.
-- * analytics_latency: log-spaced histograms per (campaign, UTC hour, metric, bucket), stored
--   sparsely (one row per non-empty bucket). metric 1 = voice-to-voice latency of agent turns
--   (turns.voice_to_voice_ms), metric 2 = greeting latency of connected calls (call_events
--   'greeting_audio', latency_ms). Bucket 0 holds values below 1 ms; bucket i >= 1 holds
--   [1.05^(i-1), 1.05^i) ms; bucket 255 holds everything from 1.05^254 ms (about 4 minutes).
-- * analytics_daily_latency: the same histograms summed per UTC day, read the same way.
-- * The rollup tables leave half of each page free (fillfactor 50), so the updates of the
--   current hour's rows stay HOT (no index churn) and are pruned in place.
--
-- Locking: analytics_refresh takes the attempt's row lock first, so concurrent writers of an
-- attempt and of its call's records take turns, and each sees the other's committed rows.

CREATE OR REPLACE FUNCTION analytics_bucket(ms double precision) RETURNS smallint AS $$
    SELECT CASE WHEN ms IS NULL THEN NULL
                WHEN ms < 1 THEN 0
                ELSE least(255, 1 + floor(ln(ms) / ln(1.05)))::smallint END
$$ LANGUAGE sql IMMUTABLE PARALLEL SAFE;

-- What each attempt contributes, computed from the raw rows. Live attempts count as attempts
-- only; a terminal state counts once in its own column.
CREATE OR REPLACE VIEW analytics_facts AS
SELECT a.id AS attempt_id,
       a.campaign_id,
       date_trunc('hour', a.created_at, 'UTC') AS hour,
       coalesce(a.local_hour, -1)::smallint AS local_hour,
       coalesce(l.currency, '') AS currency,
       a.call_id,
       1 AS attempts,
       (a.state IN ('completed', 'no_answer', 'busy', 'failed', 'canceled', 'voicemail'))::int AS ended,
       (a.state = 'completed')::int AS completed,
       (a.state = 'voicemail')::int AS voicemail,
       (a.state = 'no_answer')::int AS no_answer,
       (a.state = 'busy')::int AS busy,
       (a.state = 'failed')::int AS failed,
       (a.state = 'canceled')::int AS canceled,
       coalesce(o.right_party, false)::int AS right_party,
       coalesce(o.ptp_amount IS NOT NULL OR o.outcome = 'promise_to_pay', false)::int AS promises,
       coalesce(o.ptp_amount, 0)::numeric(16, 2) AS ptp_amount,
       coalesce(o.opt_out OR o.outcome = 'opt_out', false)::int AS opt_outs,
       (a.state = 'completed' AND ht.ms IS NOT NULL)::int AS handled,
       CASE WHEN a.state = 'completed' THEN coalesce(ht.ms, 0) ELSE 0 END AS handle_ms,
       (a.state = 'completed' AND g.ms IS NOT NULL)::int AS greeted,
       (a.state = 'completed' AND (g.ms IS NULL OR g.ms > 2000))::int AS abandoned,
       CASE WHEN a.state = 'completed' THEN analytics_bucket(g.ms) END AS greeting_bucket,
       coalesce(v.buckets, '{}'::smallint[]) AS v2v
FROM attempts a
LEFT JOIN leads l ON l.id = a.lead_id
LEFT JOIN call_outcomes o ON o.call_id = a.call_id
LEFT JOIN calls c ON c.id = a.call_id
-- handle time: answered -> ended as the carrier reported it, else the media session's span
LEFT JOIN LATERAL (
    SELECT round(extract(epoch FROM coalesce(a.ended_at - a.answered_at,
                                             c.ended_at - c.started_at)) * 1000)::bigint AS ms
) ht0 ON true
LEFT JOIN LATERAL (SELECT CASE WHEN ht0.ms >= 0 THEN ht0.ms END AS ms) ht ON true
LEFT JOIN LATERAL (
    SELECT (e.data ->> 'latency_ms')::double precision AS ms
    FROM call_events e
    WHERE e.call_id = a.call_id AND e.kind = 'greeting_audio'
    ORDER BY e.id LIMIT 1
) g ON true
LEFT JOIN LATERAL (
    SELECT array_agg(analytics_bucket(t.voice_to_voice_ms) ORDER BY t.seq) AS buckets
    FROM turns t
    WHERE t.call_id = a.call_id AND t.speaker = 'agent' AND t.voice_to_voice_ms IS NOT NULL
) v ON a.call_id IS NOT NULL
WHERE a.campaign_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS analytics_attempts (
    attempt_id       uuid PRIMARY KEY,
    campaign_id      uuid NOT NULL,
    hour             timestamptz NOT NULL,
    local_hour       smallint NOT NULL,
    currency         text NOT NULL,
    call_id          uuid,
    attempts         integer NOT NULL,
    ended            integer NOT NULL,
    completed        integer NOT NULL,
    voicemail        integer NOT NULL,
    no_answer        integer NOT NULL,
    busy             integer NOT NULL,
    failed           integer NOT NULL,
    canceled         integer NOT NULL,
    right_party      integer NOT NULL,
    promises         integer NOT NULL,
    ptp_amount       numeric(16, 2) NOT NULL,
    opt_outs         integer NOT NULL,
    handled          integer NOT NULL,
    handle_ms        bigint NOT NULL,
    greeted          integer NOT NULL,
    abandoned        integer NOT NULL,
    greeting_bucket  smallint,
    v2v              smallint[] NOT NULL
);
CREATE INDEX IF NOT EXISTS analytics_attempts_campaign_idx ON analytics_attempts (campaign_id);

CREATE TABLE IF NOT EXISTS analytics_hourly (
    campaign_id  uuid NOT NULL,
    hour         timestamptz NOT NULL,
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
    PRIMARY KEY (campaign_id, hour, local_hour, currency)
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS analytics_hourly_hour_idx ON analytics_hourly (hour);

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

CREATE TABLE IF NOT EXISTS analytics_latency (
    campaign_id  uuid NOT NULL,
    hour         timestamptz NOT NULL,
    metric       smallint NOT NULL,
    bucket       smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (campaign_id, hour, metric, bucket)
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS analytics_latency_hour_idx ON analytics_latency (hour);

CREATE TABLE IF NOT EXISTS analytics_daily_latency (
    campaign_id  uuid NOT NULL,
    day          timestamptz NOT NULL,
    metric       smallint NOT NULL,
    bucket       smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (campaign_id, day, metric, bucket)
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS analytics_daily_latency_day_idx ON analytics_daily_latency (day);

-- Add (sign 1) or take away (sign -1) one ledger row's counters, by the hour and by the day.
-- The two upserts are one statement for two tables, written out twice: a table name cannot
-- be a parameter of a static statement, and a dynamic one (EXECUTE format(...)) is planned
-- again on every call, about 95 µs more per upsert here (0.4 ms more per attempt whose
-- counters change, on a trigger path of about 1.3 ms per attempt).
CREATE OR REPLACE FUNCTION analytics_add_counters(f analytics_attempts, sign integer)
RETURNS void AS $$
BEGIN
    INSERT INTO analytics_hourly AS h (
        campaign_id, hour, local_hour, currency, attempts, ended, completed, voicemail,
        no_answer, busy, failed, canceled, right_party, promises, ptp_amount, opt_outs, handled,
        handle_ms, greeted, abandoned)
    VALUES (
        f.campaign_id, f.hour, f.local_hour, f.currency,
        sign * f.attempts, sign * f.ended, sign * f.completed, sign * f.voicemail,
        sign * f.no_answer, sign * f.busy, sign * f.failed, sign * f.canceled,
        sign * f.right_party, sign * f.promises, sign * f.ptp_amount, sign * f.opt_outs,
        sign * f.handled, sign * f.handle_ms, sign * f.greeted, sign * f.abandoned)
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
        campaign_id, day, local_hour, currency, attempts, ended, completed, voicemail,
        no_answer, busy, failed, canceled, right_party, promises, ptp_amount, opt_outs, handled,
        handle_ms, greeted, abandoned)
    VALUES (
        f.campaign_id, date_trunc('day', f.hour, 'UTC'), f.local_hour, f.currency,
        sign * f.attempts, sign * f.ended, sign * f.completed, sign * f.voicemail,
        sign * f.no_answer, sign * f.busy, sign * f.failed, sign * f.canceled,
        sign * f.right_party, sign * f.promises, sign * f.ptp_amount, sign * f.opt_outs,
        sign * f.handled, sign * f.handle_ms, sign * f.greeted, sign * f.abandoned)
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

-- Move the histogram samples of `old` (taken away) and `new` (added), bucket by bucket;
-- rows are touched in key order so concurrent refreshes lock them in the same order.
CREATE OR REPLACE FUNCTION analytics_move_latency(old analytics_attempts, new analytics_attempts)
RETURNS void AS $$
BEGIN
    WITH d AS (
        SELECT x.campaign_id, x.hour, x.metric, x.bucket, sum(x.n) AS n
        FROM (
            SELECT old.campaign_id, old.hour, 1::smallint AS metric, b AS bucket, -1 AS n
            FROM unnest(old.v2v) AS b WHERE old.campaign_id IS NOT NULL
            UNION ALL
            SELECT old.campaign_id, old.hour, 2::smallint, old.greeting_bucket, -1
            WHERE old.campaign_id IS NOT NULL AND old.greeting_bucket IS NOT NULL
            UNION ALL
            SELECT new.campaign_id, new.hour, 1::smallint, b, 1
            FROM unnest(new.v2v) AS b WHERE new.campaign_id IS NOT NULL
            UNION ALL
            SELECT new.campaign_id, new.hour, 2::smallint, new.greeting_bucket, 1
            WHERE new.campaign_id IS NOT NULL AND new.greeting_bucket IS NOT NULL
        ) x
        GROUP BY 1, 2, 3, 4
        HAVING sum(x.n) <> 0
    ), hourly AS (
        INSERT INTO analytics_latency AS l (campaign_id, hour, metric, bucket, n)
        SELECT campaign_id, hour, metric, bucket, n FROM d
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (campaign_id, hour, metric, bucket) DO UPDATE SET n = l.n + EXCLUDED.n
    )
    INSERT INTO analytics_daily_latency AS l (campaign_id, day, metric, bucket, n)
    SELECT campaign_id, date_trunc('day', hour, 'UTC'), metric, bucket, sum(n)
    FROM d
    GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, day, metric, bucket) DO UPDATE SET n = l.n + EXCLUDED.n;
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

CREATE OR REPLACE FUNCTION analytics_attempt_changed() RETURNS trigger AS $$
BEGIN
    PERFORM analytics_refresh(CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS analytics_attempt_written ON attempts;
CREATE TRIGGER analytics_attempt_written AFTER INSERT OR DELETE ON attempts
    FOR EACH ROW EXECUTE FUNCTION analytics_attempt_changed();
-- a re-applied state (or any change the figures do not depend on) does not fire
DROP TRIGGER IF EXISTS analytics_attempt_updated ON attempts;
CREATE TRIGGER analytics_attempt_updated AFTER UPDATE ON attempts
    FOR EACH ROW
    WHEN ((OLD.state, OLD.campaign_id, OLD.lead_id, OLD.call_id, OLD.local_hour, OLD.created_at,
           OLD.answered_at, OLD.ended_at)
          IS DISTINCT FROM
          (NEW.state, NEW.campaign_id, NEW.lead_id, NEW.call_id, NEW.local_hour, NEW.created_at,
           NEW.answered_at, NEW.ended_at))
    EXECUTE FUNCTION analytics_attempt_changed();

-- A call's records changed: refresh the attempt(s) that placed the call.
CREATE OR REPLACE FUNCTION analytics_call_record_changed() RETURNS trigger AS $$
DECLARE
    ids uuid[];
    aid uuid;
BEGIN
    IF TG_TABLE_NAME = 'calls' THEN
        ids := ARRAY[NEW.id];
    ELSIF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.call_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.call_id];
    ELSE
        ids := ARRAY[OLD.call_id, NEW.call_id];
    END IF;
    FOR aid IN SELECT id FROM attempts WHERE call_id = ANY (ids) ORDER BY id LOOP
        PERFORM analytics_refresh(aid);
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS analytics_outcome_written ON call_outcomes;
CREATE TRIGGER analytics_outcome_written AFTER INSERT OR UPDATE OR DELETE ON call_outcomes
    FOR EACH ROW EXECUTE FUNCTION analytics_call_record_changed();
-- only agent turns with a voice-to-voice time and 'greeting_audio' events count
DROP TRIGGER IF EXISTS analytics_turn_written ON turns;
CREATE TRIGGER analytics_turn_written AFTER INSERT ON turns
    FOR EACH ROW WHEN (NEW.speaker = 'agent' AND NEW.voice_to_voice_ms IS NOT NULL)
    EXECUTE FUNCTION analytics_call_record_changed();
DROP TRIGGER IF EXISTS analytics_turn_changed ON turns;
CREATE TRIGGER analytics_turn_changed AFTER UPDATE OR DELETE ON turns
    FOR EACH ROW EXECUTE FUNCTION analytics_call_record_changed();
DROP TRIGGER IF EXISTS analytics_greeting_written ON call_events;
CREATE TRIGGER analytics_greeting_written AFTER INSERT ON call_events
    FOR EACH ROW WHEN (NEW.kind = 'greeting_audio')
    EXECUTE FUNCTION analytics_call_record_changed();
DROP TRIGGER IF EXISTS analytics_greeting_removed ON call_events;
CREATE TRIGGER analytics_greeting_removed AFTER DELETE ON call_events
    FOR EACH ROW WHEN (OLD.kind = 'greeting_audio')
    EXECUTE FUNCTION analytics_call_record_changed();
DROP TRIGGER IF EXISTS analytics_call_span_updated ON calls;
CREATE TRIGGER analytics_call_span_updated AFTER UPDATE ON calls
    FOR EACH ROW
    WHEN ((OLD.started_at, OLD.ended_at) IS DISTINCT FROM (NEW.started_at, NEW.ended_at))
    EXECUTE FUNCTION analytics_call_record_changed();

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
