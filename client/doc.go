// Package client is the Go client of fanout's WebSocket transport: it
// subscribes to topics, survives disconnections and resumes every
// subscription exactly where it stopped.
//
//	c, err := client.Dial(ctx, "wss://example.com/ws", &client.Options{
//		Token: func(ctx context.Context) (string, error) { return auth.Token(ctx) },
//	})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	sub, err := c.Subscribe(ctx, "stock:42", &client.SubscribeOptions{Snapshot: true})
//	if err != nil {
//		return err
//	}
//	for {
//		ev, err := sub.Next(ctx)
//		if err != nil {
//			return err
//		}
//		switch ev.Kind {
//		case client.EventSnapshot: // the state at ev.Position
//		case client.EventReset: // messages were lost; a snapshot follows
//		case client.EventMessage: // the next message, ev.Message
//		}
//	}
//
// # Delivery
//
// A [Subscription] yields [Event] values from [Subscription.Next], in
// order: each message once, by Seq, and never a silent gap. When the
// client reconnects, it subscribes again with since set to the last
// position it holds, so that the server resends what was missed from its
// history; where history no longer reaches back (or the server's history
// was lost), the subscription yields an [EventReset] followed by an
// [EventSnapshot] of the topic's current state, then live messages.
//
// Each subscription buffers at most [SubscribeOptions.Buffer] events. An
// application that does not keep up never blocks the connection (other
// subscriptions go on) and never loses messages silently: the client drops
// the subscription on the server and resumes it from its last position
// once the application has caught up (see [Subscription]).
//
// # Reconnecting
//
// The client reconnects with exponential backoff and full jitter
// ([Options.BackoffMin], [Options.BackoffMax]), which starts over once a
// connection has lasted [Options.HealthyAfter]. The server's close codes
// steer it: it reconnects at once after [fanout.CloseShutdown], refreshes
// its token after [fanout.CloseUnauthorized], and stops after a close that
// says retrying unchanged would fail ([fanout.CloseBadRequest],
// [fanout.CloseProtocol], [fanout.CloseTooLarge]); see [Client] for the
// whole policy. [Options.OnStatus] reports every connection change and
// every resumed subscription.
//
// With [Options.URLs], the client knows several nodes of one cluster:
// each attempt goes to the next one in turn, so a client whose node is
// gone lands on another and resumes every subscription there, from the
// same positions, since positions are global to the cluster.
//
// # Publishing
//
// [Client.Publish] publishes where the server's authorizer allows it, with
// [WithKey], [WithHeader] and [WithIdempotencyKey]. Every publish carries
// an idempotency key, the caller's or a random one: a publish whose
// connection drops before its reply is sent again after the reconnect with
// the same key, and the server publishes it once (within its idempotency
// window, 5 minutes by default). Publish gives up only when its context
// ends or the client stops.
//
// # Lifecycle
//
// [Client.Close] closes the connection, ends every subscription with
// [ErrClosed] and returns after the client's goroutines have ended: one
// for the connection and its backoff, one reading the WebSocket while
// connected, and one calling OnStatus when it is set.
package client
