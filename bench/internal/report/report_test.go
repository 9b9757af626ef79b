package report_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/bench/internal/report"
)

const goTestOutput = `goos: linux
goarch: amd64
pkg: example.com/rampart/platform/txntoken
cpu: Example CPU
BenchmarkMint/EdDSA-2         	   44893	     26542 ns/op	    7930 B/op	      85 allocs/op
BenchmarkMint/EdDSA-2         	   46010	     27970 ns/op	    7929 B/op	      85 allocs/op
BenchmarkMint/EdDSA-2         	   39723	     27000 ns/op	    7931 B/op	      85 allocs/op
BenchmarkVerify-2             	   22114	     54000 ns/op	   10896 B/op	     149 allocs/op
BenchmarkVerify-2             	   22017	     56000 ns/op	   10896 B/op	     149 allocs/op
PASS
ok  	example.com/rampart/platform/txntoken	3.291s
pkg: example.com/rampart/platform/policy
BenchmarkMethod/lookup-2      	143256039	         8.656 ns/op	       0 B/op	       0 allocs/op
PASS
`

func TestReadSteps(t *testing.T) {
	t.Parallel()
	steps, err := report.ReadSteps(strings.NewReader(goTestOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := []report.Step{
		{Package: "example.com/rampart/platform/txntoken", Name: "Mint/EdDSA", Runs: 3,
			NsPerOp: 27000, BytesPerOp: 7930, AllocsPerOp: 85},
		{Package: "example.com/rampart/platform/txntoken", Name: "Verify", Runs: 2,
			NsPerOp: 55000, BytesPerOp: 10896, AllocsPerOp: 149},
		{Package: "example.com/rampart/platform/policy", Name: "Method/lookup", Runs: 1,
			NsPerOp: 8.656, BytesPerOp: 0, AllocsPerOp: 0},
	}
	if diff := cmp.Diff(want, steps); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}

func TestReadStepsRefuses(t *testing.T) {
	t.Parallel()
	for name, input := range map[string]string{
		"odd fields":       "BenchmarkX-2 100 5 ns/op 7\n",
		"no iterations":    "BenchmarkX-2 many 5 ns/op\n",
		"not a number":     "BenchmarkX-2 100 fast ns/op\n",
		"no time per op":   "BenchmarkX-2 100 5 B/op\n",
		"only a name line": "BenchmarkX-2\n",
	} {
		if _, err := report.ReadSteps(strings.NewReader(input)); err == nil {
			t.Errorf("%s: accepted %q", name, input)
		}
	}
}

// TestWriteMeasuresReadsBack: the lines written for benchstat are
// benchmark lines that the reader of go test output reads again.
func TestWriteMeasuresReadsBack(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	err := report.WriteMeasures(&b, "example.com/rampart/bench", []report.Measure{
		{Name: "Loopback/path=bare/callers=8", Count: 1200, Values: []report.Value{
			{Value: 1.5e5, Unit: "ns/op"}, {Value: 99000, Unit: "p50-ns"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "\npkg: example.com/rampart/bench\n" +
		"BenchmarkLoopback/path=bare/callers=8 1200 150000 ns/op 99000 p50-ns\n"
	if b.String() != want {
		t.Fatalf("written %q, want %q", b.String(), want)
	}
	steps, err := report.ReadSteps(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].Name != "Loopback/path=bare/callers=8" ||
		steps[0].NsPerOp != 150000 {
		t.Errorf("read back %+v", steps)
	}
}

func TestTableMarkdown(t *testing.T) {
	t.Parallel()
	got := report.Table{
		Title: "Costs",
		Head:  []string{"step", "time"},
		Rows:  [][]string{{"verify", "57.0 µs"}, {"lookup", "8 ns"}},
		Note:  "Medians.",
	}.Markdown()
	want := "### Costs\n\n" +
		"| step   | time    |\n" +
		"| ------ | ------- |\n" +
		"| verify | 57.0 µs |\n" +
		"| lookup | 8 ns    |\n" +
		"\nMedians.\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("markdown (-want +got):\n%s", diff)
	}
}
