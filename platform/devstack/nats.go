package devstack

import (
	"context"
	"errors"
	"os"
)

// StartNATS prepares the PKI and keys, like [Start], and starts only the
// stack's NATS server, with the same identity, TLS and permissions as in
// the whole stack. It returns once NATS accepts connections. Workloads
// started elsewhere, each by [Attach] and [Stack.StartWorkload], reach it
// at the address in cfg, as a development loop with one process per
// resource (Tilt) runs them. Stop the returned stack with [Stack.Stop].
func StartNATS(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if err := Prepare(cfg); err != nil {
		return nil, err
	}
	s := Attach(cfg)
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop(context.WithoutCancel(ctx)))
		}
	}()
	if err := s.startNATS(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Attach returns a stack that runs nothing yet: its workloads join the
// NATS server and the peers that other processes started with the same
// cfg. It prepares nothing; run [Prepare] or [StartNATS] first.
func Attach(cfg Config) *Stack {
	s := &Stack{
		cfg: cfg, out: cfg.Output, procs: map[string]*process{},
		Exited: make(chan string, len(Workloads)),
	}
	if s.out == nil {
		s.out = os.Stderr
	}
	return s
}
