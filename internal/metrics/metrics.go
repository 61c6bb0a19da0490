// Package metrics holds tibbersync's Prometheus metrics: Data API requests,
// retries and throttling, job runs, rows and bytes written, token expiry
// estimates, the auth state and the size of data.db. Every metric is
// documented in docs/metrics.md; a test keeps the two in step.
//
// Metrics live in their own registry (never the global one), together with
// the Go runtime and process collectors, and are served by Handler.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tibbersync/tibbersync/internal/model"
)

// Namespace prefixes every tibbersync metric name.
const Namespace = "tibbersync"

// StatusTransportError is the status label of a request that got no HTTP
// response at all (connection refused, timeout, reset).
const StatusTransportError = "error"

// Job run statuses as stored in sync_runs.
const (
	runOK      = "ok"
	runPartial = "partial"
	runFailed  = "failed"
)

// Metrics is the set of tibbersync metrics. Its methods are safe for
// concurrent use. A nil *Metrics ignores every observation, so components can
// hold an optional one without nil checks.
type Metrics struct {
	// Registry holds every metric of this set plus the Go runtime and
	// process collectors.
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	retries     *prometheus.CounterVec
	throttled   *prometheus.CounterVec
	drift       *prometheus.CounterVec
	jobRuns     *prometheus.CounterVec
	rowsWritten *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	consecFails *prometheus.GaugeVec
	jobRunning  *prometheus.GaugeVec
	jobProgress *prometheus.GaugeVec

	bytesWritten atomic.Int64

	accessExpiry  *prometheus.GaugeVec // no labels; reset while unknown
	refreshExpiry *prometheus.GaugeVec // no labels; reset while unknown
	reauth        prometheus.Gauge
	authState     *prometheus.GaugeVec
	dbSize        prometheus.Gauge
	walSize       prometheus.Gauge
	tableRows     *prometheus.GaugeVec
	summaryErrors prometheus.Counter
	storageErrs   *prometheus.CounterVec
	storageOK     prometheus.Gauge

	// failMu serialises the read-modify-write of consecutive failures.
	failMu sync.Mutex
	fails  map[string]int
}

// New returns a Metrics with its own registry, which also carries the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		fails:    map[string]int{},
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "http_requests_total",
		Help: "Requests to Tibber (Data API and token endpoint) by endpoint and HTTP status; status \"error\" means no response (transport error).",
	}, []string{"endpoint", "status"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "http_retries_total",
		Help: "Requests to Tibber that were retried, by endpoint.",
	}, []string{"endpoint"})
	m.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "http_throttled_total",
		Help: "Responses with status 429 (Too Many Requests) from Tibber, by endpoint.",
	}, []string{"endpoint"})
	m.drift = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "schema_drift_total",
		Help: "Responses from Tibber whose format was not recognised (a list or page without its member, items without time or data), by endpoint; nothing from them was stored.",
	}, []string{"endpoint"})
	m.jobRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "job_runs_total",
		Help: "Finished job runs by job and status (ok, partial, failed, skipped, interrupted).",
	}, []string{"job", "status"})
	m.rowsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "rows_written_total",
		Help: "Rows written to data.db by job runs since the process started.",
	}, []string{"job"})
	m.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "job_last_success_timestamp_seconds",
		Help: "Unix time of the job's last successful (ok or partial) run.",
	}, []string{"job"})
	m.consecFails = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "job_consecutive_failures",
		Help: "Failed runs of the job since its last successful run.",
	}, []string{"job"})
	m.jobRunning = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "job_running",
		Help: "1 while a run of the job is in progress, else 0.",
	}, []string{"job"})
	m.jobProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "job_progress_ratio",
		Help: "Estimated share (0 to 1) of the running run done; absent when no run is in progress or it cannot be estimated.",
	}, []string{"job"})
	bytesWritten := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: Namespace, Name: "db_bytes_written_total",
		Help: "Bytes the process has written to storage (write_bytes/wchar as reported by the daemon); watch it on SD cards.",
	}, func() float64 { return float64(m.bytesWritten.Load()) })
	m.accessExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "access_token_expiry_seconds",
		Help: "Seconds until the current access token expires (negative once expired); absent while unknown.",
	}, nil)
	m.refreshExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "refresh_token_expiry_seconds",
		Help: "Estimated seconds until the refresh token expires, counted from its last rotation; absent while unknown.",
	}, nil)
	m.reauth = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "reauth_required",
		Help: "1 while no API call can be made until someone runs setup again (state setup_required, reauth_required or config_error), else 0.",
	})
	m.authState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "auth_state",
		Help: "The current auth state, one-hot: 1 for the current state, 0 for the others.",
	}, []string{"state"})
	m.dbSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "db_size_bytes",
		Help: "Size of data.db in bytes.",
	})
	m.walSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "wal_size_bytes",
		Help: "Size of data.db-wal in bytes.",
	})
	m.tableRows = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "table_rows",
		Help: "Rows per table of data.db.",
	}, []string{"table"})
	m.summaryErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "status_errors_total",
		Help: "Times the status summary behind these metrics could not be read; the state metrics are stale meanwhile.",
	})
	m.storageErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "storage_errors_total",
		Help: "Storage errors by kind: write (a failed write: disk full, read-only, I/O), replaced (a database file deleted or replaced under the daemon), damaged (quick_check), unwritable (the state directory refused a write probe).",
	}, []string{"kind"})
	m.storageOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "storage_ok",
		Help: "1 while the last storage check found no problem, else 0.",
	})
	for _, k := range StorageErrorKinds {
		m.storageErrs.WithLabelValues(k).Add(0)
	}

	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.retries, m.throttled, m.drift,
		m.jobRuns, m.rowsWritten, m.lastSuccess, m.consecFails, m.jobRunning, m.jobProgress,
		bytesWritten,
		m.accessExpiry, m.refreshExpiry, m.reauth, m.authState,
		m.dbSize, m.walSize, m.tableRows, m.summaryErrors,
		m.storageErrs, m.storageOK,
	)
	// Known states are always exported so that alerts on a missing series
	// are not needed.
	for _, st := range authStates {
		m.authState.WithLabelValues(string(st)).Set(0)
	}
	for _, ep := range DriftEndpoints {
		m.drift.WithLabelValues(ep).Add(0)
	}
	return m
}

var authStates = []model.AuthState{model.AuthOK, model.AuthSetupRequired, model.AuthReauthRequired, model.AuthConfigError}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		Registry:          m.Registry,
		EnableOpenMetrics: true,
	})
}

// ObserveRequest counts one request to Tibber. endpoint is a low-cardinality
// name such as "devices" or "token" (never a URL with ids); status is the
// HTTP status, or 0 when no response arrived.
func (m *Metrics) ObserveRequest(endpoint string, status int) {
	if m == nil {
		return
	}
	label := StatusTransportError
	if status > 0 {
		label = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(endpoint, label).Inc()
	if status == http.StatusTooManyRequests {
		m.throttled.WithLabelValues(endpoint).Inc()
	}
}

// ObserveRetry counts one retried request to endpoint.
func (m *Metrics) ObserveRetry(endpoint string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(endpoint).Inc()
}

// DriftEndpoints are the endpoint labels of tibbersync_schema_drift_total,
// exported at 0 from the start so that an alert can use increase().
var DriftEndpoints = []string{"homes", "devices", "device", "history"}

// ObserveSchemaDrift counts one response from endpoint whose format was not
// recognised.
func (m *Metrics) ObserveSchemaDrift(endpoint string) {
	if m == nil {
		return
	}
	m.drift.WithLabelValues(endpoint).Inc()
}

// ObserveRun records one finished job run: its status (ok, partial, failed,
// skipped), the rows it wrote and when it finished. ok and partial runs set
// the last-success time and reset the consecutive failures; failed runs add
// one failure; skipped runs (not authorized) change neither.
func (m *Metrics) ObserveRun(job, status string, rows int, finished time.Time) {
	if m == nil {
		return
	}
	m.jobRuns.WithLabelValues(job, status).Inc()
	if rows > 0 {
		m.rowsWritten.WithLabelValues(job).Add(float64(rows))
	} else {
		// Export the series at 0 so rate() works from the first run.
		m.rowsWritten.WithLabelValues(job)
	}
	m.failMu.Lock()
	defer m.failMu.Unlock()
	switch status {
	case runOK, runPartial:
		m.lastSuccess.WithLabelValues(job).Set(unixSeconds(finished))
		m.fails[job] = 0
	case runFailed:
		m.fails[job]++
	default:
		if _, ok := m.fails[job]; !ok {
			m.fails[job] = 0
		}
	}
	m.consecFails.WithLabelValues(job).Set(float64(m.fails[job]))
}

// SetBytesWritten sets the cumulative number of bytes the process has
// written (for example /proc/self/io write_bytes). The value is a counter:
// a smaller value than the current one is ignored.
func (m *Metrics) SetBytesWritten(n int64) {
	if m == nil {
		return
	}
	for {
		cur := m.bytesWritten.Load()
		if n <= cur || m.bytesWritten.CompareAndSwap(cur, n) {
			return
		}
	}
}

// ObserveSummaryError counts a status summary that could not be read.
func (m *Metrics) ObserveSummaryError() {
	if m == nil {
		return
	}
	m.summaryErrors.Inc()
}

// UpdateFromSummary sets the state metrics from a status summary taken at
// now: token expiry estimates, the auth state, database and table sizes, and
// per job the last success time and consecutive failures as data.db records
// them (which also covers runs from before a restart).
func (m *Metrics) UpdateFromSummary(s model.Summary, now time.Time) {
	if m == nil {
		return
	}
	if exp := s.Auth.AccessExpiresAt; !exp.IsZero() {
		m.accessExpiry.WithLabelValues().Set(exp.Sub(now).Seconds())
	} else {
		m.accessExpiry.Reset()
	}
	if exp := RefreshExpiry(s.Auth); !exp.IsZero() {
		m.refreshExpiry.WithLabelValues().Set(exp.Sub(now).Seconds())
	} else {
		m.refreshExpiry.Reset()
	}

	state := s.Auth.State
	if state.Sticky() {
		m.reauth.Set(1)
	} else {
		m.reauth.Set(0)
	}
	for _, st := range authStates {
		v := 0.0
		if st == state {
			v = 1
		}
		m.authState.WithLabelValues(string(st)).Set(v)
	}

	m.dbSize.Set(float64(s.DataDBBytes))
	m.walSize.Set(float64(s.WALBytes))
	m.tableRows.Reset()
	for table, n := range s.Tables {
		m.tableRows.WithLabelValues(table).Set(float64(n))
	}

	m.failMu.Lock()
	defer m.failMu.Unlock()
	for _, j := range s.Jobs {
		if j.Job == "" {
			continue
		}
		if !j.LastSuccessAt.IsZero() {
			m.lastSuccess.WithLabelValues(j.Job).Set(unixSeconds(j.LastSuccessAt))
		}
		m.fails[j.Job] = j.ConsecutiveFailures
		m.consecFails.WithLabelValues(j.Job).Set(float64(j.ConsecutiveFailures))
		running := 0.0
		m.jobProgress.DeleteLabelValues(j.Job)
		if j.Running {
			running = 1
			if p := j.Progress; p != nil && p.Fraction >= 0 {
				m.jobProgress.WithLabelValues(j.Job).Set(p.Fraction)
			}
		}
		m.jobRunning.WithLabelValues(j.Job).Set(running)
	}
}

// RefreshExpiry returns the estimated expiry of the refresh token: the
// caller's estimate when given, else model.RefreshLifetimeEstimate after its last
// rotation, else the zero time (unknown).
func RefreshExpiry(a model.AuthSummary) time.Time {
	if !a.RefreshExpiresEst.IsZero() {
		return a.RefreshExpiresEst
	}
	if !a.RefreshIssuedAt.IsZero() {
		return a.RefreshIssuedAt.Add(model.RefreshLifetimeEstimate)
	}
	return time.Time{}
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixMilli()) / 1000
}

// StorageErrorKinds are the kind labels of tibbersync_storage_errors_total.
var StorageErrorKinds = []string{"write", "replaced", "damaged", "unwritable"}

// ObserveStorageError counts one storage error of kind (see StorageErrorKinds).
func (m *Metrics) ObserveStorageError(kind string) {
	if m == nil {
		return
	}
	m.storageErrs.WithLabelValues(kind).Inc()
}

// SetStorageOK records the outcome of the last storage check.
func (m *Metrics) SetStorageOK(ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.storageOK.Set(v)
}
