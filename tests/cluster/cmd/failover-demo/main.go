// failover-demo kills the leader of a 3-node strata cluster under a steady write load and
// prints, as a timeline relative to the kill, what follows: which node won the election, how
// long until the first write was acknowledged by the new leader, how many acknowledged writes
// were lost (every acknowledged key is read back from the new leader: there must be none), the
// old leader restarting and coming back as a follower, and the three nodes converging (their
// full scans byte-identical). It exits 1 with a sentence saying what went wrong if anything
// was lost, the nodes differ, or a step did not finish in time (every wait is bounded).
//
// Run it through tools/failover-demo, which builds what it needs first:
//
//	tools/failover-demo                 3 local strata-node processes on loopback (the harness's
//	                                    --heartbeat-ms 30 --election-ms 150)
//	tools/failover-demo -docker         the docker-compose cluster, through tests/docker/cluster.sh
//	tools/failover-demo -rate 500 -before 5s -after 2s -v
//
// Local mode needs STRATA_NODE (the wrapper sets it); writes are puts of unique keys at
// ACK_MAJORITY, one every 1/rate seconds, retried against the new leader while it is elected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "stratacluster/gen/strata/v1"
	"stratacluster/harness"
)

type demo struct {
	be    backend
	ms    []member
	conns []*grpc.ClientConn
	kv    []pb.KVClient
	adm   []pb.AdminClient
	step  time.Duration // the bound of each wait
	t0    time.Time     // the kill
	out   io.Writer
	early []event // events before the kill, printed once its time is known
}

type event struct {
	at   time.Time
	text string
}

// errFail is a failure of the demo's checks (as opposed to one of running it).
type errFail struct{ msg string }

func (e errFail) Error() string { return e.msg }

func failf(format string, args ...any) error { return errFail{fmt.Sprintf(format, args...)} }

func main() {
	docker := flag.Bool("docker", false, "use the docker-compose cluster (tests/docker/cluster.sh) "+
		"instead of local processes")
	rate := flag.Float64("rate", 200, "writes issued per second (ACK_MAJORITY puts of new keys)")
	before := flag.Duration("before", 2*time.Second, "steady writes before the kill")
	after := flag.Duration("after", time.Second, "writes on the new leader before the old one "+
		"is restarted, and again after it is back")
	stepTO := flag.Duration("step-timeout", 0, "bound of each wait (default 10s local, 90s docker)")
	upTO := flag.Duration("up-timeout", 30*time.Minute, "docker: bound of `cluster.sh up` "+
		"(which may build the image)")
	syncPol := flag.String("sync", "none", "local: --sync of the nodes (a SIGKILL loses nothing "+
		"the kernel holds, so none shows the same as always, faster)")
	script := flag.String("cluster-sh", "tests/docker/cluster.sh", "docker: the cluster script")
	keep := flag.Bool("keep", false, "keep the nodes' directory and logs (local) or leave the "+
		"cluster running (docker)")
	verbose := flag.Bool("v", false, "log what the harness does")
	flag.Parse()
	if flag.NArg() > 0 || *rate <= 0 || *before <= 0 || *after < 0 {
		fmt.Fprintln(os.Stderr, "usage: failover-demo [-docker] [-rate N] [-before D] [-after D] "+
			"[-step-timeout D] [-sync P] [-keep] [-v]")
		os.Exit(2)
	}
	if *keep && !*docker {
		os.Setenv("ST_KEEP_NODE_LOGS", "1")
	}
	step := *stepTO
	if step == 0 {
		step = 10 * time.Second * harness.Slow()
		if *docker {
			step = 90 * time.Second
		}
	}

	var be backend
	var err error
	if *docker {
		fmt.Fprintln(os.Stderr, "failover-demo: starting the docker-compose cluster")
		be, err = newDocker(*script, *keep, *upTO)
	} else {
		fmt.Fprintln(os.Stderr, "failover-demo: starting 3 local strata-node processes")
		be, err = newLocal(*verbose, *syncPol)
	}
	if err != nil {
		fmt.Printf("FAIL: the cluster could not be started: %v\n", err)
		os.Exit(1)
	}
	d := &demo{be: be, ms: be.members(), step: step, out: os.Stdout}
	d.connect(*docker)

	// Every step is bounded; this bounds the whole, should something hang regardless.
	total := 4*step + *before + 2**after + 2*time.Minute
	watchdog := time.AfterFunc(total, func() {
		fmt.Printf("FAIL: the demo did not finish within %v; stopping the cluster\n", total)
		be.close()
		os.Exit(1)
	})

	err = d.run(*rate, *before, *after, *docker)
	watchdog.Stop()
	for _, cc := range d.conns {
		cc.Close()
	}
	if l, ok := be.(*local); ok && err != nil {
		os.Setenv("ST_KEEP_NODE_LOGS", "1") // the harness's teardown keeps the directory
		fmt.Fprintf(os.Stderr, "failover-demo: the nodes' logs are kept in %s/node*/node.log\n",
			l.c.Dir)
	}
	if cerr := be.close(); cerr != nil && err == nil {
		err = failf("the cluster did not stop cleanly: %v", cerr)
	}
	if err != nil {
		var f errFail
		if errors.As(err, &f) {
			fmt.Printf("FAIL: %s\n", f.msg)
		} else {
			fmt.Printf("FAIL: the demo could not run to the end: %v\n", err)
		}
		os.Exit(1)
	}
}

func (d *demo) connect(docker bool) {
	maxDelay := 250 * time.Millisecond
	if docker {
		maxDelay = time.Second
	}
	for _, m := range d.ms {
		cc, err := grpc.NewClient(m.dial,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5,
					Jitter: 0.2, MaxDelay: maxDelay},
				MinConnectTimeout: 2 * time.Second,
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			panic(fmt.Sprintf("grpc.NewClient(%s): %v", m.dial, err)) // only bad syntax fails
		}
		d.conns = append(d.conns, cc)
		d.kv = append(d.kv, pb.NewKVClient(cc))
		d.adm = append(d.adm, pb.NewAdminClient(cc))
	}
}

// byPeer is the member index whose --peers address is addr, or -1.
func (d *demo) byPeer(addr string) int {
	for i, m := range d.ms {
		if m.peer == addr || m.dial == addr {
			return i
		}
	}
	return -1
}

// logf prints a line of the timeline, its time relative to the kill; before the kill is known
// the line is held back (and printed, with a negative time, at the kill).
func (d *demo) logf(at time.Time, format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	if d.t0.IsZero() {
		d.early = append(d.early, event{at, text})
		return
	}
	fmt.Fprintf(d.out, "%+9.3fs  %s\n", at.Sub(d.t0).Seconds(), text)
}

func (d *demo) flushEarly() {
	sort.SliceStable(d.early, func(i, j int) bool { return d.early[i].at.Before(d.early[j].at) })
	for _, e := range d.early {
		fmt.Fprintf(d.out, "%+9.3fs  %s\n", e.at.Sub(d.t0).Seconds(), e.text)
	}
	d.early = nil
}

// statuses asks the members of idx (all when nil) for their Status at once; nil for those
// that did not answer within timeout.
func (d *demo) statuses(idx []int, timeout time.Duration) []*pb.StatusResponse {
	if idx == nil {
		for i := range d.ms {
			idx = append(idx, i)
		}
	}
	out := make([]*pb.StatusResponse, len(d.ms))
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if st, err := d.adm[i].Status(ctx, &pb.StatusRequest{}); err == nil {
				out[i] = st
			}
		}(i)
	}
	wg.Wait()
	return out
}

func describe(ms []member, sts []*pb.StatusResponse) string {
	var parts []string
	for i, st := range sts {
		if st == nil {
			parts = append(parts, fmt.Sprintf("node %d: no answer", ms[i].id))
			continue
		}
		parts = append(parts, fmt.Sprintf("node %d: %s term %d leader %d last %d applied %d "+
			"commit %d", ms[i].id, st.Role, st.Term, st.LeaderId, st.LastSeq, st.AppliedSeq,
			st.CommitSeq))
	}
	return strings.Join(parts, "; ")
}

// agreedLeader returns the index of the member that leads in a term above minTerm with every
// other member of idx answering and following it in that term, or -1.
func agreedLeader(idx []int, sts []*pb.StatusResponse, minTerm uint64) int {
	leader := -1
	for _, i := range idx {
		if st := sts[i]; st != nil && st.Role == "leader" && st.Term > minTerm &&
			(leader < 0 || st.Term > sts[leader].Term) {
			leader = i
		}
	}
	if leader < 0 {
		return -1
	}
	for _, i := range idx {
		st := sts[i]
		if i != leader && (st == nil || st.Term != sts[leader].Term ||
			int(st.LeaderId) != int(sts[leader].NodeId)) {
			return -1
		}
	}
	return leader
}

// waitLeader waits for a leader of idx in a term above minTerm that the others of idx follow.
func (d *demo) waitLeader(idx []int, minTerm uint64) (int, *pb.StatusResponse, error) {
	deadline := time.Now().Add(d.step)
	for {
		sts := d.statuses(idx, time.Second)
		if l := agreedLeader(idx, sts, minTerm); l >= 0 {
			return l, sts[l], nil
		}
		if err := d.be.crashed(); err != nil {
			return -1, nil, failf("a node crashed: %v", err)
		}
		if time.Now().After(deadline) {
			return -1, nil, failf("no leader that the others follow within %v (%s)", d.step,
				describe(d.ms, sts))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func (d *demo) run(rate float64, before, after time.Duration, docker bool) error {
	all := []int{0, 1, 2}
	fmt.Fprintf(d.out, "failover-demo: %s\n", d.be.describe())
	li, lst, err := d.waitLeader(all, 0)
	if err != nil {
		return err
	}
	old := d.ms[li]
	fmt.Fprintf(d.out, "failover-demo: node %d leads in term %d; writing %.0f keys/s at "+
		"ACK_MAJORITY, killing node %d after %v\n\n", old.id, lst.Term, rate, old.id, before)

	perWrite := 5 * time.Second * harness.Slow()
	attempt := time.Second * harness.Slow()
	if docker {
		perWrite, attempt = 30*time.Second, 2*time.Second
	}
	w := &writer{d: d, rate: rate, perWrite: perWrite, attemptTO: attempt,
		prefix: fmt.Sprintf("demo/%x/", time.Now().UnixNano())}
	wstart := time.Now()
	w.run(li)
	defer w.halt()
	d.logf(wstart, "writer started: %.0f puts/s of new keys at ACK_MAJORITY", rate)
	time.Sleep(before)
	if len(w.snapshot()) == 0 {
		return failf("no write was acknowledged in the %v before the kill (%s)", before,
			describe(d.ms, d.statuses(nil, time.Second)))
	}

	// The kill.
	what := "SIGKILL"
	if docker {
		what = "docker kill (SIGKILL)"
	}
	killAt := time.Now()
	if err := d.be.kill(old.id); err != nil {
		return fmt.Errorf("killing node %d: %v", old.id, err)
	}
	killed := time.Now()
	d.t0 = killAt
	fmt.Fprintf(d.out, "timeline (seconds from the kill of the leader):\n")
	d.flushEarly()
	if a, ok := w.lastAckBefore(killAt); ok {
		d.logf(a.at, "last write acknowledged before the kill, by node %d: %d so far",
			d.ms[a.node].id, len(w.snapshot()))
	}
	d.logf(killAt, "%s to node %d, the leader in term %d", what, old.id, lst.Term)
	if docker {
		d.logf(killed, "docker kill returned")
	}

	// The election and the first write on the new leader.
	var surv []int
	for _, i := range all {
		if i != li {
			surv = append(surv, i)
		}
	}
	var won time.Time
	winner := -1
	var wst *pb.StatusResponse
	var first ackRec
	gotFirst := false
	deadline := killAt.Add(d.step)
	for winner < 0 || !gotFirst {
		sts := d.statuses(surv, 500*time.Millisecond)
		now := time.Now()
		for _, i := range surv {
			if st := sts[i]; winner < 0 && st != nil && st.Role == "leader" && st.Term > lst.Term {
				winner, wst, won = i, st, now
			}
		}
		if !gotFirst {
			first, gotFirst = w.firstAckAfter(killAt, li)
		}
		if err := d.be.crashed(); err != nil {
			return failf("a node crashed: %v", err)
		}
		if time.Now().After(deadline) {
			if winner < 0 {
				return failf("no new leader within %v of the kill (%s)", d.step,
					describe(d.ms, sts))
			}
			return failf("node %d leads but acknowledged no write within %v of the kill",
				d.ms[winner].id, d.step)
		}
		time.Sleep(5 * time.Millisecond)
	}
	events := []event{
		{first.at, fmt.Sprintf("first write acknowledged by the new leader, node %d: "+
			"failover took %s", d.ms[first.node].id, ms(first.at.Sub(killAt)))},
	}
	wonText := fmt.Sprintf("node %d won the election: leader in term %d", d.ms[winner].id,
		wst.Term)
	if l, ok := d.be.(*local); ok {
		// The nodes' logs time the election to the millisecond (the same clock).
		term := fmt.Sprintf("term=%d", wst.Term)
		wid := d.ms[winner].id
		if at, ok := l.logEvent(wid, "repl_election", term); ok {
			events = append(events, event{at, fmt.Sprintf("node %d heard no leader for its "+
				"election timeout: candidate in term %d (its log)", wid, wst.Term)})
		}
		for _, i := range surv {
			if i == winner {
				continue
			}
			if at, ok := l.logEvent(d.ms[i].id, "vote", fmt.Sprintf("candidate=%d", wid),
				term, "granted=yes"); ok {
				events = append(events, event{at, fmt.Sprintf("node %d votes for node %d "+
					"(its log)", d.ms[i].id, wid)})
			}
		}
		if at, ok := l.logEvent(wid, "role", "role=leader", term); ok {
			won, wonText = at, wonText+" (its log)"
		} else {
			wonText += " (seen by polling Status every 5 ms)"
		}
	} else {
		wonText += " (seen by polling Status every 5 ms)"
	}
	events = append(events, event{won, wonText})
	sort.Slice(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })
	for _, e := range events {
		d.logf(e.at, "%s", e.text)
	}
	failoverTime := first.at.Sub(killAt)
	newTerm := wst.Term
	nl := d.ms[winner]

	// The other survivor follows it.
	if _, _, err := d.waitLeader(surv, lst.Term); err != nil {
		return err
	}
	time.Sleep(after)

	// The old leader comes back.
	d.logf(time.Now(), "restarting node %d on its data", old.id)
	if err := d.be.start(old.id); err != nil {
		return fmt.Errorf("restarting node %d: %v", old.id, err)
	}
	d.logf(time.Now(), "node %d is serving again", old.id)
	deadline = time.Now().Add(d.step)
	var ost *pb.StatusResponse
	for {
		ost = d.statuses([]int{li}, time.Second)[li]
		if ost != nil && ost.Role == "follower" && ost.Term >= newTerm && ost.LeaderId != 0 &&
			int(ost.LeaderId) != old.id {
			break
		}
		if err := d.be.crashed(); err != nil {
			return failf("a node crashed: %v", err)
		}
		if time.Now().After(deadline) {
			return failf("node %d did not come back as a follower of node %d within %v (%s)",
				old.id, nl.id, d.step, describe(d.ms, d.statuses(nil, time.Second)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.logf(time.Now(), "node %d is a follower of node %d in term %d", old.id, ost.LeaderId,
		ost.Term)
	if l, ok := d.be.(*local); ok {
		// The unacknowledged tail the old leader had when it died is discarded on rejoin.
		if lines := l.logLines(old.id, "truncate_divergent"); len(lines) > 0 {
			d.logf(time.Now(), "node %d discarded the unacknowledged tail of its log: %s",
				old.id, lines[len(lines)-1][strings.Index(lines[len(lines)-1], "truncate_divergent"):])
		}
	}
	// Caught up: it applied what the leader had committed when it rejoined.
	target := d.statuses([]int{winner}, time.Second)[winner]
	if target == nil {
		return failf("the new leader, node %d, stopped answering", nl.id)
	}
	deadline = time.Now().Add(d.step)
	for {
		if st := d.statuses([]int{li}, time.Second)[li]; st != nil &&
			st.AppliedSeq >= target.CommitSeq {
			d.logf(time.Now(), "node %d caught up: applied sequence %d (the leader's commit "+
				"when it rejoined: %d)", old.id, st.AppliedSeq, target.CommitSeq)
			break
		}
		if time.Now().After(deadline) {
			return failf("node %d did not catch up with the leader within %v (%s)", old.id,
				d.step, describe(d.ms, d.statuses(nil, time.Second)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(after)
	w.halt()
	acks := w.snapshot()
	w.mu.Lock()
	issued, gaveUp, retries, maxSeq := w.issued, len(w.gaveUp), w.retries, w.maxSeq
	w.mu.Unlock()
	d.logf(time.Now(), "writer stopped: %d puts issued, %d acknowledged, %d not acknowledged "+
		"(fate unknown), %d calls retried on another node", issued, len(acks), gaveUp, retries)

	// Read every acknowledged key back from the new leader (from the leader there is now,
	// should there have been another election: that is said, not hidden).
	li2, st2, err := d.waitLeader(all, 0)
	if err != nil {
		return err
	}
	if li2 != winner || st2.Term != newTerm {
		d.logf(time.Now(), "NOTE: another election since: node %d leads in term %d",
			d.ms[li2].id, st2.Term)
	}
	lost, wrong, err := d.readBack(li2, w, acks, maxSeq)
	if err != nil {
		return err
	}
	d.logf(time.Now(), "read back the %d acknowledged writes from node %d: %d lost, %d with "+
		"a wrong value", len(acks), d.ms[li2].id, len(lost), wrong)
	if len(lost) > 0 || wrong > 0 {
		return failf("%d acknowledged writes are missing from the new leader and %d have a "+
			"wrong value (e.g. %s)", len(lost), wrong, strings.Join(lost[:min(5, len(lost))], ", "))
	}

	// Converge: every node applied the leader's last sequence, and their scans are identical.
	pairs, seq, err := d.converge(w, acks)
	if err != nil {
		return err
	}
	d.logf(time.Now(), "converged: 3 nodes at sequence %d, %d pairs each, byte-identical; "+
		"every acknowledged key there, no key the writer did not send", seq, pairs)
	fmt.Fprintf(d.out, "\nPASS: node %d took over from node %d in %s (kill to first acknowledged "+
		"write); 0 of %d acknowledged writes lost; node %d rejoined as a follower; the nodes "+
		"are identical\n", nl.id, old.id, ms(failoverTime), len(acks), old.id)
	return nil
}

// readBack gets every acknowledged key from member m (at least at maxSeq) and returns the keys
// missing there and the number with a wrong value.
func (d *demo) readBack(m int, w *writer, acks []ackRec, maxSeq uint64) ([]string, int, error) {
	var mu sync.Mutex
	var lost []string
	wrong := 0
	var firstErr error
	jobs := make(chan ackRec)
	var wg sync.WaitGroup
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), d.step)
				r, err := d.kv[m].Get(ctx, &pb.GetRequest{Key: w.key(a.i), MinSeq: maxSeq})
				cancel()
				mu.Lock()
				switch {
				case status.Code(err) == codes.NotFound:
					lost = append(lost, string(w.key(a.i)))
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("reading %s from node %d: %v", w.key(a.i),
							d.ms[m].id, err)
					}
				case string(r.Value) != string(w.value(a.i)):
					wrong++
				}
				mu.Unlock()
			}
		}()
	}
	for _, a := range acks {
		jobs <- a
	}
	close(jobs)
	wg.Wait()
	sort.Strings(lost)
	return lost, wrong, firstErr
}

// converge waits (bounded) until every node is in the leader's term and has applied the
// leader's last sequence, which it has committed; then scans every node at that sequence and
// requires the scans to be byte-identical, to hold every acknowledged key with its value, and
// no key of the writer's it did not send or with another value.
func (d *demo) converge(w *writer, acks []ackRec) (int, uint64, error) {
	deadline := time.Now().Add(d.step)
	var last string
	for {
		sts := d.statuses(nil, time.Second)
		last = describe(d.ms, sts)
		li := agreedLeader([]int{0, 1, 2}, sts, 0)
		ok := li >= 0 && sts[li].CommitSeq == sts[li].LastSeq
		for _, st := range sts {
			if !ok || st == nil || st.AppliedSeq != sts[li].LastSeq ||
				st.LastSeq != sts[li].LastSeq {
				ok = false
			}
		}
		if ok {
			seq := sts[li].LastSeq
			scans := make([][]harness.Pair, len(d.ms))
			for i := range d.ms {
				p, err := d.scan(i, seq)
				if err != nil {
					return 0, 0, err
				}
				scans[i] = p
			}
			for i := 1; i < len(scans); i++ {
				if diff := harness.DiffScans(scans[0], scans[i]); diff != "" {
					return 0, 0, failf("the nodes differ: all applied sequence %d, but the "+
						"scan of node %d against node %d: %s", seq, d.ms[0].id, d.ms[i].id, diff)
				}
			}
			have := map[string]string{}
			issued := map[string]string{}
			w.mu.Lock()
			n := w.issued
			w.mu.Unlock()
			for i := 0; i < n; i++ {
				issued[string(w.key(i))] = string(w.value(i))
			}
			for _, p := range scans[0] {
				k := string(p.Key)
				if !strings.HasPrefix(k, w.prefix) {
					continue
				}
				have[k] = string(p.Value)
				if v, sent := issued[k]; !sent || v != string(p.Value) {
					return 0, 0, failf("the nodes hold %s = %q, which the writer never sent",
						k, p.Value)
				}
			}
			for _, a := range acks {
				if k := string(w.key(a.i)); have[k] != string(w.value(a.i)) {
					return 0, 0, failf("acknowledged key %s is missing from the converged "+
						"nodes", k)
				}
			}
			return len(scans[0]), seq, nil
		}
		if err := d.be.crashed(); err != nil {
			return 0, 0, failf("a node crashed: %v", err)
		}
		if time.Now().After(deadline) {
			return 0, 0, failf("the nodes did not converge within %v (%s)", d.step, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// scan reads every pair on member i at a sequence of at least minSeq.
func (d *demo) scan(i int, minSeq uint64) ([]harness.Pair, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.step)
	defer cancel()
	stream, err := d.kv[i].Scan(ctx, &pb.ScanRequest{MinSeq: minSeq})
	if err != nil {
		return nil, fmt.Errorf("scan of node %d: %v", d.ms[i].id, err)
	}
	var out []harness.Pair
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("scan of node %d: %v", d.ms[i].id, err)
		}
		for _, kv := range m.Pairs {
			out = append(out, harness.Pair{Key: kv.Key, Value: kv.Value})
		}
	}
}
