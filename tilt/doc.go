// Package tilt holds the checks of the development loop and the
// Kubernetes manifests that live beside it: the Tiltfile loaded against
// recording stand-ins for Tilt's built-ins, every kustomize overlay
// rendered and decoded strictly into the Kubernetes API types, and a
// policy that every rendered workload must meet. The package has no code
// of its own; its tests are the point.
package tilt
