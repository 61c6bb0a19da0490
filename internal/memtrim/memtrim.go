// Package memtrim hands back memory that a daemon at rest does not use.
//
// After a large job (a history backfill) the daemon's resident set holds
// three kinds of memory it no longer needs: Go heap the job left behind
// (debug.FreeOSMemory returns it), SQLite page cache (kept small by the
// store's cache_size) and pages of its own executable. The last is the
// largest: a backfill runs much of the 17 MiB binary (the SQLite engine
// alone is several MiB of code), and every page of code or read-only data
// it ran stays mapped, about 16 MiB, while the idle daemon runs a small
// part of it. ReleaseBinaryPages unmaps those pages from the process; they
// stay in the kernel's page cache, and the code the daemon runs next
// faults back in from there.
//
// What is advised (madvise MADV_DONTNEED): the pages of the executable's
// private, non-writable mappings that lie in a PT_LOAD segment the ELF file
// marks read-only (code, read-only data), and only where the file offset
// /proc/self/maps reports matches the one the program headers give. Such a
// page is an exact copy of the file, so dropping it loses nothing.
//
// What is never advised: writable mappings, mappings of any other file or
// of no file, and every page that overlaps a PT_GNU_RELRO segment or a
// writable PT_LOAD segment. RELRO ("relocation read-only") is data the
// dynamic loader relocates at start-up and then makes read-only: in a
// -buildmode=pie binary (or any externally linked one) its mapping reads
// r--p like read-only data, but its pages are private, relocated copies
// that differ from the file. MADV_DONTNEED would put the unrelocated file
// contents back (pointers without the load bias) and the process would
// crash on the next type descriptor or interface table it reads. The
// non-PIE build the Makefile makes has no RELRO segment, so nothing of its
// saving is lost. An executable with text relocations (DT_TEXTREL), whose
// code pages the loader patches too, is not advised at all; neither is
// anything when the ELF file cannot be read or does not match the mappings:
// ReleaseBinaryPages then returns an error saying why.
package memtrim

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
)

// Release returns the Go heap left behind by a job to the system and drops
// the executable's pages from the resident set. It returns the bytes of
// executable mappings advised.
func Release() (int64, error) {
	debug.FreeOSMemory()
	return ReleaseBinaryPages()
}

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end uintptr
	perms      string
	offset     uint64 // file offset of start
	inode      uint64 // 0: not backed by a file
	path       string
}

// parseMaps reads the mappings of /proc/self/maps text.
func parseMaps(b []byte) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || e < s {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		off, err := strconv.ParseUint(f[2], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps: bad offset %q", f[2])
		}
		ino, err := strconv.ParseUint(f[4], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("maps: bad inode %q", f[4])
		}
		m := mapping{start: uintptr(s), end: uintptr(e), perms: f[1], offset: off, inode: ino}
		if len(f) >= 6 {
			m.path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// binaryMappings picks the mappings of exe that are file-backed, neither
// writable nor shared. Not all of them are copies of the file: in a PIE
// binary the relocated RELRO data is one of them (see adviseRanges).
func binaryMappings(maps []mapping, exe string) []mapping {
	var out []mapping
	for _, m := range maps {
		if m.path != exe || m.inode == 0 || len(m.perms) < 4 || m.perms[1] != '-' || m.perms[3] != 'p' {
			continue
		}
		out = append(out, m)
	}
	return out
}

// segment is a program header of the executable: where it is loaded before
// the load bias is added (vaddr, memsz) and where it is in the file (off).
type segment struct {
	vaddr, memsz, off uint64
	writable          bool // PF_W
}

// exeLayout is what adviseRanges needs from the executable's ELF file.
type exeLayout struct {
	loads   []segment // PT_LOAD, in file order (ascending vaddr, as ELF requires)
	relro   []segment // PT_GNU_RELRO
	textrel bool      // DT_TEXTREL or DF_TEXTREL: the loader patches code pages
}

// readExeLayout reads the program headers of an ELF executable, and its
// dynamic section (found through PT_DYNAMIC, which stripped binaries keep)
// for text relocations.
func readExeLayout(r io.ReaderAt) (exeLayout, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return exeLayout{}, err
	}
	var lay exeLayout
	for _, p := range f.Progs {
		s := segment{vaddr: p.Vaddr, memsz: p.Memsz, off: p.Off, writable: p.Flags&elf.PF_W != 0}
		switch p.Type {
		case elf.PT_LOAD:
			lay.loads = append(lay.loads, s)
		case elf.PT_GNU_RELRO:
			lay.relro = append(lay.relro, s)
		case elf.PT_DYNAMIC:
			if lay.textrel, err = hasTextrel(f, p); err != nil {
				return exeLayout{}, err
			}
		}
	}
	if len(lay.loads) == 0 {
		return exeLayout{}, errors.New("no PT_LOAD segment")
	}
	return lay, nil
}

// hasTextrel reports whether the dynamic section in p asks the loader to
// relocate read-only segments (DT_TEXTREL, or DF_TEXTREL in DT_FLAGS).
func hasTextrel(f *elf.File, p *elf.Prog) (bool, error) {
	if p.Filesz > 1<<20 {
		return false, fmt.Errorf("PT_DYNAMIC of %d bytes", p.Filesz)
	}
	d := make([]byte, p.Filesz)
	if _, err := p.ReadAt(d, 0); err != nil {
		return false, fmt.Errorf("read PT_DYNAMIC: %w", err)
	}
	size := 8
	if f.Class == elf.ELFCLASS64 {
		size = 16
	}
	word := func(b []byte) uint64 {
		if size == 16 {
			return f.ByteOrder.Uint64(b)
		}
		return uint64(f.ByteOrder.Uint32(b))
	}
	for ; len(d) >= size; d = d[size:] {
		tag, val := elf.DynTag(word(d)), word(d[size/2:])
		switch {
		case tag == elf.DT_NULL:
			return false, nil
		case tag == elf.DT_TEXTREL, tag == elf.DT_FLAGS && elf.DynFlag(val)&elf.DF_TEXTREL != 0:
			return true, nil
		}
	}
	return false, nil
}

// span is the address range [start, end).
type span struct{ start, end uintptr }

// adviseRanges returns the address ranges of the mappings of exe that may
// be advised MADV_DONTNEED: pages that are exact copies of the file.
//
// The load bias: the kernel maps every PT_LOAD segment's file pages from
// pageDown(off) at pageDown(vaddr)+bias, with one bias for the whole
// executable (0 for a non-PIE ET_EXEC binary, a random base for a PIE
// ET_DYN one). The first PT_LOAD is mapped lowest, so the lowest mapping of
// exe at file offset pageDown(first.off) (0 with every linker we know)
// starts at pageDown(first.vaddr)+bias. This reads the bias from the same
// /proc/self/maps text the ranges come from, which auxv's AT_PHDR would not
// (when ld.so is run as a command, /proc/self/exe is ld.so). Every range is
// then checked against the file offset the mapping reports: if the bias or
// the layout is not what the program headers say, nothing is advised.
//
// A range is advised only where a private, non-writable mapping of exe
// (perms r?-p, file-backed) lies in a PT_LOAD segment the file marks
// read-only, minus every page that overlaps a PT_GNU_RELRO segment or a
// writable PT_LOAD segment: RELRO pages read r--p after the loader
// relocated them, and they are not copies of the file.
func adviseRanges(maps []mapping, exe string, lay exeLayout, pageSize uintptr) ([]span, error) {
	if pageSize == 0 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("page size %d", pageSize)
	}
	if lay.textrel {
		return nil, errors.New("executable has text relocations (DT_TEXTREL)")
	}
	if len(lay.loads) == 0 {
		return nil, errors.New("no PT_LOAD segment")
	}
	down := func(a uintptr) uintptr { return a &^ (pageSize - 1) }
	up := func(a uintptr) uintptr { return (a + pageSize - 1) &^ (pageSize - 1) }

	first := lay.loads[0]
	var base *mapping
	for i, m := range maps {
		if m.path == exe && m.inode != 0 && m.offset == uint64(down(uintptr(first.off))) &&
			(base == nil || m.start < base.start) {
			base = &maps[i]
		}
	}
	if base == nil {
		return nil, fmt.Errorf("no mapping of %s at file offset %#x (the first PT_LOAD)", exe, down(uintptr(first.off)))
	}
	// Modular arithmetic: correct whether the bias is 0, above or below.
	bias := base.start - down(uintptr(first.vaddr))

	// pages is the page-aligned range a segment occupies once loaded.
	pages := func(s segment) span {
		return span{down(uintptr(s.vaddr) + bias), up(uintptr(s.vaddr+s.memsz) + bias)}
	}
	var keep []span
	for _, m := range binaryMappings(maps, exe) {
		for _, l := range lay.loads {
			if l.writable {
				continue
			}
			p := pages(l)
			lo, hi := max(m.start, p.start), min(m.end, p.end)
			if lo >= hi {
				continue
			}
			// The same file byte, by the mapping and by the program header.
			byMaps := m.offset + uint64(lo-m.start)
			byELF := uint64(down(uintptr(l.off))) + uint64(lo-p.start)
			if byMaps != byELF {
				return nil, fmt.Errorf("mapping %x-%x of %s at offset %#x does not match PT_LOAD vaddr %#x offset %#x (load bias %#x)",
					m.start, m.end, exe, m.offset, l.vaddr, l.off, bias)
			}
			keep = append(keep, span{lo, hi})
		}
	}
	var drop []span
	for _, s := range lay.relro {
		drop = append(drop, pages(s))
	}
	for _, l := range lay.loads {
		if l.writable {
			drop = append(drop, pages(l))
		}
	}
	for _, d := range drop {
		keep = subtract(keep, d)
	}
	return keep, nil
}

// subtract removes d from each range of in.
func subtract(in []span, d span) []span {
	var out []span
	for _, s := range in {
		if d.end <= s.start || d.start >= s.end {
			out = append(out, s)
			continue
		}
		if s.start < d.start {
			out = append(out, span{s.start, d.start})
		}
		if d.end < s.end {
			out = append(out, span{d.end, s.end})
		}
	}
	return out
}
