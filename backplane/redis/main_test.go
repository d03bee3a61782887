package redis_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// After a dial fails, go-redis's pool retries the server once a
		// second in a goroutine that notices the client's Close only
		// when it wakes: the Redis Cluster test kills a primary.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	)
}
