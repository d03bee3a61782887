package redis_test

import (
	"os"
	"testing"
	"time"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

const presenceTTL = time.Second

// TestPresenceKilledNode kills a node's process with SIGKILL: its session
// leaves presence within PresenceTTL, while the others stay.
func TestPresenceKilledNode(t *testing.T) {
	testenv.Redis(t)
	c := newClient(t, nil)
	prefix := uniquePrefix(t, c)
	backplanetest.KilledNode(t, func() fanout.Backplane {
		return fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix, PresenceTTL: presenceTTL})
	}, presenceTTL, "TestPresenceChildNode", "FANOUT_TEST_REDIS_PREFIX="+prefix)
}

// TestPresenceChildNode is the node TestPresenceKilledNode kills.
func TestPresenceChildNode(t *testing.T) {
	backplanetest.ChildNode(t, func() fanout.Backplane {
		c := goredis.NewClient(&goredis.Options{Addr: testenv.Redis(t)})
		return fanoutredis.New(c, &fanoutredis.Options{Prefix: os.Getenv("FANOUT_TEST_REDIS_PREFIX"), PresenceTTL: presenceTTL})
	})
}
