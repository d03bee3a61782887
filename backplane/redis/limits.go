package redis

import "github.com/gofanout/fanout"

// argsFor returns the script arguments of a publish of m: the backplane's,
// or, when the topic's options set history limits (see
// [fanout.Message.TopicLimits]), those limits where they are smaller
// (history size and age) or set (idle time). Reads keep extending a topic
// by the backplane's IdleTTL; the hub trims what it reads to the topic's
// history size and age.
func (b *Backplane) argsFor(m *fanout.Message) *scriptArgs {
	l := m.TopicLimits()
	if l == (fanout.TopicLimits{}) {
		return &b.args
	}
	o := b.opts
	if l.HistorySize > 0 && l.HistorySize < o.HistorySize {
		o.HistorySize = l.HistorySize
	}
	if l.HistoryAge > 0 && l.HistoryAge < o.HistoryAge {
		o.HistoryAge = l.HistoryAge
	}
	if l.IdleTTL > 0 {
		o.IdleTTL = l.IdleTTL
	}
	a := newScriptArgs(&o)
	return &a
}
