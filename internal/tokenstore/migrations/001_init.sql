-- grant_state holds the one authorization grant: its tokens, the auth state
-- derived from it, the refresh-in-flight marker (R7) and the token-endpoint
-- backoff (R25). Exactly one row (id = 1). Times are Unix milliseconds UTC.
CREATE TABLE grant_state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    generation           INTEGER NOT NULL DEFAULT 0,
    access_token         TEXT,
    refresh_token        TEXT,
    token_type           TEXT NOT NULL DEFAULT '',
    expiry_ms            INTEGER,
    issued_at_ms         INTEGER,
    refresh_issued_at_ms INTEGER,
    scopes               TEXT NOT NULL DEFAULT '',
    last_refresh_ms      INTEGER,
    state                TEXT NOT NULL DEFAULT 'setup_required',
    reason               TEXT NOT NULL DEFAULT '',
    state_since_ms       INTEGER,
    email                TEXT NOT NULL DEFAULT '',
    inflight_since_ms    INTEGER,
    inflight_sends       INTEGER NOT NULL DEFAULT 0,
    backoff_next_ms      INTEGER,
    backoff_delay_ms     INTEGER NOT NULL DEFAULT 0,
    backoff_failures     INTEGER NOT NULL DEFAULT 0,
    backoff_error        TEXT NOT NULL DEFAULT ''
);

INSERT INTO grant_state (id) VALUES (1);

-- auth_attempts holds authorization attempts. Only the pending one keeps its
-- PKCE verifier; the state itself is stored only as a SHA-256 hash, which is
-- enough to look a callback up and to recognise replays and old attempts.
CREATE TABLE auth_attempts (
    state_hash   TEXT PRIMARY KEY,
    verifier     TEXT,
    redirect_uri TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'consumed', 'superseded', 'expired')),
    closed_ms    INTEGER
);

-- At most one pending attempt (R1).
CREATE UNIQUE INDEX auth_attempts_one_pending ON auth_attempts (status) WHERE status = 'pending';

-- client_secret holds a client secret typed on the setup page, if any.
CREATE TABLE client_secret (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    secret   TEXT NOT NULL,
    saved_ms INTEGER NOT NULL
);
