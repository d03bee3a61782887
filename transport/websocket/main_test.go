package websocket_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The benchmarks run their WebSocket clients in a child process (this
	// test binary again), so that the server's memory and CPU are measured
	// alone.
	if os.Getenv(clientProcessEnv) != "" {
		os.Exit(runClientProcess())
	}
	goleak.VerifyTestMain(m)
}
