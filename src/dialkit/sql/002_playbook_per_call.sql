-- The playbook each call runs (name and version, resolved when the call is created), and
-- the number of instalments of a promise to pay. Idempotent: safe to run more than once.
-- calls.playbook (what a request named before playbooks were resolved; every such call ran
-- the default playbook) is kept as it was and no longer written.

ALTER TABLE calls ADD COLUMN IF NOT EXISTS playbook_name text;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS playbook_version text;

ALTER TABLE call_outcomes ADD COLUMN IF NOT EXISTS ptp_instalments integer;
