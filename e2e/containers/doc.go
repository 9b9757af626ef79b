// Package containers runs the end-to-end scenarios against the platform in
// containers, the way teams deploy it: one FROM-scratch image per workload
// and one for NATS (built by `make images`), read-only root filesystems,
// every capability dropped, a non-root user, a network of the suite's own,
// and a PKI issued for the run. On top of the scenarios every stack runs,
// it calls the workloads from a container of that network and breaks the
// stack on purpose: it stops the payment service, restarts NATS and kills
// the gateway while orders are placed.
//
// The tests run only when RAMPART_CONTAINER_SUITE=1, which `make e2e`
// sets; they then fail, rather than skip, without a Docker engine.
package containers
