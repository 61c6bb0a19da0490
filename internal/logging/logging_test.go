package logging_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// parseLogfmt parses one logfmt line (as slog.TextHandler writes it) into
// key → value, failing the test on malformed input.
func parseLogfmt(t *testing.T, line string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 || strings.ContainsAny(rest[:eq], " \"") {
			t.Fatalf("no key=value at %q in %q", rest, line)
		}
		key := rest[:eq]
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("bad quoted value in %q: %v", line, err)
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		out[key] = val
	}
	return out
}

func lines(buf *bytes.Buffer) []string {
	return strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
}

func TestFormatsWriteParseableOutput(t *testing.T) {
	t.Run("JSON", func(t *testing.T) {
		var buf bytes.Buffer
		log, err := logging.New(&buf, "info", "json")
		if err != nil {
			t.Fatal(err)
		}
		log.Info("sync done", "job", "devices", "rows", 12)
		log.With("component", "jobs").WithGroup("run").Warn("slow", "took_ms", 1500)
		ls := lines(&buf)
		if len(ls) != 2 {
			t.Fatalf("got %d lines: %q", len(ls), buf.String())
		}
		var first map[string]any
		if err := json.Unmarshal([]byte(ls[0]), &first); err != nil {
			t.Fatalf("line 1 is not JSON: %v: %s", err, ls[0])
		}
		if first["msg"] != "sync done" || first["level"] != "INFO" || first["job"] != "devices" || first["rows"] != 12.0 || first["time"] == nil {
			t.Errorf("line 1 = %v", first)
		}
		var second struct {
			Component string
			Run       struct {
				TookMS float64 `json:"took_ms"`
			}
		}
		if err := json.Unmarshal([]byte(ls[1]), &second); err != nil {
			t.Fatalf("line 2 is not JSON: %v", err)
		}
		if second.Component != "jobs" || second.Run.TookMS != 1500 {
			t.Errorf("line 2 = %s", ls[1])
		}
	})
	t.Run("Logfmt", func(t *testing.T) {
		var buf bytes.Buffer
		log, err := logging.New(&buf, "debug", "logfmt")
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("token refreshed", "expires_in", "1h0m0s", "note", `has "quotes" and spaces`)
		kv := parseLogfmt(t, lines(&buf)[0])
		want := map[string]string{"level": "DEBUG", "msg": "token refreshed", "expires_in": "1h0m0s", "note": `has "quotes" and spaces`}
		for k, v := range want {
			if kv[k] != v {
				t.Errorf("%s = %q, want %q (line %q)", k, kv[k], v, buf.String())
			}
		}
		if kv["time"] == "" {
			t.Error("no time key")
		}
	})
	t.Run("AutoOnNonTerminalIsLogfmt", func(t *testing.T) {
		var buf bytes.Buffer
		log, err := logging.New(&buf, "info", "auto")
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello", "k", "v")
		kv := parseLogfmt(t, lines(&buf)[0])
		if kv["msg"] != "hello" || kv["k"] != "v" || kv["level"] != "INFO" {
			t.Errorf("auto on a buffer wrote %q", buf.String())
		}
	})
	t.Run("TintWithoutColourOffTerminal", func(t *testing.T) {
		var buf bytes.Buffer
		log, err := logging.New(&buf, "info", "tint")
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello", "k", "v", "n", 3)
		out := buf.String()
		if strings.Contains(out, "\x1b[") {
			t.Errorf("colour escape codes written to a non-terminal: %q", out)
		}
		if !strings.Contains(out, "INF hello k=v n=3") {
			t.Errorf("tint output = %q", out)
		}
	})
}

func TestAutoUnderJournaldDropsTime(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no Stat_t on this platform")
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	log, err := logging.New(f, "info", "auto")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	kv := parseLogfmt(t, string(b))
	if _, has := kv["time"]; has || kv["msg"] != "hello" {
		t.Errorf("under journald wrote %q, want logfmt without time", b)
	}

	// Another stream (JOURNAL_STREAM inherited from elsewhere) keeps the time.
	var buf bytes.Buffer
	log, _ = logging.New(&buf, "info", "auto")
	log.Info("hello")
	if kv := parseLogfmt(t, buf.String()); kv["time"] == "" {
		t.Errorf("non-journal stream lost its time: %q", buf.String())
	}
}

func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := logging.New(&buf, "WARN", "logfmt")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("d")
	log.Info("i")
	log.Warn("w")
	log.Error("e")
	if got := lines(&buf); len(got) != 2 || !strings.Contains(got[0], "msg=w") || !strings.Contains(got[1], "msg=e") {
		t.Errorf("at warn level got %q", got)
	}

	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, " Warn ": slog.LevelWarn, "ERROR": slog.LevelError} {
		if got, err := logging.ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "verbose", "warning", "trace"} {
		if _, err := logging.ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q) accepted", bad)
		}
	}
	if _, err := logging.New(&buf, "loud", "json"); err == nil {
		t.Error("New accepted level loud")
	}
	if _, err := logging.New(&buf, "info", "xml"); err == nil {
		t.Error("New accepted format xml")
	}
}

func TestDiscard(t *testing.T) {
	log := logging.Discard()
	if log.Enabled(t.Context(), slog.LevelError) {
		t.Error("Discard logger is enabled")
	}
	log.Error("nothing", "k", "v") // must not panic
}
