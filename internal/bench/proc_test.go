package bench

import (
	"os"
	"strings"
	"testing"
)

const statusSample = `Name:	tibbersync
Umask:	0022
State:	S (sleeping)
VmPeak:	 1261540 kB
VmSize:	 1261540 kB
VmHWM:	   31744 kB
VmRSS:	   22528 kB
RssAnon:	   12000 kB
Threads:	9
`

func TestParseStatus(t *testing.T) {
	st, err := ParseStatus(strings.NewReader(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	if st.HWM != 31744*1024 || st.RSS != 22528*1024 {
		t.Fatalf("got %+v, want HWM 31744 KiB, RSS 22528 KiB", st)
	}
}

func TestParseStatusErrors(t *testing.T) {
	for name, in := range map[string]string{
		"NoHWM":     "VmRSS:	1 kB\n",
		"NoRSS":     "VmHWM:	1 kB\n",
		"BadUnit":   "VmRSS:	1 MB\nVmHWM:	1 kB\n",
		"BadNumber": "VmRSS:	x kB\nVmHWM:	1 kB\n",
		"Negative":  "VmRSS:	-1 kB\nVmHWM:	1 kB\n",
		"Empty":     "",
	} {
		t.Run(name, func(t *testing.T) {
			if st, err := ParseStatus(strings.NewReader(in)); err == nil {
				t.Fatalf("ParseStatus(%q) = %+v, want an error", in, st)
			}
		})
	}
}

const ioSample = `rchar: 6976
wchar: 123456
syscr: 10
syscw: 42
read_bytes: 4096
write_bytes: 81920
cancelled_write_bytes: 4096
`

func TestParseIO(t *testing.T) {
	v, err := ParseIO(strings.NewReader(ioSample))
	if err != nil {
		t.Fatal(err)
	}
	want := IO{RChar: 6976, WChar: 123456, SyscR: 10, SyscW: 42, ReadBytes: 4096, WriteBytes: 81920, CancelledWriteBytes: 4096}
	if v != want {
		t.Fatalf("got %+v, want %+v", v, want)
	}
	d := want.Sub(IO{RChar: 976, WChar: 23456, SyscR: 5, SyscW: 2, WriteBytes: 1920})
	if d.WChar != 100000 || d.RChar != 6000 || d.SyscW != 40 || d.WriteBytes != 80000 || d.ReadBytes != 4096 {
		t.Fatalf("Sub: %+v", d)
	}
	if _, err := ParseIO(strings.NewReader("rchar: 1\nwchar: 2\n")); err == nil {
		t.Fatal("ParseIO without write_bytes: want an error")
	}
	if _, err := ParseIO(strings.NewReader("wchar: x\nwrite_bytes: 1\n")); err == nil {
		t.Fatal("ParseIO with a bad number: want an error")
	}
}

// TestReadSelf reads this process's own /proc files and checks that a file
// write shows up in wchar.
func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("no /proc/self/io on this system")
	}
	st, err := ReadStatus(Self)
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS <= 0 || st.HWM < st.RSS {
		t.Fatalf("status %+v: want 0 < RSS ≤ HWM", st)
	}
	before, err := ReadIO(Self)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50000
	if err := os.WriteFile(t.TempDir()+"/f", make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := ReadIO(Self)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(before); d.WChar < n {
		t.Fatalf("wchar grew by %d after writing %d bytes", d.WChar, n)
	}
	if _, err := ReadStatus("0"); err == nil {
		t.Fatal("ReadStatus of pid 0: want an error")
	}
}
