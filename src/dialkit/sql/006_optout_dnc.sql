-- A caller who opts out on a call goes on the do-not-call lists at once, in the transaction
-- that records the outcome (call_outcomes.opt_out becomes true), whatever process writes it:
-- - the call of a campaign attempt (attempts.call_id): the lead's phone on its campaign's
--   list and on the global list, and the lead in state 'dnc';
-- - a single call (no attempt): calls.to_number on the global list.
-- Either way, every lead elsewhere with that phone still waiting to be dialled (pending,
-- retry, callback) goes to 'dnc' as well: the global list means never again.
-- Each change writes one audit_log row (actor 'call', action 'dnc_add' of campaigns.audit).
-- An attempt linked to its call after the outcome was written is handled when the link is
-- made. Idempotent: safe to run more than once.

CREATE OR REPLACE FUNCTION opt_out_to_dnc(p_call_id uuid, p_reason text) RETURNS void AS $$
DECLARE
    a        record;
    linked   boolean := false;
    n_added  integer;
    n_added2 integer;
    n_leads  integer;
    v_number text;
    v_reason text := COALESCE(p_reason, 'stop_request');
BEGIN
    FOR a IN
        SELECT t.id AS attempt_id, t.campaign_id, l.id AS lead_id, l.phone
        FROM attempts t JOIN leads l ON l.id = t.lead_id
        WHERE t.call_id = p_call_id
    LOOP
        linked := true;
        INSERT INTO dnc (phone, campaign_id, reason, source, created_by)
            VALUES (a.phone, a.campaign_id, v_reason, 'opt_out', 'call')
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n_added = ROW_COUNT;
        INSERT INTO dnc (phone, campaign_id, reason, source, created_by)
            VALUES (a.phone, NULL, v_reason, 'opt_out', 'call')
            ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n_added2 = ROW_COUNT;
        UPDATE leads SET state = 'dnc', next_at = NULL, updated_at = now()
            WHERE state <> 'dnc'
              AND (id = a.lead_id
                   OR (phone = a.phone AND state IN ('pending', 'retry', 'callback')));
        GET DIAGNOSTICS n_leads = ROW_COUNT;
        IF n_added + n_added2 + n_leads > 0 THEN
            INSERT INTO audit_log (actor, action, subject_type, subject_id, data)
            VALUES ('call', 'dnc_add', 'lead', a.lead_id::text, jsonb_build_object(
                'source', 'opt_out', 'reason', v_reason, 'call_id', p_call_id,
                'attempt_id', a.attempt_id, 'campaign_id', a.campaign_id,
                'campaign_list', n_added > 0, 'global_list', n_added2 > 0,
                'leads_marked', n_leads));
        END IF;
    END LOOP;

    IF NOT linked THEN
        SELECT to_number INTO v_number FROM calls WHERE id = p_call_id;
        IF v_number IS NOT NULL AND v_number <> '' THEN
            INSERT INTO dnc (phone, campaign_id, reason, source, created_by)
                VALUES (v_number, NULL, v_reason, 'opt_out', 'call')
                ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS n_added2 = ROW_COUNT;
            UPDATE leads SET state = 'dnc', next_at = NULL, updated_at = now()
                WHERE phone = v_number AND state IN ('pending', 'retry', 'callback');
            GET DIAGNOSTICS n_leads = ROW_COUNT;
            IF n_added2 + n_leads > 0 THEN
                INSERT INTO audit_log (actor, action, subject_type, subject_id, data)
                VALUES ('call', 'dnc_add', 'call', p_call_id::text, jsonb_build_object(
                    'source', 'opt_out', 'reason', v_reason, 'call_id', p_call_id,
                    'global_list', n_added2 > 0, 'leads_marked', n_leads));
            END IF;
        END IF;
    END IF;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION call_outcomes_opt_out() RETURNS trigger AS $$
BEGIN
    PERFORM opt_out_to_dnc(NEW.call_id, NEW.opt_out_reason);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS call_outcomes_opt_out_insert ON call_outcomes;
CREATE TRIGGER call_outcomes_opt_out_insert AFTER INSERT ON call_outcomes
    FOR EACH ROW WHEN (NEW.opt_out) EXECUTE FUNCTION call_outcomes_opt_out();
DROP TRIGGER IF EXISTS call_outcomes_opt_out_update ON call_outcomes;
CREATE TRIGGER call_outcomes_opt_out_update AFTER UPDATE ON call_outcomes
    FOR EACH ROW WHEN (NEW.opt_out AND NOT OLD.opt_out) EXECUTE FUNCTION call_outcomes_opt_out();

-- the attempt learns its call after the outcome was written
CREATE OR REPLACE FUNCTION attempts_call_linked_opt_out() RETURNS trigger AS $$
DECLARE
    v_reason text;
BEGIN
    SELECT opt_out_reason INTO v_reason FROM call_outcomes
        WHERE call_id = NEW.call_id AND opt_out;
    IF FOUND THEN
        PERFORM opt_out_to_dnc(NEW.call_id, v_reason);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS attempts_call_linked_opt_out_insert ON attempts;
CREATE TRIGGER attempts_call_linked_opt_out_insert AFTER INSERT ON attempts
    FOR EACH ROW WHEN (NEW.call_id IS NOT NULL) EXECUTE FUNCTION attempts_call_linked_opt_out();
DROP TRIGGER IF EXISTS attempts_call_linked_opt_out_update ON attempts;
CREATE TRIGGER attempts_call_linked_opt_out_update AFTER UPDATE OF call_id ON attempts
    FOR EACH ROW WHEN (NEW.call_id IS NOT NULL AND NEW.call_id IS DISTINCT FROM OLD.call_id)
    EXECUTE FUNCTION attempts_call_linked_opt_out();
