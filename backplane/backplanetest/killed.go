package backplanetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofanout/fanout"
)

// childTopicEnv names the environment variable that makes [ChildNode] run:
// it holds the topic the child's session subscribes to.
const childTopicEnv = "FANOUT_PRESENCE_CHILD_TOPIC"

// ChildNode is the body of a test that [KilledNode] runs in a child
// process: unless the child's environment names a topic, it skips.
// Otherwise it makes a hub on newNode() with presence on every topic,
// subscribes a session of principal "child" to the topic, writes "ready"
// on its standard output, and waits to be killed.
func ChildNode(t *testing.T, newNode func() fanout.Backplane) {
	topic := os.Getenv(childTopicEnv)
	if topic == "" {
		t.Skip("run by KilledNode only")
	}
	h, err := fanout.NewHub(&fanout.HubOptions{Backplane: newNode(), TopicOptions: presenceOptions})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]string{"name": "user child"})
	s, err := h.NewSession(fanout.Principal{ID: "child", Info: info})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Subscribe(ctx, fanout.SubscribeRequest{Topic: topic}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // until killed
}

// KilledNode checks that the session of a node killed with SIGKILL leaves
// presence within ttl (plus a second of slack for the store's expiry),
// while the sessions of the two nodes that live stay. childTest names the
// test function of the caller's package that calls [ChildNode]; env is
// added to the child's environment, for it to make a node of the same
// cluster as newNode.
func KilledNode(t *testing.T, newNode func() fanout.Backplane, ttl time.Duration, childTest string, env ...string) {
	s := &suite{f: Features{Timeout: 10 * time.Second}, newNode: newNode, topic: uniqueTopic("killed")}
	hubs := []*fanout.Hub{s.presenceHub(t), s.presenceHub(t)}
	for i, h := range hubs {
		c := s.principalClient(t, h, fmt.Sprintf("p%d", i))
		c.subscribe(t, fanout.SubscribeRequest{Topic: s.topic})
	}

	cmd := exec.Command(os.Args[0], "-test.run=^"+childTest+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childTopicEnv+"="+s.topic), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("the child node did not get ready: %v", sc.Err())
	}
	s.waitPresence(t, hubs, s.topic, "child", "p0", "p1")

	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no clean-up
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	start := time.Now()
	deadline := start.Add(ttl + time.Second)
	for {
		got := s.presence(t, hubs[0], s.topic)
		if slices.Equal(got, []string{"p0", "p1"}) {
			t.Logf("the killed node left presence after %v (TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence %v %v after the kill, want [p0 p1] within %v", got, time.Since(start), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The living nodes' entries outlive the TTL: they are refreshed.
	time.Sleep(ttl + ttl/2)
	s.waitPresence(t, hubs, s.topic, "p0", "p1")
}
