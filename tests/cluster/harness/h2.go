package harness

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// HTTP/2 as the proxy sees it (RFC 9113): after the client's 24-byte preface, frames of a
// 9-byte header (24-bit payload length, type, flags, 31-bit stream id) and a payload. gRPC
// (its PROTOCOL-HTTP2 document) sends each message on a stream's DATA frames as a 5-byte prefix
// (compressed flag, 32-bit big-endian length) and the message bytes; a message may span frames
// and a frame may hold the end of one message and the start of the next.
const (
	h2Preface     = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2HeaderLen   = 9
	h2FrameData   = 0x0
	h2FrameRST    = 0x3
	h2FlagPadded  = 0x8
	grpcPrefixLen = 5
	// How many bytes of a message's start the flipper holds back to decide where to flip: far
	// less than any HTTP/2 flow-control window, so holding them cannot stall the sender.
	flipLookahead = 512
	// Past this much held data, give the message up (it should never come to that).
	maxHeld = 4 << 20
)

// Decider looks at the first bytes of a gRPC message (head, at most flipLookahead of them;
// total is the message's whole length) and says which bit of the message to flip: the byte
// offset in the message (not counting the 5-byte prefix, and possibly beyond head) and the bit
// number. ok false: leave this message alone.
type Decider func(head []byte, total int) (off int, bit uint, ok bool)

// seg is the part of one DATA frame that carries bytes body..body+n of message msg of a stream;
// at is where they start in the frame.
type seg struct {
	sid       uint32
	msg, body int
	at, n     int
}

type heldFrame struct {
	b    []byte
	segs []seg
}

type grpcStream struct {
	hdr       [grpcPrefixLen]byte
	hdrN      int
	remaining int // bytes of the current message still to come
	body      int // bytes of the current message seen
	msg       int // messages begun on the stream
}

// FlipEvent says where a bit was flipped.
type FlipEvent struct {
	Stream uint32
	Msg    int // the message's number on its stream, from 1
	Off    int // byte offset in the message
	Bit    uint
}

// h2Flipper follows one direction (client to server) of an HTTP/2 connection frame by frame
// and flips one bit inside one gRPC message, chosen by a Decider. It holds frames back only
// while it reads the first flipLookahead bytes of a candidate message.
type h2Flipper struct {
	// decider returns the Decider to consult at the start of each message, or nil when no flip
	// is wanted now.
	decider func() Decider
	// flipped is called once the bit has been flipped (in a frame about to be forwarded).
	flipped func(FlipEvent)

	streams map[uint32]*grpcStream

	coll      bool // collecting the head of message collMsg on stream collSid
	collSid   uint32
	collMsg   int
	collTotal int
	collHead  []byte
	held      []heldFrame
	heldBytes int

	plan    bool // flip planned at planOff of message planMsg on stream planSid
	planSid uint32
	planMsg int
	planOff int
	planBit uint
}

func newH2Flipper(decider func() Decider, flipped func(FlipEvent)) *h2Flipper {
	return &h2Flipper{decider: decider, flipped: flipped, streams: map[uint32]*grpcStream{}}
}

// Frame takes one whole frame (header and payload) and returns the frames to forward now, in
// order (none while it holds frames back). It may flip a bit in a DATA payload.
func (f *h2Flipper) Frame(b []byte) [][]byte {
	typ := b[3]
	sid := binary.BigEndian.Uint32(b[5:9]) & 0x7fffffff
	var segs []seg
	if typ == h2FrameData {
		segs = f.data(b, sid)
	} else if typ == h2FrameRST {
		delete(f.streams, sid)
		if f.plan && f.planSid == sid {
			f.plan = false
		}
		if f.coll && f.collSid == sid {
			f.decide(false)
		}
	}
	if !f.coll && len(f.held) == 0 {
		f.apply(b, segs)
		return [][]byte{b}
	}
	f.held = append(f.held, heldFrame{b, segs})
	f.heldBytes += len(b)
	if f.coll && f.heldBytes > maxHeld {
		f.decide(false)
	}
	if f.coll {
		return nil
	}
	out := make([][]byte, 0, len(f.held))
	for _, h := range f.held {
		f.apply(h.b, h.segs)
		out = append(out, h.b)
	}
	f.held, f.heldBytes = nil, 0
	return out
}

// data walks a DATA frame's payload through the stream's message framing and returns the
// segments of message bytes it carries. It starts collecting a message's head when a message
// begins and a flip is wanted.
func (f *h2Flipper) data(b []byte, sid uint32) []seg {
	p := b[h2HeaderLen:]
	start, end := 0, len(p)
	if b[4]&h2FlagPadded != 0 {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil // malformed; the server will say so
		}
		start, end = 1, len(p)-int(p[0])
	}
	st := f.streams[sid]
	if st == nil {
		st = &grpcStream{}
		f.streams[sid] = st
	}
	var segs []seg
	for i := start; i < end; {
		if st.hdrN < grpcPrefixLen {
			k := copy(st.hdr[st.hdrN:], p[i:end])
			st.hdrN += k
			i += k
			if st.hdrN == grpcPrefixLen {
				st.remaining = int(binary.BigEndian.Uint32(st.hdr[1:]))
				st.body = 0
				st.msg++
				f.begin(sid, st)
				if st.remaining == 0 {
					st.hdrN = 0
				}
			}
			continue
		}
		k := min(st.remaining, end-i)
		segs = append(segs, seg{sid: sid, msg: st.msg, body: st.body, at: h2HeaderLen + i, n: k})
		if f.coll && sid == f.collSid && st.msg == f.collMsg {
			want := min(f.collTotal, flipLookahead)
			f.collHead = append(f.collHead, p[i:i+min(k, want-len(f.collHead))]...)
			if len(f.collHead) == want {
				f.decide(true) // before the next message can begin in this frame
			}
		}
		st.body += k
		st.remaining -= k
		i += k
		if st.remaining == 0 {
			st.hdrN = 0
		}
	}
	return segs
}

// begin: message st.msg starts on stream sid.
func (f *h2Flipper) begin(sid uint32, st *grpcStream) {
	if f.plan || f.coll || st.hdr[0] != 0 || st.remaining == 0 {
		return // busy, compressed, or empty
	}
	if f.decider() == nil {
		return
	}
	f.coll, f.collSid, f.collMsg, f.collTotal = true, sid, st.msg, st.remaining
	f.collHead = f.collHead[:0]
}

func (f *h2Flipper) decide(complete bool) {
	f.coll = false
	d := f.decider()
	if !complete || d == nil {
		return
	}
	off, bit, ok := d(f.collHead, f.collTotal)
	if ok && off >= 0 && off < f.collTotal {
		f.plan, f.planSid, f.planMsg, f.planOff, f.planBit = true, f.collSid, f.collMsg, off, bit&7
	}
}

// apply flips the planned bit if this frame carries it.
func (f *h2Flipper) apply(b []byte, segs []seg) {
	if !f.plan {
		return
	}
	for _, s := range segs {
		if s.sid == f.planSid && s.msg == f.planMsg && f.planOff >= s.body &&
			f.planOff < s.body+s.n {
			b[s.at+f.planOff-s.body] ^= 1 << f.planBit
			f.plan = false
			if f.flipped != nil {
				f.flipped(FlipEvent{Stream: f.planSid, Msg: f.planMsg, Off: f.planOff,
					Bit: f.planBit})
			}
			return
		}
	}
}

// RecordData finds, in the head of a serialized strata.v1.LeaderMessage, the first
// LogRecord of its Append body: the offset and length of the record's `data` bytes (which may
// run past head) and the record's sequence. ok false if head is not such a message, or the
// Append carries no record.
func RecordData(head []byte) (off, n int, seq uint64, ok bool) {
	// LeaderMessage: ... 5: Append append ...
	i := 0
	for i < len(head) {
		num, typ, k := protowire.ConsumeTag(head[i:])
		if k < 0 {
			return
		}
		i += k
		if num == 5 && typ == protowire.BytesType {
			l, k := protowire.ConsumeVarint(head[i:])
			if k < 0 {
				return
			}
			i += k
			return appendRecordData(head, i, min(len(head), i+int(l)))
		}
		k = protowire.ConsumeFieldValue(num, typ, head[i:])
		if k < 0 {
			return
		}
		i += k
	}
	return
}

// appendRecordData walks an Append (head[i:end]): 1 prev_seq, 2 prev_term, 3 LogRecord records.
func appendRecordData(head []byte, i, end int) (off, n int, seq uint64, ok bool) {
	for i < end {
		num, typ, k := protowire.ConsumeTag(head[i:end])
		if k < 0 {
			return
		}
		i += k
		if num == 3 && typ == protowire.BytesType {
			l, k := protowire.ConsumeVarint(head[i:end])
			if k < 0 {
				return
			}
			i += k
			return recordData(head, i, min(end, i+int(l)))
		}
		k = protowire.ConsumeFieldValue(num, typ, head[i:end])
		if k < 0 {
			return
		}
		i += k
	}
	return
}

// recordData walks a LogRecord: 1 seq, 2 term, 3 data, 4 crc (fixed32).
func recordData(head []byte, i, end int) (off, n int, seq uint64, ok bool) {
	for i < end {
		num, typ, k := protowire.ConsumeTag(head[i:end])
		if k < 0 {
			return
		}
		i += k
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, k := protowire.ConsumeVarint(head[i:end])
			if k < 0 {
				return
			}
			seq = v
			i += k
		case num == 3 && typ == protowire.BytesType:
			l, k := protowire.ConsumeVarint(head[i:end])
			if k < 0 || l == 0 {
				return
			}
			return i + k, int(l), seq, true
		default:
			k = protowire.ConsumeFieldValue(num, typ, head[i:end])
			if k < 0 {
				return
			}
			i += k
		}
	}
	return
}
