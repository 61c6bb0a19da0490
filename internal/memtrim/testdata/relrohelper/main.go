// Command relrohelper is built by TestReleaseBinaryPagesBuildModes, with
// and without -buildmode=pie. It drops its executable's pages
// (memtrim.Release), then uses what a PIE binary keeps in its RELRO
// segment, relocated by the dynamic loader at start-up: type descriptors,
// interface tables, pointers in read-only tables. If Release had reverted
// those pages to the file's unrelocated contents, this crashes (SIGSEGV).
// It prints "advised N" and "ok" and exits 0.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"

	"github.com/tibbersync/tibbersync/internal/memtrim"
)

type shape interface {
	area() float64
	name() string
}

type rect struct{ W, H float64 }

func (r rect) area() float64 { return r.W * r.H }
func (r rect) name() string  { return "rect" }

type square struct{ rect }

func (s square) name() string { return "square" }

type reading struct {
	Home  string            `json:"home"`
	Watts []int             `json:"watts"`
	Tags  map[string]string `json:"tags,omitempty"`
	Shape shape             `json:"-"`
}

var (
	units  = map[string]float64{"W": 1, "kW": 1e3, "MW": 1e6}
	names  = [...]string{"zero", "one", "two", "three"}
	shapes = []shape{rect{2, 3}, square{rect{4, 4}}}
)

func use() error {
	var total float64
	var kinds []string
	for _, s := range shapes { // calls through itabs
		total += s.area()
		kinds = append(kinds, s.name()+"/"+reflect.TypeOf(s).String())
	}
	sort.Strings(kinds)
	r := reading{Home: "h1", Watts: []int{1, 2, 3}, Tags: map[string]string{"a": names[1]}, Shape: shapes[1]}
	got := fmt.Sprintf("%+v %v %s %g %g", r, kinds, names[3], units["kW"], total)
	want := "{Home:h1 Watts:[1 2 3] Tags:map[a:one] Shape:{rect:{W:4 H:4}}} [rect/main.rect square/main.square] three 1000 22"
	if got != want {
		return fmt.Errorf("fmt.Sprintf = %q, want %q", got, want)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var back reading
	if err := json.Unmarshal(b, &back); err != nil || back.Home != "h1" || len(back.Watts) != 3 {
		return fmt.Errorf("json round trip: %s %+v %v", b, back, err)
	}
	if _, err := os.Open("/does/not/exist"); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("errors.Is: %v", err)
	}
	if strings.ToUpper(names[2]) != "TWO" {
		return errors.New("strings")
	}
	runtime.GC() // the collector reads the type descriptors' pointer maps
	return nil
}

func main() {
	var n int64
	for range 2 { // again once the dropped pages have faulted back in
		advised, err := memtrim.Release()
		if err != nil {
			fmt.Fprintln(os.Stderr, "release:", err)
			os.Exit(2)
		}
		n += advised
		if err := use(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println("advised", n)
	fmt.Println("ok")
}
