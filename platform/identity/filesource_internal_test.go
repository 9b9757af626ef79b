package identity

import (
	"bytes"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// certBlock is a syntactically valid PEM block; decodePEM does not parse
// what it holds.
var certBlock = pem.EncodeToMemory(&pem.Block{
	Type:  "CERTIFICATE",
	Bytes: []byte{0x30, 0x03, 1, 2, 3},
})

func TestDecodePEM(t *testing.T) {
	t.Parallel()
	keyBlock := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{4, 5}})
	withHeader := pem.EncodeToMemory(&pem.Block{
		Type:    "CERTIFICATE",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"},
		Bytes:   []byte{6},
	})
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name    string
		data    []byte
		want    [][]byte
		wantErr error
	}{
		{"one block", certBlock, [][]byte{{0x30, 0x03, 1, 2, 3}}, nil},
		{
			"two blocks and white space",
			join([]byte("\n\t "), certBlock, []byte("\r\n\n"), certBlock, []byte("\n")),
			[][]byte{{0x30, 0x03, 1, 2, 3}, {0x30, 0x03, 1, 2, 3}},
			nil,
		},
		{"empty", nil, nil, ErrMalformedPEM},
		{"white space only", []byte(" \n\t"), nil, ErrMalformedPEM},
		{"text before", join([]byte("subject=order\n"), certBlock), nil, ErrMalformedPEM},
		{"text after", join(certBlock, []byte("trailer")), nil, ErrMalformedPEM},
		{"cut short", certBlock[:len(certBlock)-10], nil, ErrMalformedPEM},
		{"second block cut short", join(certBlock, certBlock[:30]), nil, ErrMalformedPEM},
		{"wrong type", keyBlock, nil, ErrMalformedPEM},
		{"wrong type after a good block", join(certBlock, keyBlock), nil, ErrMalformedPEM},
		{"headers", withHeader, nil, ErrMalformedPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodePEM(tt.data, "CERTIFICATE")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("decodePEM error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodePEM (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzDecodePEM checks that decodePEM never panics, and that whatever it
// accepts is exactly a sequence of blocks of the asked type that the
// standard decoder reads the same way, with nothing else but white space.
func FuzzDecodePEM(f *testing.F) {
	f.Add(certBlock)
	f.Add(append(append([]byte{}, certBlock...), certBlock...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n"))
	f.Add([]byte("junk\n-----BEGIN CERTIFICATE-----\nMAMBAgM=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		blocks, err := decodePEM(data, "CERTIFICATE")
		if err != nil {
			if !errors.Is(err, ErrMalformedPEM) {
				t.Fatalf("error %v is not ErrMalformedPEM", err)
			}
			return
		}

		rest := data
		for i, want := range blocks {
			if !bytes.HasPrefix(bytes.TrimSpace(rest), []byte("-----BEGIN ")) {
				t.Fatalf("accepted data before block %d: %q", i, rest)
			}
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
				t.Fatalf("accepted block %d that the standard decoder reads as %+v", i, block)
			}
			if !bytes.Equal(block.Bytes, want) {
				t.Fatalf("block %d = %x, standard decoder reads %x", i, want, block.Bytes)
			}
		}
		if len(blocks) == 0 || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("accepted %d blocks followed by %q", len(blocks), rest)
		}
	})
}
