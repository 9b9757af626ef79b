// Package e2e holds the end-to-end tests: the platform's public API driven
// as a real client would, against every workload running as its own
// process or container, over real mutual TLS and NATS.
package e2e
