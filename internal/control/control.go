// Package control is the daemon's local control channel: a Unix socket in
// the state directory through which `tibbersync setup` (and `doctor`) hand
// work to the running daemon instead of opening secrets/ themselves.
//
// The daemon, as the service user, owns the PKCE verifier, the code exchange
// and tokens.db; a client only ever sees the authorize URL, sends the URL the
// browser was redirected to, and gets the resulting auth state back.
//
// Access control is two-fold:
//   - the file system: the socket is 0660 (owner and group of the daemon) in
//     the 0750 state directory, so only root, the service user and members
//     of its group can connect at all; everyone else gets EACCES, which the
//     client turns into a message naming the group to join;
//   - SO_PEERCRED and SO_PEERGROUPS: the daemon checks every peer's uid and
//     groups and refuses one that is neither root, nor itself, nor a member
//     of the socket's group. Under
//     systemd's PrivateUsers= unmapped peers appear as the overflow uid
//     (nobody); those already passed the file-system check and are accepted.
//
// The protocol is one JSON request and one JSON response per connection.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/tibbersync/tibbersync/internal/model"
)

// SocketName is the control socket's file name inside the state directory.
const SocketName = "control.sock"

// SocketPath is the control socket of the state directory dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketName) }

// Operations.
const (
	OpStart    = "start"    // begin an attempt: returns the authorize URL
	OpComplete = "complete" // finish it with the pasted redirect URL
	OpStatus   = "status"   // the current auth state (and that a daemon runs)
	OpWait     = "wait"     // block until the auth state is ok (browser flow), or the timeout
)

// Error codes in a response.
const (
	CodeBadRequest    = "bad_request"
	CodeNotConfigured = "not_configured" // client id or secret missing in the daemon
	CodeConfig        = "config"         // Tibber rejected the client configuration
	CodeAuth          = "auth"           // the attempt failed (state, code, denied, ...)
	CodeForbidden     = "forbidden"      // SO_PEERCRED refused the peer
	CodeTimeout       = "timeout"
)

// Request is what a client sends.
type Request struct {
	Op string `json:"op"`
	// Redirect is the URL the browser was sent to (OpComplete).
	Redirect string `json:"redirect,omitempty"`
	// After is the generation OpStart returned: OpWait waits for a later
	// one, and OpComplete reports success when a later one exists (the
	// browser reached the daemon's /callback before the paste).
	After *int `json:"after,omitempty"`
	// TimeoutSeconds bounds OpWait.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// Response is what the daemon answers.
type Response struct {
	OK           bool   `json:"ok"`
	Error        string `json:"error,omitempty"`
	Code         string `json:"code,omitempty"`
	AuthorizeURL string `json:"authorize_url,omitempty"`
	RedirectURL  string `json:"redirect_url,omitempty"`
	// SetupURL is the daemon's own setup page (for the browser flow).
	SetupURL string            `json:"setup_url,omitempty"`
	Status   *model.AuthStatus `json:"status,omitempty"`
	// Generation counts the daemon's authorizations (OpStart, for OpWait).
	Generation int `json:"generation,omitempty"`
	// PID and UID identify the daemon (doctor prints them).
	PID int `json:"pid,omitempty"`
	UID int `json:"uid"`
}

// Flow is the daemon's authorization flow (*auth.Flow).
type Flow interface {
	Start(ctx context.Context) (string, error)
	Complete(ctx context.Context, redirected *url.URL) (model.AuthStatus, error)
}

// Error is a failed request, as the client sees it.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ErrNoDaemon means nothing listens on the socket: no daemon runs on this
// state directory (or it is not reachable as a file).
var ErrNoDaemon = errors.New("no daemon is running on this state directory")

// ErrPermission means the socket exists but this user may not connect.
var ErrPermission = errors.New("permission denied on the daemon's control socket")

// maxSunPath is what fits in sockaddr_un.sun_path with its NUL.
const maxSunPath = 107

// sockAddr returns a name for the socket at path that fits sun_path: a long
// path (a deep test directory) is reached through /proc/self/fd of its
// opened directory. done releases that directory after bind or connect.
func sockAddr(path string) (addr string, done func(), err error) {
	if len(path) <= maxSunPath {
		return path, func() {}, nil
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
