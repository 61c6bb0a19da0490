// Package model holds the plain types that the other packages share: homes,
// devices, capabilities, history points, tokens and the auth state. It has no
// behaviour beyond small helpers and imports nothing from the project except
// the leaf package secret (the redacting Secret type).
package model

import (
	"encoding/json"
	"time"

	"github.com/tibbersync/tibbersync/internal/secret"
)

// Home is one home of the Tibber account as the Data API lists it.
type Home struct {
	ID   string
	Name string
}

// Device is one device as the Data API describes it. List responses fill
// only the identity fields; detail responses fill everything.
type Device struct {
	ID         string
	ExternalID string
	Name       string
	Brand      string
	Model      string
	// Category is derived from capability ids (see CategoryOf); the API has no
	// category field.
	Category Category
	// SupportedResolutions is supportedHistory.resolutions; empty means no history.
	SupportedResolutions []string
	// MaxRetentionDays is supportedHistory.maxRetentionDays (0 when absent).
	MaxRetentionDays int
	// LastSeen is status.lastSeen, zero when absent.
	LastSeen time.Time
	// Attributes are kept as raw JSON objects ({id, value?, ...}).
	Attributes []json.RawMessage
	// Capabilities is the current state. Nil for list items.
	Capabilities []Capability
	// Raw is the detail payload exactly as received (for device_snapshots.payload).
	Raw json.RawMessage
}

// Capability is one current value of a device.
type Capability struct {
	ID          string
	Description string
	// Exactly one of Num and Text is set for a present value; both nil means
	// the API sent null or nothing ("no reading", never zero). Booleans are
	// stored as Num 0/1 with Text "true"/"false".
	Num  *float64
	Text *string
	Unit string
	// AvailableValues lists the allowed values of an enum capability.
	AvailableValues []string
}

// Missing reports whether the capability carried no reading.
func (c Capability) Missing() bool { return c.Num == nil && c.Text == nil }

// HistoryPage is one page of device history as served by the Data API.
type HistoryPage struct {
	EffectiveStart time.Time
	EffectiveEnd   time.Time
	PageSize       int
	Items          []HistoryItem
	// Next is the absolute, host-checked URL of the next page ("" on the last page).
	Next string
	// Prev is the absolute, host-checked URL of the previous page ("" if none).
	Prev string
	// Problems lists items that were skipped (bad time, non-numeric value).
	Problems []string
}

// HistoryItem is one period of history with its data flattened to dotted
// metric names (energyFlow.gridImport → value).
type HistoryItem struct {
	// Time is the period start as Tibber sent it, carrying the home's offset.
	Time time.Time
	// UTCOffsetSeconds is the offset Tibber reported on Time.
	UTCOffsetSeconds int
	Metrics          map[string]float64
}

// Resolutions Tibber knows.
const (
	ResolutionQuarterHour = "quarterHour"
	ResolutionHour        = "hour"
	ResolutionDay         = "day"
	ResolutionMonth       = "month"
)

// ValidResolution reports whether r is one of Tibber's history resolutions.
func ValidResolution(r string) bool {
	switch r {
	case ResolutionQuarterHour, ResolutionHour, ResolutionDay, ResolutionMonth:
		return true
	}
	return false
}

// Token is what the token store keeps for one grant.
type Token struct {
	AccessToken  secret.Secret
	RefreshToken secret.Secret
	TokenType    string
	// Expiry is local receipt time + expires_in.
	Expiry time.Time
	// IssuedAt is the local receipt time of the response that gave AccessToken.
	IssuedAt time.Time
	// RefreshIssuedAt is when the current refresh token was first received
	// (rotation or initial grant); used to estimate its remaining life.
	RefreshIssuedAt time.Time
	// Scopes are the granted scopes from the token response.
	Scopes []string
}

// Lifetime is the access-token lifetime the server granted.
func (t Token) Lifetime() time.Duration { return t.Expiry.Sub(t.IssuedAt) }

// AuthState is the single current authorization state.
type AuthState string

// The auth states, as stored in auth_status.state.
const (
	AuthOK             AuthState = "ok"
	AuthSetupRequired  AuthState = "setup_required"
	AuthReauthRequired AuthState = "reauth_required"
	AuthConfigError    AuthState = "config_error"
)

// Sticky reports whether the state stops all token and API calls until setup runs again.
func (s AuthState) Sticky() bool {
	return s == AuthReauthRequired || s == AuthConfigError || s == AuthSetupRequired
}

// AuthStatus is the auth state with its reason; it never holds a secret.
type AuthStatus struct {
	State         AuthState
	Reason        string
	Since         time.Time
	GrantedScopes []string
	// Email is the account email from userinfo, when known.
	Email string
	// AccessExpiresAt is the current access token's expiry and
	// RefreshIssuedAt when its refresh token was first received; both are
	// metadata (never the tokens), zero when no token is stored. They let
	// `tibbersync status` estimate expiry from data.db alone.
	AccessExpiresAt time.Time
	RefreshIssuedAt time.Time
}
