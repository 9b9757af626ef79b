// Package e2e holds the end-to-end tests: the platform's public API driven
// through the gateway as a real client would, and its workloads' ports and
// NATS called as an impersonated workload would, over real mutual TLS and
// NATS JetStream.
//
// The tests of this package start the whole platform once, with
// platform/devstack, each workload as its own process on 127.0.0.1, and run
// the scenarios of internal/scenario against it; `make test` runs them, and
// -short skips them. Package containers runs the same scenarios, and more,
// against the platform in containers (`make e2e`).
package e2e
