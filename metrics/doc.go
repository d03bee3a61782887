// Package metrics exports a hub's events ([fanout.Event]) as Prometheus
// metrics.
//
//	m := metrics.New(nil)
//	prometheus.MustRegister(m)
//	hub, err := fanout.NewHub(&fanout.HubOptions{Observer: m})
//	...
//	mux.Handle("/metrics", promhttp.Handler())
//
// It lives in its own package so that importing fanout does not compile the
// Prometheus client.
//
// # Series
//
// Every name starts with [Options.Namespace] ("fanout" by default). The
// transport label is "websocket", "sse" or "grpc" (or a third-party
// transport's name); series of the three built-in transports exist from
// the start, at zero.
//
//	fanout_sessions                                 gauge      sessions open, with or without a connection
//	fanout_connections{transport}                   gauge      connections open
//	fanout_connections_total{transport}             counter    connections accepted (sessions given a connection)
//	fanout_handshake_duration_seconds{transport}    histogram  from a request's arrival to its acceptance
//	fanout_handshakes_refused_total{transport,reason} counter  refused connections; reason is the error code:
//	                                                           unauthenticated, forbidden (origin or topic),
//	                                                           closed (draining), bad_request, too_large, ...
//	fanout_session_closes_total{transport,code}     counter    sessions ended, by close code (4001: slow consumer,
//	                                                           4005: resync, 1001: client gone); transport "none"
//	                                                           for a session that never had a connection
//	fanout_published_messages_total                 counter    messages published through this hub
//	fanout_published_bytes_total                    counter    their payload bytes
//	fanout_publish_failures_total{code}             counter    publishes refused or failed, by error code
//	fanout_deliveries_total                         counter    messages handed to local subscriptions
//	fanout_written_messages_total{transport}        counter    live messages written to clients
//	fanout_delivery_latency_seconds{transport}      histogram  from Publish to the write that carried the message,
//	                                                           for the oldest message of each write
//	fanout_queue_depth{transport}                   histogram  frames queued in a session when its writer took a batch
//	fanout_subscribes_total                         counter    successful subscribes
//	fanout_subscribe_failures_total{code}           counter    subscribes refused or failed, by error code
//	fanout_backplane_duration_seconds{op}           histogram  backplane calls: publish, subscribe, unsubscribe,
//	                                                           history, snapshot, delete, ready
//	fanout_backplane_errors_total{op}               counter    backplane calls that failed
//	fanout_backplane_up                             gauge      0 after a call found the backplane unavailable, 1 after
//	                                                           the next success (and at the start)
//	fanout_resyncs_total                            counter    gaps in a topic filled from history
//	fanout_resync_failures_total                    counter    gaps history no longer covered (sessions closed, 4005)
//	fanout_errors_total{op}                         counter    failed background operations: unsubscribe, resync
//
// # Dashboard
//
// The three panels of the seed dashboard (deploy/grafana-dashboard.json):
//
//	Connections       sum by (transport) (fanout_connections)
//	                  sum by (transport) (rate(fanout_connections_total[5m]))
//	Handshake p99     histogram_quantile(0.99, sum by (le, transport) (rate(fanout_handshake_duration_seconds_bucket[5m])))
//	Message rate      sum(rate(fanout_published_messages_total[5m]))
//	                  sum by (transport) (rate(fanout_written_messages_total[5m]))
//
// And what to alert on: fanout_backplane_up == 0; a rising
// rate(fanout_session_closes_total{code="4001"}[5m]) (slow consumers);
// rate(fanout_publish_failures_total{code=~"unavailable|internal"}[5m]) > 0;
// the p99 of fanout_delivery_latency_seconds.
package metrics
