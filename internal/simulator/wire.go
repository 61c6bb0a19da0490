package simulator

import "encoding/json"

// The simulator's own wire types. They are deliberately not shared with
// internal/tibber (style.md: a shared struct would hide the same decoding bug
// on both sides).

// HomeItem is one entry of GET /v1/homes.
type HomeItem struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// HomesResponse is the body of GET /v1/homes.
type HomesResponse struct {
	Homes []HomeItem `json:"homes"`
}

// DeviceInfo is the info member of a device.
type DeviceInfo struct {
	Name  string `json:"name"`
	Brand string `json:"brand"`
	Model string `json:"model,omitempty"`
}

// SupportedHistory is the supportedHistory member of a device.
// MaxRetentionDays is omitted for devices without history.
type SupportedHistory struct {
	Resolutions      []string `json:"resolutions"`
	MaxRetentionDays int      `json:"maxRetentionDays,omitempty"`
}

// DeviceListItem is one entry of GET /v1/homes/{homeId}/devices: identity only.
type DeviceListItem struct {
	ID               string           `json:"id"`
	ExternalID       string           `json:"externalId"`
	Info             DeviceInfo       `json:"info"`
	SupportedHistory SupportedHistory `json:"supportedHistory"`
}

// DevicesResponse is the body of GET /v1/homes/{homeId}/devices.
type DevicesResponse struct {
	Devices []DeviceListItem `json:"devices"`
}

// DeviceStatus is the status member of a device detail.
type DeviceStatus struct {
	// LastSeen is RFC 3339 in UTC with milliseconds.
	LastSeen string `json:"lastSeen"`
}

// DeviceDetail is the body of GET /v1/homes/{homeId}/devices/{deviceId}.
type DeviceDetail struct {
	ID               string           `json:"id"`
	ExternalID       string           `json:"externalId"`
	Info             DeviceInfo       `json:"info"`
	SupportedHistory SupportedHistory `json:"supportedHistory"`
	Status           DeviceStatus     `json:"status"`
	Attributes       []Attribute      `json:"attributes"`
	Capabilities     []Capability     `json:"capabilities"`
}

// Capability is one current value of a device. Value is a float64, an int,
// a string, a bool (only with Options.BoolValues) or nil (JSON null).
type Capability struct {
	Type            string   `json:"$type,omitempty"`
	ID              string   `json:"id"`
	Description     string   `json:"description"`
	Value           any      `json:"value"`
	Unit            *string  `json:"unit,omitempty"`
	AvailableValues []string `json:"availableValues,omitempty"`
}

// Capability returns the capability with the given id and whether it is present.
func (d DeviceDetail) Capability(id string) (Capability, bool) {
	for _, c := range d.Capabilities {
		if c.ID == id {
			return c, true
		}
	}
	return Capability{}, false
}

// Attribute is one seldom-changing property of a device: an id with a value,
// or with type-specific members (connectivity).
type Attribute struct {
	Type        string `json:"$type,omitempty"`
	ID          string `json:"id"`
	Value       any    `json:"value,omitempty"`
	Description string `json:"description,omitempty"`
	Unit        string `json:"unit,omitempty"`
	Status      string `json:"status,omitempty"`
	SSID        string `json:"ssid,omitempty"`
	BSSID       string `json:"bssid,omitempty"`
	IPAddress   string `json:"ipAddress,omitempty"`
}

// HistoryQuery is the query member of a history page.
type HistoryQuery struct {
	EffectiveStart string `json:"effectiveStart"`
	EffectiveEnd   string `json:"effectiveEnd"`
	PageSize       int    `json:"pageSize"`
}

// HistoryItem is one period of a history page. Data is nested; flattening it
// to dotted names gives the metrics (energyFlow.gridImport).
type HistoryItem struct {
	Time string         `json:"time"`
	Data map[string]any `json:"data"`
}

// HistoryResponse is one page of GET .../history. Next and Prev hold a JSON
// string, JSON null (Options.NullLink) or nothing (member omitted).
type HistoryResponse struct {
	Query HistoryQuery    `json:"query"`
	Items []HistoryItem   `json:"items"`
	Next  json.RawMessage `json:"next,omitempty"`
	Prev  json.RawMessage `json:"prev,omitempty"`
}

// Problem is an RFC 7807 problem+json body as ASP.NET writes it.
type Problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail,omitempty"`
	TraceID string `json:"traceId"`
}

// TokenResponse is a successful /connect/token body. ExpiresIn is an int or,
// with ExpiresInAsString, a string.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    any    `json:"expires_in"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"` // empty only with Options.OmitScope
	IDToken      string `json:"id_token,omitempty"`
}

// OAuthError is an RFC 6749 §5.2 error body.
type OAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// UserInfo is the /connect/userinfo body.
type UserInfo struct {
	Sub   string `json:"sub"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}
