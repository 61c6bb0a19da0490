-- 0005_compact_history.sql: history in an integer-keyed layout, and row
-- counts kept as the store writes.
--
-- device_history repeated the device id (~80 characters), the metric name
-- and the resolution on every value, plus three bookkeeping times: about
-- 166 bytes per value. Now a series (device, resolution, metric) is named
-- once in history_series, and each value is keyed by its series number and
-- its period start in seconds. The time a value was first stored is the
-- time of its write (history_writes, one row per transaction that stored
-- new values), and corrections go to history_revisions, written only when
-- Tibber changes a value. device_history is a view with the old columns.
--
-- The old table is renamed to device_history_legacy here; the store moves
-- its rows into the new tables in bounded batches (one transaction each,
-- resumable after a kill) right after this migration, and drops it when it
-- is empty (see internal/store/convert.go).

DROP VIEW history_hourly;
DROP VIEW history_daily;
ALTER TABLE device_history RENAME TO device_history_legacy;

CREATE TABLE history_series (
    id         INTEGER PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices (id),
    resolution TEXT NOT NULL CHECK (resolution IN ('quarterHour', 'hour', 'day', 'month')),
    metric     TEXT NOT NULL,
    UNIQUE (device_id, resolution, metric)
);

CREATE TABLE history_writes (
    id         INTEGER PRIMARY KEY,
    written_at INTEGER NOT NULL
);

-- period_s and the series number keep the key short: seconds, not
-- milliseconds (history periods start on whole seconds).
CREATE TABLE history_values (
    series_id    INTEGER NOT NULL REFERENCES history_series (id),
    period_s     INTEGER NOT NULL,
    utc_offset_s INTEGER NOT NULL,
    value        REAL NOT NULL,
    write_id     INTEGER NOT NULL,
    PRIMARY KEY (series_id, period_s)
) WITHOUT ROWID;

CREATE TABLE history_revisions (
    series_id      INTEGER NOT NULL REFERENCES history_series (id),
    period_s       INTEGER NOT NULL,
    revisions      INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    previous_value REAL,
    PRIMARY KEY (series_id, period_s)
) WITHOUT ROWID;

-- Row counts and run totals, kept up to date by triggers in the same
-- transaction as the write, so that status pages and /metrics read them
-- instead of counting. The store adds the row-count triggers of every
-- table when it opens data.db (tables of later migrations included).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER sync_runs_rows_written_insert AFTER INSERT ON sync_runs WHEN new.rows_written <> 0
BEGIN
    INSERT INTO counters (name, value) VALUES ('rows_written:' || new.job, new.rows_written)
    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value;
END;

CREATE TRIGGER sync_runs_rows_written_update AFTER UPDATE OF job, rows_written ON sync_runs
WHEN new.job IS NOT old.job OR new.rows_written IS NOT old.rows_written
BEGIN
    INSERT INTO counters (name, value) VALUES ('rows_written:' || old.job, -old.rows_written)
    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value;
    INSERT INTO counters (name, value) VALUES ('rows_written:' || new.job, new.rows_written)
    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value;
END;

CREATE TRIGGER sync_runs_rows_written_delete AFTER DELETE ON sync_runs WHEN old.rows_written <> 0
BEGIN
    INSERT INTO counters (name, value) VALUES ('rows_written:' || old.job, -old.rows_written)
    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value;
END;

INSERT INTO counters (name, value)
SELECT 'rows_written:' || job, sum(rows_written) FROM sync_runs GROUP BY job;

CREATE VIEW device_history AS
SELECT
    s.device_id,
    s.resolution,
    v.period_s * 1000 AS period_start,
    v.utc_offset_s,
    s.metric,
    v.value,
    w.written_at AS inserted_at,
    coalesce(r.updated_at, w.written_at) AS updated_at,
    coalesce(r.revisions, 0) AS revisions
FROM history_values AS v
JOIN history_series AS s ON s.id = v.series_id
JOIN history_writes AS w ON w.id = v.write_id
LEFT JOIN history_revisions AS r ON r.series_id = v.series_id AND r.period_s = v.period_s;

-- Local time is period_start shifted by the offset Tibber reported for that
-- period, so DST days have 23 or 25 rows per metric. The views read the
-- tables directly (not device_history), so a filter on device, metric or
-- time uses their keys; home_name lists the homes that list the device now.
CREATE VIEW history_hourly AS
SELECT
    s.device_id,
    d.name AS device_name,
    n.home_name,
    s.metric,
    date(v.period_s + v.utc_offset_s, 'unixepoch') AS local_date,
    CAST(strftime('%H', v.period_s + v.utc_offset_s, 'unixepoch') AS INTEGER) AS local_hour,
    strftime('%Y-%m-%dT%H:%M:%S', v.period_s + v.utc_offset_s, 'unixepoch')
        || CASE WHEN v.utc_offset_s < 0 THEN '-' ELSE '+' END
        || printf('%02d:%02d', abs(v.utc_offset_s) / 3600, abs(v.utc_offset_s) % 3600 / 60) AS local_start,
    strftime('%Y-%m-%dT%H:%M:%fZ', v.period_s, 'unixepoch') AS period_start,
    v.utc_offset_s,
    v.value
FROM history_values AS v
JOIN history_series AS s ON s.id = v.series_id
LEFT JOIN devices AS d ON d.id = s.device_id
LEFT JOIN (
    SELECT hd.device_id, group_concat(coalesce(nullif(hm.name, ''), hm.id), ', ') AS home_name
    FROM home_devices AS hd JOIN homes AS hm ON hm.id = hd.home_id
    WHERE hd.removed_at IS NULL AND hm.removed_at IS NULL
    GROUP BY hd.device_id
) AS n ON n.device_id = s.device_id
WHERE s.resolution = 'hour';

CREATE VIEW history_daily AS
SELECT
    s.device_id,
    d.name AS device_name,
    n.home_name,
    s.metric,
    date(dv.period_s + dv.utc_offset_s, 'unixepoch') AS local_date,
    dv.value,
    coalesce((SELECT count(*) FROM history_values AS h
      WHERE h.series_id = (SELECT hs.id FROM history_series AS hs
                            WHERE hs.device_id = s.device_id AND hs.resolution = 'hour' AND hs.metric = s.metric)
        AND h.period_s >= dv.period_s - 3600
        AND h.period_s < dv.period_s + 93600
        AND date(h.period_s + h.utc_offset_s, 'unixepoch')
          = date(dv.period_s + dv.utc_offset_s, 'unixepoch')), 0) AS hours,
    strftime('%Y-%m-%dT%H:%M:%fZ', dv.period_s, 'unixepoch') AS period_start,
    dv.utc_offset_s
FROM history_values AS dv
JOIN history_series AS s ON s.id = dv.series_id
LEFT JOIN devices AS d ON d.id = s.device_id
LEFT JOIN (
    SELECT hd.device_id, group_concat(coalesce(nullif(hm.name, ''), hm.id), ', ') AS home_name
    FROM home_devices AS hd JOIN homes AS hm ON hm.id = hd.home_id
    WHERE hd.removed_at IS NULL AND hm.removed_at IS NULL
    GROUP BY hd.device_id
) AS n ON n.device_id = s.device_id
WHERE s.resolution = 'day';
