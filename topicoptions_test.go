package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gofanout/fanout"
)

// namespaces are the topic options of the tests: by prefix.
func namespaces(topic string) fanout.TopicOptions {
	switch {
	case strings.HasPrefix(topic, "open:"):
		return fanout.TopicOptions{Publish: fanout.PermitAll}
	case strings.HasPrefix(topic, "members:"):
		return fanout.TopicOptions{Subscribe: fanout.PermitAuthenticated, Publish: fanout.PermitAuthenticated, PresenceRead: fanout.PermitAuthenticated, Presence: true}
	case strings.HasPrefix(topic, "closed:"):
		return fanout.TopicOptions{Subscribe: fanout.PermitNone, PresenceRead: fanout.PermitNone}
	case strings.HasPrefix(topic, "short:"):
		return fanout.TopicOptions{HistorySize: 3}
	}
	return fanout.TopicOptions{}
}

func TestTopicPermissions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	allowAll := func(context.Context, fanout.Principal, string, fanout.Action) error { return nil }
	denyOpen := func(_ context.Context, _ fanout.Principal, topic string, _ fanout.Action) error {
		if strings.HasPrefix(topic, "open:") {
			return errors.New("not here")
		}
		return nil
	}
	for _, tc := range []struct {
		name      string
		authorize fanout.Authorizer
		principal string
		topic     string
		action    fanout.Action
		ok        bool
	}{
		// Without an authorizer the permissions decide; PermitDefault is
		// the hub's rule.
		{"default subscribe", nil, "", "plain", fanout.ActionSubscribe, true},
		{"default publish", nil, "", "plain", fanout.ActionPublish, false},
		{"default presence", nil, "", "plain", fanout.ActionPresence, true},
		{"open publish", nil, "", "open:1", fanout.ActionPublish, true},
		{"members anonymous", nil, "", "members:1", fanout.ActionSubscribe, false},
		{"members known", nil, "alice", "members:1", fanout.ActionSubscribe, true},
		{"members publish", nil, "alice", "members:1", fanout.ActionPublish, true},
		{"members presence anonymous", nil, "", "members:1", fanout.ActionPresence, false},
		{"closed", nil, "alice", "closed:1", fanout.ActionSubscribe, false},
		{"closed presence", nil, "alice", "closed:1", fanout.ActionPresence, false},
		// With one, a permission only denies before it is asked.
		{"authorizer publish", allowAll, "", "plain", fanout.ActionPublish, true},
		{"authorizer closed", allowAll, "alice", "closed:1", fanout.ActionSubscribe, false},
		{"authorizer members anonymous", allowAll, "", "members:1", fanout.ActionSubscribe, false},
		{"authorizer denies open", denyOpen, "", "open:1", fanout.ActionPublish, false},
	} {
		h := newHub(t, &fanout.HubOptions{Authorize: tc.authorize, TopicOptions: namespaces})
		err := h.Authorize(ctx, fanout.Principal{ID: tc.principal}, tc.topic, tc.action)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, fanout.ErrForbidden)) {
			t.Errorf("%s: got %v, want allowed %v", tc.name, err, tc.ok)
		}
	}
}

// TestTopicPermissionsOnSessions: the permissions hold for a client's
// subscribe, publish and presence.
func TestTopicPermissionsOnSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, &fanout.HubOptions{TopicOptions: namespaces})
	anon := newSession(t, h)
	if err := anon.Subscribe(ctx, fanout.SubscribeRequest{Topic: "members:1"}); !errors.Is(err, fanout.ErrForbidden) {
		t.Errorf("anonymous subscribe to members: %v", err)
	}
	if err := anon.Publish(ctx, "1", "open:1", []byte("x")); err != nil {
		t.Errorf("publish to open: %v", err)
	}
	if err := anon.Presence(ctx, fanout.PresenceRequest{Topic: "members:1"}); !errors.Is(err, fanout.ErrForbidden) {
		t.Errorf("anonymous presence of members: %v", err)
	}
}

// TestTopicHistorySize: a topic's smaller history size holds for resumes.
func TestTopicHistorySize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, &fanout.HubOptions{TopicOptions: namespaces})
	var short, long fanout.Position
	for i := range 10 {
		short = publish(t, h, "short:1", string(rune('a'+i)))
		long = publish(t, h, "long", "x")
	}
	for _, tc := range []struct {
		topic     string
		since     fanout.Position
		recovered bool
	}{
		{"short:1", fanout.Position{Epoch: short.Epoch, Seq: 6}, false}, // 4 messages owed, 3 kept
		{"short:1", fanout.Position{Epoch: short.Epoch, Seq: 7}, true},
		{"long", fanout.Position{Epoch: long.Epoch, Seq: 1}, true},
	} {
		s := newSession(t, h)
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: tc.topic, Since: &tc.since}); err != nil {
			t.Fatal(err)
		}
		var buf []fanout.Frame
		f := next(t, s, &buf)
		if f.Type != fanout.FrameReply || f.Reply.Recovered == nil || *f.Reply.Recovered != tc.recovered {
			t.Errorf("resume %s after %v: got %+v, want recovered %v", tc.topic, tc.since, f.Reply, tc.recovered)
		}
	}
}

// TestTopicHistoryAgeOnRead: a topic's shorter history age holds for
// resumes even where the backplane keeps the messages longer.
func TestTopicHistoryAgeOnRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		age := time.Minute
		h := newHub(t, &fanout.HubOptions{TopicOptions: func(topic string) fanout.TopicOptions {
			if topic == "aged" {
				return fanout.TopicOptions{HistoryAge: age}
			}
			return fanout.TopicOptions{}
		}})
		resume := func(topic string, since fanout.Position) bool {
			s := newSession(t, h)
			if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: topic, Since: &since}); err != nil {
				t.Fatal(err)
			}
			var buf []fanout.Frame
			f := next(t, s, &buf)
			return f.Reply != nil && f.Reply.Recovered != nil && *f.Reply.Recovered
		}
		aged := publish(t, h, "aged", "a")
		publish(t, h, "aged", "b")
		plain := publish(t, h, "plain", "a")
		publish(t, h, "plain", "b")
		time.Sleep(age / 2)
		if !resume("aged", aged) {
			t.Fatal("resume within the topic's history age: recovered false")
		}
		time.Sleep(age)
		if resume("aged", aged) {
			t.Fatal("resume past the topic's history age: recovered true")
		}
		if !resume("plain", plain) {
			t.Fatal("resume of a topic with the backplane's age: recovered false")
		}
	})
}

// TestPresenceInfoBounded: info over MaxClientInfo, or not JSON, is left
// out of presence.
func TestPresenceInfoBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, &fanout.HubOptions{TopicOptions: func(string) fanout.TopicOptions { return fanout.TopicOptions{Presence: true} }})
	big, _ := json.Marshal(strings.Repeat("x", fanout.MaxClientInfo))
	for _, info := range []json.RawMessage{big, json.RawMessage(`{"a":`), json.RawMessage(`{"ok":1}`)} {
		s, err := h.NewSession(fanout.Principal{ID: "p", Info: info})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(fanout.CloseNormal, "")
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "room"}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := h.Presence(ctx, "room")
	if err != nil || len(l) != 3 {
		t.Fatalf("presence: %v, %v", l, err)
	}
	withInfo := 0
	for _, c := range l {
		if len(c.Info) > 0 {
			withInfo++
			if string(c.Info) != `{"ok":1}` {
				t.Errorf("info %s kept", c.Info)
			}
		}
	}
	if withInfo != 1 {
		t.Errorf("%d entries with info, want 1", withInfo)
	}
	if n, err := h.PresenceCount(ctx, "room"); err != nil || n != 3 {
		t.Errorf("count %d, %v", n, err)
	}
}

// TestPresenceLimit: a read returns at most MaxPresence entries.
func TestPresenceLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHub(t, &fanout.HubOptions{MaxPresence: 2, TopicOptions: func(string) fanout.TopicOptions { return fanout.TopicOptions{Presence: true} }})
	for range 5 {
		s := newSession(t, h)
		if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "room"}); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := h.Presence(ctx, "room"); err != nil || len(l) != 2 {
		t.Fatalf("presence: %d entries, %v; want 2", len(l), err)
	}
	if n, _ := h.PresenceCount(ctx, "room"); n != 5 {
		t.Fatalf("count %d, want 5", n)
	}
}

// limitless is a backplane that keeps its own history limits whatever the
// topic's, as NATS does: the hub must trim what it reads.
type limitless struct{ fanout.Backplane }

func (l limitless) Publish(ctx context.Context, m *fanout.Message, idem string) (fanout.Position, error) {
	c := &fanout.Message{Topic: m.Topic, Key: m.Key, Data: m.Data, Time: m.Time, Header: m.Header}
	p, err := l.Backplane.Publish(ctx, c, idem)
	m.Position = p
	return p, err
}

// TestTopicLimitsTrimmedOnRead: a topic's smaller history size and age hold
// for resumes on a backplane that ignores them.
func TestTopicLimitsTrimmedOnRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h := newHub(t, &fanout.HubOptions{
			Backplane: limitless{fanout.NewMemoryBroker(nil).Node()},
			TopicOptions: func(string) fanout.TopicOptions {
				return fanout.TopicOptions{HistorySize: 3, HistoryAge: time.Minute}
			},
		})
		resume := func(since fanout.Position) bool {
			s := newSession(t, h)
			if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: "t", Since: &since}); err != nil {
				t.Fatal(err)
			}
			var buf []fanout.Frame
			f := next(t, s, &buf)
			return f.Reply != nil && f.Reply.Recovered != nil && *f.Reply.Recovered
		}
		var last fanout.Position
		for range 10 {
			last = publish(t, h, "t", "x")
		}
		if resume(fanout.Position{Epoch: last.Epoch, Seq: 6}) {
			t.Error("resume owed 4 messages of a topic that keeps 3: recovered true")
		}
		if !resume(fanout.Position{Epoch: last.Epoch, Seq: 7}) {
			t.Error("resume owed 3 messages of a topic that keeps 3: recovered false")
		}
		time.Sleep(2 * time.Minute)
		if resume(fanout.Position{Epoch: last.Epoch, Seq: 8}) {
			t.Error("resume past the topic's history age: recovered true")
		}
	})
}
