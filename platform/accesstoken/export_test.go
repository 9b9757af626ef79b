package accesstoken

import "time"

// SetClock makes v read the time from now.
func SetClock(v *Verifier, now func() time.Time) { v.now = now }

// Remembered is how many tokens v remembers.
func Remembered(v *Verifier) int {
	if v.seen == nil {
		return 0
	}
	return v.seen.tokens.Len()
}
