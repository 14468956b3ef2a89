// failover-bench measures failover on a real 3-node strata cluster on loopback. It is a
// measurement, not a test: it prints numbers (and exits 1 only if the cluster could not be run,
// or if the fault-free phase saw a leader change).
//
// Phase 1, kill rounds: clients write continuously at ACK_LEADER, each key once; each round
// kills the leader with SIGKILL and times how long until the first write is acknowledged by
// another node (the new leader), then restarts the old leader and lets it catch up. Afterwards
// every acknowledged ACK_LEADER write is looked for in the converged cluster: those missing
// were lost with a killed leader (ACK_LEADER acknowledges before any copy exists elsewhere).
//
// Phase 2, fault-free load: clients write at ACK_MAJORITY as fast as they can for -load, and the
// nodes' leader_changes counters must not move (an election under load alone means the
// heartbeat and election timings are too tight for the machine).
//
//	STRATA_NODE=build/node/strata-node failover-bench [-rounds 20] [-load 60s] [-writers 4]
//
// or tests/cluster/run_cluster.sh bench WORK_DIR [flags] after run_cluster.sh build.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "stratacluster/gen/strata/v1"
	"stratacluster/harness"
)

// benchT is the harness.T of a program: it prints, remembers failure and runs cleanups at exit.
type benchT struct {
	verbose  bool
	failed   atomic.Bool
	mu       sync.Mutex
	cleanups []func()
}

func (b *benchT) Helper() {}
func (b *benchT) Logf(format string, args ...any) {
	if b.verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}
func (b *benchT) Errorf(format string, args ...any) {
	b.failed.Store(true)
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
}
func (b *benchT) Cleanup(f func()) {
	b.mu.Lock()
	b.cleanups = append(b.cleanups, f)
	b.mu.Unlock()
}
func (b *benchT) Failed() bool { return b.failed.Load() }
func (b *benchT) Name() string { return "failover-bench" }
func (b *benchT) runCleanups() {
	b.mu.Lock()
	fs := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

type ack struct {
	key, value string
	node       *harness.Node
	at         time.Time
}

// writers run until stop closes; every acknowledged write goes to acks.
type writers struct {
	c     *harness.Cluster
	level pb.AckLevel
	mu    sync.Mutex
	acks  []ack
	tried atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func (w *writers) start(n int, prefix string) {
	w.stop = make(chan struct{})
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go func(id int) {
			defer w.wg.Done()
			cl := w.c.NewClient()
			cl.AttemptTimeout = 300 * time.Millisecond * harness.Slow()
			for seq := 0; ; seq++ {
				select {
				case <-w.stop:
					return
				default:
				}
				key := fmt.Sprintf("%s%02d/%08d", prefix, id, seq)
				val := fmt.Sprintf("v%d", seq)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second*harness.Slow())
				r := cl.Put(ctx, []byte(key), []byte(val), w.level)
				cancel()
				w.tried.Add(1)
				if r.Outcome == harness.Acked {
					w.mu.Lock()
					w.acks = append(w.acks, ack{key, val, r.Node, time.Now()})
					w.mu.Unlock()
				}
			}
		}(i)
	}
}

func (w *writers) halt() {
	close(w.stop)
	w.wg.Wait()
}

// firstAckAfter returns the time of the first write acknowledged after t by a node other than
// not, if any.
func (w *writers) firstAckAfter(t time.Time, not *harness.Node) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best time.Time
	found := false
	for i := len(w.acks) - 1; i >= 0 && w.acks[i].at.After(t); i-- {
		if w.acks[i].node != not {
			best, found = w.acks[i].at, true
		}
	}
	return best, found
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func main() {
	rounds := flag.Int("rounds", 20, "leader kills to time (at least 20 for the report)")
	load := flag.Duration("load", 60*time.Second, "length of the fault-free load phase (0: skip)")
	nwriters := flag.Int("writers", 4, "concurrent clients")
	verbose := flag.Bool("v", false, "log what the harness does")
	flag.Parse()
	t := &benchT{verbose: *verbose}
	code := run(t, *rounds, *load, *nwriters)
	t.runCleanups()
	if t.Failed() && code == 0 {
		code = 1
	}
	os.Exit(code)
}

func run(t *benchT, rounds int, load time.Duration, nwriters int) int {
	c, err := harness.New(t, harness.Options{})
	if err == nil {
		err = c.StartAll()
	}
	if err == nil {
		_, err = c.WaitLeader(10 * time.Second * harness.Slow())
	}
	if err != nil {
		t.Errorf("starting the cluster: %v", err)
		return 1
	}
	fmt.Printf("failover-bench: 3 nodes on loopback, --heartbeat-ms 30 --election-ms 150 "+
		"--sync none, %d clients\n", nwriters)

	if rounds > 0 {
		if code := killRounds(t, c, rounds, nwriters); code != 0 {
			return code
		}
	}
	if load > 0 {
		return steadyLoad(t, c, load, nwriters)
	}
	return 0
}

// killRounds is phase 1: leader kills under ACK_LEADER writes.
func killRounds(t *benchT, c *harness.Cluster, rounds, nwriters int) int {
	w := &writers{c: c, level: pb.AckLevel_ACK_LEADER}
	w.start(nwriters, "b/")
	var times []time.Duration
	for i := 1; i <= rounds; i++ {
		leader, err := c.WaitLeader(15 * time.Second * harness.Slow())
		if err != nil {
			w.halt()
			t.Errorf("round %d: %v", i, err)
			return 1
		}
		time.Sleep(300 * time.Millisecond) // steady writes before the kill
		t0 := time.Now()
		if err := leader.Kill(); err != nil {
			w.halt()
			t.Errorf("round %d: %v", i, err)
			return 1
		}
		var at time.Time
		deadline := time.Now().Add(15 * time.Second * harness.Slow())
		for {
			if a, ok := w.firstAckAfter(t0, leader); ok {
				at = a
				break
			}
			if time.Now().After(deadline) {
				w.halt()
				t.Errorf("round %d: no write acknowledged within 15 s of killing %v", i, leader)
				return 1
			}
			time.Sleep(time.Millisecond)
		}
		d := at.Sub(t0)
		times = append(times, d)
		fmt.Printf("round %2d: killed leader %v; first write acknowledged by another node "+
			"after %v\n", i, leader, d.Round(100*time.Microsecond))
		if err := leader.Start(); err != nil {
			w.halt()
			t.Errorf("round %d: restarting %v: %v", i, leader, err)
			return 1
		}
		// Let it catch up before the next kill (a lagging node would not help a majority).
		if _, err := c.WaitLeader(15 * time.Second * harness.Slow()); err != nil {
			w.halt()
			t.Errorf("round %d: %v", i, err)
			return 1
		}
		time.Sleep(700 * time.Millisecond)
	}
	w.halt()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	scan, _, err := c.Converge(60 * time.Second * harness.Slow())
	if err != nil {
		t.Errorf("converging after the kill rounds: %v", err)
		return 1
	}
	have := map[string]string{}
	for _, p := range scan {
		have[string(p.Key)] = string(p.Value)
	}
	lost := 0
	var lostKeys []string
	for _, a := range w.acks {
		if have[a.key] != a.value {
			lost++
			if len(lostKeys) < 5 {
				lostKeys = append(lostKeys, a.key)
			}
		}
	}
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	fmt.Printf("\nkill -9 of the leader → first acknowledged write on the new leader, %d rounds:\n",
		len(times))
	fmt.Printf("  p50 %s  p90 %s  p99 %s  max %s\n", r(percentile(times, 0.5)),
		r(percentile(times, 0.9)), r(percentile(times, 0.99)), r(times[len(times)-1]))
	fmt.Printf("ACK_LEADER writes acknowledged: %d (of %d sent); lost with a killed leader: %d",
		len(w.acks), w.tried.Load(), lost)
	if lost > 0 {
		fmt.Printf(" (e.g. %s)", strings.Join(lostKeys, ", "))
	}
	fmt.Println()
	return 0
}

// steadyLoad is phase 2: writes at ACK_MAJORITY with no fault; the leader must not change.
func steadyLoad(t *benchT, c *harness.Cluster, load time.Duration, nwriters int) int {
	leader, err := c.WaitLeader(15 * time.Second * harness.Slow())
	if err != nil {
		t.Errorf("%v", err)
		return 1
	}
	before := c.Statuses(5 * time.Second)
	lst := before[leader.ID-1]
	w2 := &writers{c: c, level: pb.AckLevel_ACK_MAJORITY}
	start := time.Now()
	w2.start(nwriters*2, "l/")
	time.Sleep(load)
	w2.halt()
	took := time.Since(start)
	after := c.Statuses(5 * time.Second)
	changes := uint64(0)
	for i := range after {
		if before[i] == nil || after[i] == nil {
			t.Errorf("%v did not answer Status", c.Nodes[i])
			return 1
		}
		changes += after[i].LeaderChanges - before[i].LeaderChanges
	}
	nl, _ := c.Leader()
	fmt.Printf("\nfault-free load, %v, %d clients at ACK_MAJORITY: %d writes (%.0f/s); leader "+
		"changes seen by the nodes: %d; leader %v term %d → %v term %d\n",
		took.Round(time.Second), nwriters*2, len(w2.acks), float64(len(w2.acks))/took.Seconds(),
		changes, leader, lst.Term, nl, after[leader.ID-1].Term)
	if changes != 0 || nl != leader {
		fmt.Println("FAIL: the leader changed under load without a fault")
		return 1
	}
	return 0
}
