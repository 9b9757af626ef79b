package orderrpc

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"example.com/rampart/services/order/internal/orderstore"
)

// A page token is the cursor after the last order of a page, bound to the
// user it was issued to, in base64url:
//
//	version (1 byte) | SHA-256 of the user id, first 8 bytes |
//	create time, Unix nanoseconds (8 bytes, big-endian) | order id (16 bytes)
//
// It is not secret: it holds nothing the user does not know. Orders are
// always listed for the caller only, so a token from another user could
// not reveal their orders anyway; the binding makes such a token an error
// instead of a page of the caller's own orders at a borrowed position.
const (
	pageTokenVersion = 1
	userBindingSize  = 8
	pageTokenSize    = 1 + userBindingSize + 8 + 16
)

// encodePageToken returns the token of c for user. It fails only for an
// order id that is not a UUID, which the store never issues.
func encodePageToken(user string, c orderstore.Cursor) (string, error) {
	id, err := uuid.Parse(c.OrderID)
	if err != nil {
		return "", fmt.Errorf("encoding page token: order id: %w", err)
	}
	buf := make([]byte, 0, pageTokenSize)
	buf = append(buf, pageTokenVersion)
	buf = append(buf, userBinding(user)...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(c.CreateTime.UnixNano()))
	buf = append(buf, id[:]...)
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// decodePageToken returns the cursor in token, or errInvalidPageToken if
// token is malformed or was issued to another user than user.
func decodePageToken(token, user string) (*orderstore.Cursor, error) {
	buf, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(buf) != pageTokenSize || buf[0] != pageTokenVersion {
		return nil, errInvalidPageToken
	}
	if !bytes.Equal(buf[1:1+userBindingSize], userBinding(user)) {
		return nil, errInvalidPageToken
	}
	raw := binary.BigEndian.Uint64(buf[1+userBindingSize:])
	if raw == 0 || raw > math.MaxInt64 {
		return nil, errInvalidPageToken
	}
	nanos := int64(raw)
	id, err := uuid.FromBytes(buf[1+userBindingSize+8:])
	if err != nil {
		return nil, errInvalidPageToken
	}
	return &orderstore.Cursor{CreateTime: time.Unix(0, nanos).UTC(), OrderID: id.String()}, nil
}

func userBinding(user string) []byte {
	sum := sha256.Sum256([]byte(user))
	return sum[:userBindingSize]
}
