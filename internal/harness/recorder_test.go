package harness

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// request is one request the simulator received, stamped with the fake clock.
type request struct {
	Seq        int // arrival order; the log is kept in completion order
	At         time.Time
	Method     string
	URI        string // path and query: retries of one call repeat it exactly
	Status     int    // 0: the connection was dropped without an answer
	RetryAfter string // the Retry-After header of the answer, if any
	// Job is the job that made the request (jobHeader): two jobs may ask
	// for the same URI at the same time, and only one job's requests can
	// be retries of each other.
	Job string
}

// recorder wraps the simulator and logs every request with the fake
// clock's time, its status and its Retry-After, so that retry spacing can be
// checked against the rules (R23, R25).
type recorder struct {
	next http.Handler
	clk  clock.Clock

	mu   sync.Mutex
	seq  int
	reqs []request
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	rc.mu.Lock()
	rc.seq++
	req := request{Seq: rc.seq, At: rc.clk.Now(), Method: r.Method, URI: r.URL.RequestURI(), Job: r.Header.Get(jobHeader)}
	rc.mu.Unlock()
	defer func() {
		req.Status = sw.status
		if sw.hijacked {
			req.Status = 0
		}
		req.RetryAfter = sw.retryAfter
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, req)
		rc.mu.Unlock()
	}()
	rc.next.ServeHTTP(sw, r)
}

// requests returns the log in arrival order.
func (rc *recorder) requests() []request {
	rc.mu.Lock()
	out := append([]request(nil), rc.reqs...)
	rc.mu.Unlock()
	slices.SortFunc(out, func(a, b request) int { return a.Seq - b.Seq })
	return out
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = nil
}

// jobHeader carries the name of the job a request belongs to, from the
// harness's transport to the recorder.
const jobHeader = "X-Harness-Job"

type jobKey struct{}

// jobRunner wraps the daemon's runner: it puts the job's name in the
// context, where jobTransport finds it.
type jobRunner struct{ next jobs.Runner }

// Run implements jobs.Runner.
func (j jobRunner) Run(ctx context.Context, job string) (model.Run, error) {
	return j.next.Run(context.WithValue(ctx, jobKey{}, job), job)
}

// jobTransport labels each request with the job in its context.
type jobTransport struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t jobTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if job, ok := req.Context().Value(jobKey{}).(string); ok {
		req = req.Clone(req.Context())
		req.Header.Set(jobHeader, job)
	}
	return t.base.RoundTrip(req)
}

// statusWriter remembers the status and Retry-After it passes on. It keeps
// the Hijacker (drop faults) and Flusher (trickle faults) of the original.
type statusWriter struct {
	http.ResponseWriter
	status     int
	retryAfter string
	hijacked   bool
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		s.retryAfter = s.Header().Get("Retry-After")
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("recorder: response writer cannot hijack")
	}
	s.hijacked = true
	return h.Hijack()
}
