package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// SeenRefresh is how stale homes.last_seen_at, devices.last_seen_at and
// home_devices.last_seen_at may get before an otherwise unchanged row is
// rewritten. Rewriting them on every poll would make every cycle touch every
// inventory row (R19); with it, an unchanged cycle writes only its sync_runs
// row, and "last seen" is exact to within an hour.
const SeenRefresh = time.Hour

// SaveInventory writes a homes/devices batch and its run in one BEGIN
// IMMEDIATE transaction (R14) and returns the run as stored: its ID set, and
// the number of data rows this transaction inserted or updated (the run row
// itself not counted) added to run.RowsWritten, which counts what the run's
// SaveHomeInventory transactions wrote before. Re-running the same batch
// writes only a new run row.
func (db *DB) SaveInventory(ctx context.Context, run model.Run, b model.InventoryBatch) (model.Run, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return run, fmt.Errorf("save inventory: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	before, err := totalChanges(ctx, tx)
	if err != nil {
		return run, fmt.Errorf("save inventory: %w", err)
	}
	obs := b.ObservedAt.UTC()
	if b.ObservedAt.IsZero() {
		obs = tx.now
	}
	if err := saveHomes(ctx, tx, obs, b.Homes); err != nil {
		return run, fmt.Errorf("save inventory: homes: %w", err)
	}
	if err := saveHomeDevices(ctx, tx, obs, b.HomeDevices); err != nil {
		return run, fmt.Errorf("save inventory: devices: %w", err)
	}
	if b.Homes != nil || len(b.HomeDevices) > 0 {
		if err := markOrphanDevices(ctx, tx, obs); err != nil {
			return run, fmt.Errorf("save inventory: removed devices: %w", err)
		}
	}
	if err := saveDetails(ctx, tx, obs, b.Details); err != nil {
		return run, fmt.Errorf("save inventory: details: %w", err)
	}
	if err := saveCategoryAccess(ctx, tx, b.GrantedScopes); err != nil {
		return run, fmt.Errorf("save inventory: category access: %w", err)
	}
	if len(b.GrantedScopes) == 0 {
		// Granted scopes unknown (the token response named none): a device
		// of a category proves its scope granted; nothing proves one missing.
		if err := saveSeenCategories(ctx, tx, seenCategories(b)); err != nil {
			return run, fmt.Errorf("save inventory: category access: %w", err)
		}
	}
	if err := saveRefusedCategories(ctx, tx, b.ScopeRefused, seenCategories(b)); err != nil {
		return run, fmt.Errorf("save inventory: category access: %w", err)
	}
	after, err := totalChanges(ctx, tx)
	if err != nil {
		return run, fmt.Errorf("save inventory: %w", err)
	}
	run.RowsWritten += int(after - before - tx.uncounted)
	// The run's duration includes this save.
	if now := db.clock.Now(); now.After(run.FinishedAt) {
		run.FinishedAt = now
	}
	id, err := insertRun(ctx, tx, run)
	if err != nil {
		return run, fmt.Errorf("save inventory: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return run, fmt.Errorf("save inventory: commit: %w", err)
	}
	run.ID = id
	return run, nil
}

// SaveHomeInventory writes one home's part of a homes or devices cycle in
// one BEGIN IMMEDIATE transaction (R14): b.Homes (that home, upserted;
// no other home is marked removed), b.HomeDevices (normally one home's
// complete device list: links refreshed, devices it no longer lists
// unlinked) and b.Details (devices fetched through that home: capability
// values, state and snapshots, change-only). It writes no run row and
// leaves the complete homes list, removed devices and category access to
// the run's closing SaveInventory. It returns the data rows written.
func (db *DB) SaveHomeInventory(ctx context.Context, b model.InventoryBatch) (int, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("save home inventory: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	before, err := totalChanges(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("save home inventory: %w", err)
	}
	obs := b.ObservedAt.UTC()
	if b.ObservedAt.IsZero() {
		obs = tx.now
	}
	if _, err := upsertHomes(ctx, tx, obs, b.Homes); err != nil {
		return 0, fmt.Errorf("save home inventory: homes: %w", err)
	}
	if err := saveHomeDevices(ctx, tx, obs, b.HomeDevices); err != nil {
		return 0, fmt.Errorf("save home inventory: devices: %w", err)
	}
	if err := saveDetails(ctx, tx, obs, b.Details); err != nil {
		return 0, fmt.Errorf("save home inventory: details: %w", err)
	}
	after, err := totalChanges(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("save home inventory: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("save home inventory: commit: %w", err)
	}
	return int(after - before - tx.uncounted), nil
}

// totalChanges is SQLite's count of rows the connection has inserted,
// updated or deleted so far, less the changes the row-count triggers made
// to counters (see counters.go); the difference over a transaction is
// exactly the rows it wrote (no-op upserts do not count).
func totalChanges(ctx context.Context, tx *tx) (int64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT total_changes() - (`+triggerChangesSQL+`)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count changes: %w", err)
	}
	return n, nil
}

func saveHomes(ctx context.Context, tx *tx, obs time.Time, homes []model.Home) error {
	if homes == nil {
		return nil
	}
	ids, err := upsertHomes(ctx, tx, obs, homes)
	if err != nil {
		return err
	}
	// The list is complete: a home missing from it is gone (kept, marked).
	if _, err := tx.ExecContext(ctx, `UPDATE homes SET removed_at = ?1
WHERE removed_at IS NULL AND id NOT IN (SELECT value FROM json_each(?2))`, obs.UnixMilli(), jsonList(ids)); err != nil {
		return fmt.Errorf("mark removed homes: %w", err)
	}
	// A removed home no longer lists anything.
	if _, err := tx.ExecContext(ctx, `UPDATE home_devices SET removed_at = ?1
WHERE removed_at IS NULL AND home_id IN (SELECT id FROM homes WHERE removed_at IS NOT NULL)`, obs.UnixMilli()); err != nil {
		return fmt.Errorf("mark links of removed homes: %w", err)
	}
	return nil
}

// upsertHomes inserts or refreshes homes (change-only) and returns their ids.
func upsertHomes(ctx context.Context, tx *tx, obs time.Time, homes []model.Home) ([]string, error) {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO homes (id, name, first_seen_at, last_seen_at)
VALUES (?1, ?2, ?3, ?3)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    last_seen_at = max(homes.last_seen_at, excluded.last_seen_at),
    removed_at = NULL
WHERE homes.name IS NOT excluded.name
   OR homes.removed_at IS NOT NULL
   OR excluded.last_seen_at - homes.last_seen_at >= ?4`)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stmt.Close() }()
	ids := make([]string, 0, len(homes))
	for _, h := range homes {
		if h.ID == "" {
			continue
		}
		if _, err := stmt.ExecContext(ctx, h.ID, h.Name, obs.UnixMilli(), SeenRefresh.Milliseconds()); err != nil {
			return nil, fmt.Errorf("upsert home %q: %w", h.ID, err)
		}
		ids = append(ids, h.ID)
	}
	return ids, nil
}

// upsertDeviceSQL inserts or refreshes a device from a home's device list,
// which owns the identity fields. The category only ever moves away from
// "unknown" (a list item has no capabilities to classify by). A listed
// device is not removed.
const upsertDeviceSQL = `INSERT INTO devices (id, external_id, name, brand, model, category,
    supported_resolutions, max_retention_days, last_seen, first_seen_at, last_seen_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
ON CONFLICT (id) DO UPDATE SET
    external_id = excluded.external_id,
    name = excluded.name,
    brand = excluded.brand,
    model = excluded.model,
    category = CASE WHEN excluded.category <> 'unknown' THEN excluded.category ELSE devices.category END,
    supported_resolutions = excluded.supported_resolutions,
    max_retention_days = excluded.max_retention_days,
    last_seen = coalesce(excluded.last_seen, devices.last_seen),
    last_seen_at = max(devices.last_seen_at, excluded.last_seen_at),
    removed_at = NULL
WHERE devices.external_id IS NOT excluded.external_id
   OR devices.name IS NOT excluded.name
   OR devices.brand IS NOT excluded.brand
   OR devices.model IS NOT excluded.model
   OR (excluded.category <> 'unknown' AND devices.category IS NOT excluded.category)
   OR devices.supported_resolutions IS NOT excluded.supported_resolutions
   OR devices.max_retention_days IS NOT excluded.max_retention_days
   OR (excluded.last_seen IS NOT NULL AND devices.last_seen IS NOT excluded.last_seen)
   OR devices.removed_at IS NOT NULL
   OR excluded.last_seen_at - devices.last_seen_at >= ?11`

// upsertDetailSQL records what only a detail knows (category from the
// capabilities, status.lastSeen) and inserts a device no list has named
// yet. It leaves identity fields and removed_at of a known device to the
// lists, so a detail that disagrees with its list item cannot make the row
// flip on every cycle.
const upsertDetailSQL = `INSERT INTO devices (id, external_id, name, brand, model, category,
    supported_resolutions, max_retention_days, last_seen, first_seen_at, last_seen_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
ON CONFLICT (id) DO UPDATE SET
    category = CASE WHEN excluded.category <> 'unknown' THEN excluded.category ELSE devices.category END,
    last_seen = coalesce(excluded.last_seen, devices.last_seen)
WHERE (excluded.category <> 'unknown' AND devices.category IS NOT excluded.category)
   OR (excluded.last_seen IS NOT NULL AND devices.last_seen IS NOT excluded.last_seen)`

// deviceArgs are the ten parameters ?1..?10 of upsertDeviceSQL and
// upsertDetailSQL.
func deviceArgs(d model.Device, category model.Category, obs time.Time) []any {
	if category == "" {
		category = model.CategoryUnknown
	}
	res := d.SupportedResolutions
	if res == nil {
		res = []string{}
	}
	resJSON, _ := json.Marshal(res) // []string always marshals
	return []any{d.ID, d.ExternalID, d.Name, d.Brand, d.Model, string(category),
		string(resJSON), d.MaxRetentionDays, ms(d.LastSeen), obs.UnixMilli()}
}

func saveHomeDevices(ctx context.Context, tx *tx, obs time.Time, homeDevices map[string][]model.Device) error {
	if len(homeDevices) == 0 {
		return nil
	}
	devStmt, err := tx.PrepareContext(ctx, upsertDeviceSQL)
	if err != nil {
		return err
	}
	defer func() { _ = devStmt.Close() }()
	linkStmt, err := tx.PrepareContext(ctx, `INSERT INTO home_devices (home_id, device_id, first_seen_at, last_seen_at)
VALUES (?1, ?2, ?3, ?3)
ON CONFLICT (home_id, device_id) DO UPDATE SET
    last_seen_at = max(home_devices.last_seen_at, excluded.last_seen_at),
    removed_at = NULL
WHERE home_devices.removed_at IS NOT NULL
   OR excluded.last_seen_at - home_devices.last_seen_at >= ?4`)
	if err != nil {
		return err
	}
	defer func() { _ = linkStmt.Close() }()

	for _, homeID := range sortedKeys(homeDevices) {
		if homeID == "" {
			continue
		}
		// The devices job may run before the homes job ever did: make sure
		// the home exists, without reviving one the homes list dropped.
		if _, err := tx.ExecContext(ctx, `INSERT INTO homes (id, first_seen_at, last_seen_at)
VALUES (?1, ?2, ?2) ON CONFLICT (id) DO NOTHING`, homeID, obs.UnixMilli()); err != nil {
			return fmt.Errorf("ensure home %q: %w", homeID, err)
		}
		ids := []string{}
		for _, d := range homeDevices[homeID] {
			if d.ID == "" {
				continue
			}
			// List items carry no capabilities, so no category: keep the
			// stored one unless the caller classified the device.
			if _, err := devStmt.ExecContext(ctx, append(deviceArgs(d, d.Category, obs), SeenRefresh.Milliseconds())...); err != nil {
				return fmt.Errorf("upsert device %q: %w", d.ID, err)
			}
			if _, err := linkStmt.ExecContext(ctx, homeID, d.ID, obs.UnixMilli(), SeenRefresh.Milliseconds()); err != nil {
				return fmt.Errorf("upsert link %q/%q: %w", homeID, d.ID, err)
			}
			ids = append(ids, d.ID)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE home_devices SET removed_at = ?1
WHERE home_id = ?2 AND removed_at IS NULL AND device_id NOT IN (SELECT value FROM json_each(?3))`,
			obs.UnixMilli(), homeID, jsonList(ids)); err != nil {
			return fmt.Errorf("mark removed links of home %q: %w", homeID, err)
		}
	}
	return nil
}

// markOrphanDevices marks removed every device that no active home lists
// any more. A vehicle listed under two homes stays until both drop it.
func markOrphanDevices(ctx context.Context, tx *tx, obs time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE devices SET removed_at = ?1
WHERE removed_at IS NULL AND NOT EXISTS (
    SELECT 1 FROM home_devices AS hd JOIN homes AS h ON h.id = hd.home_id
     WHERE hd.device_id = devices.id AND hd.removed_at IS NULL AND h.removed_at IS NULL)`, obs.UnixMilli())
	return err
}

// saveCategoryAccess records, per known category, whether the token's
// scopes let the account see it. Nil or empty scopes mean "not known" and
// change nothing.
func saveCategoryAccess(ctx context.Context, tx *tx, scopes []string) error {
	if len(scopes) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, s := range scopes {
		have[s] = true
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO category_access (category, scope, granted, updated_at)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (category) DO UPDATE SET scope = excluded.scope, granted = excluded.granted, updated_at = excluded.updated_at
WHERE category_access.granted IS NOT excluded.granted OR category_access.scope IS NOT excluded.scope`)
	if err != nil {
		return err
	}
	defer func() { _ = stmt.Close() }()
	for _, c := range model.AllCategories {
		scope := model.CategoryScopes[c]
		g := 0
		if have[scope] {
			g = 1
		}
		if _, err := stmt.ExecContext(ctx, string(c), scope, g, tx.now.UnixMilli()); err != nil {
			return fmt.Errorf("upsert %s: %w", c, err)
		}
	}
	return nil
}

// seenCategories are the categories of b's details and b.SeenCategories
// (details a run saved per home), each once.
func seenCategories(b model.InventoryBatch) []model.Category {
	var out []model.Category
	for _, d := range b.Details {
		if !slices.Contains(out, d.Category) {
			out = append(out, d.Category)
		}
	}
	for _, c := range b.SeenCategories {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// saveSeenCategories marks cats as granted.
func saveSeenCategories(ctx context.Context, tx *tx, cats []model.Category) error {
	for _, c := range cats {
		scope, ok := model.CategoryScopes[c]
		if !ok || scope == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO category_access (category, scope, granted, updated_at)
VALUES (?1, ?2, 1, ?3)
ON CONFLICT (category) DO UPDATE SET scope = excluded.scope, granted = 1, updated_at = excluded.updated_at
WHERE category_access.granted IS NOT 1`, string(c), scope, tx.now.UnixMilli()); err != nil {
			return fmt.Errorf("upsert %s: %w", c, err)
		}
	}
	return nil
}

// saveRefusedCategories marks as not granted the stored category of each
// device the API refused with 403, unless a detail of that category was
// fetched in the same run (seen): a success proves the scope granted.
func saveRefusedCategories(ctx context.Context, tx *tx, refused []string, seen []model.Category) error {
	if len(refused) == 0 {
		return nil
	}
	proven := map[model.Category]bool{}
	for _, c := range seen {
		proven[c] = true
	}
	access := map[model.Category]bool{}
	for _, id := range refused {
		var c string
		err := tx.QueryRowContext(ctx, `SELECT category FROM devices WHERE id = ?1`, id).Scan(&c)
		if errors.Is(err, sql.ErrNoRows) {
			continue // never stored: its category is not known
		}
		if err != nil {
			return fmt.Errorf("category of device %q: %w", id, err)
		}
		if cat := model.Category(c); !proven[cat] {
			access[cat] = false
		}
	}
	return setCategoryAccess(ctx, tx, access)
}

// setCategoryAccess records, per category with a scope, whether the API
// showed it granted; categories without a scope (unknown) are ignored, and
// an unchanged row is not rewritten.
func setCategoryAccess(ctx context.Context, tx *tx, access map[model.Category]bool) error {
	for _, c := range model.AllCategories {
		g, ok := access[c]
		scope := model.CategoryScopes[c]
		if !ok || scope == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO category_access (category, scope, granted, updated_at)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (category) DO UPDATE SET scope = excluded.scope, granted = excluded.granted, updated_at = excluded.updated_at
WHERE category_access.granted IS NOT excluded.granted OR category_access.scope IS NOT excluded.scope`,
			string(c), scope, boolInt(g), tx.now.UnixMilli()); err != nil {
			return fmt.Errorf("upsert %s: %w", c, err)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RecordCategoryAccess records what API answers showed about category
// scopes outside an inventory batch (the history job): false for a 403 to
// a request that needs the category's scope, true for a success. It never
// touches the auth state or tokens; an unchanged category writes nothing.
func (db *DB) RecordCategoryAccess(ctx context.Context, access map[model.Category]bool) error {
	if len(access) == 0 {
		return nil
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("record category access: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := setCategoryAccess(ctx, tx, access); err != nil {
		return fmt.Errorf("record category access: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record category access: commit: %w", err)
	}
	return nil
}

// ActiveHomeDevices returns, per home not marked removed, its devices that
// are neither removed nor unlinked, with identity fields only. A home with
// no device maps to an empty slice.
func (db *DB) ActiveHomeDevices(ctx context.Context) (map[string][]model.Device, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT
    h.id,
    d.id,
    d.external_id,
    d.name,
    d.brand,
    d.model,
    d.category,
    d.supported_resolutions,
    d.max_retention_days,
    d.last_seen
FROM homes AS h
LEFT JOIN home_devices AS hd ON hd.home_id = h.id AND hd.removed_at IS NULL
LEFT JOIN devices AS d ON d.id = hd.device_id AND d.removed_at IS NULL
WHERE h.removed_at IS NULL
ORDER BY h.id, d.name, d.id`)
	if err != nil {
		return nil, fmt.Errorf("active home devices: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string][]model.Device{}
	for rows.Next() {
		var (
			homeID                                     string
			id, extID, name, brand, mdl, category, res *string
			retention, ls                              *int64
		)
		if err := rows.Scan(&homeID, &id, &extID, &name, &brand, &mdl, &category, &res, &retention, &ls); err != nil {
			return nil, fmt.Errorf("active home devices: scan: %w", err)
		}
		if _, ok := out[homeID]; !ok {
			out[homeID] = []model.Device{}
		}
		if id == nil {
			continue
		}
		d := model.Device{
			ID:         *id,
			ExternalID: deref(extID),
			Name:       deref(name),
			Brand:      deref(brand),
			Model:      deref(mdl),
			Category:   model.Category(deref(category)),
		}
		if res != nil {
			if err := json.Unmarshal([]byte(*res), &d.SupportedResolutions); err != nil {
				return nil, fmt.Errorf("active home devices: device %q resolutions: %w", d.ID, err)
			}
		}
		if retention != nil {
			d.MaxRetentionDays = int(*retention)
		}
		if ls != nil {
			d.LastSeen = time.UnixMilli(*ls).UTC()
		}
		out[homeID] = append(out[homeID], d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("active home devices: %w", err)
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// jsonList encodes ids as a JSON array for json_each(?), which keeps the
// statement text fixed whatever the list length.
func jsonList(ids []string) string {
	if ids == nil {
		ids = []string{}
	}
	b, _ := json.Marshal(ids) // []string always marshals
	return string(b)
}
