package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// SimServer is a simulator served over HTTP on a loopback port.
type SimServer struct {
	Sim *simulator.Simulator
	// URL is the base URL, "http://127.0.0.1:<port>".
	URL string
	srv *http.Server
}

// StartSim serves a new simulator with opts on 127.0.0.1 (a free port).
func StartSim(opts simulator.Options) (*SimServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	sim := simulator.New(opts)
	s := &SimServer{Sim: sim, URL: "http://" + ln.Addr().String()}
	sim.SetBaseURL(s.URL)
	s.srv = &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	// Serve returns when Close shuts the server down; should the listener
	// break earlier, the clients fail with connection errors instead.
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server and releases requests held by faults.
func (s *SimServer) Close() {
	s.Sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}

// FrozenNow returns a clock for the simulator that stands still at a time
// in the middle of a 15-minute state step (7½ minutes past a quarter hour,
// 7½ to 22½ minutes before now), so that device state does not change
// between polls and no hour-boundary gap is open.
func FrozenNow(now time.Time) func() time.Time {
	t := now.UTC().Truncate(15 * time.Minute).Add(-15*time.Minute + 7*time.Minute + 30*time.Second)
	return func() time.Time { return t }
}
