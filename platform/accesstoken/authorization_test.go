package accesstoken_test

import (
	"errors"
	"strings"
	"testing"

	"example.com/rampart/platform/accesstoken"
)

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	const tok = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"
	long := strings.Repeat("a", accesstoken.MaxTokenSize)
	invalid := accesstoken.ErrAuthorization
	tests := []struct {
		name    string
		header  string
		want    string
		wantErr error
	}{
		{"bearer", "Bearer " + tok, tok, nil},
		{"lower case scheme", "bearer " + tok, tok, nil},
		{"mixed case scheme", "BeArEr " + tok, tok, nil},
		{"token68 characters", "Bearer aZ09-._~+/==", "aZ09-._~+/==", nil},
		{"at the size limit", "Bearer " + long, long, nil},

		{"empty", "", "", accesstoken.ErrNoToken},
		{"over the size limit", "Bearer " + long + "a", "", accesstoken.ErrTooLarge},
		{"a megabyte of spaces", strings.Repeat(" ", 1<<20), "", accesstoken.ErrTooLarge},

		{"scheme only", "Bearer", "", invalid},
		{"scheme and space", "Bearer ", "", invalid},
		{"two spaces", "Bearer  " + tok, "", invalid},
		{"tab", "Bearer\t" + tok, "", invalid},
		{"leading space", " Bearer " + tok, "", invalid},
		{"trailing space", "Bearer " + tok + " ", "", invalid},
		{"two tokens", "Bearer " + tok + " " + tok, "", invalid},
		{"basic", "Basic dXNlcjpwYXNz", "", invalid},
		{"no scheme", tok, "", invalid},
		{"prefix of bearer", "Bear " + tok, "", invalid},
		{"only padding", "Bearer ===", "", invalid},
		{"padding inside", "Bearer ab=cd", "", invalid},
		{"comma", "Bearer a,b", "", invalid},
		{"quote", `Bearer "abc"`, "", invalid},
		{"newline", "Bearer abc\r\nX-Injected: 1", "", invalid},
		{"NUL", "Bearer abc\x00", "", invalid},
		{"non-ASCII", "Bearer tökén", "", invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := accesstoken.ParseAuthorization(tt.header)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseAuthorization() error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseAuthorization() = %q, want %q", got, tt.want)
			}
		})
	}
}
