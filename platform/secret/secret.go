// Package secret holds values, such as passwords and keys, that must never
// reach a log line, an error message or a JSON document by accident.
//
// A [String] prints as "[REDACTED]" through fmt (every verb), encoding/json,
// encoding.TextMarshaler and log/slog. Only [String.Reveal] returns the value,
// so every place that uses a secret is visible in the code.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Redacted is what a [String] prints instead of its value.
const Redacted = "[REDACTED]"

// MaxFileSize is the largest secret file [ReadFile] accepts.
const MaxFileSize = 64 << 10

// ErrEmpty reports a secret file that holds nothing.
var ErrEmpty = errors.New("secret: empty secret")

// String is a secret string. Its zero value is the empty secret.
//
// The value sits behind a pointer so that even reflection-based printers,
// which fmt uses for unexported struct fields it cannot call methods on,
// print an address rather than the value.
type String struct {
	value *string
}

// New returns a String holding value.
func New(value string) String { return String{value: &value} }

// Reveal returns the secret value. Call it only where the value is used,
// never to log or display it.
func (s String) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsZero reports whether the secret is empty.
func (s String) IsZero() bool { return s.Reveal() == "" }

// String returns [Redacted].
func (s String) String() string { return Redacted }

// GoString returns [Redacted], for the %#v verb.
func (s String) GoString() string { return Redacted }

// Format writes [Redacted] whatever the verb and flags, so that %x, %q or
// %d cannot print the value either.
func (s String) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON encodes the secret as the JSON string "[REDACTED]".
func (s String) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText returns [Redacted].
func (s String) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// UnmarshalText sets the secret from text, so that configuration decoders
// can fill a String. It copies text.
func (s *String) UnmarshalText(text []byte) error {
	*s = New(string(text))
	return nil
}

// LogValue makes log/slog print [Redacted], whatever the handler.
func (s String) LogValue() slog.Value { return slog.StringValue(Redacted) }

// ReadFile reads a secret from a file, as mounted by Kubernetes or written by
// a developer. It removes one trailing line break ("\n" or "\r\n"), which
// editors add, and refuses a file that is empty after that, or larger than
// [MaxFileSize]. Its errors never contain the file's content.
func ReadFile(path string) (String, error) {
	f, err := os.Open(path) //nolint:gosec // G304: opening the file the operator names is the point
	if err != nil {
		return String{}, fmt.Errorf("reading secret: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose data

	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return String{}, fmt.Errorf("reading secret %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return String{}, fmt.Errorf("reading secret %s: larger than %d bytes", path, MaxFileSize)
	}

	if trimmed, ok := bytes.CutSuffix(data, []byte("\r\n")); ok {
		data = trimmed
	} else {
		data, _ = bytes.CutSuffix(data, []byte("\n"))
	}
	if len(data) == 0 {
		return String{}, fmt.Errorf("reading secret %s: %w", path, ErrEmpty)
	}
	return New(string(data)), nil
}
