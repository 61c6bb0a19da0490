package model

import "errors"

// ErrNotAuthorized means no API call may be made: setup was never done, or
// the state is reauth_required or config_error. Jobs record such a run as
// "skipped" and make no request. Errors from the token source wrap it.
var ErrNotAuthorized = errors.New("not authorized")

// ErrTokenBackoff means the token endpoint failed transiently and the token
// source is waiting before its next attempt. Jobs record the run as failed
// without calling the API.
var ErrTokenBackoff = errors.New("token refresh backing off")

// ErrTokenRefused means the Data API answered 401 to an access token that
// had just been refreshed because of a 401 (consent revoked on Tibber's
// side, a clock problem): refreshing again would only spend refresh tokens.
// Until an API call succeeds, further 401s do not trigger a refresh; jobs
// record the run as failed and back off.
//
//lint:ignore ST1005 Tibber is a name; the text is shown to the user as is
var ErrTokenRefused = errors.New("Tibber refuses a freshly refreshed token")

// ErrSchemaDrift means a Data API response had a shape the client does not
// recognise (a list or page without its member, items without time or
// data); nothing from it was stored. The tibber client's drift errors wrap
// it (tibber.ErrSchemaDrift is this value).
//
//lint:ignore ST1005 Tibber is a name; the text is shown to the user as is
var ErrSchemaDrift = errors.New("Tibber's response format changed")
