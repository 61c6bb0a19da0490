package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// HistoryProgress is the state of one (device, resolution) history stream
// within one run, reported after each page. Within a stream, Pages, Points
// and Reached never decrease.
type HistoryProgress struct {
	DeviceID string
	// DeviceName is the device's name from its list entry ("" when unknown).
	DeviceName string
	Resolution string
	// Pages and Points count the pages and items (periods) fetched for this
	// stream in this run.
	Pages, Points int
	// Reached is the newest period stored for the stream so far.
	Reached time.Time
	// Target is where the stream ends: the server's effectiveEnd (the start
	// of the current, unfinished period).
	Target time.Time
	// Start is where this run's window begins (the server's effectiveStart,
	// else the requested since).
	Start time.Time
	// Done is set on the last report of the stream in this run.
	Done bool
}

// progressLogInterval is the least time between two INFO progress lines.
const progressLogInterval = 10 * time.Second

// progressLogPages also logs progress every this many pages.
const progressLogPages = 200

// historyStream is one (device, resolution) pair to sync.
type historyStream struct {
	homeID     string
	dev        model.Device
	resolution string
}

// streamOutcome is what syncing one stream did.
type streamOutcome struct {
	pages, points              int
	inserted, updated, skipped int
	problems                   []string
	// rejected: the API answered 400 (resolution no longer supported, or
	// cursor refused); failed: another error ended the stream.
	rejected, failed bool
	// fatal ends the whole run: token source errors, store errors, shutdown.
	fatal error
	// errs are the API errors met, for Retry-After.
	errs []error
}

// stormLimit is how many streams in a row may fail with retryable server
// errors (each after all the client's retries) before a history run ends:
// one device's trouble does not stop the others, a storm does.
const stormLimit = 2

// stopAfter decides, after a stream, whether the run must end without
// making new requests: the stream met a 429 or the closed rate gate, or
// stormLimit streams in a row failed with retryable server errors.
func (s *Syncer) stopAfter(out streamOutcome, storm *int) error {
	var last error
	if n := len(out.errs); n > 0 {
		last = out.errs[n-1]
	}
	switch {
	case RateLimited(last):
		return fmt.Errorf("slowed down as Tibber asked; no further requests in this run: %w", last)
	case out.failed && overloaded(last):
		*storm++
		if *storm >= stormLimit {
			return fmt.Errorf("%w: %d streams in a row failed: %w", ErrStorm, *storm, last)
		}
	default:
		*storm = 0
	}
	return nil
}

// RunHistory syncs the history of every active device, for each resolution
// in HistoryResolutions that the device supports. Each page is fetched and
// then saved with its checkpoint in one transaction, so an interrupted
// backfill resumes from the last committed page. Items are never kept across
// pages, so memory stays flat however long the history is.
//
// Status: ok when every stream ran clean; partial when some stream had a
// problem (a 400, a bad page, a looping next link, the page cap, invalid
// items) but the others continued; failed when no stream stored anything
// because of API errors, or on a store error or token backoff; skipped when
// the token source said not authorized before any page was stored (partial,
// naming the stop, when pages were already stored in this run).
func (s *Syncer) RunHistory(ctx context.Context) (model.Run, error) {
	run := s.begin(ctx, JobHistory)
	m := &meter{}
	ctx = withRequestCounter(ctx, &m.counter)
	log := s.logger().With("job", JobHistory)

	homeDevs, err := s.Store.ActiveHomeDevices(ctx)
	if err != nil {
		return s.abort(ctx, run, m, fmt.Errorf("load devices: %w", err))
	}
	streams := s.historyStreams(homeDevs)
	pl := &progressLog{log: log, now: s.now, last: s.now()}
	if t, ok := s.Store.(RunTracker); ok && run.ID != 0 {
		every := s.ProgressEvery
		if every <= 0 {
			every = time.Second
		}
		pl.run = &runProgress{ctx: ctx, t: t, id: run.ID, m: m, log: log, now: s.now, start: run.StartedAt, every: every,
			p: model.RunProgress{StreamsTotal: len(streams), Fraction: -1}}
		pl.run.write(true)
	}

	var (
		problems             []string
		errs                 []error
		fatal                error
		pages, rows          int
		hardFailed, rejected int
		attempted            int
		stormStreams         int
	)
	budgetEnd := s.historyBudgetEnd(run.StartedAt)
	for i, st := range streams {
		if err := ctx.Err(); err != nil {
			fatal = err
			break
		}
		if stopRequested(ctx) {
			fatal = ErrStopped
			break
		}
		attempted++
		pl.streamStart(i, st)
		out := s.syncStream(ctx, m, st, pl, fairShareEnd(s.now(), budgetEnd, len(streams)-i))
		pl.streamDone(i + 1)
		pages += out.pages
		rows += out.inserted + out.updated
		problems = append(problems, out.problems...)
		errs = append(errs, out.errs...)
		if out.failed {
			hardFailed++
		}
		if out.rejected {
			rejected++
		}
		if out.fatal != nil {
			fatal = out.fatal
			break
		}
		if stop := s.stopAfter(out, &stormStreams); stop != nil {
			fatal = stop
			break
		}
	}

	run.RowsWritten = rows
	run.Status = StatusOK
	if len(problems) > 0 {
		run.Status = StatusPartial
	}
	if hardFailed > 0 && hardFailed+rejected == attempted && pages == 0 {
		run.Status = StatusFailed
	}
	var retErr error
	if fatal != nil {
		switch {
		case errors.Is(fatal, model.ErrNotAuthorized) && pages == 0:
			run.Status = StatusSkipped
		case errors.Is(fatal, model.ErrNotAuthorized):
			run.Status = StatusPartial
		case interrupted(ctx, fatal):
			// Shutdown: every committed page is kept and the run resumes
			// from its checkpoints next time.
			run.Status = StatusInterrupted
		default:
			run.Status = StatusFailed
		}
		problems = append([]string{"stopped: " + fatal.Error()}, problems...)
		retErr = fatal
	} else if run.Status == StatusFailed {
		retErr = fmt.Errorf("history: %w", errors.Join(errs...))
	}
	run.Error = summarize(problems, 0, 0)
	log.Debug("history run done", "streams", len(streams), "pages", pages, "rows", rows, "status", run.Status)
	return s.record(ctx, run, m, retErr)
}

// historyStreams lists the streams to sync, in a stable order. A device
// listed under several homes is synced once, through the first home in id
// order.
func (s *Syncer) historyStreams(homeDevs map[string][]model.Device) []historyStream {
	var out []historyStream
	seen := map[string]bool{}
	for _, homeID := range slices.Sorted(maps.Keys(homeDevs)) {
		devs := slices.Clone(homeDevs[homeID])
		slices.SortFunc(devs, func(a, b model.Device) int { return cmp.Compare(a.ID, b.ID) })
		for _, d := range devs {
			if d.ID == "" || seen[d.ID] {
				continue
			}
			seen[d.ID] = true
			done := map[string]bool{}
			for _, r := range s.HistoryResolutions {
				if done[r] || !slices.Contains(d.SupportedResolutions, r) {
					continue
				}
				done[r] = true
				out = append(out, historyStream{homeID: homeID, dev: d, resolution: r})
			}
		}
	}
	return out
}

// backfillDays is how far back the first sync of dev goes.
func (s *Syncer) backfillDays(dev model.Device) int {
	days := s.BackfillDays
	if days <= 0 {
		days = DefaultBackfillDays
	}
	if dev.MaxRetentionDays > 0 && dev.MaxRetentionDays < days {
		days = dev.MaxRetentionDays
	}
	return days
}

func (s *Syncer) lookback() time.Duration {
	if s.Lookback > 0 {
		return s.Lookback
	}
	return DefaultLookback
}

// resolutionStep is the shortest length of one period of r.
func resolutionStep(r string) time.Duration {
	switch r {
	case model.ResolutionQuarterHour:
		return 15 * time.Minute
	case model.ResolutionHour:
		return time.Hour
	case model.ResolutionDay:
		return 23 * time.Hour // a DST day
	case model.ResolutionMonth:
		return 28 * 24 * time.Hour
	}
	return 15 * time.Minute
}

// pageCap is the most pages one stream may fetch in one run: every page
// carries at least one period when the server makes progress, so twice the
// number of periods in the window plus a margin is generous.
func (s *Syncer) pageCap(res string, from, now time.Time) int {
	if s.MaxPagesPerStream > 0 {
		return s.MaxPagesPerStream
	}
	window := now.Sub(from)
	if window < 0 {
		window = 0
	}
	n := 2*int(window/resolutionStep(res)) + 100
	return min(n, DefaultMaxPagesPerStream)
}

// streamRun is one stream while it is being synced: where it reads next,
// the checkpoint it commits with each page, and what it did so far.
type streamRun struct {
	st  historyStream
	cp  model.HistoryCheckpoint
	log *slog.Logger
	// link is the page to fetch by link; "" means the first page by since.
	link  string
	since time.Time
	// resume: link is the stored cursor of an unfinished backfill.
	resume bool
	// started is when the stream began; maxPages caps its pages in this run.
	started  time.Time
	maxPages int
	// seed and seen hash the links followed in this run: a few bytes per
	// page however long the stream.
	seed maphash.Seed
	seen map[uint64]bool
	prog HistoryProgress
	out  streamOutcome
	// from is where this run's window starts; emptyRun counts the pages in
	// a row without items but with a next link; shareEnd is when the
	// stream's share of the run is used up (zero: no bound).
	from     time.Time
	emptyRun int
	shareEnd time.Time
}

// maxEmptyPagesMin and maxEmptyPagesMax bound emptyPageLimit.
const (
	maxEmptyPagesMin = 5
	maxEmptyPagesMax = 1000
)

// emptyPageLimit is how many pages in a row may come without an item but
// with a next link before the stream is stopped as a problem: more than the
// whole window could fill at pageSize items a page (a device offline for
// months gives a run of empty pages, but never more than that).
func emptyPageLimit(res string, from, now time.Time, pageSize int) int {
	if pageSize <= 0 {
		pageSize = 100
	}
	periods := max(0, int(now.Sub(from)/resolutionStep(res)))
	return min(max(periods/pageSize+3, maxEmptyPagesMin), maxEmptyPagesMax)
}

// historyBudgetEnd is when the run's time is up by Clock (zero: no bound).
func (s *Syncer) historyBudgetEnd(start time.Time) time.Time {
	if s.HistoryBudget <= 0 {
		return time.Time{}
	}
	return start.Add(s.HistoryBudget)
}

// fairShareEnd is when a stream starting at now must stop: an equal share
// of what is left of the run for it and the streams after it.
func fairShareEnd(now, budgetEnd time.Time, streamsLeft int) time.Time {
	if budgetEnd.IsZero() || streamsLeft <= 0 {
		return time.Time{}
	}
	left := budgetEnd.Sub(now)
	if left <= 0 {
		return now
	}
	return now.Add(left / time.Duration(streamsLeft))
}

// syncStream fetches and saves one stream page by page, until the end of
// history, a problem, the page cap, or shareEnd (zero: none) passes.
func (s *Syncer) syncStream(ctx context.Context, m *meter, st historyStream, pl *progressLog, shareEnd time.Time) streamOutcome {
	sr, err := s.openStream(ctx, st, pl.log)
	if err != nil {
		return streamOutcome{fatal: err}
	}
	sr.shareEnd = shareEnd
	defer s.closeStream(sr)
	baseRows, basePoints := pl.rows, pl.points
	for {
		if err := ctx.Err(); err != nil {
			sr.out.fatal = err
			return sr.out
		}
		if stopRequested(ctx) {
			// Shutdown: end after the last committed page; the checkpoint
			// resumes from here.
			sr.out.fatal = ErrStopped
			return sr.out
		}
		page, err := s.fetchPage(ctx, sr)
		m.done(err)
		if err != nil {
			s.pageFailed(ctx, sr, err)
			return sr.out
		}
		next, end := s.applyPage(sr, page)
		if err := s.savePage(ctx, sr, page); err != nil {
			sr.out.fatal = err
			return sr.out
		}
		pl.rows = baseRows + sr.out.inserted + sr.out.updated
		pl.points = basePoints + sr.out.points
		s.pageProgress(sr, page, pl, !end)
		if end {
			return sr.out
		}
		sr.seen[maphash.String(sr.seed, next)] = true
		sr.link = next
	}
}

// openStream loads the stream's checkpoint and decides where this run
// starts: the stored cursor of an unfinished backfill, the last stored
// period minus the lookback, or the backfill window of a new stream.
func (s *Syncer) openStream(ctx context.Context, st historyStream, log *slog.Logger) (*streamRun, error) {
	devID, res := st.dev.ID, st.resolution
	cp, found, err := s.Store.HistoryCheckpoint(ctx, devID, res)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint of %s/%s: %w", devID, res, err)
	}
	if !found {
		cp = model.HistoryCheckpoint{}
	}
	cp.DeviceID, cp.Resolution, cp.HomeID = devID, res, st.homeID

	now := s.now()
	sr := &streamRun{st: st, cp: cp, started: now, seed: maphash.MakeSeed(), seen: map[uint64]bool{},
		log: log.With("device_id", devID, "resolution", res)}
	var from time.Time // the start of this run's window
	switch {
	case found && cp.NextURL != "" && !cp.BackfillDone:
		sr.link, sr.resume = cp.NextURL, true
		from = cp.LastPeriod
		if from.IsZero() {
			from = now.AddDate(0, 0, -s.backfillDays(st.dev))
		}
	case found && !cp.LastPeriod.IsZero():
		sr.since = cp.LastPeriod.Add(-s.lookback())
		from = sr.since
	default:
		sr.since = now.AddDate(0, 0, -s.backfillDays(st.dev))
		from = sr.since
	}
	sr.maxPages = s.pageCap(res, from, now)
	sr.from = from
	sr.prog = HistoryProgress{DeviceID: devID, DeviceName: st.dev.Name, Resolution: res, Start: from, Reached: cp.LastPeriod}
	if sr.link != "" {
		sr.seen[maphash.String(sr.seed, sr.link)] = true
	}
	return sr, nil
}

// closeStream reports the stream's end: the last progress report and, for
// a stream of several pages, one INFO line.
func (s *Syncer) closeStream(sr *streamRun) {
	if sr.out.pages > 0 && s.Progress != nil {
		sr.prog.Done = true
		s.Progress(sr.prog)
	}
	if sr.out.pages > 1 {
		sr.log.Info("history stream synced", "pages", sr.out.pages, "points", sr.out.points,
			"reached", sr.prog.Reached, "rows_written", sr.out.inserted+sr.out.updated)
	}
}

// fetchPage fetches the stream's next page: by link, or the first by since.
func (s *Syncer) fetchPage(ctx context.Context, sr *streamRun) (model.HistoryPage, error) {
	if sr.link == "" {
		return s.API.History(ctx, sr.st.homeID, sr.st.dev.ID, sr.st.resolution, sr.since)
	}
	return s.API.HistoryNext(ctx, sr.link)
}

// pageFailed ends the stream after an API error: token errors and shutdown
// end the run; a 400 on the first page rejects the resolution; a refused
// stored cursor is dropped so that the next run starts over from the last
// period; anything else fails the stream. The problem is recorded in the
// checkpoint.
func (s *Syncer) pageFailed(ctx context.Context, sr *streamRun, err error) {
	devID, res, out := sr.st.dev.ID, sr.st.resolution, &sr.out
	if isTokenError(err) {
		out.fatal = err
		return
	}
	if ctx.Err() != nil {
		out.fatal = ctx.Err()
		return
	}
	out.errs = append(out.errs, err)
	var problem string
	switch {
	case isBadRequest(err) && sr.link == "":
		out.rejected = true
		problem = fmt.Sprintf("resolution %s rejected: %v", res, err)
	case (isBadRequest(err) || isNotFound(err)) && sr.resume && out.pages == 0:
		// The stored cursor is no longer accepted: start over from
		// the last stored period next time instead of retrying it.
		out.rejected = true
		sr.cp.NextURL = ""
		problem = fmt.Sprintf("stored next link refused, restarting from the last period next run: %v", err)
	default:
		out.failed = true
		problem = fmt.Sprintf("page %d: %v", out.pages+1, err)
	}
	out.problems = append(out.problems, fmt.Sprintf("history %s/%s: %s", devID, res, problem))
	sr.log.Warn("history stream stopped", "pages", out.pages, "err", err)
	sr.cp.LastError = problem
	sr.cp.UpdatedAt = s.now()
	// Record the problem in the checkpoint; an empty page writes
	// nothing else.
	if _, serr := s.Store.SaveHistoryPage(ctx, devID, res, model.HistoryPage{}, sr.cp); serr != nil {
		out.fatal = fmt.Errorf("save checkpoint of %s/%s: %w", devID, res, serr)
	}
}

// applyPage counts a fetched page and moves the checkpoint past it: the
// newest period, the next link (dropped when it loops back to a page of
// this run), the end of the backfill, and the page cap. It returns the next
// link and whether the stream ends with this page.
func (s *Syncer) applyPage(sr *streamRun, page model.HistoryPage) (next string, end bool) {
	devID, res, out, cp := sr.st.dev.ID, sr.st.resolution, &sr.out, &sr.cp
	out.pages++
	out.points += len(page.Items)
	next = page.Next
	loop := next != "" && (next == sr.link || sr.seen[maphash.String(sr.seed, next)])
	capped := !loop && next != "" && out.pages >= sr.maxPages
	if len(page.Items) == 0 && next != "" {
		sr.emptyRun++
	} else {
		sr.emptyRun = 0
	}
	endless := !loop && !capped && sr.emptyRun >= emptyPageLimit(res, sr.from, sr.started, page.PageSize)
	outOfTime := !loop && !capped && !endless && next != "" && !sr.shareEnd.IsZero() && !s.now().Before(sr.shareEnd)

	cp.LastPeriod = laterOf(cp.LastPeriod, newestPeriod(page, s.now()))
	cp.UpdatedAt = s.now()
	cp.LastError = ""
	if len(page.Problems) > 0 {
		cp.LastError = fmt.Sprintf("%d invalid items skipped: %s", len(page.Problems), page.Problems[0])
		out.problems = append(out.problems, fmt.Sprintf("history %s/%s page %d: %s", devID, res, out.pages, cp.LastError))
	}
	switch {
	case loop:
		// Never follow a link back: drop it, so the next run asks again
		// from the last stored period.
		cp.NextURL = ""
		cp.LastError = "next link loops back to an earlier page"
		out.problems = append(out.problems, fmt.Sprintf("history %s/%s: next link of page %d loops back to an earlier page", devID, res, out.pages))
		sr.log.Warn("history next link loops", "pages", out.pages)
	case next == "":
		cp.NextURL = ""
		cp.BackfillDone = true
	default:
		cp.NextURL = next
	}
	if capped {
		cp.LastError = fmt.Sprintf("stopped after %d pages (page cap); continues next run", out.pages)
		out.problems = append(out.problems, fmt.Sprintf("history %s/%s: %s", devID, res, cp.LastError))
		sr.log.Warn("history page cap reached", "pages", out.pages)
	}
	if endless {
		// Never resume into the chain: the next run asks again from the
		// last stored period.
		cp.NextURL = ""
		cp.LastError = fmt.Sprintf("%d pages in a row without items but with a next link (more than the window can hold); stopped, next run starts again from the last stored period", sr.emptyRun)
		out.problems = append(out.problems, fmt.Sprintf("history %s/%s: %s", devID, res, cp.LastError))
		sr.log.Warn("history stream sends empty pages without end", "pages", out.pages, "empty_in_a_row", sr.emptyRun)
	}
	if outOfTime {
		cp.LastError = fmt.Sprintf("stopped after %d pages: its share of the run's time is used up so other devices get theirs; continues next run", out.pages)
		out.problems = append(out.problems, fmt.Sprintf("history %s/%s: %s", devID, res, cp.LastError))
		sr.log.Info("history stream used its share of the run", "pages", out.pages)
	}
	return next, next == "" || loop || capped || endless || outOfTime
}

// savePage saves the page's items with the checkpoint in one transaction
// and counts what it wrote.
func (s *Syncer) savePage(ctx context.Context, sr *streamRun, page model.HistoryPage) error {
	devID, res, out := sr.st.dev.ID, sr.st.resolution, &sr.out
	r, err := s.Store.SaveHistoryPage(ctx, devID, res, page, sr.cp)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// Stopped (shutdown or the run's deadline) mid-write: the
			// page was rolled back and is fetched again next run. Say
			// so instead of the driver's "statement is closed".
			err = fmt.Errorf("stopped, page rolled back: %w", cerr)
		}
		return fmt.Errorf("save history page of %s/%s: %w", devID, res, err)
	}
	out.inserted += r.Inserted
	out.updated += r.Updated
	out.skipped += r.Skipped
	if r.Skipped > 0 {
		out.problems = append(out.problems, fmt.Sprintf("history %s/%s page %d: %d items skipped (outside the served window or without a numeric value)", devID, res, out.pages, r.Skipped))
	}
	return nil
}

// pageProgress updates the stream's progress after a saved page and
// reports it (Progress only while the stream goes on: its last report comes
// from closeStream).
func (s *Syncer) pageProgress(sr *streamRun, page model.HistoryPage, pl *progressLog, more bool) {
	prog := &sr.prog
	prog.Pages, prog.Points = sr.out.pages, sr.out.points
	prog.Reached = laterOf(prog.Reached, sr.cp.LastPeriod)
	if prog.Pages == 1 && !page.EffectiveStart.IsZero() {
		prog.Start = page.EffectiveStart
	}
	prog.Target = laterOf(prog.Target, page.EffectiveEnd)
	if prog.Target.IsZero() {
		prog.Target = sr.started
	}
	if s.Progress != nil && more {
		s.Progress(*prog)
	}
	pl.page(sr.log, *prog)
}

// newestPeriod is the newest item time of page within its served window and
// not after now (zero when there is none). Items outside the window are not
// stored, so they must not move the checkpoint.
func newestPeriod(page model.HistoryPage, now time.Time) time.Time {
	var newest time.Time
	for _, it := range page.Items {
		t := it.Time
		switch {
		case t.IsZero(),
			!page.EffectiveStart.IsZero() && t.Before(page.EffectiveStart),
			!page.EffectiveEnd.IsZero() && !t.Before(page.EffectiveEnd),
			t.After(now):
			continue
		}
		if t.After(newest) {
			newest = t
		}
	}
	return newest
}

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// progressLog writes INFO progress lines at a modest rate, and the run's
// progress to the store when it records runs in progress.
type progressLog struct {
	log    *slog.Logger
	now    func() time.Time
	last   time.Time
	pages  int
	rows   int // rows written by the run so far
	points int // history items fetched by the run so far
	run    *runProgress
}

// streamStart notes that stream i (0-based) begins.
func (p *progressLog) streamStart(i int, st historyStream) {
	if p.run == nil {
		return
	}
	name := st.dev.Name
	if name == "" {
		name = st.dev.ID
	}
	p.run.p.StreamsDone = i
	p.run.p.Current = name + ", " + st.resolution
	p.run.p.CurrentReached = time.Time{}
	p.run.cur = 0
	p.run.write(false)
}

// streamDone notes that done streams are finished; always written.
func (p *progressLog) streamDone(done int) {
	if p.run == nil {
		return
	}
	p.run.p.StreamsDone = done
	p.run.p.RowsWritten = p.rows
	p.run.cur = 0
	p.run.write(true)
}

// page notes one page and logs when progressLogInterval passed or every
// progressLogPages pages.
func (p *progressLog) page(log *slog.Logger, hp HistoryProgress) {
	p.pages++
	if p.run != nil {
		p.run.p.Pages++
		p.run.p.Points = p.points
		p.run.p.RowsWritten = p.rows
		p.run.p.CurrentReached = hp.Reached
		if f, ok := progressFraction(hp); ok {
			p.run.cur = f
		}
		p.run.write(false)
	}
	now := p.now()
	if now.Sub(p.last) < progressLogInterval && p.pages%progressLogPages != 0 {
		return
	}
	p.last = now
	log.Info("history progress", "pages", hp.Pages, "points", hp.Points, "reached", hp.Reached, "target", hp.Target)
}

// runProgress writes a running history run's progress to the store, at
// most once per every (stream ends always).
type runProgress struct {
	ctx     context.Context
	t       RunTracker
	id      int64
	m       *meter
	log     *slog.Logger
	now     func() time.Time
	start   time.Time
	every   time.Duration
	written time.Time
	cur     float64 // fraction of the current stream done
	p       model.RunProgress
	failed  bool // a write failed; logged once
}

func (r *runProgress) write(force bool) {
	now := r.now()
	if !force && !r.written.IsZero() && now.Sub(r.written) < r.every {
		return
	}
	r.written = now
	r.p.Requests = r.m.requests()
	r.p.UpdatedAt = now.UTC()
	r.p.Fraction, r.p.ETA = -1, time.Time{}
	if r.p.StreamsTotal > 0 {
		f := (float64(r.p.StreamsDone) + min(max(r.cur, 0), 1)) / float64(r.p.StreamsTotal)
		r.p.Fraction = min(f, 1)
		if elapsed := now.Sub(r.start); f > 0 && f < 1 && elapsed > 0 {
			r.p.ETA = now.Add(time.Duration(float64(elapsed) * (1 - f) / f)).UTC()
		}
	} else {
		r.p.Fraction = 1
	}
	if r.ctx.Err() != nil {
		return
	}
	if err := r.t.UpdateRunProgress(r.ctx, r.id, r.p); err != nil && !r.failed {
		r.failed = true
		r.log.Warn("record run progress", "err", err)
	}
}
