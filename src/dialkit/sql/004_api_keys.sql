-- API keys (`dk_<prefix>_<secret>`): only the SHA-256 of each whole key is kept, found by
-- its public prefix; never the key itself. Idempotent: safe to run more than once.

CREATE TABLE IF NOT EXISTS api_keys (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    prefix        text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-f]{8}$'),
    key_sha256    bytea NOT NULL CHECK (length(key_sha256) = 32),
    scope         text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- refreshed at most once a minute per key
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
-- a name names one live key; a revoked key's name may be used again
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_live_name_idx ON api_keys (name) WHERE revoked_at IS NULL;
