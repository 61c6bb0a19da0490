-- Token expiry metadata (never the tokens) mirrored from tokens.db, so that
-- `tibbersync status` can estimate expiry while reading only data.db.
ALTER TABLE auth_status ADD COLUMN access_expires_at INTEGER;
ALTER TABLE auth_status ADD COLUMN refresh_issued_at INTEGER;
