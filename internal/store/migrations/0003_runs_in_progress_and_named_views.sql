-- 0003: runs in progress are visible, and the analysts' views name things.
--
-- sync_runs gets the statuses 'running' (the row is written when a run
-- starts and updated as it commits) and 'interrupted' (cut short by
-- shutdown, or left 'running' by a process that died), a progress column
-- (JSON written by tibbersync, e.g. history streams done/total) and the pid
-- of the process running it, so a crashed process's row can be closed at
-- the next start. SQLite cannot change a CHECK constraint in place: the
-- table is rebuilt, ids kept.

DROP VIEW sync_health;

CREATE TABLE sync_runs_new (
    id           INTEGER PRIMARY KEY,
    job          TEXT NOT NULL CHECK (job IN ('homes', 'devices', 'history')),
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    status       TEXT NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed', 'skipped', 'interrupted')),
    error        TEXT,
    requests     INTEGER NOT NULL DEFAULT 0,
    rows_written INTEGER NOT NULL DEFAULT 0,
    progress     TEXT,
    pid          INTEGER
);

INSERT INTO sync_runs_new (id, job, started_at, finished_at, status, error, requests, rows_written)
SELECT id, job, started_at, finished_at, status, error, requests, rows_written FROM sync_runs;

DROP TABLE sync_runs;
ALTER TABLE sync_runs_new RENAME TO sync_runs;
CREATE INDEX sync_runs_by_job ON sync_runs (job, started_at);

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
        (SELECT max(o.finished_at) FROM sync_runs AS o WHERE o.job = j.job AND o.status IN ('ok', 'partial'))) / 1000.0,
        'unixepoch') AS last_success_at,
    (SELECT count(*) FROM sync_runs AS x
      WHERE x.job = j.job
        AND x.started_at >= (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000) AS runs_24h,
    (SELECT count(*) FROM sync_runs AS x
      WHERE x.job = j.job AND x.status = 'failed'
        AND x.started_at >= (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000) AS failures_24h,
    coalesce(js.consecutive_failures, 0) AS consecutive_failures,
    strftime('%Y-%m-%dT%H:%M:%fZ', js.next_run_at / 1000.0, 'unixepoch') AS next_run_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', js.breaker_until / 1000.0, 'unixepoch') AS breaker_until,
    r.status = 'running' AS running,
    r.progress AS progress
FROM jobs AS j
LEFT JOIN job_state AS js ON js.job = j.job
LEFT JOIN sync_runs AS r ON r.id = (
    SELECT y.id FROM sync_runs AS y WHERE y.job = j.job ORDER BY y.started_at DESC, y.id DESC LIMIT 1
);

-- Names next to ids. A vehicle is listed under every home of the account:
-- home_name then lists them all, comma-separated.
DROP VIEW latest_capabilities;
CREATE VIEW latest_capabilities AS
SELECT
    s.device_id,
    d.name AS device_name,
    (SELECT group_concat(coalesce(nullif(h.name, ''), h.id), ', ')
       FROM home_devices AS hd
       JOIN homes AS h ON h.id = hd.home_id
      WHERE hd.device_id = s.device_id AND hd.removed_at IS NULL AND h.removed_at IS NULL) AS home_name,
    s.capability_id,
    s.value_num,
    s.value_text,
    s.unit,
    strftime('%Y-%m-%dT%H:%M:%fZ', s.observed_at / 1000.0, 'unixepoch') AS observed_at,
    s.missing
FROM capability_state AS s
LEFT JOIN devices AS d ON d.id = s.device_id
WHERE s.value_id IS NOT NULL;

-- last_seen (Tibber's) and last_seen_at (ours) read alike: renamed to
-- tibber_last_seen_at and last_synced_at.
DROP VIEW device_overview;
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
    strftime('%Y-%m-%dT%H:%M:%fZ', d.last_seen / 1000.0, 'unixepoch') AS tibber_last_seen_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.first_seen_at / 1000.0, 'unixepoch') AS first_seen_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', d.last_seen_at / 1000.0, 'unixepoch') AS last_synced_at,
    (SELECT count(*) FROM device_snapshots AS s WHERE s.device_id = d.id) AS snapshot_count,
    (SELECT c.value_num FROM capability_state AS c
      WHERE c.device_id = d.id AND c.capability_id = 'storage.stateOfCharge'
        AND c.value_id IS NOT NULL AND c.missing = 0) AS state_of_charge
FROM devices AS d;

DROP VIEW history_hourly;
CREATE VIEW history_hourly AS
SELECT
    h.device_id,
    d.name AS device_name,
    n.home_name,
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
LEFT JOIN devices AS d ON d.id = h.device_id
LEFT JOIN (
    SELECT hd.device_id, group_concat(coalesce(nullif(hm.name, ''), hm.id), ', ') AS home_name
    FROM home_devices AS hd JOIN homes AS hm ON hm.id = hd.home_id
    WHERE hd.removed_at IS NULL AND hm.removed_at IS NULL
    GROUP BY hd.device_id
) AS n ON n.device_id = h.device_id
WHERE h.resolution = 'hour';

DROP VIEW history_daily;
CREATE VIEW history_daily AS
SELECT
    dh.device_id,
    d.name AS device_name,
    n.home_name,
    dh.metric,
    date(dh.period_start / 1000 + dh.utc_offset_s, 'unixepoch') AS local_date,
    dh.value,
    (SELECT count(*) FROM device_history AS h
      WHERE h.device_id = dh.device_id
        AND h.resolution = 'hour'
        AND h.period_start >= dh.period_start - 3600000
        AND h.period_start < dh.period_start + 93600000
        AND h.metric = dh.metric
        AND date(h.period_start / 1000 + h.utc_offset_s, 'unixepoch')
          = date(dh.period_start / 1000 + dh.utc_offset_s, 'unixepoch')) AS hours,
    strftime('%Y-%m-%dT%H:%M:%fZ', dh.period_start / 1000.0, 'unixepoch') AS period_start,
    dh.utc_offset_s
FROM device_history AS dh
LEFT JOIN devices AS d ON d.id = dh.device_id
LEFT JOIN (
    SELECT hd.device_id, group_concat(coalesce(nullif(hm.name, ''), hm.id), ', ') AS home_name
    FROM home_devices AS hd JOIN homes AS hm ON hm.id = hd.home_id
    WHERE hd.removed_at IS NULL AND hm.removed_at IS NULL
    GROUP BY hd.device_id
) AS n ON n.device_id = dh.device_id
WHERE dh.resolution = 'day';
