package chaos_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/chaos"
)

func pos(epoch string, seq uint64) fanout.Position { return fanout.Position{Epoch: epoch, Seq: seq} }

func msg(epoch string, seq uint64, data string) chaos.Event {
	return chaos.Event{Kind: chaos.Message, Pos: pos(epoch, seq), Data: data}
}

// published acknowledges data "m1".."mn" at e:1..e:n.
func published(epoch string, from, to int) []chaos.Published {
	var log []chaos.Published
	for i := from; i <= to; i++ {
		log = append(log, chaos.Published{Topic: "t", Data: fmt.Sprint("m", i), Pos: pos(epoch, uint64(i))})
	}
	return log
}

func messages(epoch string, from, to int) []chaos.Event {
	var evs []chaos.Event
	for i := from; i <= to; i++ {
		evs = append(evs, msg(epoch, uint64(i), fmt.Sprint("m", i)))
	}
	return evs
}

func TestVerify(t *testing.T) {
	empty := chaos.Event{Kind: chaos.Snapshot, Pos: pos("", 0)}
	for _, tc := range []struct {
		name   string
		log    []chaos.Published
		events []chaos.Event
		want   string // a word of the first violation, "" for none
	}{
		{"everything in order", published("e", 1, 5), append([]chaos.Event{empty}, messages("e", 1, 5)...), ""},
		{"a gap", published("e", 1, 5), append(append([]chaos.Event{empty}, messages("e", 1, 2)...), messages("e", 4, 5)...), "gap"},
		{"a duplicate", published("e", 1, 3), append(append([]chaos.Event{empty}, messages("e", 1, 2)...), messages("e", 2, 3)...), "gap"},
		{"a reset then the snapshot", published("e", 1, 5), append(append([]chaos.Event{empty}, messages("e", 1, 2)...),
			chaos.Event{Kind: chaos.Reset, Pos: pos("e", 2)},
			chaos.Event{Kind: chaos.Snapshot, Pos: pos("e", 5), Items: []chaos.Item{{Pos: pos("e", 5), Data: "m5"}}}), ""},
		{"the end never arrives", published("e", 1, 5), append([]chaos.Event{empty}, messages("e", 1, 4)...), "last acknowledged"},
		{
			// Redis restored from older data hands out e:3 again: the
			// publisher's acknowledgement and the client disagree.
			"a reused position",
			append(published("e", 1, 4), chaos.Published{Topic: "t", Data: "m5", Pos: pos("e", 3)}),
			append([]chaos.Event{empty}, messages("e", 1, 4)...),
			"reused",
		},
		{"an unknown message", published("e", 1, 1), []chaos.Event{empty, msg("e", 1, "m1"), msg("e", 2, "forged")}, "never published"},
		{"failed publishes are no loss", append(published("e", 1, 2), chaos.Published{Topic: "t", Data: "m3", Err: errors.New("unavailable")}),
			append([]chaos.Event{empty}, messages("e", 1, 2)...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chaos.Verify(tc.log, []chaos.Stream{{Client: "c", Topic: "t", Events: tc.events}})
			if tc.want == "" {
				if r.Violations != 0 {
					t.Fatalf("got violations %q, want none", r.Examples)
				}
				return
			}
			if r.Violations == 0 || !strings.Contains(r.Examples[0], tc.want) {
				t.Fatalf("got violations %q, want one about %q", r.Examples, tc.want)
			}
		})
	}
}
