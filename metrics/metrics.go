package metrics

import (
	"strconv"
	"sync"

	"github.com/gofanout/fanout"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a [Collector]. The zero value is valid.
type Options struct {
	// Namespace prefixes every metric name. Default: "fanout".
	Namespace string
	// ConstLabels are added to every metric, e.g. the replica's name.
	// Default: none.
	ConstLabels prometheus.Labels
}

// Buckets of the histograms, in seconds or frames.
var (
	// latencyBuckets spans a write on loopback (100 µs) to a client that
	// is about to time out (10 s).
	latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// handshakeBuckets spans an upgrade without authentication to one
	// whose authenticator or subscribes call other services.
	handshakeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// queueBuckets are powers of two up to the default queue limit, 4096.
	queueBuckets = prometheus.ExponentialBuckets(1, 2, 13)
)

// builtinTransports get their series at zero from the start, so that a
// rate over them is defined before the first connection.
var builtinTransports = []string{"websocket", "sse", "grpc"}

// Collector is a [fanout.Observer] and a [prometheus.Collector]. It is safe
// for concurrent use; one Collector may observe several hubs, whose series
// it adds up (fanout_backplane_up then follows the last change any of them
// reported).
type Collector struct {
	sessions          prometheus.Gauge
	connections       *prometheus.GaugeVec
	connectionsTotal  *prometheus.CounterVec
	handshake         *prometheus.HistogramVec
	refused           *prometheus.CounterVec
	closes            *prometheus.CounterVec
	published         prometheus.Counter
	publishedSize     prometheus.Counter
	publishFailures   *prometheus.CounterVec
	deliveries        prometheus.Counter
	written           *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	queue             *prometheus.HistogramVec
	subscribes        prometheus.Counter
	subscribeFailures *prometheus.CounterVec
	backplane         *prometheus.HistogramVec
	backplaneErrors   *prometheus.CounterVec
	backplaneUp       prometheus.Gauge
	resyncs           prometheus.Counter
	resyncLost        prometheus.Counter
	errors            *prometheus.CounterVec

	// byTransport caches each transport's series of the per-write path
	// (string → *transportSeries), so that a write costs no label lookup.
	byTransport sync.Map
}

// transportSeries are one transport's series that every write updates.
type transportSeries struct {
	written prometheus.Counter
	latency prometheus.Observer
	queue   prometheus.Observer
}

// New returns a collector; register it with a prometheus.Registerer and give
// it to the hub as its Observer.
func New(opts *Options) *Collector {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Namespace == "" {
		o.Namespace = "fanout"
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels})
	}
	histogramVec := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.Namespace, Name: name, Help: help,
			ConstLabels: o.ConstLabels, Buckets: buckets}, labels)
	}
	c := &Collector{
		sessions:         gauge("sessions", "Sessions open, with or without a connection."),
		connections:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: o.Namespace, Name: "connections", Help: "Connections open, by transport.", ConstLabels: o.ConstLabels}, []string{"transport"}),
		connectionsTotal: counterVec("connections_total", "Connections accepted, by transport.", "transport"),
		handshake: histogramVec("handshake_duration_seconds", "Time from a connection request's arrival to its acceptance, by transport.",
			handshakeBuckets, "transport"),
		refused: counterVec("handshakes_refused_total", "Connection requests refused, by transport and reason (the error code).",
			"transport", "reason"),
		closes: counterVec("session_closes_total", "Sessions closed, by transport and close code (4001 is a slow consumer).",
			"transport", "code"),
		published:       counter("published_messages_total", "Messages published through this hub."),
		publishedSize:   counter("published_bytes_total", "Payload bytes published through this hub."),
		publishFailures: counterVec("publish_failures_total", "Publishes refused or failed, by error code.", "code"),
		deliveries:      counter("deliveries_total", "Messages handed to local subscriptions."),
		written:         counterVec("written_messages_total", "Live messages written to clients, by transport.", "transport"),
		latency: histogramVec("delivery_latency_seconds", "Time from Publish to the write that carried the message, for the oldest message of each write, by transport.",
			latencyBuckets, "transport"),
		queue: histogramVec("queue_depth", "Frames queued in a session when its writer took a batch, by transport.",
			queueBuckets, "transport"),
		subscribes:        counter("subscribes_total", "Successful subscribes."),
		subscribeFailures: counterVec("subscribe_failures_total", "Subscribes refused or failed, by error code.", "code"),
		backplane: histogramVec("backplane_duration_seconds", "Duration of backplane calls, by operation.",
			latencyBuckets, "op"),
		backplaneErrors: counterVec("backplane_errors_total", "Backplane calls that failed, by operation.", "op"),
		backplaneUp:     gauge("backplane_up", "0 after a backplane call found the backplane unavailable, 1 after the next success."),
		resyncs:         counter("resyncs_total", "Gaps in a topic filled from history."),
		resyncLost:      counter("resync_failures_total", "Gaps that history no longer covered; the topic's sessions were closed to resume."),
		errors:          counterVec("errors_total", "Failed background operations (unsubscribe, resync), by operation.", "op"),
	}
	c.backplaneUp.Set(1)
	for _, t := range builtinTransports {
		c.connections.WithLabelValues(t)
		c.connectionsTotal.WithLabelValues(t)
		c.handshake.WithLabelValues(t)
		c.series(t)
	}
	return c
}

// series returns the per-write series of transport.
func (c *Collector) series(transport string) *transportSeries {
	if s, ok := c.byTransport.Load(transport); ok {
		return s.(*transportSeries)
	}
	s := &transportSeries{
		written: c.written.WithLabelValues(transport),
		latency: c.latency.WithLabelValues(transport),
		queue:   c.queue.WithLabelValues(transport),
	}
	actual, _ := c.byTransport.LoadOrStore(transport, s)
	return actual.(*transportSeries)
}

// Observe implements [fanout.Observer].
func (c *Collector) Observe(e fanout.Event) {
	switch e.Type {
	case fanout.EventWrite:
		s := c.series(e.Transport)
		s.queue.Observe(float64(e.Queue))
		if e.N > 0 {
			s.written.Add(float64(e.N))
			s.latency.Observe(e.Duration.Seconds())
		}
	case fanout.EventDeliver:
		c.deliveries.Add(float64(e.N))
	case fanout.EventPublish:
		c.published.Inc()
		c.publishedSize.Add(float64(e.N))
	case fanout.EventBackplane:
		c.backplane.WithLabelValues(e.Op).Observe(e.Duration.Seconds())
		if e.Err != nil {
			c.backplaneErrors.WithLabelValues(e.Op).Inc()
		}
	case fanout.EventSessionOpen:
		c.sessions.Inc()
	case fanout.EventSessionClose:
		c.sessions.Dec()
		t := e.Transport
		if t == "" {
			t = "none"
		} else {
			c.connections.WithLabelValues(t).Dec()
		}
		c.closes.WithLabelValues(t, strconv.Itoa(int(e.Code))).Inc()
	case fanout.EventAttach:
		c.connections.WithLabelValues(e.Transport).Inc()
		c.connectionsTotal.WithLabelValues(e.Transport).Inc()
	case fanout.EventHandshake:
		if e.Err != nil {
			c.refused.WithLabelValues(e.Transport, fanout.ErrorCode(e.Err)).Inc()
		} else {
			c.handshake.WithLabelValues(e.Transport).Observe(e.Duration.Seconds())
		}
	case fanout.EventPublishFailed:
		c.publishFailures.WithLabelValues(fanout.ErrorCode(e.Err)).Inc()
	case fanout.EventSubscribe:
		c.subscribes.Inc()
	case fanout.EventSubscribeFailed:
		c.subscribeFailures.WithLabelValues(fanout.ErrorCode(e.Err)).Inc()
	case fanout.EventResync:
		c.resyncs.Inc()
	case fanout.EventResyncFailed:
		c.resyncLost.Inc()
	case fanout.EventError:
		c.errors.WithLabelValues(e.Op).Inc()
	case fanout.EventBackplaneDown:
		c.backplaneUp.Set(0)
	case fanout.EventBackplaneUp:
		c.backplaneUp.Set(1)
	}
}

func (c *Collector) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.sessions, c.connections, c.connectionsTotal, c.handshake, c.refused, c.closes,
		c.published, c.publishedSize, c.publishFailures, c.deliveries, c.written, c.latency, c.queue,
		c.subscribes, c.subscribeFailures, c.backplane, c.backplaneErrors, c.backplaneUp,
		c.resyncs, c.resyncLost, c.errors}
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.collectors() {
		m.Describe(ch)
	}
}

// Collect implements [prometheus.Collector].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.collectors() {
		m.Collect(ch)
	}
}
