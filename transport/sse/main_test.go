package sse_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// BenchmarkEveryday runs its streams in a child process (this test
	// binary again), so that the server's CPU is measured alone.
	if os.Getenv(clientProcessEnv) != "" {
		os.Exit(runClientProcess())
	}
	goleak.VerifyTestMain(m)
}
