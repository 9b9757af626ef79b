// Package report keeps the figures of a benchmark run in two forms: Go
// benchmark lines, which benchstat reads so that two runs can be
// compared, and the Markdown tables a person reads.
package report

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Step is the cost of one benchmark of a package, the median of the runs
// read.
type Step struct {
	// Package is the import path of the benchmark's package, and Name the
	// benchmark's name without its "Benchmark" prefix or GOMAXPROCS
	// suffix.
	Package, Name string
	// Runs is how many runs were read.
	Runs int
	// NsPerOp, BytesPerOp and AllocsPerOp are medians over the runs.
	NsPerOp, BytesPerOp, AllocsPerOp float64
}

// ReadSteps reads the output of `go test -bench -benchmem` and returns one
// step per benchmark, in the order they first appear. Lines that are not
// benchmark results are skipped; a result line that cannot be read, or a
// benchmark without a time per op, is an error.
//
// The format is read here rather than with golang.org/x/perf/benchfmt,
// whose dependencies would choose newer versions of modules that the
// workloads share with this one in the workspace.
func ReadSteps(r io.Reader) ([]Step, error) {
	type key struct{ pkg, name string }
	var (
		order  []key
		pkg    string
		values = map[key]map[string][]float64{}
	)
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		if rest, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(rest)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		name, got, err := parseLine(line)
		if err != nil {
			return nil, err
		}
		k := key{pkg, name}
		if values[k] == nil {
			values[k] = map[string][]float64{}
			order = append(order, k)
		}
		for unit, v := range got {
			values[k][unit] = append(values[k][unit], v)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark results: %w", err)
	}
	steps := make([]Step, 0, len(order))
	for _, k := range order {
		v := values[k]
		if len(v["ns/op"]) == 0 {
			return nil, fmt.Errorf("benchmark %s of %s has no ns/op", k.name, k.pkg)
		}
		steps = append(steps, Step{
			Package: k.pkg, Name: k.name, Runs: len(v["ns/op"]),
			NsPerOp:     median(v["ns/op"]),
			BytesPerOp:  median(v["B/op"]),
			AllocsPerOp: median(v["allocs/op"]),
		})
	}
	return steps, nil
}

// parseLine reads a result line, "BenchmarkName-8 1000 52.1 ns/op 16 B/op",
// into the name, without "Benchmark" or the GOMAXPROCS suffix, and the
// values by unit.
func parseLine(line string) (string, map[string]float64, error) {
	fields := strings.Fields(line)
	if len(fields) < 4 || len(fields)%2 != 0 {
		return "", nil, fmt.Errorf("malformed benchmark line %q", line)
	}
	if _, err := strconv.Atoi(fields[1]); err != nil {
		return "", nil, fmt.Errorf("benchmark line %q: iterations: %w", line, err)
	}
	name := strings.TrimPrefix(fields[0], "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	values := map[string]float64{}
	for i := 2; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return "", nil, fmt.Errorf("benchmark line %q: %w", line, err)
		}
		values[fields[i+1]] = v
	}
	return name, values, nil
}

// median returns the middle value of xs, or the mean of the two middle
// ones; zero for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

// Measure is one figure of a run that is not a Go benchmark, such as the
// latency of calls made over loopback, written as a benchmark line so
// that benchstat reads it with the rest.
type Measure struct {
	// Name is the line's name without "Benchmark", with its settings as
	// key=value parts: "Loopback/path=bare/callers=8".
	Name string
	// Count is the number of calls, orders or samples behind the values.
	Count int
	// Values are the figures, in the order written.
	Values []Value
}

// Value is a figure and its unit, such as "p50-ns".
type Value struct {
	Value float64
	Unit  string
}

// WriteMeasures writes measures as the benchmark lines of package pkg.
func WriteMeasures(w io.Writer, pkg string, measures []Measure) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\npkg: %s\n", pkg)
	for _, m := range measures {
		fmt.Fprintf(&b, "Benchmark%s %d", m.Name, max(m.Count, 1))
		for _, v := range m.Values {
			fmt.Fprintf(&b, " %s %s", strconv.FormatFloat(v.Value, 'f', -1, 64), v.Unit)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Table is a Markdown table under a heading.
type Table struct {
	Title string
	// Note, when set, is a sentence printed under the table.
	Note string
	Head []string
	Rows [][]string
}

// Markdown returns the table as Markdown, its columns padded so that it
// also reads as plain text.
func (t Table) Markdown() string {
	widths := make([]int, len(t.Head))
	for _, row := range append([][]string{t.Head}, t.Rows...) {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", t.Title)
	line := func(cells []string) {
		b.WriteString("|")
		for i, w := range widths {
			cell := ""
			if i < len(cells) {
				cell = cells[i]
			}
			fmt.Fprintf(&b, " %s%s |", cell, strings.Repeat(" ", w-utf8.RuneCountInString(cell)))
		}
		b.WriteString("\n")
	}
	line(t.Head)
	rule := make([]string, len(widths))
	for i, w := range widths {
		rule[i] = strings.Repeat("-", w)
	}
	line(rule)
	for _, row := range t.Rows {
		line(row)
	}
	if t.Note != "" {
		fmt.Fprintf(&b, "\n%s\n", t.Note)
	}
	return b.String()
}
