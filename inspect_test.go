package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	ws "github.com/coder/websocket"
	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/internal/testenv"
	"github.com/gofanout/fanout/transport/websocket"
)

func TestInspectHandler(t *testing.T) {
	hub, err := fanout.NewHub(&fanout.HubOptions{
		Authenticate: func(_ context.Context, c *fanout.Credentials) (fanout.Principal, error) {
			switch c.Token {
			case "":
				return fanout.Principal{}, nil
			case "ops", "user":
				return fanout.Principal{ID: c.Token}, nil
			}
			return fanout.Principal{}, errors.New("unknown token")
		},
		Authorize: func(_ context.Context, p fanout.Principal, _ string, a fanout.Action) error {
			if a == fanout.ActionInspect && p.ID != "ops" {
				return errors.New("operators only")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wsh := websocket.New(hub, nil)
	mux := http.NewServeMux()
	mux.Handle("/ws", wsh)
	mux.Handle("/inspect", fanout.NewInspectHandler(hub, nil))
	srv := testenv.NewServer(t, mux, &testenv.ServerOptions{Stop: func() { hub.Close(); wsh.Close() }})
	ctx := context.Background()

	get := func(token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/inspect", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}
	for _, c := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"bad", http.StatusUnauthorized}, {"user", http.StatusForbidden}} {
		if got, body := get(c.token); got != c.want {
			t.Errorf("token %q: got %d %s, want %d", c.token, got, body, c.want)
		}
	}
	if code, body := get("ops"); code != 200 || string(body) != `{"topics":{"count":0,"items":[]},"sessions":{"count":0,"items":[]}}` {
		t.Errorf("idle hub: got %d %s", code, body)
	}

	c, _, err := ws.Dial(ctx, "ws"+srv.URL[len("http"):]+"/ws?token=user", &ws.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, ws.MessageText, []byte(`{"id":"1","type":"subscribe","topic":"stock.1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil { // the reply
		t.Fatal(err)
	}
	pos, err := hub.Publish(ctx, "stock.1", []byte("5"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil { // the message
		t.Fatal(err)
	}

	code, body := get("ops")
	if code != 200 {
		t.Fatalf("got %d %s", code, body)
	}
	var got struct {
		Topics struct {
			Count int
			Items []fanout.Topic
		}
		Sessions struct {
			Count int
			Items []struct {
				ID            uint64
				Principal     string
				Transport     string
				Subscriptions []struct {
					Topic    string
					Position fanout.Position
				}
				Queue int
				Age   float64 `json:"age_seconds"`
			}
		}
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Topics.Count != 1 || len(got.Topics.Items) != 1 || got.Topics.Items[0] != (fanout.Topic{Name: "stock.1", Subscribers: 1, Position: pos}) {
		t.Errorf("topics: got %+v, want stock.1 with 1 subscriber at %v", got.Topics, pos)
	}
	if got.Sessions.Count != 1 || len(got.Sessions.Items) != 1 {
		t.Fatalf("sessions: got %s", body)
	}
	s := got.Sessions.Items[0]
	if s.Principal != "user" || s.Transport != "websocket" || len(s.Subscriptions) != 1 ||
		s.Subscriptions[0].Topic != "stock.1" || s.Subscriptions[0].Position != pos || s.Queue != 0 || s.Age <= 0 {
		t.Errorf("session: got %s", body)
	}
}
