package simulator

import (
	"log/slog"
	"time"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultClientID     = "tibbersync-sim"
	DefaultClientSecret = "sim-secret"
	DefaultRedirectURI  = "http://localhost:8765/callback"
	DefaultAccessTTL    = time.Hour
	DefaultRefreshTTL   = 30 * 24 * time.Hour
	DefaultCodeTTL      = 5 * time.Minute
	DefaultBoundaryGap  = time.Minute
	DefaultHistoryDays  = 800
	// DefaultPageSize is the history page size of a device whose fixture
	// sets none, when Options.PageSize is 0.
	DefaultPageSize = 500
	// DefaultDevicesPerHome is used for generated accounts when
	// Options.DevicesPerHome is 0.
	DefaultDevicesPerHome = 6
	// DefaultOversizeBytes is the body size of an "oversize" fault without Bytes.
	DefaultOversizeBytes = 16 << 20
)

// Scope names known to Tibber's authorization server (§2.4).
const (
	ScopeOpenID        = "openid"
	ScopeProfile       = "profile"
	ScopeEmail         = "email"
	ScopeOfflineAccess = "offline_access"
	ScopeUserRead      = "data-api-user-read"
	ScopeHomesRead     = "data-api-homes-read"
	ScopeVehiclesRead  = "data-api-vehicles-read"
	ScopeChargersRead  = "data-api-chargers-read"
	ScopeThermostats   = "data-api-thermostats-read"
	ScopeEnergySystems = "data-api-energy-systems-read"
	ScopeInverters     = "data-api-inverters-read"
	ScopeMetersRead    = "data-api-meters-read"
)

// AllScopes lists every scope the authorization server knows, in the order
// of the registration UI. It is the default of Options.RegisteredScopes.
var AllScopes = []string{
	ScopeOpenID, ScopeProfile, ScopeEmail, ScopeOfflineAccess, ScopeUserRead,
	ScopeHomesRead, ScopeVehiclesRead, ScopeChargersRead, ScopeThermostats,
	ScopeEnergySystems, ScopeInverters, ScopeMetersRead,
}

// Options configures a Simulator. The zero value is a usable configuration:
// New fills in the documented defaults.
type Options struct {
	// Now is the simulator's clock (default time.Now). Token lifetimes,
	// device state and history clamping all use it.
	Now func() time.Time
	// Seed makes state, history, ids, tokens and fault probabilities
	// deterministic.
	Seed int64
	// Homes selects the account: 0 is the fixed fixture account (two homes,
	// see fixtures/account.json); > 0 generates an account with this many
	// homes lazily from the seed.
	Homes int
	// DevicesPerHome is the device count per home of a generated account
	// (default 6; at most 65535).
	DevicesPerHome int

	// ClientID is the registered client id (default "tibbersync-sim").
	ClientID string
	// ClientSecret is the registered client secret (default "sim-secret").
	ClientSecret string
	// RedirectURIs are the registered redirect URIs, compared byte for byte
	// (default ["http://localhost:8765/callback"]).
	RedirectURIs []string
	// RegisteredScopes are the scopes the client was registered with
	// (default AllScopes). Requested scopes outside this list are dropped
	// silently.
	RegisteredScopes []string

	// AutoConsent makes /connect/authorize redirect at once instead of
	// showing the consent page.
	AutoConsent bool
	// Deny makes the authorize flow redirect with error=access_denied.
	Deny bool

	// DisableRotation turns refresh-token rotation off: a refresh returns the
	// same refresh token (the Home Assistant #168007 behaviour). Rotation is
	// on by default (§11 #1).
	DisableRotation bool
	// OmitRefreshToken leaves refresh_token out of refresh responses. The
	// server then keeps the presented refresh token valid (no rotation), since
	// the client could not learn a new one.
	OmitRefreshToken bool
	// DisableFamilyRevocation stops the reuse of a rotated-out refresh token
	// from revoking the whole grant (§11 #2). Family revocation is on by
	// default.
	DisableFamilyRevocation bool
	// ReuseGrace is a window after a rotation in which the rotated-out token
	// may be presented again (default 0). Within the window the server
	// answers with exactly the response it gave the first time (same access
	// and refresh token), as long as that new refresh token is still the
	// grant's current one; it counts a grace reuse instead of a reuse.
	ReuseGrace time.Duration
	// RefreshExpirySliding makes a refresh token expire RefreshTTL after its
	// last use instead of RefreshTTL after the first grant (absolute, the
	// default).
	RefreshExpirySliding bool
	// AccessTTL is the access-token lifetime (default 1h).
	AccessTTL time.Duration
	// RefreshTTL is the refresh-token lifetime (default 30 days).
	RefreshTTL time.Duration
	// CodeTTL is the authorization-code lifetime (default 5 minutes).
	CodeTTL time.Duration
	// ExpiresInAsString sends expires_in as a JSON string ("3600").
	ExpiresInAsString bool
	// InvalidClientStatus is the status of invalid_client errors (default 400).
	InvalidClientStatus int
	// AcceptBasic accepts HTTP Basic client authentication on the token
	// endpoint; by default Basic gets invalid_client.
	AcceptBasic bool
	// LenientUserAgent only counts missing or malformed User-Agent headers
	// instead of answering 400 (strict is the default, §8.1).
	LenientUserAgent bool

	// HostileNames gives the fixture account names that try to drive the
	// terminal or browser that shows them: every device, home, brand and
	// model name, the user's name and email carry HostileText (an OSC
	// retitle, a clear-screen CSI, a C1 CSI and a bidi override). Ids stay
	// as they are. Ignored for generated accounts (Homes > 0).
	HostileNames bool

	// BareArrayHomes sends /v1/homes as a bare array.
	BareArrayHomes bool
	// EmitType adds "$type" discriminators to capabilities and attributes.
	EmitType bool
	// BoolValues adds a capability with a boolean value to every device.
	BoolValues bool
	// RelativeLinks sends history links as "/v1/..." paths.
	RelativeLinks bool
	// NullLink sends "next": null / "prev": null on the last page instead of
	// leaving the member out.
	NullLink bool
	// ShuffleItems shuffles the items within each history page.
	ShuffleItems bool
	// MisalignedTimes shifts some history item times off the period boundary.
	MisalignedTimes bool
	// Gaps drops some history items entirely.
	Gaps bool
	// NoHistoryEmpty answers history for an unsupported resolution or a
	// device without history with an empty page instead of 400.
	NoHistoryEmpty bool
	// MissingHomesScope403 answers /v1/homes with 403 when the token lacks
	// data-api-homes-read (default: 200 with no homes).
	MissingHomesScope403 bool
	// ForeignHome403 answers 403 for a home that is not the user's (default 404).
	ForeignHome403 bool
	// BoundaryGap is how long energyFlow.<period>.* capabilities are null or
	// missing after a period boundary (default 1m; set NoBoundaryGap for 0).
	BoundaryGap time.Duration
	// NoBoundaryGap makes BoundaryGap zero.
	NoBoundaryGap bool

	// RateLimit is the sustained request rate per client (requests per
	// second) of a token bucket; 0 turns rate limiting off.
	RateLimit float64
	// RateBurst is the bucket size (default: max(1, RateLimit)).
	RateBurst int
	// RetryAfterForm is how 429 responses carry Retry-After: "seconds"
	// (default), "http-date" or "none".
	RetryAfterForm string

	// PageSize, when > 0, is the history page size of every device. When 0,
	// each device uses the page size of its fixture (DefaultPageSize if the
	// fixture sets none).
	PageSize int
	// HistoryDays is how much history exists before the time New was called
	// (default 800 days). Retention (maxRetentionDays) may clamp further.
	HistoryDays int

	// Logger receives one line per request and per notable event. Secrets
	// never appear in it. Nil means no logging.
	Logger *slog.Logger
}

// withDefaults returns o with zero values replaced by defaults.
func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = DefaultClientSecret
	}
	if len(o.RedirectURIs) == 0 {
		o.RedirectURIs = []string{DefaultRedirectURI}
	}
	if len(o.RegisteredScopes) == 0 {
		o.RegisteredScopes = append([]string(nil), AllScopes...)
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = DefaultAccessTTL
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = DefaultRefreshTTL
	}
	if o.CodeTTL <= 0 {
		o.CodeTTL = DefaultCodeTTL
	}
	if o.InvalidClientStatus == 0 {
		o.InvalidClientStatus = 400
	}
	if o.NoBoundaryGap {
		o.BoundaryGap = 0
	} else if o.BoundaryGap <= 0 {
		o.BoundaryGap = DefaultBoundaryGap
	}
	if o.RateLimit > 0 && o.RateBurst <= 0 {
		o.RateBurst = max(1, int(o.RateLimit))
	}
	switch o.RetryAfterForm {
	case "seconds", "http-date", "none":
	default:
		o.RetryAfterForm = "seconds"
	}
	if o.HistoryDays <= 0 {
		o.HistoryDays = DefaultHistoryDays
	}
	if o.Homes > 0 && o.DevicesPerHome <= 0 {
		o.DevicesPerHome = DefaultDevicesPerHome
	}
	if o.DevicesPerHome > 0xffff {
		o.DevicesPerHome = 0xffff
	}
	if o.Homes > 0xffffff {
		o.Homes = 0xffffff
	}
	return o
}
