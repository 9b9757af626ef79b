package ratelimit_test

import (
	"fmt"

	"example.com/rampart/platform/ratelimit"
)

func ExampleLimiter_Allow() {
	limiter := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 2})
	for i := range 3 {
		ok, retryAfter := limiter.Allow("user:alice", 1)
		fmt.Println(i+1, ok, retryAfter.Round(100_000_000) > 0)
	}
	ok, _ := limiter.Allow("user:bob", 1)
	fmt.Println("bob", ok)
	// Output:
	// 1 true false
	// 2 true false
	// 3 false true
	// bob true
}
