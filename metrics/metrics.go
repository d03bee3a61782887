// Package metrics exports a hub's events as Prometheus metrics.
//
//	m := metrics.New(nil)
//	prometheus.MustRegister(m)
//	hub, err := fanout.NewHub(&fanout.HubOptions{Observer: m})
//
// It lives in its own package so that importing fanout does not compile the
// Prometheus client.
package metrics

import (
	"strconv"

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

// Collector is a [fanout.Observer] and a [prometheus.Collector]. It is safe
// for concurrent use; one Collector may observe several hubs.
type Collector struct {
	sessions      prometheus.Gauge
	closes        *prometheus.CounterVec
	published     prometheus.Counter
	publishedSize prometheus.Counter
	deliveries    prometheus.Counter
	subscribes    prometheus.Counter
	resyncs       prometheus.Counter
	resyncLost    prometheus.Counter
	errors        prometheus.Counter
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
	return &Collector{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: o.Namespace, Name: "sessions",
			Help: "Sessions currently open.", ConstLabels: o.ConstLabels}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: o.Namespace, Name: "session_closes_total",
			Help: "Sessions closed, by close code (4001 is a slow consumer).", ConstLabels: o.ConstLabels}, []string{"code"}),
		published:     counter("published_total", "Messages published through this hub."),
		publishedSize: counter("published_bytes_total", "Payload bytes published through this hub."),
		deliveries:    counter("deliveries_total", "Messages handed to local subscriptions."),
		subscribes:    counter("subscribes_total", "Successful subscribes."),
		resyncs:       counter("resyncs_total", "Gaps in a topic filled from history."),
		resyncLost:    counter("resync_failures_total", "Gaps that history no longer covered; the topic's sessions were closed to resume."),
		errors:        counter("errors_total", "Failed background operations (backplane unsubscribe, history reads)."),
	}
}

// Observe implements [fanout.Observer].
func (c *Collector) Observe(e fanout.Event) {
	switch e.Type {
	case fanout.EventSessionOpen:
		c.sessions.Inc()
	case fanout.EventSessionClose:
		c.sessions.Dec()
		c.closes.WithLabelValues(strconv.Itoa(int(e.Code))).Inc()
	case fanout.EventPublish:
		c.published.Inc()
		c.publishedSize.Add(float64(e.N))
	case fanout.EventDeliver:
		c.deliveries.Add(float64(e.N))
	case fanout.EventSubscribe:
		c.subscribes.Inc()
	case fanout.EventResync:
		c.resyncs.Inc()
	case fanout.EventResyncFailed:
		c.resyncLost.Inc()
	case fanout.EventError:
		c.errors.Inc()
	}
}

func (c *Collector) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.sessions, c.closes, c.published, c.publishedSize, c.deliveries,
		c.subscribes, c.resyncs, c.resyncLost, c.errors}
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
