package harness

// The harness's own tests: the HTTP/2 bit flipper, the proxy, the linearizability model and
// the ledger. They need no strata-node (run_cluster.sh build runs them).

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	pb "stratacluster/gen/strata/v1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func leaderMessage(t *testing.T, seq uint64, records int, size int) []byte {
	t.Helper()
	m := &pb.LeaderMessage{Term: 7, LeaderId: 2, LeaderAddr: "127.0.0.1:7402", CommitSeq: seq - 1}
	app := &pb.Append{PrevSeq: seq - 1, PrevTerm: 7}
	for i := 0; i < records; i++ {
		data := bytes.Repeat([]byte{byte('a' + i)}, size)
		app.Records = append(app.Records, &pb.LogRecord{Seq: seq + uint64(i), Term: 7, Data: data,
			Crc: crc32.Checksum(data, castagnoli)})
	}
	m.Body = &pb.LeaderMessage_Append{Append: app}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func frame(typ, flags byte, sid uint32, payload []byte) []byte {
	b := make([]byte, h2HeaderLen+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], sid)
	copy(b[h2HeaderLen:], payload)
	return b
}

func grpcMessage(body []byte) []byte {
	out := make([]byte, grpcPrefixLen+len(body))
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)))
	copy(out[grpcPrefixLen:], body)
	return out
}

// dataFrames cuts a byte stream into DATA frames of random sizes, some padded, with a
// HEADERS frame of another stream between some of them.
func dataFrames(r *rand.Rand, sid uint32, stream []byte) [][]byte {
	var out [][]byte
	for len(stream) > 0 {
		n := 1 + r.Intn(min(len(stream), 3000))
		if r.Intn(3) == 0 {
			pad := r.Intn(20)
			p := append([]byte{byte(pad)}, stream[:n]...)
			p = append(p, make([]byte, pad)...)
			out = append(out, frame(h2FrameData, h2FlagPadded, sid, p))
		} else {
			out = append(out, frame(h2FrameData, 0, sid, stream[:n]))
		}
		stream = stream[n:]
		if r.Intn(4) == 0 {
			out = append(out, frame(0x1, 0x4, sid+2, []byte{0x82, 0x86}))
		}
	}
	return out
}

// unframe collects the data of stream sid's DATA frames.
func unframe(frames [][]byte, sid uint32) []byte {
	var out []byte
	for _, f := range frames {
		if f[3] != h2FrameData || binary.BigEndian.Uint32(f[5:9])&0x7fffffff != sid {
			continue
		}
		p := f[h2HeaderLen:]
		if f[4]&h2FlagPadded != 0 {
			p = p[1 : len(p)-int(p[0])]
		}
		out = append(out, p...)
	}
	return out
}

func TestRecordData(t *testing.T) {
	b := leaderMessage(t, 41, 3, 100)
	off, n, seq, ok := RecordData(b)
	if !ok || n != 100 || seq != 41 || !bytes.Equal(b[off:off+n], bytes.Repeat([]byte("a"), 100)) {
		t.Fatalf("RecordData = %d, %d, %d, %v", off, n, seq, ok)
	}
	// A head cut short still finds where the data starts.
	if off2, n2, _, ok := RecordData(b[:off]); !ok || off2 != off || n2 != n {
		t.Fatalf("on a head of %d bytes: %d, %d, %v", off, off2, n2, ok)
	}
	heartbeat, _ := proto.Marshal(&pb.LeaderMessage{Term: 3, CommitSeq: 9,
		Body: &pb.LeaderMessage_Append{Append: &pb.Append{PrevSeq: 9, PrevTerm: 3}}})
	vote, _ := proto.Marshal(&pb.VoteRequest{Term: 4, CandidateId: 2, LastSeq: 99, LastTerm: 3,
		PreVote: true})
	for _, b := range [][]byte{heartbeat, vote, {0xff, 0xff}} {
		if _, _, _, ok := RecordData(b); ok {
			t.Errorf("RecordData(%x) found a record", b)
		}
	}
}

// The flipper changes exactly one bit, inside the first record's data of the chosen message,
// wherever the frame boundaries fall; everything else passes byte for byte.
func TestFlipperFlipsOneBitInRecordData(t *testing.T) {
	seed := Seed()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	for round := 0; round < 200; round++ {
		var stream []byte
		var msgs [][]byte
		heartbeat, _ := proto.Marshal(&pb.LeaderMessage{Term: 7, CommitSeq: 1,
			Body: &pb.LeaderMessage_Append{Append: &pb.Append{PrevSeq: 1, PrevTerm: 7}}})
		for i := 0; i < 6; i++ {
			var m []byte
			if i%2 == 0 {
				m = heartbeat
			} else {
				m = leaderMessage(t, uint64(10*i), 1+r.Intn(3), 1+r.Intn(9000))
			}
			msgs = append(msgs, m)
			stream = append(stream, grpcMessage(m)...)
		}
		frames := dataFrames(r, 1, stream)
		skip := r.Intn(3)
		seen := 0
		var events []FlipEvent
		decider := func(head []byte, total int) (int, uint, bool) {
			off, n, _, ok := RecordData(head)
			if !ok {
				return 0, 0, false
			}
			if seen++; seen <= skip {
				return 0, 0, false
			}
			return off + n/2, 5, true
		}
		armed := true
		f := newH2Flipper(func() Decider {
			if armed {
				return decider
			}
			return nil
		}, func(e FlipEvent) { events = append(events, e); armed = false })
		var out [][]byte
		for _, fr := range frames {
			out = append(out, f.Frame(append([]byte(nil), fr...))...)
		}
		if len(out) != len(frames) {
			t.Fatalf("round %d: %d frames in, %d out", round, len(frames), len(out))
		}
		got := unframe(out, 1)
		if len(got) != len(stream) {
			t.Fatalf("round %d: %d bytes in, %d out", round, len(stream), len(got))
		}
		var diffs []int
		for i := range got {
			if got[i] != stream[i] {
				diffs = append(diffs, i)
			}
		}
		if len(events) != 1 || len(diffs) != 1 || bits(got[diffs[0]]^stream[diffs[0]]) != 1 {
			t.Fatalf("round %d: events %v, bytes changed at %v", round, events, diffs)
		}
		// The flip is in message 2*(skip+1) (the records-carrying ones are 2, 4, 6), inside its
		// first record's data: the record's CRC no longer matches, and the message still parses.
		want := 2 * (skip + 1)
		if events[0].Msg != want {
			t.Fatalf("round %d: flipped message %d, want %d", round, events[0].Msg, want)
		}
		pos := 0
		for i := 0; i < want-1; i++ {
			pos += grpcPrefixLen + len(msgs[i])
		}
		body := got[pos+grpcPrefixLen : pos+grpcPrefixLen+len(msgs[want-1])]
		var m pb.LeaderMessage
		if err := proto.Unmarshal(body, &m); err != nil {
			t.Fatalf("round %d: flipped message does not parse: %v", round, err)
		}
		rec := m.GetAppend().GetRecords()[0]
		if crc32.Checksum(rec.Data, castagnoli) == rec.Crc {
			t.Fatalf("round %d: record CRC still matches", round)
		}
		// Frames other than DATA pass unchanged, in order.
		for i := range frames {
			if frames[i][3] != h2FrameData && !bytes.Equal(frames[i], out[i]) {
				t.Fatalf("round %d: frame %d changed", round, i)
			}
		}
	}
}

func bits(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// Unarmed, the flipper forwards every frame at once and unchanged.
func TestFlipperUnarmedIsTransparent(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	stream := grpcMessage(leaderMessage(t, 5, 2, 5000))
	f := newH2Flipper(func() Decider { return nil }, nil)
	for _, fr := range dataFrames(r, 3, stream) {
		out := f.Frame(append([]byte(nil), fr...))
		if len(out) != 1 || !bytes.Equal(out[0], fr) {
			t.Fatalf("frame held or changed")
		}
	}
}

// Through a real TCP proxy: the preface and frames arrive, one bit flipped, and SetRate slows
// the relay to about the rate asked.
func TestProxyRelaysFlipsAndThrottles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- b
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.ArmFlip(0, 3)
	p.SetRate(200 << 10)
	msg := grpcMessage(leaderMessage(t, 100, 1, 60<<10))
	var sent []byte
	sent = append(sent, h2Preface...)
	sent = append(sent, frame(0x4, 0, 0, nil)...) // SETTINGS
	for _, fr := range dataFrames(rand.New(rand.NewSource(2)), 1, msg) {
		sent = append(sent, fr...)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b := <-got
	took := time.Since(start)
	c.Close()
	if len(b) != len(sent) {
		t.Fatalf("relayed %d bytes of %d", len(b), len(sent))
	}
	n := 0
	for i := range b {
		n += bits(b[i] ^ sent[i])
	}
	flips, _ := p.Flips()
	if n != 1 || len(flips) != 1 {
		t.Fatalf("%d bits differ, %d flips reported", n, len(flips))
	}
	// ~62 KiB at 200 KiB/s: about 0.3 s.
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("relay of %d bytes at 200 KiB/s took %v", len(sent), took)
	}
	if p.Accepted() != 1 {
		t.Fatalf("accepted %d connections", p.Accepted())
	}
}

func op(client int, in KVInput, out string, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: KVOutput{out},
		Return: ret}
}

func TestKVModel(t *testing.T) {
	put := func(k, v string) KVInput { return KVInput{Op: OpPut, Key: k, Value: v} }
	get := func(k string) KVInput { return KVInput{Op: OpGet, Key: k} }
	legal := []porcupine.Operation{
		op(0, put("x", "1"), "", 0, 10),
		op(1, get("x"), "1", 11, 12),
		op(2, put("x", "2"), "", 5, 30), // concurrent with the read below
		op(1, get("x"), "1", 13, 14),
		op(1, get("x"), "2", 31, 32),
		op(0, put("y", "a"), "", 40, 1<<62), // unknown fate
		op(1, get("y"), "", 41, 42),
		op(1, get("y"), "a", 43, 44),
	}
	if err := CheckLinearizable(legal, 10*time.Second, ""); err != nil {
		t.Fatalf("legal history: %v", err)
	}
	stale := append(append([]porcupine.Operation(nil), legal...),
		op(2, get("x"), "1", 33, 34)) // "2" was read before this began
	if err := CheckLinearizable(stale, 10*time.Second, ""); err == nil {
		t.Fatal("a stale read passed")
	}
	lost := []porcupine.Operation{
		op(0, put("z", "1"), "", 0, 10),
		op(1, get("z"), "", 20, 21), // an acknowledged write vanished
	}
	if err := CheckLinearizable(lost, 10*time.Second, ""); err == nil {
		t.Fatal("a lost write passed")
	}
	invented := []porcupine.Operation{op(1, get("q"), "never", 0, 1)}
	if err := CheckLinearizable(invented, 10*time.Second, ""); err == nil {
		t.Fatal("a value never written passed")
	}
}

func TestLedger(t *testing.T) {
	l := NewLedger()
	l.Add("p/a", "1", WriteResult{Outcome: Acked, Seq: 3})
	l.Add("p/b", "2", WriteResult{Outcome: Unknown})
	l.Add("p/c", "3", WriteResult{Outcome: Refused})
	ok := []Pair{{[]byte("other"), []byte("x")}, {[]byte("p/a"), []byte("1")}}
	if err := l.Verify(ok, "p/"); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(append(ok, Pair{[]byte("p/b"), []byte("2")}), "p/"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]Pair{
		nil,                            // p/a missing
		{{[]byte("p/a"), []byte("9")}}, // wrong value
		{{[]byte("p/a"), []byte("1")}, {[]byte("p/c"), []byte("3")}},  // refused write there
		{{[]byte("p/a"), []byte("1")}, {[]byte("p/zz"), []byte("3")}}, // never written
	} {
		if err := l.Verify(bad, "p/"); err == nil {
			t.Errorf("Verify(%q) passed", bad)
		}
	}
}
