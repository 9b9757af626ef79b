package password

import "testing"

// FuzzDecode checks that whatever decode accepts is exactly what encode
// writes for the parameters, salt and hash it returns, and that those are
// within the bounds. A stored string is the input an attacker who reaches
// the database controls.
func FuzzDecode(f *testing.F) {
	const hash = "$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA" + hash)
	f.Add("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ" + hash)
	f.Add("$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=019456,t=2,p=1$c29tZXNhbHQ" + hash)
	f.Fuzz(func(t *testing.T, encoded string) {
		p, salt, key, err := decode(encoded)
		if err != nil {
			return
		}
		if err := p.check(); err != nil {
			t.Fatalf("decode(%q) accepted parameters out of bounds: %v", encoded, err)
		}
		if int(p.SaltLength) != len(salt) || int(p.KeyLength) != len(key) {
			t.Fatalf("decode(%q) = %+v with a %d-byte salt and a %d-byte hash",
				encoded, p, len(salt), len(key))
		}
		if again := encode(p, salt, key); again != encoded {
			t.Fatalf("decode(%q) accepted a string that encodes as %q", encoded, again)
		}
	})
}
