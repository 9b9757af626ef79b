package userrpc

// ObserveVerify makes s call observe with every stored hash it checks a
// password against.
func ObserveVerify(s *Server, observe func(encoded string)) {
	verify := s.verify
	s.verify = func(pw, encoded string) error {
		observe(encoded)
		return verify(pw, encoded)
	}
}
