package policy_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoregistry"

	"example.com/rampart/platform/policy"
	orderv1 "example.com/rampart/proto/order/v1"
)

// BenchmarkMethod measures the policy work of one call to GetOrder, step
// by step, as a workload's server does it: find the method, check the
// calling workload, the end user's scopes, and the transaction context.
func BenchmarkMethod(b *testing.B) {
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		b.Fatal(err)
	}
	const procedure = "/order.v1.OrderService/GetOrder"
	method, err := set.Method(procedure)
	if err != nil {
		b.Fatal(err)
	}
	gateway := workload("gateway")
	scopes := []string{"orders:read", "orders:write"}
	req := &orderv1.GetOrderRequest{OrderId: "0193a7b0-54f8-7c3e-9d2a-6f1e2c3d4b5a"}
	bound := map[string]string{"order_id": req.GetOrderId()}

	steps := []struct {
		name string
		run  func() error
	}{
		{"lookup", func() error { _, err := set.Method(procedure); return err }},
		{"caller", func() error { return method.CheckCaller(gateway) }},
		{"scopes", func() error { return method.Authorize(true, scopes) }},
		{"context", func() error { return method.CheckTransactionContext(req, bound) }},
	}
	for _, step := range steps {
		b.Run(step.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := step.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
