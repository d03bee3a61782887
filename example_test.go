package fanout_test

import (
	"context"
	"fmt"

	"github.com/gofanout/fanout"
)

// A hub with the default in-memory backplane: publish stock levels keyed by
// product, and let a late subscriber start from the current state.
func Example() {
	ctx := context.Background()
	hub, err := fanout.NewHub(nil)
	if err != nil {
		panic(err)
	}
	defer hub.Close()

	hub.Publish(ctx, "inventory.SKU-1", []byte(`{"stock":5}`), fanout.WithKey("SKU-1"))
	hub.Publish(ctx, "inventory.SKU-1", []byte(`{"stock":4}`), fanout.WithKey("SKU-1"))

	// A transport does this for each connected client.
	sess, _ := hub.NewSession(fanout.Principal{ID: "page-1"})
	defer sess.Close(fanout.CloseNormal, "")
	sess.Subscribe(ctx, fanout.SubscribeRequest{ID: "1", Topic: "inventory.SKU-1", Snapshot: true})
	hub.Publish(ctx, "inventory.SKU-1", []byte(`{"stock":3}`), fanout.WithKey("SKU-1"))

	frames, _ := sess.Next(ctx, nil)
	for _, f := range frames {
		switch f.Type {
		case fanout.FrameReply:
			fmt.Println("subscribed at seq", f.Reply.Position.Seq)
		case fanout.FrameSnapshot:
			for _, m := range f.Snapshot.Items {
				fmt.Println("snapshot", m.Key, string(m.Data))
			}
		case fanout.FrameMessage:
			fmt.Println("live", f.Message.Position.Seq, string(f.Message.Data))
		}
	}
	// Output:
	// subscribed at seq 2
	// snapshot SKU-1 {"stock":4}
	// live 3 {"stock":3}
}
