package fanoutgrpc

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gofanout/fanout"
	"github.com/gofanout/fanout/transport/grpc/fanoutv1"
)

// protobuf is a message encoded as a fanoutv1.Message. Each message is
// encoded once, however many streams carry it.
var protobuf = fanout.NewEncoding("protobuf", func(m *fanout.Message) []byte {
	pm := &fanoutv1.Message{
		Topic: m.Topic,
		Epoch: validUTF8(m.Position.Epoch),
		Seq:   m.Position.Seq,
		Key:   validUTF8(m.Key),
		Data:  m.Data,
	}
	if !m.Time.IsZero() {
		pm.Time = timestamppb.New(m.Time)
	}
	if len(m.Header) > 0 {
		pm.Headers = make(map[string]string, len(m.Header))
		for k, v := range m.Header {
			pm.Headers[validUTF8(k)] = validUTF8(v)
		}
	}
	// Deterministic, because headers are a map; the encoding must not
	// depend on map order. Marshal cannot fail: every string is valid UTF-8.
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pm)
	if err != nil {
		panic(fmt.Sprintf("fanoutgrpc: encode message: %v", err))
	}
	return b
})

// validUTF8 replaces invalid UTF-8, which protobuf strings must not hold,
// with U+FFFD, as the JSON protocol does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Field numbers of fanout.proto, for the frames written by hand.
const (
	fieldFramesFrames     = 1 // Frames.frames
	fieldFrameMessage     = 2 // Frame.message
	fieldFrameSnapshot    = 3 // Frame.snapshot
	fieldSnapshotTopic    = 1 // Snapshot.topic
	fieldSnapshotPosition = 2 // Snapshot.position
	fieldSnapshotItems    = 3 // Snapshot.items
	fieldPositionEpoch    = 1 // Position.epoch
	fieldPositionSeq      = 2 // Position.seq
)

// appendFrame appends f to b as one element of Frames.frames, in the
// protobuf wire format: field 1 of Frames, holding a Frame.
//
// A message (and each item of a snapshot) is written from its cached
// encoding ([fanout.Message.Encode]) with only a few bytes of framing
// around it: the bytes a fanoutv1.Frame{Message: m} would marshal to,
// without building or marshalling one per stream. Replies and close frames,
// which belong to one stream, are marshalled normally.
func appendFrame(b []byte, f fanout.Frame) ([]byte, error) {
	switch f.Type {
	case fanout.FrameMessage:
		m := f.Message.Encode(protobuf)
		b = protowire.AppendTag(b, fieldFramesFrames, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fieldFrameMessage)+protowire.SizeBytes(len(m))))
		b = protowire.AppendTag(b, fieldFrameMessage, protowire.BytesType)
		return protowire.AppendBytes(b, m), nil
	case fanout.FrameSnapshot:
		return appendSnapshot(b, f.Snapshot), nil
	case fanout.FrameReply:
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Reply{Reply: reply(f.Reply)}})
	case fanout.FrameClose:
		c := f.Close
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Close{Close: &fanoutv1.Close{
			Code:      uint32(c.Code),
			Reason:    validUTF8(c.Reason),
			Reconnect: c.Reconnect,
		}}})
	case fanout.FrameExpiry:
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Expiry{Expiry: &fanoutv1.Expiry{
			ExpiresAt: timestamppb.New(f.Expiry.ExpiresAt),
		}}})
	case fanout.FrameJoin:
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Join{Join: presenceEvent(f.Event)}})
	case fanout.FrameLeave:
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Leave{Leave: presenceEvent(f.Event)}})
	case fanout.FrameSubscribed:
		r := f.Reply
		sub := &fanoutv1.Subscribed{Topic: validUTF8(r.Topic), Snapshot: r.Snapshot}
		if r.Position != nil {
			sub.Position = position(*r.Position)
		}
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Subscribed{Subscribed: sub}})
	case fanout.FrameUnsubscribed:
		return appendMarshal(b, &fanoutv1.Frame{Frame: &fanoutv1.Frame_Unsubscribed{Unsubscribed: &fanoutv1.Unsubscribed{
			Topic: validUTF8(f.Reply.Topic),
		}}})
	}
	return b, fmt.Errorf("fanoutgrpc: unknown frame type %d", f.Type)
}

func appendSnapshot(b []byte, s *fanout.SnapshotFrame) []byte {
	epoch := validUTF8(s.Position.Epoch)
	pos := 0
	if epoch != "" {
		pos += protowire.SizeTag(fieldPositionEpoch) + protowire.SizeBytes(len(epoch))
	}
	if s.Position.Seq != 0 {
		pos += protowire.SizeTag(fieldPositionSeq) + protowire.SizeVarint(s.Position.Seq)
	}
	snap := protowire.SizeTag(fieldSnapshotPosition) + protowire.SizeBytes(pos)
	if s.Topic != "" {
		snap += protowire.SizeTag(fieldSnapshotTopic) + protowire.SizeBytes(len(s.Topic))
	}
	for _, m := range s.Items {
		snap += protowire.SizeTag(fieldSnapshotItems) + protowire.SizeBytes(len(m.Encode(protobuf)))
	}

	b = protowire.AppendTag(b, fieldFramesFrames, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fieldFrameSnapshot)+protowire.SizeBytes(snap)))
	b = protowire.AppendTag(b, fieldFrameSnapshot, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(snap))
	if s.Topic != "" {
		b = protowire.AppendTag(b, fieldSnapshotTopic, protowire.BytesType)
		b = protowire.AppendString(b, s.Topic)
	}
	b = protowire.AppendTag(b, fieldSnapshotPosition, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(pos))
	if epoch != "" {
		b = protowire.AppendTag(b, fieldPositionEpoch, protowire.BytesType)
		b = protowire.AppendString(b, epoch)
	}
	if s.Position.Seq != 0 {
		b = protowire.AppendTag(b, fieldPositionSeq, protowire.VarintType)
		b = protowire.AppendVarint(b, s.Position.Seq)
	}
	for _, m := range s.Items {
		b = protowire.AppendTag(b, fieldSnapshotItems, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Encode(protobuf))
	}
	return b
}

// appendMarshal appends fr as one element of Frames.frames.
func appendMarshal(b []byte, fr *fanoutv1.Frame) ([]byte, error) {
	n := proto.Size(fr)
	b = protowire.AppendTag(b, fieldFramesFrames, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, fr)
}

func reply(r *fanout.Reply) *fanoutv1.Reply {
	pr := &fanoutv1.Reply{Id: validUTF8(r.ID), Topic: validUTF8(r.Topic), Recovered: r.Recovered}
	if r.Err != nil {
		pr.Error = &fanoutv1.Error{Code: fanout.ErrorCode(r.Err), Message: validUTF8(fanout.ErrorMessage(r.Err))}
	}
	if r.Position != nil {
		pr.Position = position(*r.Position)
	}
	if !r.ExpiresAt.IsZero() {
		pr.ExpiresAt = timestamppb.New(r.ExpiresAt)
	}
	if r.Presence != nil {
		// Set even when empty, so that the reply says "no one" rather
		// than nothing, as the JSON protocol's "presence":[] does.
		pr.Presence = &fanoutv1.Presence{Clients: make([]*fanoutv1.ClientInfo, len(r.Presence))}
		for i := range r.Presence {
			pr.Presence.Clients[i] = clientInfo(&r.Presence[i])
		}
	}
	if r.Count != nil {
		n := uint64(max(*r.Count, 0))
		pr.Count = &n
	}
	return pr
}

func presenceEvent(e *fanout.PresenceEvent) *fanoutv1.PresenceEvent {
	return &fanoutv1.PresenceEvent{Topic: validUTF8(e.Topic), Client: clientInfo(&e.Client)}
}

// clientInfo converts c; its info, JSON that the hub bounded by
// [fanout.MaxClientInfo], travels as text, left out when it is not valid
// JSON, as the JSON protocol leaves it out.
func clientInfo(c *fanout.ClientInfo) *fanoutv1.ClientInfo {
	pc := &fanoutv1.ClientInfo{Principal: validUTF8(c.Principal), Session: validUTF8(c.Session)}
	if len(c.Info) > 0 && json.Valid(c.Info) {
		pc.Info = validUTF8(string(c.Info))
	}
	return pc
}

func position(p fanout.Position) *fanoutv1.Position {
	return &fanoutv1.Position{Epoch: validUTF8(p.Epoch), Seq: p.Seq}
}

// frameSize estimates how many bytes appendFrame appends for f.
func frameSize(f fanout.Frame) int {
	switch f.Type {
	case fanout.FrameMessage:
		return len(f.Message.Encode(protobuf)) + 16
	case fanout.FrameSnapshot:
		n := len(f.Snapshot.Topic) + len(f.Snapshot.Position.Epoch) + 48
		for _, m := range f.Snapshot.Items {
			n += len(m.Encode(protobuf)) + 8
		}
		return n
	case fanout.FrameReply:
		n := 256
		for i := range f.Reply.Presence {
			c := &f.Reply.Presence[i]
			n += len(c.Principal) + len(c.Session) + len(c.Info) + 16
		}
		return n
	}
	return 256
}

// newFrames wraps b, a sequence of Frames.frames elements, as a Frames
// message. The bytes travel as the message's unknown fields, which
// marshalling copies verbatim; a receiver decodes them as its frames.
func newFrames(b []byte) *fanoutv1.Frames {
	fs := new(fanoutv1.Frames)
	fs.ProtoReflect().SetUnknown(b)
	return fs
}
