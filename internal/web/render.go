package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"setup.html", "status.html", "message.html", "success.html", "pair.html"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).ParseFS(templateFS, "templates/layout.html", "templates/"+name)
		if err != nil {
			return nil, fmt.Errorf("web: parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// link is a link rendered as a button.
type link struct {
	URL   string
	Label string
}

// messageView is a page with one message: errors and notices.
type messageView struct {
	Title   string
	Message string
	// Detail is a second paragraph, e.g. what to do next.
	Detail string
	Links  []link
}

// pairView is the pairing form.
type pairView struct {
	Title string
	Error string
}

// render executes page into a buffer first, so that a template error gives
// a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("render page", "page", page, "err", err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintln(w, "500 internal error: the page could not be rendered; see the log")
		return
	}
	// html/template escapes markup but not control characters or bidi
	// overrides: a device name with U+202E would reorder the text around
	// it. Neutralise them in the whole page (our templates hold none).
	out := logging.DisplayText(buf.String())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, out)
}

func (s *Server) renderMessage(w http.ResponseWriter, status int, v messageView) {
	if len(v.Links) == 0 {
		v.Links = []link{{URL: "/", Label: "Status"}}
	}
	s.render(w, status, "message.html", v)
}

func (s *Server) renderPair(w http.ResponseWriter, status int, errMsg string) {
	s.render(w, status, "pair.html", pairView{Title: "Pair this browser", Error: errMsg})
}

// fmtTime formats t for the pages in the server's time zone; "–" for zero.
func (s *Server) fmtTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.In(s.loc).Format("2006-01-02 15:04 MST")
}

// fmtWhen formats t with its distance from now: "2025-03-01 12:00 CET (5 min ago)".
func (s *Server) fmtWhen(t, now time.Time) string {
	if t.IsZero() {
		return "–"
	}
	d := t.Sub(now)
	if d >= 0 {
		return s.fmtTime(t) + " (in " + humanDuration(d) + ")"
	}
	return s.fmtTime(t) + " (" + humanDuration(-d) + " ago)"
}

// humanDuration renders a non-negative duration coarsely: "40 s",
// "12 min", "5 h 3 min", "4 days".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min"
	case d < 48*time.Hour:
		h := int(d / time.Hour)
		m := int((d % time.Hour) / time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + " h"
		}
		return fmt.Sprintf("%d h %d min", h, m)
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
}

// humanBytes renders a byte count in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	exp := int(math.Log(f) / math.Log(unit))
	exp = min(exp, 4)
	return strconv.FormatFloat(f/math.Pow(unit, float64(exp)), 'f', 1, 64) + " " + "KMGT"[exp-1:exp] + "iB"
}

// humanCount renders a row count with thin grouping: 1 234 567.
func humanCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
