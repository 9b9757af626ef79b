package accesstoken

import (
	"fmt"
	"strings"
)

const bearer = "Bearer"

// ParseAuthorization returns the token of an Authorization header value of
// the form "Bearer <token>" (RFC 6750, section 2.1). The scheme is matched
// in any case; exactly one space must follow it, and the token must be
// token68 characters only. A value longer than a token of [MaxTokenSize]
// needs is refused before it is looked at ([ErrTooLarge]), an empty one with
// [ErrNoToken], and anything else that does not fit with [ErrAuthorization].
func ParseAuthorization(header string) (string, error) {
	if header == "" {
		return "", ErrNoToken
	}
	if len(header) > len(bearer)+1+MaxTokenSize {
		return "", fmt.Errorf("%w: authorization header of %d bytes", ErrTooLarge, len(header))
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, bearer) {
		return "", fmt.Errorf("%w: not a bearer token", ErrAuthorization)
	}
	if !isToken68(token) {
		return "", fmt.Errorf("%w: token is not token68", ErrAuthorization)
	}
	return token, nil
}

// isToken68 reports whether s matches the token68 rule of RFC 9110, section
// 11.2: one or more of ALPHA, DIGIT, "-", ".", "_", "~", "+", "/", then any
// number of "=".
func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := range len(body) {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}
