package stack

import (
	"context"
	"sync"
	"time"
)

// Memory samples the resident size of every workload process.
type Memory struct {
	pids map[string]int
}

// Memory returns a sampler of the stack's processes.
func (s *Stack) Memory() (*Memory, error) {
	pids, err := s.Processes()
	if err != nil {
		return nil, err
	}
	return &Memory{pids: pids}, nil
}

// Sample returns the resident size of each process now, in bytes.
func (m *Memory) Sample() (map[string]uint64, error) {
	out := make(map[string]uint64, len(m.pids))
	for name, pid := range m.pids {
		rss, err := RSS(pid)
		if err != nil {
			return nil, err
		}
		out[name] = rss
	}
	return out, nil
}

// Peak samples every interval until the returned function is called,
// which returns the largest size seen of each process and the first error
// met, if any.
func (m *Memory) Peak(ctx context.Context, interval time.Duration) func() (map[string]uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		peak     = map[string]uint64{}
		firstErr error
	)
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			sample, err := m.Sample()
			if err != nil {
				firstErr = err
				return
			}
			for name, rss := range sample {
				peak[name] = max(peak[name], rss)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() (map[string]uint64, error) {
		cancel()
		wg.Wait()
		return peak, firstErr
	}
}
