package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// capValue is one reading of a capability; both num and text nil means "no
// reading" (the API sent null, or left the capability out).
type capValue struct {
	num  *float64
	text *string
	unit string
}

func (v capValue) missing() bool { return v.num == nil && v.text == nil }

func (v capValue) equal(o capValue) bool {
	return eqPtr(v.num, o.num) && eqPtr(v.text, o.text) && v.unit == o.unit
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// capState mirrors one capability_state row.
type capState struct {
	recorded bool // a capability_values row exists (value_id not NULL)
	value    capValue
	missing  bool // the newest recorded row is a "missing" row
	pending  bool // missing_since is set: missing for one cycle, not recorded yet
}

// detailStmts are the statements saveDetails runs once per device.
type detailStmts struct {
	device, loadState, insValue, putState, setPending, clearPending, lastHash, insSnapshot *sql.Stmt
}

func prepareDetailStmts(ctx context.Context, tx *tx) (*detailStmts, func(), error) {
	var s detailStmts
	var all []*sql.Stmt
	closeAll := func() {
		for _, st := range all {
			_ = st.Close()
		}
	}
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.device, upsertDetailSQL},
		{&s.loadState, `SELECT
    capability_id,
    value_id,
    value_num,
    value_text,
    unit,
    missing,
    missing_since
FROM capability_state
WHERE device_id = ?1`},
		{&s.insValue, `INSERT INTO capability_values (device_id, capability_id, observed_at, value_num, value_text, unit, missing)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`},
		{&s.putState, `INSERT INTO capability_state (device_id, capability_id, value_id, observed_at, value_num, value_text, unit, missing, missing_since)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)
ON CONFLICT (device_id, capability_id) DO UPDATE SET
    value_id = excluded.value_id,
    observed_at = excluded.observed_at,
    value_num = excluded.value_num,
    value_text = excluded.value_text,
    unit = excluded.unit,
    missing = excluded.missing,
    missing_since = NULL`},
		{&s.setPending, `INSERT INTO capability_state (device_id, capability_id, missing_since)
VALUES (?1, ?2, ?3)
ON CONFLICT (device_id, capability_id) DO UPDATE SET missing_since = excluded.missing_since`},
		{&s.clearPending, `UPDATE capability_state SET missing_since = NULL WHERE device_id = ?1 AND capability_id = ?2`},
		{&s.lastHash, `SELECT hash FROM device_snapshots WHERE device_id = ?1 ORDER BY observed_at DESC, id DESC LIMIT 1`},
		{&s.insSnapshot, `INSERT INTO device_snapshots (device_id, observed_at, payload, hash) VALUES (?1, ?2, ?3, ?4)`},
	} {
		st, err := tx.PrepareContext(ctx, p.sql)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		all = append(all, st)
		*p.dst = st
	}
	return &s, closeAll, nil
}

// saveDetails stores the state of each detailed device: identity and
// category, one capability_values row per capability whose value changed,
// and a device_snapshots row when the device's state changed.
//
// A capability that is null or absent for one cycle is not a change (Tibber
// blanks periodic values around period boundaries): the first missing cycle
// only sets capability_state.missing_since; a second consecutive one records
// a missing row; a value that comes back unchanged after one missing cycle
// records nothing.
//
// The snapshot hash covers the effective capability state (after that
// grace rule) and the attributes, not status.lastSeen: a device that only
// reports "still here" updates devices.last_seen and adds no snapshot.
func saveDetails(ctx context.Context, tx *tx, obs time.Time, details []model.Device) error {
	if len(details) == 0 {
		return nil
	}
	st, closeAll, err := prepareDetailStmts(ctx, tx)
	if err != nil {
		return err
	}
	defer closeAll()
	for _, d := range details {
		if d.ID == "" {
			continue
		}
		if err := saveDetail(ctx, st, obs, d); err != nil {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
		if err := saveTibberDetails(ctx, tx, d); err != nil {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
	}
	return nil
}

func saveDetail(ctx context.Context, st *detailStmts, obs time.Time, d model.Device) error {
	if _, err := st.device.ExecContext(ctx, deviceArgs(d, classify(d), obs)...); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	state, err := loadCapState(ctx, st, d.ID)
	if err != nil {
		return err
	}
	// Nil capabilities mean the caller has no state for this device (an
	// identity-only entry), not that every capability went missing.
	if d.Capabilities != nil {
		if err := diffCapabilities(ctx, st, obs, d, state); err != nil {
			return err
		}
	}

	if d.Capabilities == nil && d.Attributes == nil && len(d.Raw) == 0 {
		return nil
	}
	canon := canonicalState(d, state)
	sum := sha256.Sum256(canon)
	hash := hex.EncodeToString(sum[:])
	var last string
	switch err := st.lastHash.QueryRowContext(ctx, d.ID).Scan(&last); {
	case err == sql.ErrNoRows:
	case err != nil:
		return fmt.Errorf("last snapshot: %w", err)
	}
	if last == hash {
		return nil
	}
	payload := string(d.Raw)
	if len(bytes.TrimSpace(d.Raw)) == 0 || !json.Valid(d.Raw) {
		payload = string(canon)
	}
	if _, err := st.insSnapshot.ExecContext(ctx, d.ID, obs.UnixMilli(), payload, hash); err != nil {
		return fmt.Errorf("insert snapshot: %w", err)
	}
	return nil
}

// classify derives the category from the capability ids of a detail; when
// that says nothing, the caller's category (if any) stands.
func classify(d model.Device) model.Category {
	if len(d.Capabilities) > 0 {
		ids := make([]string, 0, len(d.Capabilities))
		for _, c := range d.Capabilities {
			ids = append(ids, c.ID)
		}
		if c := model.CategoryOf(ids); c != model.CategoryUnknown {
			return c
		}
	}
	if d.Category == "" {
		return model.CategoryUnknown
	}
	return d.Category
}

func loadCapState(ctx context.Context, st *detailStmts, deviceID string) (map[string]*capState, error) {
	rows, err := st.loadState.QueryContext(ctx, deviceID)
	if err != nil {
		return nil, fmt.Errorf("load capability state: %w", err)
	}
	defer func() { _ = rows.Close() }()
	state := map[string]*capState{}
	for rows.Next() {
		var (
			id           string
			valueID      sql.NullInt64
			num          sql.NullFloat64
			text         sql.NullString
			unit         string
			missing      bool
			missingSince sql.NullInt64
		)
		if err := rows.Scan(&id, &valueID, &num, &text, &unit, &missing, &missingSince); err != nil {
			return nil, fmt.Errorf("load capability state: %w", err)
		}
		s := &capState{recorded: valueID.Valid, missing: missing, pending: missingSince.Valid}
		s.value.unit = unit
		if num.Valid {
			s.value.num = &num.Float64
		}
		if text.Valid {
			s.value.text = &text.String
		}
		state[id] = s
	}
	return state, rows.Err()
}

func diffCapabilities(ctx context.Context, st *detailStmts, obs time.Time, d model.Device, state map[string]*capState) error {
	current := map[string]capValue{}
	for _, c := range d.Capabilities {
		if c.ID == "" {
			continue
		}
		if _, dup := current[c.ID]; dup {
			continue // first one wins, as a JSON decoder of an object would not help here
		}
		current[c.ID] = capValue{num: c.Num, text: c.Text, unit: c.Unit}
	}
	ids := make([]string, 0, len(current)+len(state))
	for id := range current {
		ids = append(ids, id)
	}
	for id := range state {
		if _, ok := current[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)

	for _, id := range ids {
		cur, present := current[id]
		s := state[id]
		if s == nil {
			s = &capState{}
			state[id] = s
		}
		if present && !cur.missing() {
			if s.recorded && !s.missing && s.value.equal(cur) {
				if s.pending {
					// Back after one blank cycle, unchanged: not a change.
					if _, err := st.clearPending.ExecContext(ctx, d.ID, id); err != nil {
						return fmt.Errorf("capability %q: clear pending: %w", id, err)
					}
					s.pending = false
				}
				continue
			}
			if err := recordValue(ctx, st, obs, d.ID, id, cur, false); err != nil {
				return err
			}
			*s = capState{recorded: true, value: cur}
			continue
		}
		// No reading this cycle.
		switch {
		case s.recorded && s.missing:
			// Already recorded as missing; nothing new.
		case !s.pending:
			if _, err := st.setPending.ExecContext(ctx, d.ID, id, obs.UnixMilli()); err != nil {
				return fmt.Errorf("capability %q: mark pending: %w", id, err)
			}
			s.pending = true
		default:
			// Second consecutive cycle without a reading: record it.
			unit := s.value.unit
			if present && cur.unit != "" {
				unit = cur.unit
			}
			if err := recordValue(ctx, st, obs, d.ID, id, capValue{unit: unit}, true); err != nil {
				return err
			}
			*s = capState{recorded: true, missing: true, value: capValue{unit: unit}}
		}
	}
	return nil
}

func recordValue(ctx context.Context, st *detailStmts, obs time.Time, deviceID, capID string, v capValue, missing bool) error {
	var num, text any
	if v.num != nil {
		num = *v.num
	}
	if v.text != nil {
		text = *v.text
	}
	res, err := st.insValue.ExecContext(ctx, deviceID, capID, obs.UnixMilli(), num, text, v.unit, missing)
	if err != nil {
		return fmt.Errorf("capability %q: insert value: %w", capID, err)
	}
	valueID, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("capability %q: value id: %w", capID, err)
	}
	if _, err := st.putState.ExecContext(ctx, deviceID, capID, valueID, obs.UnixMilli(), num, text, v.unit, missing); err != nil {
		return fmt.Errorf("capability %q: update state: %w", capID, err)
	}
	return nil
}

// canonCap and canonState are the hashed form of a device's state.
type canonCap struct {
	ID      string   `json:"id"`
	Num     *float64 `json:"num,omitempty"`
	Text    *string  `json:"text,omitempty"`
	Unit    string   `json:"unit,omitempty"`
	Missing bool     `json:"missing,omitempty"`
}

type canonState struct {
	Capabilities []canonCap        `json:"capabilities"`
	Attributes   []json.RawMessage `json:"attributes"`
}

// canonicalState renders the effective state as deterministic JSON:
// capabilities sorted by id with the value in force (a one-cycle blank keeps
// the previous value), attributes re-encoded with sorted keys and sorted.
func canonicalState(d model.Device, state map[string]*capState) []byte {
	cs := canonState{Capabilities: []canonCap{}, Attributes: []json.RawMessage{}}
	for id, s := range state {
		if !s.recorded {
			continue
		}
		c := canonCap{ID: id, Unit: s.value.unit, Missing: s.missing}
		if !s.missing {
			c.Num, c.Text = s.value.num, s.value.text
			if c.Num != nil && *c.Num == 0 {
				// -0 and 0 are the same reading, but JSON spells them
				// differently, and SQLite hands a stored -0 back as 0: the
				// canonical form must not see a change there.
				zero := 0.0
				c.Num = &zero
			}
		}
		cs.Capabilities = append(cs.Capabilities, c)
	}
	sort.Slice(cs.Capabilities, func(i, j int) bool { return cs.Capabilities[i].ID < cs.Capabilities[j].ID })
	attrs := make([]string, 0, len(d.Attributes))
	for _, a := range d.Attributes {
		attrs = append(attrs, canonicalJSON(a))
	}
	sort.Strings(attrs)
	for _, a := range attrs {
		cs.Attributes = append(cs.Attributes, json.RawMessage(a))
	}
	b, err := json.Marshal(cs)
	if err != nil {
		// Only an invalid RawMessage can fail, and canonicalJSON quotes those.
		panic(fmt.Sprintf("store: marshal canonical state: %v", err))
	}
	return b
}

// canonicalJSON re-encodes v with sorted object keys and exact numbers; text
// that is not JSON is encoded as a JSON string of itself.
func canonicalJSON(v json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err == nil && !dec.More() {
		if b, err := json.Marshal(x); err == nil {
			return string(b)
		}
	}
	b, _ := json.Marshal(string(v)) // a string always marshals
	return string(b)
}
