package memtrim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseMapsAndPickBinary(t *testing.T) {
	text := `00400000-00c00000 r-xp 00000000 08:01 123 /usr/bin/tibbersync
00c00000-01400000 r--p 00800000 08:01 123 /usr/bin/tibbersync
01400000-01500000 rw-p 01000000 08:01 123 /usr/bin/tibbersync
01500000-01600000 rw-p 00000000 00:00 0
7f0000000000-7f0000100000 r--s 00000000 08:01 77 /var/lib/tibbersync/data.db-shm
7f0000200000-7f0000300000 r-xp 00000000 08:01 88 /usr/lib/other with space.so
`
	maps, err := parseMaps([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 6 || maps[5].path != "/usr/lib/other with space.so" || maps[3].path != "" {
		t.Fatalf("parsed %+v", maps)
	}
	got := binaryMappings(maps, "/usr/bin/tibbersync")
	if len(got) != 2 || got[0].perms != "r-xp" || got[1].perms != "r--p" || got[1].end-got[1].start != 0x800000 {
		t.Fatalf("binary mappings = %+v, want the code and read-only data only", got)
	}
	if _, err := parseMaps([]byte("zz-00 r-xp 0 0 0 /x\n")); err == nil {
		t.Fatal("bad range accepted")
	}
}

func rssFileKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseBinaryPagesShrinksRSS: the test binary's own code and
// read-only data leave the resident set, and the program keeps running
// (the code below faults back in).
func TestReleaseBinaryPagesShrinksRSS(t *testing.T) {
	before := rssFileKB(t)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	if n <= 0 {
		t.Fatalf("advised %d bytes, want the executable's mappings", n)
	}
	if after >= before {
		t.Fatalf("RssFile %d kB before, %d kB after: nothing released", before, after)
	}
	// Still runs: formatting and parsing code pages come back.
	if s := strconv.Itoa(12345); s != "12345" {
		t.Fatal(s)
	}
	t.Logf("RssFile %d kB → %d kB (%d bytes advised)", before, after, n)
}
