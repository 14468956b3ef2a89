package cluster_test

// Issue 5: failover, bounded in time. Randomized fault rounds with concurrent clients
// throughout, then the checkers: every acknowledged MAJORITY write is on every node, no value
// appears that was never written, and the history of puts and gets is linearizable per key.

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stratacluster/harness"
)

// faults are the round kinds of TestFailoverRounds.
var faults = []string{"kill-leader", "pause-leader", "kill-follower", "pause-follower",
	"restart-all"}

// runFault does one round's fault to the cluster and brings every node back; it returns a
// description. The cluster has an agreed leader when it is called and when it returns.
func runFault(c *harness.Cluster, r *rand.Rand, kind string) (string, error) {
	leader, err := c.WaitLeader(10 * time.Second * harness.Slow())
	if err != nil {
		return "", err
	}
	var others []*harness.Node
	for _, n := range c.Nodes {
		if n != leader {
			others = append(others, n)
		}
	}
	f := others[r.Intn(len(others))]
	election := 150 * time.Millisecond * time.Duration(harness.TimeoutScale())
	switch kind {
	case "kill-leader":
		t0 := time.Now()
		if err := leader.Kill(); err != nil {
			return "", err
		}
		nl, err := c.WaitLeaderIn(10*time.Second*harness.Slow(), others)
		if err != nil {
			return "", err
		}
		took := time.Since(t0)
		time.Sleep(time.Duration(r.Intn(400)) * time.Millisecond)
		if err := leader.Start(); err != nil {
			return "", err
		}
		return fmt.Sprintf("killed leader %v; %v led after %v; restarted %v", leader, nl,
			took.Round(time.Millisecond), leader), nil
	case "pause-leader":
		d := 2*election + time.Duration(r.Intn(500))*time.Millisecond
		if err := leader.Pause(); err != nil {
			return "", err
		}
		time.Sleep(d)
		nl, _ := c.Leader()
		if err := leader.Resume(); err != nil {
			return "", err
		}
		return fmt.Sprintf("paused leader %v for %v (then %v led); resumed", leader, d, nl), nil
	case "kill-follower":
		if err := f.Kill(); err != nil {
			return "", err
		}
		time.Sleep(time.Duration(100+r.Intn(500)) * time.Millisecond)
		if err := f.Start(); err != nil {
			return "", err
		}
		return fmt.Sprintf("killed follower %v; restarted it", f), nil
	case "pause-follower":
		d := time.Duration(100+r.Intn(600)) * time.Millisecond
		if err := f.Pause(); err != nil {
			return "", err
		}
		time.Sleep(d)
		if err := f.Resume(); err != nil {
			return "", err
		}
		return fmt.Sprintf("paused follower %v for %v", f, d), nil
	case "restart-all":
		for _, n := range c.Nodes {
			if err := n.Kill(); err != nil {
				return "", err
			}
		}
		time.Sleep(time.Duration(r.Intn(300)) * time.Millisecond)
		if err := c.StartAll(); err != nil {
			return "", err
		}
		return "killed every node (SIGKILL) and restarted them", nil
	}
	return "", fmt.Errorf("unknown fault %q", kind)
}

// At least 20 randomized rounds of leader kills, leader pauses past the election timeout,
// follower kills and pauses and whole-cluster restarts, with 6 clients writing and reading
// throughout; then every node converges and the checkers run.
func TestFailoverRounds(t *testing.T) {
	s := seed(t)
	r := rand.New(rand.NewSource(s))
	c, _ := newCluster(t, harness.Options{}, 110*time.Second)
	w := &harness.Workload{C: c, Seed: s, Clients: 6, Keys: 24}
	w.Start()
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	rounds := 24
	kinds := map[string]int{}
	for i := 0; i < rounds; i++ {
		// Every kind at least once in the first five rounds, then at random.
		kind := faults[r.Intn(len(faults))]
		if i < len(faults) {
			kind = faults[(int(s)+i)%len(faults)]
		}
		kinds[kind]++
		before := w.Acked()
		desc, err := runFault(c, r, kind)
		if err != nil {
			t.Fatalf("round %d (%s): %v; cluster: %s", i+1, kind, err, c.Describe())
		}
		if _, err := c.WaitLeader(15 * time.Second * harness.Slow()); err != nil {
			t.Fatalf("round %d (%s): after %s: %v", i+1, kind, desc, err)
		}
		// Writes continue: some are acknowledged after the round.
		if err := waitFor(15*time.Second, "writes acknowledged after the round", func() bool {
			return w.Acked() > before+5
		}); err != nil {
			t.Fatalf("round %d (%s): after %s: %v; %s; cluster: %s", i+1, kind, desc, err,
				w.Stats(), c.Describe())
		}
		c.Logf("round %2d: %s (%s)", i+1, desc, w.Stats())
		time.Sleep(time.Duration(200+r.Intn(300)) * time.Millisecond)
	}
	w.Stop()
	stopped = true
	c.Logf("rounds done: %v; %s", kinds, w.Stats())
	scan, seq, err := c.Converge(60 * time.Second * harness.Slow())
	must(t, err)
	acked, refused, unknown := w.L.Counts()
	c.Logf("converged at sequence %d; keys written once: %d acknowledged, %d refused, %d unknown",
		seq, acked, refused, unknown)
	if acked == 0 {
		t.Fatal("no write was acknowledged")
	}
	start := time.Now()
	must(t, w.Check(scan, 120*time.Second, filepath.Join(c.Dir, "history.html")))
	c.Logf("linearizability of %d operations on %d keys checked in %v", len(w.H.Ops()), w.Keys,
		time.Since(start).Round(time.Millisecond))
	for _, n := range c.Nodes {
		if l := n.LogLines("repl_error"); len(l) > 0 {
			c.Logf("%v logged %d replication errors, first: %s", n, len(l),
				strings.TrimSpace(l[0]))
		}
	}
}
