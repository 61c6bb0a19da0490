package memtrim

import (
	"os"
	"reflect"
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
	if len(maps) != 6 || maps[5].path != "/usr/lib/other with space.so" || maps[3].path != "" ||
		maps[1].offset != 0x800000 || maps[1].inode != 123 || maps[3].inode != 0 {
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

// TestAdviseRanges: /proc/self/maps text and program headers → the ranges
// advised. The layouts are those of real builds of testdata/relrohelper on
// linux/amd64 (readelf -lW, /proc/PID/maps).
func TestAdviseRanges(t *testing.T) {
	const exe = "/usr/bin/tibbersync"
	ro := func(vaddr, memsz, off uint64) segment { return segment{vaddr: vaddr, memsz: memsz, off: off} }
	rw := func(vaddr, memsz, off uint64) segment {
		return segment{vaddr: vaddr, memsz: memsz, off: off, writable: true}
	}
	// Go linker, -buildmode=pie: the RELRO segment is a writable PT_LOAD
	// the loader makes read-only, mapped r--p right after the read-only data.
	goPIE := exeLayout{
		loads: []segment{ro(0x400000, 0xe1230, 0), ro(0x4e2000, 0x1250c8, 0xe2000),
			rw(0x608000, 0x40b80, 0x208000), rw(0x649000, 0x414c0, 0x249000)},
		relro: []segment{ro(0x608000, 0x40b80, 0x208000)},
	}
	cases := map[string]struct {
		maps    string
		lay     exeLayout
		want    []span
		wantErr string
	}{
		// make build: CGO_ENABLED=0, not PIE, no RELRO, load bias 0. Code
		// and read-only data are advised, as before.
		"non-PIE": {
			maps: `00400000-004b2000 r-xp 00000000 fe:00 42 /usr/bin/tibbersync
004b2000-0059c000 r--p 000b2000 fe:00 42 /usr/bin/tibbersync
0059c000-005a7000 rw-p 0019c000 fe:00 42 /usr/bin/tibbersync
005a7000-005dd000 rw-p 00000000 00:00 0
7f0000000000-7f0000100000 r--s 00000000 fe:00 77 /var/lib/tibbersync/data.db-shm
7f0000200000-7f0000300000 r--p 00001000 fe:00 42 /usr/bin/tibbersync
7f0000300000-7f0000301000 r--p 00000000 00:00 0 /usr/bin/tibbersync
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
`,
			lay:  exeLayout{loads: []segment{ro(0x400000, 0xb1eb1, 0), ro(0x4b2000, 0xe9178, 0xb2000), rw(0x59c000, 0x40a00, 0x19c000)}},
			want: []span{{0x400000, 0x4b2000}, {0x4b2000, 0x59c000}},
		},
		// Go linker, PIE, load bias 0x56393a892000: the r--p RELRO mapping
		// at file offset 0x208000 is left alone.
		"PIE": {
			maps: `56393ac92000-56393ad74000 r-xp 00000000 fe:00 42 /usr/bin/tibbersync
56393ad74000-56393ae9a000 r--p 000e2000 fe:00 42 /usr/bin/tibbersync
56393ae9a000-56393aeda000 r--p 00208000 fe:00 42 /usr/bin/tibbersync
56393aeda000-56393aee7000 rw-p 00248000 fe:00 42 /usr/bin/tibbersync
56393aee7000-56393af1d000 rw-p 00000000 00:00 0
7f5e1c000000-7f5e1c026000 r--p 00000000 fe:00 99 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
`,
			lay:  goPIE,
			want: []span{{0x56393ac92000, 0x56393ad74000}, {0x56393ad74000, 0x56393ae9a000}},
		},
		// The same, had the kernel merged read-only data and RELRO into
		// one r--p mapping (contiguous addresses and file offsets): only
		// the read-only data part is advised.
		"PIE, RELRO merged into the read-only data mapping": {
			maps: `56393ac92000-56393ad74000 r-xp 00000000 fe:00 42 /usr/bin/tibbersync
56393ad74000-56393aeda000 r--p 000e2000 fe:00 42 /usr/bin/tibbersync
56393aeda000-56393aee7000 rw-p 00248000 fe:00 42 /usr/bin/tibbersync
`,
			lay:  goPIE,
			want: []span{{0x56393ac92000, 0x56393ad74000}, {0x56393ad74000, 0x56393ae9a000}},
		},
		// -buildmode=pie -ldflags=-linkmode=external (GNU ld, as distros
		// build): first PT_LOAD at vaddr 0, bias 0x55d550b34000, RELRO at
		// the start of the writable PT_LOAD, neither page-aligned, and its
		// first file page also mapped as the read-only data's last page.
		"PIE, GNU ld": {
			maps: `55d550b34000-55d550b61000 r--p 00000000 fe:00 42 /usr/bin/tibbersync
55d550b61000-55d550c0d000 r-xp 0002d000 fe:00 42 /usr/bin/tibbersync
55d550c0d000-55d550cc7000 r--p 000d9000 fe:00 42 /usr/bin/tibbersync
55d550cc7000-55d550cf2000 r--p 00192000 fe:00 42 /usr/bin/tibbersync
55d550cf2000-55d550cfd000 rw-p 001bd000 fe:00 42 /usr/bin/tibbersync
`,
			lay: exeLayout{
				loads: []segment{ro(0, 0x2ca68, 0), ro(0x2d000, 0xab12d, 0x2d000), ro(0xd9000, 0xb95c0, 0xd9000),
					rw(0x193bf0, 0x6acb0, 0x192bf0)},
				relro: []segment{ro(0x193bf0, 0x2a410, 0x192bf0)},
			},
			want: []span{{0x55d550b34000, 0x55d550b61000}, {0x55d550b61000, 0x55d550c0d000}, {0x55d550c0d000, 0x55d550cc7000}},
		},
		// A page that holds the end of the read-only data and the start of
		// RELRO is not advised: exclusion is by whole pages.
		"RELRO shares a page with read-only data": {
			maps: `10000-12000 r--p 00000000 fe:00 42 /usr/bin/tibbersync
12000-13000 r--p 00002000 fe:00 42 /usr/bin/tibbersync
`,
			lay: exeLayout{
				loads: []segment{ro(0x10000, 0x2800, 0), rw(0x12800, 0x800, 0x2800)},
				relro: []segment{ro(0x12800, 0x400, 0x2800)},
			},
			want: []span{{0x10000, 0x12000}},
		},
		"no mapping of the first PT_LOAD": {
			maps:    "56393ad74000-56393ae9a000 r--p 000e2000 fe:00 42 /usr/bin/tibbersync\n",
			lay:     goPIE,
			wantErr: "no mapping of /usr/bin/tibbersync at file offset 0",
		},
		// Mappings that are not where the program headers put them (a
		// wrong bias, another file at the path): nothing is advised.
		"offsets do not match the program headers": {
			maps: `56393ac92000-56393ad74000 r-xp 00000000 fe:00 42 /usr/bin/tibbersync
56393ad74000-56393ae9a000 r--p 00100000 fe:00 42 /usr/bin/tibbersync
`,
			lay:     goPIE,
			wantErr: "does not match PT_LOAD",
		},
		"text relocations": {
			maps:    "00400000-004b2000 r-xp 00000000 fe:00 42 /usr/bin/tibbersync\n",
			lay:     exeLayout{loads: []segment{ro(0x400000, 0xb1eb1, 0)}, textrel: true},
			wantErr: "text relocations",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			maps, err := parseMaps([]byte(tc.maps))
			if err != nil {
				t.Fatal(err)
			}
			got, err := adviseRanges(maps, exe, tc.lay, 0x1000)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
					t.Fatalf("adviseRanges = %x, %v; want no ranges and an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("adviseRanges = %x, want %x", got, tc.want)
			}
		})
	}
}

// TestReadExeLayout reads the program headers of the test binary itself.
func TestReadExeLayout(t *testing.T) {
	path, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	lay, err := readExeLayout(f)
	if err != nil {
		t.Skipf("not an ELF executable: %v", err)
	}
	var ro bool
	for _, l := range lay.loads {
		ro = ro || !l.writable
	}
	if !ro || lay.textrel {
		t.Fatalf("layout %+v: want a read-only PT_LOAD, no text relocations", lay)
	}
	if _, err := readExeLayout(strings.NewReader("#!/bin/sh\n")); err == nil {
		t.Fatal("a script read as ELF")
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
