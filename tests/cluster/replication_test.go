package cluster_test

// Issue 4: replication. Each test starts its own 3-node cluster on loopback.

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "stratacluster/gen/strata/v1"
	"stratacluster/harness"
)

// 100,000 keys (scaled down for sanitizer builds) written at MAJORITY by concurrent clients,
// most in batches through Write and some through Put; then the three nodes' full scans are
// byte-identical and hold exactly what was written.
func TestReplication100k(t *testing.T) {
	s := seed(t)
	c, _ := newCluster(t, harness.Options{}, 55*time.Second)
	total := harness.Scaled(100000, 5000)
	puts := total / 10
	value := harness.Values(s, 1, 120)
	ctx, cancel := bg(c)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var errPut, errWrite error
	wg.Add(2)
	go func() { // single keys through Put
		defer wg.Done()
		errPut = c.Load(ctx, "r/", 0, puts, 1, 8, pb.AckLevel_ACK_MAJORITY, value, nil)
	}()
	go func() { // batches of 100 through Write
		defer wg.Done()
		errWrite = c.Load(ctx, "r/", puts, total, 100, 4, pb.AckLevel_ACK_MAJORITY, value, nil)
	}()
	wg.Wait()
	must(t, errPut)
	must(t, errWrite)
	took := time.Since(start)
	t.Logf("%d keys acknowledged at MAJORITY in %v (%.0f keys/s): %d through Put, %d in "+
		"batches of 100 through Write", total, took.Round(time.Millisecond),
		float64(total)/took.Seconds(), puts, total-puts)
	scan, seq, err := c.Converge(60 * time.Second * harness.Slow())
	must(t, err)
	must(t, harness.VerifyLoad(scan, "r/", 0, total, value))
	if len(scan) != total {
		t.Fatalf("the scan has %d pairs, %d were written", len(scan), total)
	}
	t.Logf("3 nodes byte-identical at sequence %d: %d pairs", seq, len(scan))
}

// A follower killed with SIGKILL while writes go on, and restarted while they still go on,
// catches up and converges.
func TestFollowerKilledAndRestarted(t *testing.T) {
	s := seed(t)
	c, leader := newCluster(t, harness.Options{}, 45*time.Second)
	f := follower(c, leader)
	total := harness.Scaled(40000, 4000)
	value := harness.Values(s, 10, 200)
	ctx, cancel := bg(c)
	defer cancel()
	var done atomic.Int64
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- c.Load(ctx, "k/", 0, total, 50, 4, pb.AckLevel_ACK_MAJORITY, value, &done)
	}()
	must(t, waitFor(60*time.Second, "a quarter of the writes", func() bool {
		return done.Load() >= int64(total/4)
	}))
	must(t, f.Kill())
	atKill := done.Load()
	must(t, waitFor(60*time.Second, "half of the writes", func() bool {
		return done.Load() >= int64(total/2)
	}))
	whileDown := done.Load() - atKill
	must(t, f.Start())
	atRestart := done.Load()
	must(t, <-loadErr)
	t.Logf("%d keys acknowledged while %v was down, %d after it restarted", whileDown, f,
		int64(total)-atRestart)
	if whileDown <= 0 {
		t.Fatalf("no write was acknowledged while %v was down", f)
	}
	scan, _, err := c.Converge(60 * time.Second * harness.Slow())
	must(t, err)
	must(t, harness.VerifyLoad(scan, "k/", 0, total, value))
	st, err := c.Status(f, 5*time.Second)
	must(t, err)
	t.Logf("%v after catching up: applied_seq %d, term %d, role %s", f, st.AppliedSeq, st.Term,
		st.Role)
}

// A follower stopped with SIGSTOP: MAJORITY writes go on with two nodes; ALL writes fail at
// their deadline with DEADLINE_EXCEEDED and a message; after SIGCONT it converges and ALL
// writes succeed again.
func TestFollowerPaused(t *testing.T) {
	s := seed(t)
	c, leader := newCluster(t, harness.Options{}, 45*time.Second)
	f := follower(c, leader)
	value := harness.Values(s, 10, 100)
	ctx, cancel := bg(c)
	defer cancel()
	must(t, c.Load(ctx, "p/", 0, 500, 25, 2, pb.AckLevel_ACK_ALL, value, nil))

	must(t, f.Pause())
	n := harness.Scaled(5000, 1000)
	start := time.Now()
	must(t, c.Load(ctx, "p/", 500, 500+n, 25, 4, pb.AckLevel_ACK_MAJORITY, value, nil))
	t.Logf("%d MAJORITY writes acknowledged by 2 of 3 nodes in %v", n, time.Since(start))

	// The server's own answer when the deadline passes (a gRPC client's deadline fires at the
	// same instant and hides it): RawUnary gives the server the deadline and waits longer.
	for i := 0; i < 3; i++ {
		deadline := time.Duration(300+200*i) * time.Millisecond
		t0 := time.Now()
		code, msg, err := harness.RawUnary(leader.Listen, "/strata.v1.KV/Put",
			&pb.PutRequest{Key: []byte("p/all"), Value: []byte{byte(i)},
				Ack: pb.AckLevel_ACK_ALL}, deadline, deadline+10*time.Second*harness.Slow())
		took := time.Since(t0)
		must(t, err)
		// The node answers a little before the deadline, before gRPC core would end the call
		// itself with a bare "Deadline Exceeded": its message says what the write waited for.
		if code != codes.DeadlineExceeded || !strings.Contains(msg, "acknowledgement level") {
			t.Fatalf("ALL write with a %v deadline and a paused follower: %v %q (want "+
				"DEADLINE_EXCEEDED with the node's message about the acknowledgement level)",
				deadline, code, msg)
		}
		if took < deadline-40*time.Millisecond || took > deadline+2*time.Second*harness.Slow() {
			t.Fatalf("ALL write with a %v deadline failed after %v", deadline, took)
		}
		t.Logf("ALL write, deadline %v: %v after %v: %q", deadline, code,
			took.Round(time.Millisecond), msg)
	}
	// And a gRPC client sees DEADLINE_EXCEEDED at its deadline.
	cctx, ccancel := context.WithTimeout(ctx, 400*time.Millisecond)
	_, err := c.KV(leader).Put(cctx, &pb.PutRequest{Key: []byte("p/all"), Value: []byte("g"),
		Ack: pb.AckLevel_ACK_ALL})
	ccancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("ALL write from a gRPC client with a paused follower: %v", err)
	}
	// MAJORITY writes still go through while ALL ones wait.
	must(t, c.Load(ctx, "p/", 500+n, 550+n, 25, 2, pb.AckLevel_ACK_MAJORITY, value, nil))

	must(t, f.Resume())
	_, _, err = c.Converge(30 * time.Second * harness.Slow())
	must(t, err)
	must(t, c.Load(ctx, "p/", 550+n, 600+n, 25, 2, pb.AckLevel_ACK_ALL, value, nil))
	scan, _, err := c.Converge(30 * time.Second * harness.Slow())
	must(t, err)
	var ours []harness.Pair
	for _, p := range scan {
		if string(p.Key) != "p/all" { // an ALL write that timed out may still have committed
			ours = append(ours, p)
		}
	}
	must(t, harness.VerifyLoad(ours, "p/", 0, 600+n, value))
}

// snapshotOptions: WAL segments are trimmed soon (a small memtable flushes often, and little
// WAL is kept for followers), so a node that joins late needs a snapshot.
func snapshotOptions(proxy bool) harness.Options {
	return harness.Options{Proxy: proxy, Extra: []string{"--memtable-bytes", "256K",
		"--wal-retain-bytes", "256K"}}
}

// startTwo starts nodes 1 and 2 of a 3-member cluster and waits for their leader.
func startTwo(t *testing.T, c *harness.Cluster) *harness.Node {
	must(t, c.Nodes[0].Start())
	must(t, c.Nodes[1].Start())
	leader, err := c.WaitLeaderIn(10*time.Second*harness.Slow(), c.Nodes[:2])
	must(t, err)
	c.Logf("leader of nodes 1 and 2: %v", leader)
	return leader
}

// loadUntilTrimmed writes keys until the leader has deleted the WAL segment it started with.
func loadUntilTrimmed(t *testing.T, c *harness.Cluster, leader *harness.Node, total int,
	value func(int) []byte) {
	first := leader.WALSegments()
	if len(first) == 0 {
		t.Fatalf("%v has no WAL segment in %s", leader, leader.DataDir)
	}
	ctx, cancel := bg(c)
	defer cancel()
	must(t, c.Load(ctx, "s/", 0, total, 50, 4, pb.AckLevel_ACK_MAJORITY, value, nil))
	must(t, waitFor(20*time.Second, "the first WAL segment trimmed", func() bool {
		segs := leader.WALSegments()
		return len(segs) > 0 && segs[0] > first[0]
	}))
	c.Logf("%v's WAL: %v at first, %v now", leader, first, leader.WALSegments())
}

// An empty node added after the leader's WAL was trimmed past the start bootstraps from a
// snapshot and converges.
func TestSnapshotBootstrap(t *testing.T) {
	s := seed(t)
	c, err := harness.New(t, snapshotOptions(false))
	must(t, err)
	c.SetDeadline(45 * time.Second)
	leader := startTwo(t, c)
	total := harness.Scaled(20000, 4000)
	value := harness.Values(s, 100, 400)
	loadUntilTrimmed(t, c, leader, total, value)

	n3 := c.Nodes[2]
	must(t, n3.Start())
	must(t, waitFor(30*time.Second, "node 3 installs a snapshot", func() bool {
		st, err := c.Status(n3, time.Second)
		return err == nil && st.SnapshotsInstalled >= 1
	}))
	line, err := n3.WaitLog(time.Second, 0, "snapshot_installed")
	must(t, err)
	c.Logf("node 3: %s", line)
	scan, _, err := c.Converge(30 * time.Second * harness.Slow())
	must(t, err)
	must(t, harness.VerifyLoad(scan, "s/", 0, total, value))
	st, err := c.Status(leader, time.Second)
	must(t, err)
	if st.SnapshotsSent < 1 {
		t.Fatalf("%v reports snapshots_sent %d", leader, st.SnapshotsSent)
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// A follower killed in the middle of a snapshot transfer restarts it cleanly and converges.
// The transfer is slowed by the proxy in front of node 3, so that "the middle" lasts.
func TestSnapshotInterrupted(t *testing.T) {
	s := seed(t)
	c, err := harness.New(t, snapshotOptions(true))
	must(t, err)
	c.SetDeadline(55 * time.Second)
	leader := startTwo(t, c)
	total := harness.Scaled(30000, 6000)
	value := harness.Values(s, 100, 400)
	loadUntilTrimmed(t, c, leader, total, value)

	size := dirSize(filepath.Join(leader.DataDir, "db", "sst"))
	rate := max(size/3, 128<<10) // about 3 s for the whole snapshot
	c.Proxies[2].SetRate(rate)
	c.Logf("snapshot ~%d bytes; node 3's proxy relays %d bytes/s", size, rate)
	n3 := c.Nodes[2]
	must(t, n3.Start())
	line, err := n3.WaitLog(30*time.Second*harness.Slow(), 0, "snapshot_receive")
	must(t, err)
	c.Logf("node 3: %s", line)
	time.Sleep(time.Second)
	if l := n3.LogLines("snapshot_installed"); len(l) > 0 {
		t.Fatalf("the snapshot was installed within 1 s, too soon to interrupt: %s", l[0])
	}
	staging := filepath.Join(n3.DataDir, "snap-recv")
	if _, err := os.Stat(staging); err != nil {
		t.Fatalf("no staging directory during the transfer: %v", err)
	}
	must(t, n3.Kill())
	c.Logf("node 3 killed mid-transfer; staging holds %d bytes", dirSize(staging))

	c.Proxies[2].SetRate(rate * 4)
	must(t, n3.Start())
	_, err = n3.WaitLog(30*time.Second*harness.Slow(), 1, "snapshot_receive")
	must(t, err)
	must(t, waitFor(60*time.Second, "node 3 installs the snapshot", func() bool {
		st, err := c.Status(n3, time.Second)
		return err == nil && st.SnapshotsInstalled >= 1
	}))
	c.Proxies[2].SetRate(0)
	scan, _, err := c.Converge(30 * time.Second * harness.Slow())
	must(t, err)
	must(t, harness.VerifyLoad(scan, "s/", 0, total, value))
	if _, err := os.Stat(staging); !os.IsNotExist(err) {
		t.Fatalf("staging directory %s still there after the install (%v)", staging, err)
	}
}

// A bit flipped inside a replicated record on the wire (by a proxy between the leader and one
// follower, in an HTTP/2 DATA frame's payload, where gRPC checks nothing) is caught by the
// record's CRC: the follower refuses the message, the stream restarts, nothing bad is applied,
// and every node converges to exactly what was written.
func TestCorruptedReplicationMessage(t *testing.T) {
	s := seed(t)
	c, leader := newCluster(t, harness.Options{Proxy: true}, 45*time.Second)
	f := follower(c, leader)
	p := c.Proxies[f.ID-1]
	linksBefore := len(leader.LogLines("link_up", "peer="+itoa(f.ID)+" "))
	p.ArmFlip(5+int(s%10), s)
	total := harness.Scaled(20000, 4000)
	value := harness.Values(s, 50, 150)
	ctx, cancel := bg(c)
	defer cancel()
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- c.Load(ctx, "x/", 0, total, 20, 4, pb.AckLevel_ACK_MAJORITY, value, nil)
	}()
	must(t, waitFor(60*time.Second, "the proxy flips a bit", func() bool {
		fl, _ := p.Flips()
		return len(fl) > 0
	}))
	flips, at := p.Flips()
	c.Logf("flipped bit %d of byte %d of message %d on stream %d towards %v", flips[0].Bit,
		flips[0].Off, flips[0].Msg, flips[0].Stream, f)
	line, err := f.WaitLog(10*time.Second, 0, "fails its checksum")
	must(t, err)
	c.Logf("%v: %s", f, line)
	if !strings.Contains(line, "replicate_refused") || !strings.Contains(line, "CORRUPTION") {
		t.Fatalf("the follower's log line does not say it refused the stream: %s", line)
	}
	_, err = leader.WaitLog(10*time.Second, linksBefore, "link_up", "peer="+itoa(f.ID)+" ")
	must(t, err)
	c.Logf("%v restarted the stream to %v (%.0f ms after the flip)", leader, f,
		float64(time.Since(at[0]).Milliseconds()))
	must(t, <-loadErr)
	scan, _, err := c.Converge(30 * time.Second * harness.Slow())
	must(t, err)
	must(t, harness.VerifyLoad(scan, "x/", 0, total, value))
	if n := len(f.LogLines("fails its checksum")); n != 1 {
		t.Fatalf("%d checksum failures logged, one bit was flipped", n)
	}
}

// A leader paused (SIGSTOP) past the election timeout is deposed; when it continues, the
// writes it takes are refused (never acknowledged), it steps down, and those writes never
// appear anywhere.
func TestDeposedLeader(t *testing.T) {
	s := seed(t)
	c, old := newCluster(t, harness.Options{}, 45*time.Second)
	value := harness.Values(s, 10, 50)
	ctx, cancel := bg(c)
	defer cancel()
	must(t, c.Load(ctx, "d/", 0, 200, 20, 2, pb.AckLevel_ACK_MAJORITY, value, nil))
	oldSt, err := c.Status(old, time.Second)
	must(t, err)
	kv := c.KV(old) // connected: requests sent while it is paused wait in its socket
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second*harness.Slow())
	_, err = kv.Put(lctx, &pb.PutRequest{Key: []byte("d/lin"), Value: []byte("before"),
		Ack: pb.AckLevel_ACK_MAJORITY})
	lcancel()
	must(t, err)

	must(t, old.Pause())
	others := []*harness.Node{}
	for _, n := range c.Nodes {
		if n != old {
			others = append(others, n)
		}
	}
	leader, err := c.WaitLeaderIn(10*time.Second*harness.Slow(), others)
	must(t, err)
	newSt, err := c.Status(leader, time.Second)
	must(t, err)
	c.Logf("new leader %v in term %d (old: %v in term %d)", leader, newSt.Term, old, oldSt.Term)
	must(t, c.Load(ctx, "d/", 200, 400, 20, 2, pb.AckLevel_ACK_MAJORITY, value, nil))
	lctx, lcancel = context.WithTimeout(ctx, 5*time.Second*harness.Slow())
	_, err = c.KV(leader).Put(lctx, &pb.PutRequest{Key: []byte("d/lin"), Value: []byte("after"),
		Ack: pb.AckLevel_ACK_MAJORITY})
	lcancel()
	must(t, err)

	// A linearizable read sent to the deposed leader (it reaches it when it resumes) must not
	// see the value it had before: it is refused, or it sees the new one.
	linDone := make(chan error, 1)
	var linValue []byte
	go func() {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second*harness.Slow())
		defer ccancel()
		resp, err := kv.Get(cctx, &pb.GetRequest{Key: []byte("d/lin"), Linearizable: true})
		if err == nil {
			linValue = resp.Value
		}
		linDone <- err
	}()

	// Writes to the deposed leader: some sent while it is paused, some right after it resumes.
	const stale = 40
	var wg sync.WaitGroup
	results := make([]error, stale)
	send := func(i int) {
		defer wg.Done()
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second*harness.Slow())
		defer ccancel()
		_, results[i] = kv.Put(cctx, &pb.PutRequest{Key: harness.Key("d/stale/", i),
			Value: []byte("never"), Ack: pb.AckLevel_ACK_MAJORITY})
	}
	for i := 0; i < stale/2; i++ {
		wg.Add(1)
		go send(i)
	}
	time.Sleep(100 * time.Millisecond)
	must(t, old.Resume())
	for i := stale / 2; i < stale; i++ {
		wg.Add(1)
		go send(i)
	}
	wg.Wait()
	if err := <-linDone; err == nil && string(linValue) != "after" {
		t.Errorf("a linearizable read on the deposed leader %v returned %q, not \"after\"", old,
			linValue)
	} else {
		c.Logf("linearizable read on the deposed leader: value %q, error %v", linValue, err)
	}
	codesSeen := map[codes.Code]int{}
	for i, err := range results {
		if err == nil {
			t.Errorf("write %d to the deposed leader %v was acknowledged", i, old)
			continue
		}
		codesSeen[status.Code(err)]++
	}
	c.Logf("writes to the deposed leader: %v", codesSeen)
	must(t, waitFor(5*time.Second, "the old leader follows the new one", func() bool {
		st, err := c.Status(old, time.Second)
		return err == nil && st.Role == "follower" && st.Term >= newSt.Term &&
			int(st.LeaderId) == leader.ID
	}))
	// Now it redirects writes to the new leader.
	var trailer metadata.MD
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = kv.Put(cctx, &pb.PutRequest{Key: []byte("d/redirected"), Value: []byte("1")},
		grpc.Trailer(&trailer))
	ccancel()
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a write to the old leader after it stepped down: %v (want "+
			"FAILED_PRECONDITION)", err)
	}
	if h := trailer.Get(harness.LeaderHeader); len(h) != 1 || c.NodeByAddr(h[0]) != leader {
		t.Fatalf("FAILED_PRECONDITION from the old leader names %q as leader, not %v (%s)", h,
			leader, leader.Addr)
	}
	cl := c.NewClient()
	r := cl.Put(ctx, []byte("d/after"), []byte("1"), pb.AckLevel_ACK_MAJORITY)
	if r.Outcome != harness.Acked {
		t.Fatalf("a write after the old leader stepped down: %v", r.Err)
	}
	scan, _, err := c.Converge(30 * time.Second * harness.Slow())
	must(t, err)
	for _, p := range scan {
		if strings.HasPrefix(string(p.Key), "d/stale/") {
			t.Errorf("%s appears, written only to the deposed leader", p.Key)
		}
	}
	var ours []harness.Pair
	for _, p := range scan {
		if strings.HasPrefix(string(p.Key), "d/0") {
			ours = append(ours, p)
		}
	}
	must(t, harness.VerifyLoad(ours, "d/", 0, 400, value))
	if l := old.LogLines("role=follower"); len(l) == 0 {
		t.Errorf("%v's log has no role change to follower", old)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
