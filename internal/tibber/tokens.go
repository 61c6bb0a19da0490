package tibber

import (
	"context"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// Tokens supplies access tokens. *auth.Source implements it.
type Tokens interface {
	// AccessToken returns a valid access token, refreshing it first if needed.
	// Errors wrap model.ErrNotAuthorized or model.ErrTokenBackoff when no
	// call may be made.
	AccessToken(ctx context.Context) (logging.Secret, error)
	// Refresh is called once after the Data API answered 401 to rejected.
	// It forces one refresh unless another caller already replaced rejected,
	// and returns the token to retry with.
	Refresh(ctx context.Context, rejected logging.Secret) (logging.Secret, error)
}
