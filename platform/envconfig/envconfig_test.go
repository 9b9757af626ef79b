package envconfig

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type sample struct {
	Addr     string        `env:"ADDR"`
	Debug    bool          `env:"DEBUG"`
	Workers  int           `env:"WORKERS"`
	Rate     float64       `env:"RATE"`
	Timeout  time.Duration `env:"TIMEOUT"`
	Level    slog.Level    `env:"LOG_LEVEL"`
	Ignored  string
	internal string `env:"INTERNAL"` //nolint:unused // Load must leave a field it cannot set alone
}

func TestLoad(t *testing.T) {
	t.Parallel()
	defaults := sample{Addr: "127.0.0.1:1", Workers: 2, Timeout: time.Second}
	tests := []struct {
		name    string
		env     map[string]string
		want    sample
		wantErr string
	}{
		{"defaults kept", nil, defaults, ""},
		{"every kind", map[string]string{
			"APP_ADDR": ":8080", "APP_DEBUG": "true", "APP_WORKERS": "8", "APP_RATE": "2.5",
			"APP_TIMEOUT": "3m", "APP_LOG_LEVEL": "debug", "APP_INTERNAL": "x", "Ignored": "y",
		}, sample{Addr: ":8080", Debug: true, Workers: 8, Rate: 2.5, Timeout: 3 * time.Minute,
			Level: slog.LevelDebug}, ""},
		{"empty string is a value", map[string]string{"APP_ADDR": ""},
			sample{Workers: 2, Timeout: time.Second}, ""},
		{"bad values named", map[string]string{"APP_WORKERS": "many", "APP_TIMEOUT": "soon"},
			defaults, "APP_WORKERS"},
		{"other prefix ignored", map[string]string{"OTHER_ADDR": "x"}, defaults, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := defaults
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			err := load("app", &got, lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one naming %s", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "APP_TIMEOUT") {
					t.Errorf("error %v does not name every bad variable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(sample{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadRefusesNonStruct(t *testing.T) {
	t.Parallel()
	var s string
	if err := Load("APP", &s); err == nil {
		t.Error("Load into a string pointer succeeded")
	}
}

func TestAttrs(t *testing.T) {
	t.Parallel()
	attrs := Attrs("app", sample{Addr: ":1", Workers: 3})
	var keys []string
	for _, a := range attrs {
		keys = append(keys, a.Key)
	}
	want := []string{"APP_ADDR", "APP_DEBUG", "APP_WORKERS", "APP_RATE", "APP_TIMEOUT", "APP_LOG_LEVEL"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("attribute keys (-want +got):\n%s", diff)
	}
	if got := Attrs("app", sample{Timeout: 90 * time.Second})[4].Value.String(); got != "1m30s" {
		t.Errorf("a duration logs as %q, want 1m30s", got)
	}
}
