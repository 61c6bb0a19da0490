package store_test

import (
	"bufio"
	"os"
	"sort"
	"strings"
	"testing"
)

// docObject is one table or view as docs/schema.md documents it.
type docObject struct {
	kind    string            // "table" or "view"
	columns map[string]string // column name -> documented type
}

// parseSchemaDoc reads the "## Tables" and "## Views" sections of
// docs/schema.md: each "### `name`" heading starts an object, and each
// table row whose first cell is a backticked name documents a column, with
// its type in the second cell.
func parseSchemaDoc(t *testing.T, path string) map[string]*docObject {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatalf("open schema doc: %v", err)
	}
	defer func() { _ = fh.Close() }()
	objs := map[string]*docObject{}
	var kind string
	var cur *docObject
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			cur = nil
			switch strings.TrimSpace(strings.TrimPrefix(line, "## ")) {
			case "Tables":
				kind = "table"
			case "Views":
				kind = "view"
			default:
				kind = ""
			}
		case strings.HasPrefix(line, "### ") && kind != "":
			name := strings.Trim(strings.Fields(strings.TrimPrefix(line, "### "))[0], "`")
			if _, dup := objs[name]; dup {
				t.Errorf("schema doc: %s documented twice", name)
			}
			cur = &docObject{kind: kind, columns: map[string]string{}}
			objs[name] = cur
		case strings.HasPrefix(line, "|") && cur != nil:
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) < 3 {
				continue
			}
			first := strings.TrimSpace(cells[0])
			if !strings.HasPrefix(first, "`") || !strings.HasSuffix(first, "`") {
				continue // header or separator row
			}
			col := strings.Trim(first, "`")
			if _, dup := cur.columns[col]; dup {
				t.Errorf("schema doc: column %s documented twice", col)
			}
			cur.columns[col] = strings.TrimSpace(cells[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestSchemaDocMatchesDatabase fails when docs/schema.md and the migrated
// schema drift apart: every table, view and column must be documented, with
// the declared type for table columns, and everything documented must exist.
func TestSchemaDocMatchesDatabase(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	doc := parseSchemaDoc(t, "../../docs/schema.md")
	if len(doc) == 0 {
		t.Fatal("schema doc documents nothing")
	}
	rows, err := db.RawForTest().Query(`SELECT type, name FROM sqlite_master
WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	real := map[string]string{}
	for rows.Next() {
		var kind, name string
		if err := rows.Scan(&kind, &name); err != nil {
			t.Fatal(err)
		}
		real[name] = kind
	}
	_ = rows.Close()

	for name, kind := range real {
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s %s is not documented in docs/schema.md", kind, name)
			continue
		}
		if d.kind != kind {
			t.Errorf("%s is a %s but documented under %ss", name, kind, d.kind)
		}
		cols, err := db.RawForTest().Query(`SELECT name, type FROM pragma_table_info(?) ORDER BY cid`, name)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for cols.Next() {
			var col, typ string
			if err := cols.Scan(&col, &typ); err != nil {
				t.Fatal(err)
			}
			seen[col] = true
			docType, ok := d.columns[col]
			switch {
			case !ok:
				t.Errorf("column %s.%s is not documented", name, col)
			case kind == "table" && !strings.EqualFold(docType, typ):
				t.Errorf("column %s.%s is %s but documented as %s", name, col, typ, docType)
			}
		}
		_ = cols.Close()
		var extra []string
		for col := range d.columns {
			if !seen[col] {
				extra = append(extra, col)
			}
		}
		sort.Strings(extra)
		for _, col := range extra {
			t.Errorf("documented column %s.%s does not exist", name, col)
		}
	}
	for name := range doc {
		if _, ok := real[name]; !ok {
			t.Errorf("documented %s %s does not exist", doc[name].kind, name)
		}
	}
}
