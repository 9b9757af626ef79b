// Package password hashes passwords with argon2id and checks them against
// the stored hash, encoded as a PHC string:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// The cost parameters travel in the string, so they can be raised for new
// hashes while old ones still verify with the parameters they were made
// with; [NeedsRehash] tells when a stored hash is behind.
//
// The argon2id function itself is golang.org/x/crypto/argon2, maintained
// with the Go project. That module offers no encoding of the parameters and
// salt next to the hash, so this package is the glue: a few dozen lines that
// format the string and parse it strictly, rather than another dependency
// for something that small. Parsing refuses anything but the exact form
// Hash writes, and parameters outside fixed bounds, because a hostile
// stored string could otherwise ask for gigabytes of memory per login.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are the cost parameters of argon2id, and the sizes of the salt
// and of the hash.
type Params struct {
	// Memory is in KiB.
	Memory      uint32
	Iterations  uint32
	Parallelism uint8
	SaltLength  uint32
	KeyLength   uint32
}

// DefaultParams are OWASP's minimum recommendation for argon2id (19 MiB,
// two passes, one lane; Password Storage Cheat Sheet), with a 16-byte salt
// and a 32-byte hash as RFC 9106 recommends.
var DefaultParams = Params{
	Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32,
}

// Bounds on the parameters that [Hash] uses and that a stored hash may
// name. The upper bounds leave room to raise the cost well past
// [DefaultParams] (RFC 9106's second recommended option is 64 MiB, three
// passes, four lanes) while keeping one login from taking more than that.
const (
	MaxMemory      = 64 * 1024
	MaxIterations  = 10
	MaxParallelism = 8
	MinSaltLength  = 8
	MaxSaltLength  = 64
	MinKeyLength   = 16
	MaxKeyLength   = 64

	// maxEncodedLength is longer than any string within the bounds above.
	maxEncodedLength = 256
)

// Errors returned by [Verify] and [ParseParams].
var (
	ErrMismatch    = errors.New("password: password does not match")
	ErrMalformed   = errors.New("password: malformed hash")
	ErrUnsupported = errors.New("password: unsupported algorithm or version")
	ErrParams      = errors.New("password: parameters out of bounds")
)

const (
	algorithm = "argon2id"
	version   = "v=19" // argon2.Version, 0x13
)

// b64 is the encoding of the PHC string format: standard alphabet, no
// padding, and no stray bits in the last character.
var b64 = base64.RawStdEncoding.Strict()

// Hash returns the PHC string of password hashed with p and a new random
// salt. It refuses parameters outside the package's bounds ([ErrParams]).
func Hash(password string, p Params) (string, error) {
	if err := p.check(); err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	salt := make([]byte, p.SaltLength)
	// crypto/rand.Read never fails: the runtime aborts the program rather
	// than hand out predictable bytes.
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLength)
	return encode(p, salt, key), nil
}

// Verify reports whether password matches the PHC string encoded: nil if
// it does, [ErrMismatch] if not. The hashes are compared in constant time.
// A string that is not in the form [Hash] writes is refused before any
// hashing, with [ErrMalformed], [ErrUnsupported] or [ErrParams].
func Verify(password, encoded string) error {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return fmt.Errorf("verifying password: %w", err)
	}
	got := argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLength)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

// ParseParams returns the parameters a PHC string was hashed with, with
// the errors of [Verify] for a string it would refuse.
func ParseParams(encoded string) (Params, error) {
	p, _, _, err := decode(encoded)
	if err != nil {
		return Params{}, fmt.Errorf("parsing password hash: %w", err)
	}
	return p, nil
}

// NeedsRehash reports whether the hash encoded was made with parameters
// other than p, so that a caller who has just verified the password can
// store a new hash made with p. A string that does not parse needs one too.
func NeedsRehash(encoded string, p Params) bool {
	got, err := ParseParams(encoded)
	return err != nil || got != p
}

// check applies the bounds. Argon2 itself needs at least one pass, one
// lane and 8 KiB of memory per lane.
func (p Params) check() error {
	switch {
	case p.Iterations < 1 || p.Iterations > MaxIterations:
		return fmt.Errorf("%w: t=%d, want 1 to %d", ErrParams, p.Iterations, MaxIterations)
	case p.Parallelism < 1 || p.Parallelism > MaxParallelism:
		return fmt.Errorf("%w: p=%d, want 1 to %d", ErrParams, p.Parallelism, MaxParallelism)
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > MaxMemory:
		return fmt.Errorf("%w: m=%d, want %d to %d",
			ErrParams, p.Memory, 8*uint32(p.Parallelism), MaxMemory)
	case p.SaltLength < MinSaltLength || p.SaltLength > MaxSaltLength:
		return fmt.Errorf("%w: salt of %d bytes", ErrParams, p.SaltLength)
	case p.KeyLength < MinKeyLength || p.KeyLength > MaxKeyLength:
		return fmt.Errorf("%w: hash of %d bytes", ErrParams, p.KeyLength)
	}
	return nil
}

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$%s$%s$m=%d,t=%d,p=%d$%s$%s", algorithm, version,
		p.Memory, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decode parses a PHC string in exactly the form encode writes: the fields
// in that order, decimal numbers without signs or leading zeros, canonical
// unpadded base64, and no optional fields.
func decode(encoded string) (p Params, salt, key []byte, err error) {
	if len(encoded) > maxEncodedLength {
		return Params{}, nil, nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(encoded))
	}
	fields := strings.Split(encoded, "$")
	if len(fields) != 6 || fields[0] != "" {
		return Params{}, nil, nil, fmt.Errorf("%w: not a PHC string", ErrMalformed)
	}
	if fields[1] != algorithm || fields[2] != version {
		return Params{}, nil, nil, ErrUnsupported
	}
	if p, err = decodeCosts(fields[3]); err != nil {
		return Params{}, nil, nil, err
	}
	if salt, err = decodeBase64(fields[4]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: salt", err)
	}
	if key, err = decodeBase64(fields[5]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: hash", err)
	}
	p.SaltLength, p.KeyLength = byteLength(salt), byteLength(key)
	if err := p.check(); err != nil {
		return Params{}, nil, nil, err
	}
	return p, salt, key, nil
}

// byteLength is the length of b as a uint32. It saturates at the largest
// uint32, a length that every bound refuses; decode's cap on the string
// keeps real lengths far below it.
func byteLength(b []byte) uint32 {
	n := uint64(len(b))
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

// decodeCosts parses "m=<memory>,t=<iterations>,p=<parallelism>".
func decodeCosts(s string) (Params, error) {
	names := [...]string{"m", "t", "p"}
	parts := strings.Split(s, ",")
	if len(parts) != len(names) {
		return Params{}, fmt.Errorf("%w: parameters %q", ErrMalformed, s)
	}
	var values [len(names)]uint32
	for i, part := range parts {
		name, value, ok := strings.Cut(part, "=")
		if !ok || name != names[i] {
			return Params{}, fmt.Errorf("%w: parameters %q", ErrMalformed, s)
		}
		n, err := decodeDecimal(value)
		if err != nil {
			return Params{}, err
		}
		values[i] = n
	}
	parallelism := values[2]
	if parallelism > MaxParallelism {
		return Params{}, fmt.Errorf("%w: p=%d", ErrParams, parallelism)
	}
	return Params{Memory: values[0], Iterations: values[1], Parallelism: uint8(parallelism)}, nil
}

// decodeDecimal parses a canonical decimal number: digits only, no leading
// zero, at most 32 bits.
func decodeDecimal(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("%w: number %q", ErrMalformed, s)
	}
	return uint32(n), nil
}

// decodeBase64 refuses what the decoder would let through but encode never
// writes: line breaks, which the decoder skips.
func decodeBase64(s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil || b64.EncodeToString(b) != s {
		return nil, ErrMalformed
	}
	return b, nil
}
