-- The evaluation library (evaluation.library): personalities of simulated debtors, agent
-- prompt versions, scenarios and scenario sets. Idempotent: safe to run more than once.

-- A kind of debtor: `traits` is evaluation.models.Personality without its name (checked
-- by the application). Deleted ones are kept (deleted_at) so scenarios naming them say so.
CREATE TABLE IF NOT EXISTS personalities (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
    traits      jsonb NOT NULL CHECK (jsonb_typeof(traits) = 'object'),
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- An agent prompt: a playbook (validated by ai.playbook), its LLM system-prompt template and
-- LLM parameters. Once used (used_at), its content never changes: a change is a new version
-- of the same name whose parent_id is the one it came from.
CREATE TABLE IF NOT EXISTS prompt_versions (
    id                      bigserial PRIMARY KEY,
    name                    text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,99}$'),
    version                 integer NOT NULL CHECK (version >= 1),
    parent_id               bigint REFERENCES prompt_versions (id),
    playbook                jsonb NOT NULL CHECK (jsonb_typeof(playbook) = 'object'),
    system_prompt_template  text NOT NULL,
    -- {model, temperature, max_tokens, voice}
    llm                     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(llm) = 'object'),
    notes                   text NOT NULL DEFAULT '',
    tags                    text[] NOT NULL DEFAULT '{}',
    active                  boolean NOT NULL DEFAULT true,
    used_at                 timestamptz,
    -- run statistics (evaluation.library.record_run_stats)
    runs                    integer NOT NULL DEFAULT 0 CHECK (runs >= 0),
    successes               integer NOT NULL DEFAULT 0 CHECK (successes >= 0 AND successes <= runs),
    total_duration_s        double precision NOT NULL DEFAULT 0 CHECK (total_duration_s >= 0),
    created_by              text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);
CREATE INDEX IF NOT EXISTS prompt_versions_tags_idx ON prompt_versions USING gin (tags);

-- The database holds the line too: a used version's content, and every version's identity,
-- cannot change, and a used version cannot be deleted (the application refuses first, with
-- a clearer reason).
CREATE OR REPLACE FUNCTION prompt_versions_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.used_at IS NOT NULL THEN
            RAISE EXCEPTION 'prompt version %@% was used: it cannot be deleted', OLD.name, OLD.version;
        END IF;
        RETURN OLD;
    END IF;
    IF (NEW.name, NEW.version, NEW.parent_id, NEW.created_at)
       IS DISTINCT FROM (OLD.name, OLD.version, OLD.parent_id, OLD.created_at) THEN
        RAISE EXCEPTION 'a prompt version''s name, version and parent never change';
    END IF;
    IF OLD.used_at IS NOT NULL AND (
        NEW.used_at IS DISTINCT FROM OLD.used_at
        OR (NEW.playbook, NEW.system_prompt_template, NEW.llm)
           IS DISTINCT FROM (OLD.playbook, OLD.system_prompt_template, OLD.llm)) THEN
        RAISE EXCEPTION 'prompt version %@% was used: its content cannot change', OLD.name, OLD.version;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS prompt_versions_guard ON prompt_versions;
CREATE TRIGGER prompt_versions_guard BEFORE UPDATE OR DELETE ON prompt_versions
    FOR EACH ROW EXECUTE FUNCTION prompt_versions_guard();

-- A personality in a situation (evaluation.models.Scenario): `backstory` is a Backstory.
CREATE TABLE IF NOT EXISTS scenarios (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
    description        text NOT NULL DEFAULT '',
    personality        text NOT NULL REFERENCES personalities (name),
    backstory          jsonb NOT NULL CHECK (jsonb_typeof(backstory) = 'object'),
    weight             smallint NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 5),
    expected_outcomes  text[] NOT NULL CHECK (cardinality(expected_outcomes) >= 1),
    tags               text[] NOT NULL DEFAULT '{}',
    created_by         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE INDEX IF NOT EXISTS scenarios_personality_idx ON scenarios (personality);

-- Named, ordered sets of scenarios (`dialkit eval --scenarios SET`); a member's weight in
-- the set, when given, replaces the scenario's own.
CREATE TABLE IF NOT EXISTS scenario_sets (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
    description  text NOT NULL DEFAULT '',
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS scenario_set_members (
    set_id       bigint NOT NULL REFERENCES scenario_sets (id) ON DELETE CASCADE,
    position     integer NOT NULL CHECK (position >= 0),
    scenario_id  bigint NOT NULL REFERENCES scenarios (id),
    weight       smallint CHECK (weight BETWEEN 1 AND 5),
    PRIMARY KEY (set_id, position),
    UNIQUE (set_id, scenario_id)
);
CREATE INDEX IF NOT EXISTS scenario_set_members_scenario_idx ON scenario_set_members (scenario_id);
