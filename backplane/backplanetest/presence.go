package backplanetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

func init() {
	scenarios = append(scenarios,
		scenario{name: "PresenceAcrossNodes", run: testPresenceAcrossNodes},
		scenario{name: "JoinLeaveOrder", run: testJoinLeaveOrder},
		scenario{name: "PresenceOff", run: testPresenceOff},
	)
}

// presenceOptions enables presence and join/leave on every topic.
func presenceOptions(string) fanout.TopicOptions {
	return fanout.TopicOptions{Presence: true, JoinLeave: true}
}

// presenceHub makes a hub with presence and join/leave on every topic.
func (s *suite) presenceHub(t *testing.T) *fanout.Hub {
	t.Helper()
	h, err := fanout.NewHub(&fanout.HubOptions{Backplane: s.newNode(), TopicOptions: presenceOptions})
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// principalClient is a session of a principal with client info.
func (s *suite) principalClient(t *testing.T, h *fanout.Hub, id string) *client {
	t.Helper()
	info, _ := json.Marshal(map[string]string{"name": "user " + id})
	sess, err := h.NewSession(fanout.Principal{ID: id, Info: info})
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() { sess.Close(fanout.CloseNormal, "") })
	return &client{s: sess, timeout: s.f.Timeout}
}

// presence returns the principals of the topic's presence, sorted, and
// checks that the count agrees.
func (s *suite) presence(t *testing.T, h *fanout.Hub, topic string) []string {
	t.Helper()
	// The count is a second read: entries may expire between the two
	// (a killed node's), so a mismatch counts only while the list holds
	// still around it.
	for {
		ids := s.presenceList(t, h, topic)
		n, err := h.PresenceCount(s.ctx(t), topic)
		if err != nil {
			t.Fatalf("presence count: %v", err)
		}
		if n == len(ids) {
			return ids
		}
		if again := s.presenceList(t, h, topic); slices.Equal(again, ids) {
			t.Fatalf("presence count %d, but presence lists %v", n, ids)
		}
	}
}

// presenceList returns the principals in the topic's presence, sorted,
// checking each entry's info.
func (s *suite) presenceList(t *testing.T, h *fanout.Hub, topic string) []string {
	t.Helper()
	l, err := h.Presence(s.ctx(t), topic)
	if err != nil {
		t.Fatalf("presence: %v", err)
	}
	var ids []string
	for _, c := range l {
		var info map[string]string
		if err := json.Unmarshal(c.Info, &info); err != nil || info["name"] != "user "+c.Principal {
			t.Fatalf("presence entry %+v: info %s, want {\"name\":\"user %s\"}", c, c.Info, c.Principal)
		}
		ids = append(ids, c.Principal)
	}
	slices.Sort(ids)
	return ids
}

// waitPresence waits until every hub's view of the topic's presence is
// want: presence is read from the backplane's store, which a write on
// another node reaches before its call returns, so the first read should
// already agree; the wait covers stores whose reads lag their writes.
func (s *suite) waitPresence(t *testing.T, hubs []*fanout.Hub, topic string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(s.f.Timeout)
	for {
		ok := true
		var got []string
		for _, h := range hubs {
			if got = s.presence(t, h, topic); !slices.Equal(got, want) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence of %q: got %v, want %v", topic, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testPresenceAcrossNodes: sessions subscribed on three nodes appear in the
// presence that every node reads, with their principal and info, and
// disappear when they unsubscribe, disconnect, or their hub closes.
func testPresenceAcrossNodes(t *testing.T, s *suite) {
	hubs := []*fanout.Hub{s.presenceHub(t), s.presenceHub(t), s.presenceHub(t)}
	topic := s.topic
	var clients []*client
	for i, h := range hubs {
		c := s.principalClient(t, h, fmt.Sprintf("p%d", i))
		c.subscribe(t, fanout.SubscribeRequest{Topic: topic})
		clients = append(clients, c)
	}
	// A subscriber that has its reply is in presence.
	s.waitPresence(t, hubs, topic, "p0", "p1", "p2")
	if err := clients[0].s.Unsubscribe(s.ctx(t), "", topic); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	s.waitPresence(t, hubs, topic, "p1", "p2")
	clients[1].s.Close(fanout.CloseNormal, "")
	s.waitPresence(t, hubs, topic, "p2")
	// A hub that closes takes its entries with it.
	if err := hubs[2].Close(); err != nil {
		t.Fatalf("close hub: %v", err)
	}
	s.waitPresence(t, hubs[:2], topic)
}

// testJoinLeaveOrder: a subscriber on one node sees the join and leave of a
// session of another node between the messages published around them.
func testJoinLeaveOrder(t *testing.T, s *suite) {
	a, b, c := s.presenceHub(t), s.presenceHub(t), s.presenceHub(t)
	topic := s.topic
	watcher := s.principalClient(t, a, "watcher")
	watcher.subscribe(t, fanout.SubscribeRequest{Topic: topic})
	// The watcher's own join comes first.
	if f := watcher.next(t); f.Type != fanout.FrameJoin || f.Event.Client.Principal != "watcher" {
		t.Fatalf("got %s, want the watcher's own join", describe(f))
	}
	s.hubPublish(t, b, topic, "m1")
	visitor := s.principalClient(t, c, "visitor")
	visitor.subscribe(t, fanout.SubscribeRequest{Topic: topic})
	s.hubPublish(t, b, topic, "m2")
	if err := visitor.s.Unsubscribe(s.ctx(t), "", topic); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	s.hubPublish(t, b, topic, "m3")
	want := []string{"msg m1", "join visitor", "msg m2", "leave visitor", "msg m3"}
	var got []string
	for len(got) < len(want) {
		f := watcher.next(t)
		switch f.Type {
		case fanout.FrameMessage:
			got = append(got, "msg "+string(f.Message.Data))
		case fanout.FrameJoin, fanout.FrameLeave:
			e := f.Event
			kind := "join"
			if e.Leave {
				kind = "leave"
			}
			if e.Topic != topic || e.Client.Session == "" {
				t.Fatalf("event %+v: want topic %q and a session", e, topic)
			}
			var info map[string]string
			if err := json.Unmarshal(e.Client.Info, &info); err != nil || info["name"] != "user "+e.Client.Principal {
				t.Fatalf("event %+v: info %s", e, e.Client.Info)
			}
			got = append(got, kind+" "+e.Client.Principal)
		default:
			t.Fatalf("got %s", describe(f))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("watcher saw %v, want %v", got, want)
	}
}

// testPresenceOff: a topic whose options leave presence off has none, and
// its subscribers get no join or leave frames.
func testPresenceOff(t *testing.T, s *suite) {
	h := s.hub(t)
	topic := s.topic
	watcher := s.principalClient(t, h, "watcher")
	watcher.subscribe(t, fanout.SubscribeRequest{Topic: topic})
	other := s.principalClient(t, h, "other")
	other.subscribe(t, fanout.SubscribeRequest{Topic: topic})
	s.hubPublish(t, h, topic, "m1")
	if f := watcher.next(t); f.Type != fanout.FrameMessage {
		t.Fatalf("got %s, want the message and no join", describe(f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.f.Timeout)
	defer cancel()
	if l, err := h.Presence(ctx, topic); err != nil || len(l) != 0 {
		t.Fatalf("presence of a topic without it: %v, %v", l, err)
	}
}
