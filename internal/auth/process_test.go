package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// Environment of the helper process.
const (
	helperEnv      = "TIBBERSYNC_AUTH_TEST_HELPER"
	helperDir      = "TIBBERSYNC_AUTH_TEST_DIR"
	helperTokenURL = "TIBBERSYNC_AUTH_TEST_TOKEN_URL"
	helperStartAt  = "TIBBERSYNC_AUTH_TEST_START_AT"
)

// TestHelperProcess is not a test: it is the body of the child processes
// that the multi-process tests start (the classic re-exec pattern). It opens
// the shared state dir, asks for an access token with the real clock and
// prints a fingerprint of the stored refresh token.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process only")
	}
	code := helperMain()
	os.Exit(code)
}

func helperMain() int {
	ctx := context.Background()
	store, err := tokenstore.Open(ctx, os.Getenv(helperDir), clock.Real{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open store:", err)
		return 2
	}
	defer func() { _ = store.Close() }()
	src, err := auth.NewSource(auth.Options{
		ClientID:     testClientID,
		ClientSecret: logging.NewSecret(testSecret),
		TokenURL:     os.Getenv(helperTokenURL),
		HTTPClient:   &http.Client{Timeout: 10 * time.Second},
		UserAgent:    "tibbersync/test-helper",
		Store:        store,
		Status:       &memRecorder{},
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "new source:", err)
		return 2
	}
	if at, err := strconv.ParseInt(os.Getenv(helperStartAt), 10, 64); err == nil {
		time.Sleep(time.Until(time.Unix(0, at)))
	}
	if _, err := src.AccessToken(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "access token:", err)
		return 1
	}
	g, err := store.Grant(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grant:", err)
		return 2
	}
	fmt.Printf("refresh=%s\n", fingerprint(g.Token.RefreshToken.Reveal()))
	return 0
}

func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// helperCmd prepares a child process on e's state dir and token endpoint.
func helperCmd(ctx context.Context, e *env, extraEnv ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		helperDir+"="+e.dir,
		helperTokenURL+"="+e.fake.tokenURL(),
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// expiredSetup authorizes with the fake clock two hours behind real time, so
// the stored token has expired for the real clock the children use.
func expiredSetup(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.fake.setNow(time.Now)
	e.clk.Set(time.Now().Add(-2 * time.Hour))
	e.setup()
	return e
}

// R6: two processes on one state dir with an expired token make exactly one
// refresh and end with the same refresh token.
func TestTwoProcessesRefreshOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	e := expiredSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	startAt := time.Now().Add(700 * time.Millisecond).UnixNano()
	type child struct {
		cmd            *exec.Cmd
		stdout, stderr *bytes.Buffer
	}
	var children []child
	for range 2 {
		cmd, out, errb := helperCmd(ctx, e, helperStartAt+"="+strconv.FormatInt(startAt, 10))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, child{cmd, out, errb})
	}
	var prints []string
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\nstderr:\n%s", i, err, c.stderr)
		}
		if strings.Contains(c.stderr.String(), canaryPrefix) {
			t.Errorf("child %d leaked a secret into its log:\n%s", i, c.stderr)
		}
		prints = append(prints, strings.TrimSpace(c.stdout.String()))
	}
	s := e.fake.stats()
	if s.refreshPosts != 1 {
		t.Fatalf("refreshes=%d, want exactly 1", s.refreshPosts)
	}
	if s.reuse != 0 || s.revoked {
		t.Fatalf("reuse=%d revoked=%v", s.reuse, s.revoked)
	}
	want := "refresh=" + fingerprint(s.current)
	for i, p := range prints {
		if !strings.HasPrefix(p, "refresh=") || !strings.HasSuffix(p, want) {
			t.Fatalf("child %d ended with %q, want %q (server's current token)", i, p, want)
		}
	}
	if got := e.grant().Token.RefreshToken.Reveal(); got != s.current {
		t.Fatal("stored refresh token is not the server's current one")
	}
}

// R7: the process is SIGKILLed at each crash point of a refresh, then the
// state is recovered in this process.
func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	tests := []struct {
		name      string
		point     string
		grace     time.Duration
		wantCalls int
		wantState model.AuthState
	}{
		{"BeforeRequest", auth.CrashBeforeRequest, 0, 1, model.AuthOK},
		{"AfterResponseNoGrace", auth.CrashAfterResponse, 0, 2, model.AuthReauthRequired},
		{"AfterResponseGrace5s", auth.CrashAfterResponse, 5 * time.Second, 2, model.AuthOK},
		{"AfterCommit", auth.CrashAfterCommit, 0, 1, model.AuthOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expiredSetup(t)
			e.fake.mu.Lock()
			e.fake.grace = tt.grace
			e.fake.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd, _, stderr := helperCmd(ctx, e, auth.CrashpointEnv+"="+tt.point)
			err := cmd.Run()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("child was not SIGKILLed at %s: %v\nstderr:\n%s", tt.point, err, stderr)
			}
			if strings.Contains(stderr.String(), canaryPrefix) {
				t.Errorf("child leaked a secret:\n%s", stderr)
			}

			// Restart in this process.
			e.clk.Set(time.Now())
			src := e.source()
			if err := src.Init(bg); err != nil {
				t.Fatal(err)
			}
			_, err = src.AccessToken(bg)
			noCanary(t, err)
			g := e.grant()
			s := e.fake.stats()
			if g.State != tt.wantState {
				t.Fatalf("state=%s (%s), want %s; err=%v", g.State, g.Reason, tt.wantState, err)
			}
			if s.refreshPosts != tt.wantCalls {
				t.Fatalf("token calls=%d, want %d", s.refreshPosts, tt.wantCalls)
			}
			if tt.wantState == model.AuthOK {
				if err != nil {
					t.Fatal(err)
				}
				if g.Token.RefreshToken.Reveal() != s.current || g.InFlight.Active() {
					t.Fatal("stored token is not the server's current one, or the marker is left")
				}
				if s.reuse != 0 {
					t.Fatalf("reuse events=%d", s.reuse)
				}
			} else if !strings.Contains(g.Reason, "lost") {
				t.Fatalf("reason=%q, want it to say the response was lost", g.Reason)
			}
			// Nothing more happens on later calls in a sticky state.
			for range 5 {
				e.clk.Advance(time.Hour)
				_, _ = src.AccessToken(bg)
			}
			if tt.wantState != model.AuthOK && e.fake.stats().refreshPosts != tt.wantCalls {
				t.Fatal("token calls after reauth_required")
			}
		})
	}
}
