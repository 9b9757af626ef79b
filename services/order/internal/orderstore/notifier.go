package orderstore

import "sync"

// notifier wakes the watchers of an order when the store changes its
// status. Only the order's own watchers wake, and a wake-up never blocks
// the store: each watcher has room for one pending wake-up, and further
// ones merge into it. It sees the changes made through this process's
// store, which are all of them while one process owns the database.
type notifier struct {
	mu       sync.Mutex
	watchers map[string]map[chan struct{}]struct{} // by order id
}

func (n *notifier) subscribe(orderID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.watchers == nil {
		n.watchers = map[string]map[chan struct{}]struct{}{}
	}
	if n.watchers[orderID] == nil {
		n.watchers[orderID] = map[chan struct{}]struct{}{}
	}
	n.watchers[orderID][ch] = struct{}{}

	var once sync.Once
	stop := func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			delete(n.watchers[orderID], ch)
			if len(n.watchers[orderID]) == 0 {
				delete(n.watchers, orderID)
			}
		})
	}
	return ch, stop
}

func (n *notifier) notify(orderID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.watchers[orderID] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// count returns how many watches are open.
func (n *notifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	for _, chans := range n.watchers {
		total += len(chans)
	}
	return total
}
