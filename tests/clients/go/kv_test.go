package stratatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "stratatest/gen/strata/v1"
)

// client bundles the stubs of one connection with helpers that fail the test on error.
type client struct {
	t     testing.TB
	conn  *grpc.ClientConn
	kv    pb.KVClient
	admin pb.AdminClient
}

func newClient(t testing.TB, addr string) *client {
	conn := dial(t, addr)
	return &client{t: t, conn: conn, kv: pb.NewKVClient(conn), admin: pb.NewAdminClient(conn)}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

func (c *client) put(key, value []byte) uint64 {
	c.t.Helper()
	r, err := c.kv.Put(ctx(c.t), &pb.PutRequest{Key: key, Value: value})
	if err != nil {
		c.t.Fatalf("Put %q: %v", key, err)
	}
	return r.Seq
}

func (c *client) get(key []byte) []byte {
	c.t.Helper()
	r, err := c.kv.Get(ctx(c.t), &pb.GetRequest{Key: key})
	if err != nil {
		c.t.Fatalf("Get %q: %v", key, err)
	}
	return r.Value
}

func (c *client) del(key []byte) uint64 {
	c.t.Helper()
	r, err := c.kv.Delete(ctx(c.t), &pb.DeleteRequest{Key: key})
	if err != nil {
		c.t.Fatalf("Delete %q: %v", key, err)
	}
	return r.Seq
}

func (c *client) write(muts ...*pb.Mutation) uint64 {
	c.t.Helper()
	r, err := c.kv.Write(ctx(c.t), &pb.WriteRequest{Mutations: muts})
	if err != nil {
		c.t.Fatalf("Write of %d: %v", len(muts), err)
	}
	return r.Seq
}

func (c *client) appliedSeq() uint64 {
	c.t.Helper()
	r, err := c.admin.Status(ctx(c.t), &pb.StatusRequest{})
	if err != nil {
		c.t.Fatalf("Status: %v", err)
	}
	return r.AppliedSeq
}

// scanMsgs returns every message of one Scan.
func (c *client) scanMsgs(req *pb.ScanRequest) ([]*pb.ScanResponse, error) {
	stream, err := c.kv.Scan(ctx(c.t), req)
	if err != nil {
		return nil, err
	}
	var msgs []*pb.ScanResponse
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

type kvPair struct{ k, v string }

// scan returns the pairs of one Scan and checks that every message carried one seq.
func (c *client) scan(req *pb.ScanRequest) ([]kvPair, uint64) {
	c.t.Helper()
	msgs, err := c.scanMsgs(req)
	if err != nil {
		c.t.Fatalf("Scan %v: %v", req, err)
	}
	var pairs []kvPair
	for _, m := range msgs {
		if m.Seq != msgs[0].Seq {
			c.t.Fatalf("one scan carried seqs %d and %d", msgs[0].Seq, m.Seq)
		}
		for _, p := range m.Pairs {
			pairs = append(pairs, kvPair{string(p.Key), string(p.Value)})
		}
	}
	if len(msgs) == 0 {
		c.t.Fatalf("Scan %v sent no message", req)
	}
	return pairs, msgs[0].Seq
}

func keysOf(pairs []kvPair) []string {
	ks := make([]string, len(pairs))
	for i, p := range pairs {
		ks[i] = p.k
	}
	return ks
}

func putOp(k, v []byte) *pb.Mutation {
	return &pb.Mutation{Op: &pb.Mutation_Put_{Put: &pb.Mutation_Put{Key: k, Value: v}}}
}

func delOp(k []byte) *pb.Mutation {
	return &pb.Mutation{Op: &pb.Mutation_Delete_{Delete: &pb.Mutation_Delete{Key: k}}}
}

// wantCode fails unless err is a gRPC status with code want; it returns the message.
func wantCode(t testing.TB, err error, want codes.Code, what string) string {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, want)
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != want {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
	return st.Message()
}

func b(s string) []byte { return []byte(s) }

func TestPutGetOverwrite(t *testing.T) {
	c := newClient(t, shared.addr)
	s1 := c.put(b("pg/a"), b("one"))
	if s1 == 0 {
		t.Fatal("Put returned seq 0")
	}
	r, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b("pg/a")})
	if err != nil || string(r.Value) != "one" || r.Seq < s1 {
		t.Fatalf("Get after Put: %v %v (put seq %d)", r, err, s1)
	}
	if s2 := c.put(b("pg/a"), b("two")); s2 != s1+1 {
		t.Fatalf("second Put seq %d, want %d", s2, s1+1)
	}
	if v := c.get(b("pg/a")); string(v) != "two" {
		t.Fatalf("overwritten value %q", v)
	}
	// An empty value is a value, not an absent key.
	c.put(b("pg/empty"), nil)
	if v := c.get(b("pg/empty")); len(v) != 0 {
		t.Fatalf("empty value read back as %q", v)
	}
}

func TestSequencesIncreaseByOne(t *testing.T) {
	c := newClient(t, shared.addr)
	first := c.put(b("sq/000"), b("v"))
	for i := 1; i < 20; i++ {
		if s := c.put(b(fmt.Sprintf("sq/%03d", i)), b("v")); s != first+uint64(i) {
			t.Fatalf("put %d: seq %d, want %d", i, s, first+uint64(i))
		}
	}
	if d := c.del(b("sq/000")); d != first+20 {
		t.Fatalf("delete seq %d, want %d", d, first+20)
	}
	st, err := c.admin.Status(ctx(t), &pb.StatusRequest{})
	if err != nil || st.LastSeq < first+20 || st.AppliedSeq < first+20 {
		t.Fatalf("Status after seq %d: %v %v", first+20, st, err)
	}
}

func TestDelete(t *testing.T) {
	c := newClient(t, shared.addr)
	c.put(b("del/k"), b("v"))
	s := c.del(b("del/k"))
	_, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b("del/k")})
	if msg := wantCode(t, err, codes.NotFound, "Get of a deleted key"); msg == "" {
		t.Fatal("NOT_FOUND carries no message")
	}
	// Deleting an absent key is not an error, and still takes a sequence number.
	if s2 := c.del(b("del/never")); s2 != s+1 {
		t.Fatalf("delete of an absent key: seq %d, want %d", s2, s+1)
	}
	if pairs, _ := c.scan(&pb.ScanRequest{Start: b("del/"), End: b("del0")}); len(pairs) != 0 {
		t.Fatalf("deleted keys still scanned: %v", pairs)
	}
}

func TestScanRangesLimitsReverse(t *testing.T) {
	c := newClient(t, shared.addr)
	var keys []string
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("sc/%02d", i)
		keys = append(keys, k)
		c.put(b(k), b("val-"+k))
	}
	rev := func(s []string) []string { r := slices.Clone(s); slices.Reverse(r); return r }
	cases := []struct {
		req  *pb.ScanRequest
		want []string
	}{
		{&pb.ScanRequest{Start: b("sc/"), End: b("sc0")}, keys},
		{&pb.ScanRequest{Start: b("sc/10"), End: b("sc/20")}, keys[10:20]},
		{&pb.ScanRequest{Start: b("sc/10x"), End: b("sc/13")}, keys[11:13]},
		{&pb.ScanRequest{Start: b("sc/"), End: b("sc0"), Limit: 7}, keys[:7]},
		{&pb.ScanRequest{Start: b("sc/"), End: b("sc0"), Reverse: true}, rev(keys)},
		{&pb.ScanRequest{Start: b("sc/05"), End: b("sc/30"), Reverse: true, Limit: 4},
			[]string{"sc/29", "sc/28", "sc/27", "sc/26"}},
		{&pb.ScanRequest{Start: b("sc/45"), End: b("sc0"), Limit: 1000}, keys[45:]},
	}
	for _, tc := range cases {
		pairs, _ := c.scan(tc.req)
		if got := keysOf(pairs); !slices.Equal(got, tc.want) {
			t.Errorf("Scan %v: got %v, want %v", tc.req, got, tc.want)
		}
		for _, p := range pairs {
			if p.v != "val-"+p.k {
				t.Errorf("Scan %v: %s = %q", tc.req, p.k, p.v)
			}
		}
	}
}

func TestScanEmptyRanges(t *testing.T) {
	c := newClient(t, shared.addr)
	c.put(b("em/a"), b("1"))
	c.put(b("em/c"), b("3"))
	seq := c.appliedSeq()
	for _, r := range [][2]string{{"em/b", "em/c"}, {"em/c", "em/c"}, {"em/x", "em/z"},
		{"em/", "em/a"}} {
		for _, reverse := range []bool{false, true} {
			msgs, err := c.scanMsgs(&pb.ScanRequest{Start: b(r[0]), End: b(r[1]),
				Reverse: reverse})
			if err != nil {
				t.Fatalf("Scan [%q, %q): %v", r[0], r[1], err)
			}
			if len(msgs) != 1 || len(msgs[0].Pairs) != 0 || msgs[0].Seq < seq {
				t.Errorf("empty Scan [%q, %q) reverse=%v: %v (want one message, no pairs, "+
					"seq >= %d)", r[0], r[1], reverse, msgs, seq)
			}
		}
	}
}

func TestBinaryKeys(t *testing.T) {
	c := newClient(t, shared.addr)
	// Keys starting with 0x00 or 0xFF belong to this test alone (see the Python test).
	low := []string{"\x00", "\x00\x00", "\x00\x00\x01", "\x00\x01", "\x00\xff"}
	high := []string{"\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff"}
	for _, k := range append(slices.Clone(low), high...) {
		c.put(b(k), b("v\x00"+k+"\xff"))
	}
	for _, k := range append(slices.Clone(low), high...) {
		if v := c.get(b(k)); string(v) != "v\x00"+k+"\xff" {
			t.Fatalf("Get %q = %q", k, v)
		}
	}
	check := func(req *pb.ScanRequest, want []string) {
		t.Helper()
		pairs, _ := c.scan(req)
		if got := keysOf(pairs); !slices.Equal(got, want) {
			t.Errorf("Scan %q..%q: got %q, want %q", req.Start, req.End, got, want)
		}
	}
	check(&pb.ScanRequest{End: b("\x01")}, low)
	check(&pb.ScanRequest{Start: b("\xff")}, high)
	check(&pb.ScanRequest{Start: b("\xff"), Reverse: true, Limit: 2},
		[]string{"\xff\xff\xff", "\xff\xff"})
	check(&pb.ScanRequest{Start: b("\x00\x00"), End: b("\x00\xff")},
		[]string{"\x00\x00", "\x00\x00\x01", "\x00\x01"})
}

func TestScanManyPairsOverSeveralMessages(t *testing.T) {
	c := newClient(t, shared.addr)
	const n = 2000
	var muts []*pb.Mutation
	for i := 0; i < n; i++ {
		muts = append(muts, putOp(b(fmt.Sprintf("many/%05d", i)), b(fmt.Sprintf("%0100d", i))))
	}
	c.write(muts...)
	msgs, err := c.scanMsgs(&pb.ScanRequest{Start: b("many/"), End: b("many0")})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < n/256 {
		t.Fatalf("%d pairs came in %d messages (at most 256 pairs each)", n, len(msgs))
	}
	i := 0
	for _, m := range msgs {
		if len(m.Pairs) == 0 || len(m.Pairs) > 256 || m.Seq != msgs[0].Seq {
			t.Fatalf("message with %d pairs, seq %d (first seq %d)", len(m.Pairs), m.Seq,
				msgs[0].Seq)
		}
		for _, p := range m.Pairs {
			if string(p.Key) != fmt.Sprintf("many/%05d", i) ||
				string(p.Value) != fmt.Sprintf("%0100d", i) {
				t.Fatalf("pair %d: %q = %q", i, p.Key, p.Value)
			}
			i++
		}
	}
	if i != n {
		t.Fatalf("scanned %d pairs, want %d", i, n)
	}
	// Large values: the ~64 KiB bound splits the stream, not the pair count.
	muts = nil
	big := bytes.Repeat(b("x"), 8000)
	for i := 0; i < 100; i++ {
		muts = append(muts, putOp(b(fmt.Sprintf("big/%03d", i)), big))
	}
	c.write(muts...)
	msgs, err = c.scanMsgs(&pb.ScanRequest{Start: b("big/"), End: b("big0")})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, m := range msgs {
		if sz := proto.Size(m); sz > 64*1024+8200 {
			t.Errorf("a scan message of %d bytes", sz)
		}
		total += len(m.Pairs)
	}
	if total != 100 || len(msgs) < 100*8000/(64*1024+8000) {
		t.Fatalf("100 pairs of 8000 bytes: %d pairs in %d messages", total, len(msgs))
	}
}

func TestScanReadsOneSnapshot(t *testing.T) {
	c := newClient(t, shared.addr)
	const n = 1500
	var muts []*pb.Mutation
	for i := 0; i < n; i++ {
		muts = append(muts, putOp(b(fmt.Sprintf("snap/%05d", i)), b("old")))
	}
	c.write(muts...)
	stream, err := c.kv.Scan(ctx(t), &pb.ScanRequest{Start: b("snap/"), End: b("snap0")})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the scan began stay invisible to it.
	muts = nil
	for i := 0; i < n; i++ {
		muts = append(muts, putOp(b(fmt.Sprintf("snap/%05d", i)), b("new")))
	}
	c.write(append(muts, putOp(b("snap/zzz"), b("new")))...)
	count := 0
	for m := first; ; {
		if m.Seq != first.Seq {
			t.Fatalf("seq changed within a scan: %d then %d", first.Seq, m.Seq)
		}
		for _, p := range m.Pairs {
			if string(p.Key) != fmt.Sprintf("snap/%05d", count) || string(p.Value) != "old" {
				t.Fatalf("pair %d of the snapshot: %q = %q", count, p.Key, p.Value)
			}
			count++
		}
		if m, err = stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if count != n {
		t.Fatalf("snapshot scan saw %d pairs, want %d", count, n)
	}
}

func TestWriteBatchSequencesAndOrder(t *testing.T) {
	c := newClient(t, shared.addr)
	before := c.put(b("wb/x"), b("0"))
	muts := []*pb.Mutation{putOp(b("wb/a"), b("1")), putOp(b("wb/b"), b("2")), delOp(b("wb/x")),
		putOp(b("wb/c"), b("3")), delOp(b("wb/c")), putOp(b("wb/a"), b("1b"))}
	seq := c.write(muts...)
	if seq != before+uint64(len(muts)) {
		t.Fatalf("batch of %d after seq %d answered seq %d", len(muts), before, seq)
	}
	pairs, pseq := c.scan(&pb.ScanRequest{Start: b("wb/"), End: b("wb0")})
	want := []kvPair{{"wb/a", "1b"}, {"wb/b", "2"}}
	if !slices.Equal(pairs, want) || pseq < seq {
		t.Fatalf("after the batch: %v at seq %d, want %v at >= %d", pairs, pseq, want, seq)
	}
	// An empty batch writes nothing and answers the last applied sequence.
	if e := c.write(); e != seq {
		t.Fatalf("empty batch answered seq %d, want %d", e, seq)
	}
	if s := c.put(b("wb/after"), b("z")); s != seq+1 {
		t.Fatalf("put after an empty batch: seq %d, want %d", s, seq+1)
	}
}

func TestWriteBatchRejectedWhole(t *testing.T) {
	c := newClient(t, shared.addr)
	seq := c.appliedSeq()
	bad := [][]*pb.Mutation{
		{putOp(b("wr/a"), b("1")), putOp(nil, b("empty key"))},
		{putOp(b("wr/a"), b("1")), delOp(nil)},
		{putOp(b("wr/a"), b("1")), putOp(bytes.Repeat(b("k"), maxKey+1), nil)},
		{putOp(b("wr/a"), b("1")), {}}, // neither put nor delete
	}
	for i, muts := range bad {
		_, err := c.kv.Write(ctx(t), &pb.WriteRequest{Mutations: muts})
		wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("bad batch %d", i))
	}
	_, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b("wr/a")})
	wantCode(t, err, codes.NotFound, "Get of a key from a rejected batch")
	if s := c.appliedSeq(); s != seq {
		t.Fatalf("rejected batches moved the applied seq from %d to %d", seq, s)
	}
}

func TestWriteBatchesAtomicToConcurrentReaders(t *testing.T) {
	c := newClient(t, shared.addr)
	var keys [][]byte
	for i := 0; i < 16; i++ {
		keys = append(keys, b(fmt.Sprintf("at/%02d", i)))
	}
	batch := func(v string) []*pb.Mutation {
		var m []*pb.Mutation
		for _, k := range keys {
			m = append(m, putOp(k, b(v)))
		}
		return m
	}
	c.write(batch("0")...)
	reader := newClient(t, shared.addr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failure error
	scans := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			msgs, err := reader.scanMsgs(&pb.ScanRequest{Start: b("at/"), End: b("at0")})
			if err != nil {
				failure = err
				return
			}
			var vals []string
			for _, m := range msgs {
				for _, p := range m.Pairs {
					vals = append(vals, string(p.Value))
				}
			}
			if len(vals) != len(keys) || len(slices.Compact(slices.Clone(vals))) != 1 {
				failure = fmt.Errorf("torn batch seen: %v", vals)
				return
			}
			scans++
		}
	}()
	for gen := 1; gen < 200; gen++ {
		c.write(batch(strconv.Itoa(gen))...)
	}
	close(stop)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	if scans == 0 {
		t.Fatal("the reader completed no scan")
	}
}

func TestMinSeq(t *testing.T) {
	c := newClient(t, shared.addr)
	seq := c.put(b("ms/a"), b("1"))
	r, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b("ms/a"), MinSeq: seq})
	if err != nil || string(r.Value) != "1" || r.Seq < seq {
		t.Fatalf("Get with min_seq %d: %v %v", seq, r, err)
	}
	ahead := c.appliedSeq() + 1
	// No deadline: answered at once with FAILED_PRECONDITION.
	_, err = c.kv.Get(context.Background(), &pb.GetRequest{Key: b("ms/a"), MinSeq: ahead + 1000})
	msg := wantCode(t, err, codes.FailedPrecondition, "min_seq ahead, no deadline")
	if !strings.Contains(msg, "min_seq") {
		t.Errorf("FAILED_PRECONDITION message does not name min_seq: %q", msg)
	}
	// With a deadline: the read waits for it, then DEADLINE_EXCEEDED.
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = c.kv.Get(short, &pb.GetRequest{Key: b("ms/a"), MinSeq: ahead + 1000})
	wantCode(t, err, codes.DeadlineExceeded, "min_seq ahead with a 500 ms deadline")
	if el := time.Since(t0); el < 450*time.Millisecond {
		t.Fatalf("DEADLINE_EXCEEDED after %v, before the deadline", el)
	}
	// A parked read is answered as soon as a write brings the node to its min_seq.
	type result struct {
		get  *pb.GetResponse
		scan []*pb.ScanResponse
		err  error
	}
	getc, scanc := make(chan result, 1), make(chan result, 1)
	go func() {
		r, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b("ms/b"), MinSeq: ahead})
		getc <- result{get: r, err: err}
	}()
	go func() {
		m, err := c.scanMsgs(&pb.ScanRequest{Start: b("ms/"), End: b("ms0"), MinSeq: ahead})
		scanc <- result{scan: m, err: err}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-getc:
		t.Fatalf("Get with min_seq ahead did not wait: %v", r)
	case r := <-scanc:
		t.Fatalf("Scan with min_seq ahead did not wait: %v", r)
	default:
	}
	if s := c.put(b("ms/b"), b("2")); s != ahead {
		t.Fatalf("the waking put got seq %d, want %d", s, ahead)
	}
	g := <-getc
	if g.err != nil || string(g.get.Value) != "2" || g.get.Seq < ahead {
		t.Fatalf("parked Get: %v %v", g.get, g.err)
	}
	sc := <-scanc
	if sc.err != nil || len(sc.scan) == 0 || sc.scan[0].Seq < ahead {
		t.Fatalf("parked Scan: %v %v", sc.scan, sc.err)
	}
	var got []string
	for _, m := range sc.scan {
		for _, p := range m.Pairs {
			got = append(got, string(p.Key))
		}
	}
	if !slices.Equal(got, []string{"ms/a", "ms/b"}) {
		t.Fatalf("parked Scan saw %v", got)
	}
}

func TestStatus(t *testing.T) {
	c := newClient(t, shared.addr)
	seq := c.put(b("st/a"), b("1"))
	st, err := c.admin.Status(ctx(t), &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "standalone" || st.NodeId != 1 || st.Version == "" {
		t.Errorf("role %q node_id %d version %q", st.Role, st.NodeId, st.Version)
	}
	if st.LastSeq < seq || st.AppliedSeq < seq || st.AppliedSeq > st.LastSeq ||
		st.FlushedSeq > st.AppliedSeq {
		t.Errorf("after seq %d: last %d applied %d flushed %d", seq, st.LastSeq,
			st.AppliedSeq, st.FlushedSeq)
	}
	if len(st.Levels) != 7 {
		t.Fatalf("%d levels, want 7", len(st.Levels))
	}
	for i, lv := range st.Levels {
		if lv.Level != uint32(i) {
			t.Errorf("levels[%d].level = %d", i, lv.Level)
		}
	}
	if st.Writes < 1 || st.WalSegments < 1 || st.BackgroundError != "" {
		t.Errorf("writes %d wal_segments %d background_error %q", st.Writes, st.WalSegments,
			st.BackgroundError)
	}
	// A KV call in progress (a Get parked on min_seq) is counted in active_calls.
	parked, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.kv.Get(parked, &pb.GetRequest{Key: b("st/a"), MinSeq: st.LastSeq + 1000})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if st, err = c.admin.Status(ctx(t), &pb.StatusRequest{}); err != nil || st.ActiveCalls < 1 {
		t.Errorf("Status with a parked Get: active_calls %d, %v", st.GetActiveCalls(), err)
	}
	wantCode(t, <-done, codes.DeadlineExceeded, "the parked Get")
}

// rawCodec sends and receives messages as the bytes given, for malformed requests.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)   { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(d []byte, v any) error { *(v.(*[]byte)) = slices.Clone(d); return nil }
func (rawCodec) Name() string                    { return "proto" }

func invokeRaw(t testing.TB, conn *grpc.ClientConn, method string, req []byte) error {
	var resp []byte
	return conn.Invoke(ctx(t), method, &req, &resp, grpc.ForceCodec(rawCodec{}))
}

func TestInvalidArguments(t *testing.T) {
	c := newClient(t, shared.addr)
	_, err := c.kv.Put(ctx(t), &pb.PutRequest{Value: b("v")})
	if !strings.Contains(wantCode(t, err, codes.InvalidArgument, "Put empty key"), "empty") {
		t.Error("the message does not say the key is empty")
	}
	_, err = c.kv.Get(ctx(t), &pb.GetRequest{})
	wantCode(t, err, codes.InvalidArgument, "Get empty key")
	_, err = c.kv.Delete(ctx(t), &pb.DeleteRequest{})
	wantCode(t, err, codes.InvalidArgument, "Delete empty key")
	// The limits are exact: at the limit is accepted, one byte over is not.
	k := bytes.Repeat(b("k"), maxKey)
	c.put(k, b("max key"))
	if v := c.get(k); string(v) != "max key" {
		t.Fatalf("Get of the longest key: %q", v)
	}
	k = append(k, 'k')
	_, err = c.kv.Put(ctx(t), &pb.PutRequest{Key: k})
	if !strings.Contains(wantCode(t, err, codes.InvalidArgument, "Put long key"), "max-key-bytes") {
		t.Error("the message does not name --max-key-bytes")
	}
	_, err = c.kv.Get(ctx(t), &pb.GetRequest{Key: k})
	wantCode(t, err, codes.InvalidArgument, "Get long key")
	_, err = c.kv.Delete(ctx(t), &pb.DeleteRequest{Key: k})
	wantCode(t, err, codes.InvalidArgument, "Delete long key")
	big := make([]byte, maxValue)
	rand.Read(big)
	c.put(b("inv/maxvalue"), big)
	if v := c.get(b("inv/maxvalue")); !bytes.Equal(v, big) {
		t.Fatalf("a %d-byte value read back as %d bytes", len(big), len(v))
	}
	_, err = c.kv.Put(ctx(t), &pb.PutRequest{Key: b("inv/toobig"), Value: append(big, '!')})
	msg := wantCode(t, err, codes.InvalidArgument, "Put long value")
	if !strings.Contains(msg, "max-value-bytes") {
		t.Error("the message does not name --max-value-bytes")
	}
	_, err = c.kv.Get(ctx(t), &pb.GetRequest{Key: b("inv/toobig")})
	wantCode(t, err, codes.NotFound, "Get of a refused value")
	// Bytes that do not parse as the request message.
	err = invokeRaw(t, c.conn, "/strata.v1.KV/Put", []byte{0xff, 0xff, 0xff, 0xff})
	wantCode(t, err, codes.InvalidArgument, "Put of garbage bytes")
}

func TestMessageOverLimit(t *testing.T) {
	c := newClient(t, shared.addr)
	huge := make([]byte, maxMessage+1024)
	_, err := c.kv.Put(ctx(t), &pb.PutRequest{Key: b("rx/huge"), Value: huge})
	wantCode(t, err, codes.ResourceExhausted, "a 16 MiB+ request")
	c.put(b("rx/after"), b("ok"))
	if v := c.get(b("rx/after")); string(v) != "ok" {
		t.Fatalf("after the refused message: %q", v)
	}
}

func TestDeadlineExceeded(t *testing.T) {
	c := newClient(t, shared.addr)
	// A deadline already in the past: the client gives up before sending.
	past, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := c.kv.Put(past, &pb.PutRequest{Key: b("dl/past"), Value: b("1")})
	wantCode(t, err, codes.DeadlineExceeded, "Put with a past deadline")
	// Deadlines of microseconds: some calls reach the node in time and some do not. Whatever
	// happens, the answer is OK or DEADLINE_EXCEEDED, and a call the node found expired on
	// arrival wrote nothing.
	outcome := map[string]string{}
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("dl/%03d", i)
		d, cancel := context.WithTimeout(context.Background(),
			[]time.Duration{20 * time.Microsecond, 200 * time.Microsecond, time.Millisecond}[i%3])
		_, err := c.kv.Put(d, &pb.PutRequest{Key: b(key), Value: b("v")})
		cancel()
		switch {
		case err == nil:
			outcome[key] = "ok"
		case status.Code(err) == codes.DeadlineExceeded:
			if strings.Contains(status.Convert(err).Message(), "had passed when the call arrived") {
				outcome[key] = "late"
			} else {
				outcome[key] = "expired"
			}
		default:
			t.Fatalf("Put %s with a short deadline: %v", key, err)
		}
	}
	pairs, _ := c.scan(&pb.ScanRequest{Start: b("dl/"), End: b("dl0")})
	present := map[string]bool{}
	for _, p := range pairs {
		present[p.k] = true
	}
	counts := map[string]int{}
	for k, o := range outcome {
		counts[o]++
		if o == "ok" && !present[k] {
			t.Errorf("acknowledged Put %s is missing", k)
		}
		if o == "late" && present[k] {
			t.Errorf("Put %s, refused on arrival, was applied", k)
		}
	}
	t.Logf("short deadlines: %d ok, %d refused on arrival, %d expired elsewhere",
		counts["ok"], counts["late"], counts["expired"])
	c.put(b("dl/after"), b("2"))
}

func TestNotFound(t *testing.T) {
	c := newClient(t, shared.addr)
	_, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b("nf/missing")})
	if !strings.Contains(wantCode(t, err, codes.NotFound, "Get missing"), "not found") {
		t.Error("NOT_FOUND message does not say so")
	}
}

func TestUnimplemented(t *testing.T) {
	c := newClient(t, shared.addr)
	for _, m := range []string{"/strata.v1.KV/NoSuchMethod", "/strata.v9.Nope/Get",
		"/strata.v1.Admin/Shutdown"} {
		wantCode(t, invokeRaw(t, c.conn, m, nil), codes.Unimplemented, m)
	}
	stream, err := c.conn.NewStream(ctx(t), &grpc.StreamDesc{ServerStreams: true},
		"/strata.v1.KV/ScanAll", grpc.ForceCodec(rawCodec{}))
	if err == nil {
		req := []byte{}
		if err = stream.SendMsg(&req); err == nil {
			stream.CloseSend()
			var resp []byte
			err = stream.RecvMsg(&resp)
		}
	}
	wantCode(t, err, codes.Unimplemented, "streaming call of an unknown method")
}

func TestHealth(t *testing.T) {
	conn := dial(t, shared.addr)
	h := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "strata.v1.KV", "strata.v1.Admin"} {
		r, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check %q: %v %v", svc, r, err)
		}
	}
	_, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, err, codes.NotFound, "Check of an unknown service")
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	w, err := h.Watch(wctx, &healthpb.HealthCheckRequest{Service: "strata.v1.KV"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v %v", r, err)
	}
}

func testSeed(t testing.TB) uint64 {
	seed := uint64(time.Now().UnixNano()) ^ uint64(os.Getpid())
	if s := os.Getenv("ST_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ST_TEST_SEED=%q: %v", s, err)
		}
	}
	fmt.Fprintf(os.Stderr, "go_client randomized: seed=%d (rerun with ST_TEST_SEED=%d)\n",
		seed, seed)
	return seed
}

func TestRandomizedAgainstAModel(t *testing.T) {
	seed := testSeed(t)
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := newClient(t, shared.addr)
	alphabet := []string{"\x00", "\x01", "a", "b", "\xfe", "\xff"}
	rkey := func() string {
		k := "rnd/"
		for i := 0; i <= rng.IntN(4); i++ {
			k += alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	rval := func() string {
		v := make([]byte, rng.IntN(41))
		for i := range v {
			v[i] = byte(rng.IntN(256))
		}
		return string(v)
	}
	model := map[string]string{}
	last := c.appliedSeq()
	for i := 0; i < 400; i++ {
		switch op := rng.Float64(); {
		case op < 0.5:
			k, v := rkey(), rval()
			last = c.put(b(k), b(v))
			model[k] = v
		case op < 0.7:
			k := rkey()
			last = c.del(b(k))
			delete(model, k)
		case op < 0.85:
			var muts []*pb.Mutation
			for j := rng.IntN(9); j > 0; j-- {
				k := rkey()
				if rng.Float64() < 0.7 {
					v := rval()
					muts = append(muts, putOp(b(k), b(v)))
					model[k] = v
				} else {
					muts = append(muts, delOp(b(k)))
					delete(model, k)
				}
			}
			s := c.write(muts...)
			if s != last+uint64(len(muts)) {
				t.Fatalf("seed %d: batch of %d after %d answered %d", seed, len(muts), last, s)
			}
			last = s
		default:
			k := rkey()
			r, err := c.kv.Get(ctx(t), &pb.GetRequest{Key: b(k)})
			if v, ok := model[k]; ok {
				if err != nil || string(r.Value) != v {
					t.Fatalf("seed %d: Get %q = %v %v, want %q", seed, k, r, err, v)
				}
			} else {
				wantCode(t, err, codes.NotFound, fmt.Sprintf("seed %d: Get %q", seed, k))
			}
		}
	}
	var want []kvPair
	for k, v := range model {
		want = append(want, kvPair{k, v})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].k < want[j].k })
	for i := 0; i < 30; i++ {
		lo, hi := rkey(), rkey()
		if lo > hi {
			lo, hi = hi, lo
		}
		if i == 0 {
			lo, hi = "rnd/", "rnd0"
		}
		limit := rng.IntN(6)
		reverse := rng.IntN(2) == 1
		var exp []kvPair
		for _, p := range want {
			if p.k >= lo && p.k < hi {
				exp = append(exp, p)
			}
		}
		if reverse {
			slices.Reverse(exp)
		}
		if limit > 0 && len(exp) > limit {
			exp = exp[:limit]
		}
		got, _ := c.scan(&pb.ScanRequest{Start: b(lo), End: b(hi), Limit: uint64(limit),
			Reverse: reverse})
		if !slices.Equal(got, exp) {
			t.Fatalf("seed %d: Scan [%q, %q) limit %d reverse %v: got %q, want %q", seed, lo,
				hi, limit, reverse, got, exp)
		}
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	n, err := newNode("restart")
	if err != nil {
		t.Fatal(err)
	}
	defer n.cleanup()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, n.addr)
	var seq uint64
	for i := 0; i < 100; i++ {
		seq = c.put(b(fmt.Sprintf("r/%03d", i)), b(strconv.Itoa(i)))
	}
	c.del(b("r/050"))
	c.conn.Close()
	if rc := n.stop(); rc != 0 {
		t.Fatalf("strata-node exited %d after SIGTERM; log:\n%s", rc, tail(n.log(), 4000))
	}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, n.addr)
	pairs, sseq := c.scan(&pb.ScanRequest{Start: b("r/"), End: b("r0")})
	if len(pairs) != 99 || sseq != seq+1 {
		t.Fatalf("after restart: %d pairs at seq %d, want 99 at %d", len(pairs), sseq, seq+1)
	}
	for _, p := range pairs {
		i, _ := strconv.Atoi(strings.TrimPrefix(p.k, "r/"))
		if p.k == "r/050" || p.v != strconv.Itoa(i) {
			t.Fatalf("after restart: %s = %q", p.k, p.v)
		}
	}
	if s := c.put(b("r/new"), b("x")); s != seq+2 {
		t.Fatalf("first put after restart: seq %d, want %d", s, seq+2)
	}
	c.conn.Close()
	if rc := n.stop(); rc != 0 {
		t.Fatalf("strata-node exited %d after SIGTERM; log:\n%s", rc, tail(n.log(), 4000))
	}
}

func TestExampleClient(t *testing.T) {
	bin := os.Getenv("STRATA_EXAMPLE_BIN")
	if bin == "" {
		t.Skip("STRATA_EXAMPLE_BIN not set (run_go_test.sh builds examples/go and sets it)")
	}
	out, err := exec.Command(bin, "-addr", shared.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, out)
	}
	for _, want := range []string{"greeting = hello, strata", "fruit/apple = red",
		"fruit/cherry = dark red", "fruit/banana: NotFound"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("example output lacks %q:\n%s", want, out)
		}
	}
	c := newClient(t, shared.addr)
	if v := c.get(b("greeting")); string(v) != "hello, strata" {
		t.Fatalf("the example's write reads back as %q", v)
	}
}
