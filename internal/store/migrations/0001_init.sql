-- 0001_init.sql: the first data.db schema.
--
-- Every time is INTEGER Unix milliseconds UTC. Views show ISO-8601 text
-- (strftime('%Y-%m-%dT%H:%M:%fZ', ms / 1000.0, 'unixepoch')). Rows are never
-- deleted: what disappears from the API gets removed_at. docs/schema.md
-- documents every table, column and view; a test keeps the two in step.
-- Plain (non-STRICT) tables and no JSON functions in the schema, so that
-- older sqlite3 shells can read the file.

CREATE TABLE homes (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    removed_at    INTEGER
);

CREATE TABLE devices (
    id                    TEXT PRIMARY KEY NOT NULL,
    external_id           TEXT NOT NULL DEFAULT '',
    name                  TEXT NOT NULL DEFAULT '',
    brand                 TEXT NOT NULL DEFAULT '',
    model                 TEXT NOT NULL DEFAULT '',
    category              TEXT NOT NULL DEFAULT 'unknown',
    supported_resolutions TEXT NOT NULL DEFAULT '[]',
    max_retention_days    INTEGER NOT NULL DEFAULT 0,
    last_seen             INTEGER,
    first_seen_at         INTEGER NOT NULL,
    last_seen_at          INTEGER NOT NULL,
    removed_at            INTEGER
);

-- A vehicle is listed under every home of the account: one devices row,
-- one link per home.
CREATE TABLE home_devices (
    home_id       TEXT NOT NULL REFERENCES homes (id),
    device_id     TEXT NOT NULL REFERENCES devices (id),
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    removed_at    INTEGER,
    PRIMARY KEY (home_id, device_id)
) WITHOUT ROWID;

CREATE INDEX home_devices_by_device ON home_devices (device_id);

CREATE TABLE device_snapshots (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    observed_at INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    hash        TEXT NOT NULL
);

CREATE INDEX device_snapshots_by_device ON device_snapshots (device_id, observed_at);

CREATE TABLE capability_values (
    id            INTEGER PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices (id),
    capability_id TEXT NOT NULL,
    observed_at   INTEGER NOT NULL,
    value_num     REAL,
    value_text    TEXT,
    unit          TEXT NOT NULL DEFAULT '',
    missing       INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1))
);

CREATE INDEX capability_values_by_device ON capability_values (device_id, capability_id, observed_at);

-- The current value of every capability (a copy of its newest
-- capability_values row) plus the one-cycle grace marker for values that
-- went missing. Lets a poll cycle compare without scanning history.
CREATE TABLE capability_state (
    device_id     TEXT NOT NULL REFERENCES devices (id),
    capability_id TEXT NOT NULL,
    value_id      INTEGER REFERENCES capability_values (id),
    observed_at   INTEGER,
    value_num     REAL,
    value_text    TEXT,
    unit          TEXT NOT NULL DEFAULT '',
    missing       INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1)),
    missing_since INTEGER,
    PRIMARY KEY (device_id, capability_id)
) WITHOUT ROWID;

CREATE TABLE device_history (
    device_id    TEXT NOT NULL REFERENCES devices (id),
    resolution   TEXT NOT NULL CHECK (resolution IN ('quarterHour', 'hour', 'day', 'month')),
    period_start INTEGER NOT NULL,
    utc_offset_s INTEGER NOT NULL,
    metric       TEXT NOT NULL,
    value        REAL NOT NULL,
    inserted_at  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    revisions    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, resolution, period_start, metric)
) WITHOUT ROWID;

CREATE TABLE history_checkpoints (
    device_id     TEXT NOT NULL REFERENCES devices (id),
    resolution    TEXT NOT NULL,
    home_id       TEXT NOT NULL DEFAULT '',
    next_url      TEXT NOT NULL DEFAULT '',
    last_period   INTEGER,
    backfill_done INTEGER NOT NULL DEFAULT 0 CHECK (backfill_done IN (0, 1)),
    updated_at    INTEGER NOT NULL,
    last_error    TEXT,
    PRIMARY KEY (device_id, resolution)
) WITHOUT ROWID;

CREATE TABLE sync_runs (
    id           INTEGER PRIMARY KEY,
    job          TEXT NOT NULL CHECK (job IN ('homes', 'devices', 'history')),
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'partial', 'failed', 'skipped')),
    error        TEXT,
    requests     INTEGER NOT NULL DEFAULT 0,
    rows_written INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX sync_runs_by_job ON sync_runs (job, started_at);

CREATE TABLE job_state (
    job                  TEXT PRIMARY KEY NOT NULL,
    next_run_at          INTEGER,
    last_run_at          INTEGER,
    last_success_at      INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    breaker_until        INTEGER,
    last_error           TEXT,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE auth_status (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    state          TEXT NOT NULL CHECK (state IN ('ok', 'setup_required', 'reauth_required', 'config_error')),
    reason         TEXT NOT NULL DEFAULT '',
    since          INTEGER NOT NULL,
    granted_scopes TEXT NOT NULL DEFAULT '',
    email          TEXT NOT NULL DEFAULT '',
    updated_at     INTEGER NOT NULL
);

CREATE TABLE category_access (
    category   TEXT PRIMARY KEY NOT NULL,
    scope      TEXT NOT NULL,
    granted    INTEGER NOT NULL CHECK (granted IN (0, 1)),
    updated_at INTEGER NOT NULL
);

-- Views for analysts. Times are ISO-8601 UTC text.

CREATE VIEW latest_capabilities AS
SELECT
    s.device_id,
    s.capability_id,
    s.value_num,
    s.value_text,
    s.unit,
    strftime('%Y-%m-%dT%H:%M:%fZ', s.observed_at / 1000.0, 'unixepoch') AS observed_at,
    s.missing
FROM capability_state AS s
WHERE s.value_id IS NOT NULL;

CREATE VIEW device_overview AS
SELECT
    d.id AS device_id,
    d.name,
    d.category,
    d.brand,
    d.model,
    d.external_id,
    (SELECT group_concat(coalesce(nullif(h.name, ''), h.id), ', ')
       FROM home_devices AS hd
       JOIN homes AS h ON h.id = hd.home_id
      WHERE hd.device_id = d.id AND hd.removed_at IS NULL AND h.removed_at IS NULL) AS homes,
    d.removed_at IS NOT NULL AS removed,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.removed_at / 1000.0, 'unixepoch') AS removed_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.last_seen / 1000.0, 'unixepoch') AS last_seen,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.first_seen_at / 1000.0, 'unixepoch') AS first_seen_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.last_seen_at / 1000.0, 'unixepoch') AS last_seen_at,
    (SELECT count(*) FROM device_snapshots AS s WHERE s.device_id = d.id) AS snapshot_count,
    (SELECT c.value_num FROM capability_state AS c
      WHERE c.device_id = d.id AND c.capability_id = 'storage.stateOfCharge'
        AND c.value_id IS NOT NULL AND c.missing = 0) AS state_of_charge
FROM devices AS d;

CREATE VIEW sync_health AS
WITH jobs (job) AS (
    SELECT 'homes' UNION SELECT 'devices' UNION SELECT 'history' UNION SELECT job FROM job_state
)
SELECT
    j.job,
    strftime('%Y-%m-%dT%H:%M:%fZ', r.started_at / 1000.0, 'unixepoch') AS last_run_started_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', r.finished_at / 1000.0, 'unixepoch') AS last_run_finished_at,
    r.status AS last_status,
    r.error AS last_error,
    strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(js.last_success_at,
        (SELECT max(o.finished_at) FROM sync_runs AS o WHERE o.job = j.job AND o.status = 'ok')) / 1000.0,
        'unixepoch') AS last_success_at,
    (SELECT count(*) FROM sync_runs AS x
      WHERE x.job = j.job
        AND x.started_at >= (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000) AS runs_24h,
    (SELECT count(*) FROM sync_runs AS x
      WHERE x.job = j.job AND x.status = 'failed'
        AND x.started_at >= (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000) AS failures_24h,
    coalesce(js.consecutive_failures, 0) AS consecutive_failures,
    strftime('%Y-%m-%dT%H:%M:%fZ', js.next_run_at / 1000.0, 'unixepoch') AS next_run_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', js.breaker_until / 1000.0, 'unixepoch') AS breaker_until
FROM jobs AS j
LEFT JOIN job_state AS js ON js.job = j.job
LEFT JOIN sync_runs AS r ON r.id = (
    SELECT y.id FROM sync_runs AS y WHERE y.job = j.job ORDER BY y.started_at DESC, y.id DESC LIMIT 1
);

-- Local time is period_start shifted by the offset Tibber reported for that
-- period, so DST days have 23 or 25 rows per metric.
CREATE VIEW history_hourly AS
SELECT
    h.device_id,
    h.metric,
    date(h.period_start / 1000 + h.utc_offset_s, 'unixepoch') AS local_date,
    CAST(strftime('%H', h.period_start / 1000 + h.utc_offset_s, 'unixepoch') AS INTEGER) AS local_hour,
    strftime('%Y-%m-%dT%H:%M:%S', h.period_start / 1000 + h.utc_offset_s, 'unixepoch')
        || CASE WHEN h.utc_offset_s < 0 THEN '-' ELSE '+' END
        || printf('%02d:%02d', abs(h.utc_offset_s) / 3600, abs(h.utc_offset_s) % 3600 / 60) AS local_start,
    strftime('%Y-%m-%dT%H:%M:%fZ', h.period_start / 1000.0, 'unixepoch') AS period_start,
    h.utc_offset_s,
    h.value
FROM device_history AS h
WHERE h.resolution = 'hour';

CREATE VIEW history_daily AS
SELECT
    d.device_id,
    d.metric,
    date(d.period_start / 1000 + d.utc_offset_s, 'unixepoch') AS local_date,
    d.value,
    (SELECT count(*) FROM device_history AS h
      WHERE h.device_id = d.device_id
        AND h.resolution = 'hour'
        AND h.period_start >= d.period_start - 3600000
        AND h.period_start < d.period_start + 93600000
        AND h.metric = d.metric
        AND date(h.period_start / 1000 + h.utc_offset_s, 'unixepoch')
          = date(d.period_start / 1000 + d.utc_offset_s, 'unixepoch')) AS hours,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.period_start / 1000.0, 'unixepoch') AS period_start,
    d.utc_offset_s
FROM device_history AS d
WHERE d.resolution = 'day';
