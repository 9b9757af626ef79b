package password_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/services/user/internal/password"
)

// cheap keeps the tests fast where the cost does not matter.
var cheap = password.Params{
	Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32,
}

// referenceHash is argon2id of "password" with salt "somesalt", m=65536,
// t=2, p=1, as the reference implementation's test suite lists it.
const referenceHash = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ" +
	"$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

func mustHash(t *testing.T, pw string, p password.Params) string {
	t.Helper()
	encoded, err := password.Hash(pw, p)
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	return encoded
}

func TestHashDefaultParams(t *testing.T) {
	t.Parallel()
	encoded := mustHash(t, "correct horse battery", password.DefaultParams)

	const prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
	if !strings.HasPrefix(encoded, prefix) {
		t.Errorf("Hash = %q, want prefix %q", encoded, prefix)
	}
	if err := password.Verify("correct horse battery", encoded); err != nil {
		t.Errorf("Verify(right password) = %v", err)
	}
	err := password.Verify("correct horse battery!", encoded)
	if !errors.Is(err, password.ErrMismatch) {
		t.Errorf("Verify(wrong password) = %v, want ErrMismatch", err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		password string
		params   password.Params
	}{
		{"ascii", "a long enough passphrase", cheap},
		{"unicode", "пароль-密码-كلمة السر", cheap},
		{"empty", "", cheap},
		{"raised costs", "a long enough passphrase",
			password.Params{Memory: 256, Iterations: 3, Parallelism: 2, SaltLength: 24, KeyLength: 48}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			encoded := mustHash(t, tt.password, tt.params)
			if err := password.Verify(tt.password, encoded); err != nil {
				t.Errorf("Verify(right password) = %v", err)
			}
			if err := password.Verify(tt.password+"x", encoded); !errors.Is(err, password.ErrMismatch) {
				t.Errorf("Verify(wrong password) = %v, want ErrMismatch", err)
			}
			got, err := password.ParseParams(encoded)
			if err != nil {
				t.Fatalf("ParseParams: %v", err)
			}
			if diff := cmp.Diff(tt.params, got); diff != "" {
				t.Errorf("ParseParams (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSaltIsRandom(t *testing.T) {
	t.Parallel()
	a := mustHash(t, "same password twice", cheap)
	b := mustHash(t, "same password twice", cheap)
	if a == b {
		t.Errorf("two hashes of one password are equal: %q", a)
	}
}

func TestReferenceHash(t *testing.T) {
	t.Parallel()
	if err := password.Verify("password", referenceHash); err != nil {
		t.Errorf("Verify(reference hash) = %v", err)
	}
	want := password.Params{Memory: 65536, Iterations: 2, Parallelism: 1, SaltLength: 8, KeyLength: 32}
	got, err := password.ParseParams(referenceHash)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseParams (-want +got):\n%s", diff)
	}
}

// TestVerifyRefuses covers stored strings that were tampered with or
// written to make verification expensive: each is refused, most before
// any hashing.
func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	const pw = "a long enough passphrase"
	valid := mustHash(t, pw, cheap)
	fields := strings.Split(valid, "$") // "", alg, version, costs, salt, hash
	with := func(i int, value string) string {
		f := append([]string(nil), fields...)
		f[i] = value
		return strings.Join(f, "$")
	}
	key, err := base64.RawStdEncoding.DecodeString(fields[5])
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), key...)
	flipped[0] ^= 1
	noVersion := strings.Join(append(fields[:2:2], fields[3:]...), "$")

	tests := []struct {
		name    string
		encoded string
		want    error
	}{
		{"empty", "", password.ErrMalformed},
		{"plain text", pw, password.ErrMalformed},
		{"bcrypt", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", password.ErrMalformed},
		{"no leading dollar", strings.TrimPrefix(valid, "$"), password.ErrMalformed},
		{"extra field", valid + "$AAAA", password.ErrMalformed},
		{"too long", valid + strings.Repeat("A", 300), password.ErrMalformed},
		{"argon2i", with(1, "argon2i"), password.ErrUnsupported},
		{"argon2d", with(1, "argon2d"), password.ErrUnsupported},
		{"old version", with(2, "v=16"), password.ErrUnsupported},
		{"no version", noVersion, password.ErrMalformed},
		{"memory too large", with(3, "m=4194304,t=1,p=1"), password.ErrParams},
		{"memory over 32 bits", with(3, "m=99999999999,t=1,p=1"), password.ErrMalformed},
		{"memory below 8 KiB a lane", with(3, "m=15,t=1,p=2"), password.ErrParams},
		{"no passes", with(3, "m=64,t=0,p=1"), password.ErrParams},
		{"too many passes", with(3, "m=64,t=1000000,p=1"), password.ErrParams},
		{"no lanes", with(3, "m=64,t=1,p=0"), password.ErrParams},
		{"too many lanes", with(3, "m=64,t=1,p=255"), password.ErrParams},
		{"lanes over 8 bits", with(3, "m=64,t=1,p=257"), password.ErrParams},
		{"leading zero", with(3, "m=064,t=1,p=1"), password.ErrMalformed},
		{"plus sign", with(3, "m=+64,t=1,p=1"), password.ErrMalformed},
		{"minus sign", with(3, "m=-64,t=1,p=1"), password.ErrMalformed},
		{"hex", with(3, "m=0x40,t=1,p=1"), password.ErrMalformed},
		{"out of order", with(3, "t=1,m=64,p=1"), password.ErrMalformed},
		{"missing parameter", with(3, "m=64,t=1"), password.ErrMalformed},
		{"extra parameter", with(3, "m=64,t=1,p=1,keyid=AAAA"), password.ErrMalformed},
		{"spaces", with(3, "m=64, t=1, p=1"), password.ErrMalformed},
		{"padded salt", with(4, fields[4]+"=="), password.ErrMalformed},
		{"salt with line break", with(4, fields[4][:8]+"\n"+fields[4][8:]), password.ErrMalformed},
		{"salt with stray bits", with(4, fields[4][:len(fields[4])-1]+"B"), password.ErrMalformed},
		{"url alphabet", with(4, "-_-_-_-_-_-_-_-_-_-_-w"), password.ErrMalformed},
		{"short salt", with(4, "AAAAAA"), password.ErrParams},
		{"short hash", with(5, "AAAAAAAAAAA"), password.ErrParams},
		{"long hash", with(5, strings.Repeat("A", 128)), password.ErrParams},
		{"empty hash", with(5, ""), password.ErrParams},
		{"tampered hash", with(5, b64(flipped)), password.ErrMismatch},
		{"truncated hash", with(5, b64(key[:len(key)-1])), password.ErrMismatch},
		{"other salt", with(4, "AAAAAAAAAAAAAAAAAAAAAA"), password.ErrMismatch},
		{"other costs", with(3, "m=64,t=2,p=1"), password.ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := password.Verify(pw, tt.encoded); !errors.Is(err, tt.want) {
				t.Errorf("Verify(%q) = %v, want %v", tt.encoded, err, tt.want)
			}
		})
	}
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

func TestHashRefusesParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*password.Params)
	}{
		{"zero", func(p *password.Params) { *p = password.Params{} }},
		{"memory", func(p *password.Params) { p.Memory = password.MaxMemory + 1 }},
		{"passes", func(p *password.Params) { p.Iterations = 0 }},
		{"lanes", func(p *password.Params) { p.Parallelism = password.MaxParallelism + 1 }},
		{"salt", func(p *password.Params) { p.SaltLength = 4 }},
		{"hash", func(p *password.Params) { p.KeyLength = 8 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			params := cheap
			tt.change(&params)
			if _, err := password.Hash("whatever", params); !errors.Is(err, password.ErrParams) {
				t.Errorf("Hash = %v, want ErrParams", err)
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	t.Parallel()
	encoded := mustHash(t, "a long enough passphrase", cheap)
	raised := cheap
	raised.Iterations++

	tests := []struct {
		name    string
		encoded string
		params  password.Params
		want    bool
	}{
		{"same parameters", encoded, cheap, false},
		{"raised parameters", encoded, raised, true},
		{"unparsable", "not a hash", cheap, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := password.NeedsRehash(tt.encoded, tt.params); got != tt.want {
				t.Errorf("NeedsRehash = %v, want %v", got, tt.want)
			}
		})
	}
}
