package redis_test

import (
	"sync"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/backplane/backplanetest"
	fanoutredis "github.com/gofanout/fanout/backplane/redis"
	"github.com/gofanout/fanout/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// TestConformance is not parallel: the suite checks for leaked goroutines
// after its own parallel scenarios.
func TestConformance(t *testing.T) {
	testenv.Redis(t)
	const historySize = 50
	type cluster struct {
		client *goredis.Client
		prefix string
	}
	var clusters sync.Map // *testing.T of a scenario -> cluster
	backplanetest.Run(t, func(t *testing.T) func() fanout.Backplane {
		c := newClient(t, nil)
		prefix := uniquePrefix(t, c)
		clusters.Store(t, cluster{c, prefix})
		t.Cleanup(func() { clusters.Delete(t) })
		return func() fanout.Backplane {
			return fanoutredis.New(c, &fanoutredis.Options{Prefix: prefix, HistorySize: historySize})
		}
	}, backplanetest.Features{
		HistorySize: historySize,
		Expiry: func(t *testing.T, l backplanetest.Lifetimes) func() fanout.Backplane {
			c := newClient(t, nil)
			prefix := uniquePrefix(t, c)
			return func() fanout.Backplane {
				return fanoutredis.New(c, &fanoutredis.Options{
					Prefix: prefix, HistorySize: historySize,
					IdleTTL: l.IdleTTL, FinalTTL: l.FinalTTL, HistoryAge: l.HistoryAge,
				})
			}
		},
		LoseHistory: func(t *testing.T, topic string) {
			v, ok := clusters.Load(t)
			if !ok {
				t.Fatal("LoseHistory: no cluster for this test")
			}
			cl := v.(cluster)
			if err := deleteKeys(cl.client, "{"+cl.prefix+":"+topic+"}*"); err != nil {
				t.Fatalf("LoseHistory: %v", err)
			}
		},
	})
}
