package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/platform/secret"
)

const value = "hunter2-correct-horse"

// config mirrors how services hold secrets: exported and unexported fields,
// by value and by pointer, in a slice and in a map.
type config struct {
	User     string                   `json:"user"`
	Password secret.String            `json:"password"`
	Token    *secret.String           `json:"token"`
	Keys     []secret.String          `json:"keys"`
	ByName   map[string]secret.String `json:"by_name"`
	apiKey   secret.String
}

func newConfig() config {
	token := secret.New(value)
	return config{
		User:     "alice",
		Password: secret.New(value),
		Token:    &token,
		Keys:     []secret.String{secret.New(value)},
		ByName:   map[string]secret.String{"db": secret.New(value)},
		apiKey:   secret.New(value),
	}
}

func TestStringNeverPrintsValue(t *testing.T) {
	t.Parallel()
	s := secret.New(value)
	cfg := newConfig()

	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%T:%v"}
	for _, verb := range verbs {
		t.Run("fmt "+verb, func(t *testing.T) {
			t.Parallel()
			for _, arg := range []any{s, &s, cfg, &cfg} {
				if got := fmt.Sprintf(verb, arg); strings.Contains(got, value) {
					t.Errorf("Sprintf(%q, %T) = %q, leaks the value", verb, arg, got)
				}
			}
		})
	}

	t.Run("print functions", func(t *testing.T) {
		t.Parallel()
		outputs := []string{fmt.Sprint(s, cfg), fmt.Sprintln(s, cfg), s.String(), s.GoString()}
		for _, got := range outputs {
			if strings.Contains(got, value) {
				t.Errorf("%q leaks the value", got)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		got, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"user":"alice","password":"[REDACTED]","token":"[REDACTED]",` +
			`"keys":["[REDACTED]"],"by_name":{"db":"[REDACTED]"}}`
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("json.Marshal mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		got, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != secret.Redacted {
			t.Errorf("MarshalText() = %q, want %q", got, secret.Redacted)
		}
	})
}

func TestStringNeverLogged(t *testing.T) {
	t.Parallel()
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	}
	for name, newHandler := range handlers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			logger := slog.New(newHandler(&out))
			s := secret.New(value)
			cfg := newConfig()

			logger.Info("start", "password", s, "ptr", &s, "config", cfg, "config_ptr", &cfg)
			logger.Info("attrs", slog.Any("password", s), slog.Group("g", "password", s))
			logger.With("password", s).Info("with")

			if strings.Contains(out.String(), value) {
				t.Errorf("log output leaks the value:\n%s", out.String())
			}
			if !strings.Contains(out.String(), secret.Redacted) {
				t.Errorf("log output does not say %s:\n%s", secret.Redacted, out.String())
			}
		})
	}
}

func TestStringReveal(t *testing.T) {
	t.Parallel()
	var zero secret.String
	if zero.Reveal() != "" || !zero.IsZero() {
		t.Errorf("zero String: Reveal() = %q, IsZero() = %v", zero.Reveal(), zero.IsZero())
	}
	if got := secret.New(value).Reveal(); got != value {
		t.Errorf("Reveal() = %q, want %q", got, value)
	}

	var decoded struct {
		Password secret.String `json:"password"`
	}
	if err := json.Unmarshal([]byte(`{"password":"`+value+`"}`), &decoded); err != nil {
		t.Fatal(err)
	}
	if got := decoded.Password.Reveal(); got != value {
		t.Errorf("after json.Unmarshal, Reveal() = %q, want %q", got, value)
	}
}

func TestReadFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		want    string
		wantErr error
	}{
		{name: "plain", content: "s3cret", want: "s3cret"},
		{name: "one newline", content: "s3cret\n", want: "s3cret"},
		{name: "crlf", content: "s3cret\r\n", want: "s3cret"},
		{name: "only one newline trimmed", content: "s3cret\n\n", want: "s3cret\n"},
		{name: "inner spaces kept", content: " s3 cret \n", want: " s3 cret "},
		{name: "empty", content: "", wantErr: secret.ErrEmpty},
		{name: "only newline", content: "\n", wantErr: secret.ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := secret.ReadFile(path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadFile() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got.Reveal()); diff != "" {
				t.Errorf("ReadFile() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadFileRefusesLargeAndMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	large := filepath.Join(dir, "large")
	content := bytes.Repeat([]byte("a"), secret.MaxFileSize+1)
	if err := os.WriteFile(large, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := secret.ReadFile(large); err == nil {
		t.Error("ReadFile() of an oversized file succeeded")
	}
	if _, err := secret.ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile() of a missing file: error = %v, want os.ErrNotExist", err)
	}
}

func TestReadFileErrorHidesContent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "secret")
	content := strings.Repeat(value, secret.MaxFileSize/len(value)+1)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := secret.ReadFile(path)
	if err == nil || strings.Contains(err.Error(), value) {
		t.Errorf("ReadFile() error = %v, want an error without the content", err)
	}
}
