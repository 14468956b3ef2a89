package cluster_test

// Issue 5: partitions, on Linux network namespaces (one per node, each with its own address).
// The test fails, never skips, when the namespaces cannot be made.

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "stratacluster/gen/strata/v1"
	"stratacluster/harness"
)

// isolateLeader cuts the leader off from both followers while clients keep writing to it
// directly: it must acknowledge none of those writes once cut off, it must step down, the
// majority side must elect a leader that acknowledges writes, and after healing every node
// converges with none of the minority's writes anywhere.
func isolateLeader(t *testing.T, c *harness.Cluster, round int, direct *int) error {
	old, err := c.WaitLeader(10 * time.Second * harness.Slow())
	if err != nil {
		return err
	}
	var rest []*harness.Node
	for _, n := range c.Nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	if err := c.Net.Isolate(old.ID - 1); err != nil {
		return err
	}
	cut := time.Now()
	c.Logf("round %d: %v (leader) cut off from %v and %v", round, old, rest[0], rest[1])

	// Writes sent to the old leader after the cut, from 4 clients for 1.5 s.
	kv := c.KV(old)
	var mu sync.Mutex
	acked := []string{}
	outcomes := map[codes.Code]int{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Since(cut) < 1500*time.Millisecond; i++ {
				key := fmt.Sprintf("m/minority/%d/%d/%d", round, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
				_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("x"),
					Ack: pb.AckLevel_ACK_MAJORITY})
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, key)
				}
				outcomes[status.Code(err)]++
				*direct++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(w)
	}
	nl, err := c.WaitLeaderIn(10*time.Second*harness.Slow(), rest)
	if err != nil {
		return err
	}
	c.Logf("round %d: %v leads the majority side after %v", round, nl,
		time.Since(cut).Round(time.Millisecond))
	cl := c.NewClient()
	cl.SetHint(nl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second*harness.Slow())
	r := cl.Put(ctx, []byte(fmt.Sprintf("m/majority/%d", round)), []byte("y"),
		pb.AckLevel_ACK_MAJORITY)
	cancel()
	if r.Outcome != harness.Acked || r.Node == old {
		return fmt.Errorf("a write to the majority side: %v by %v: %v", r.Outcome, r.Node, r.Err)
	}
	wg.Wait()
	c.Logf("round %d: writes sent to the cut-off leader: %v", round, outcomes)
	if len(acked) > 0 {
		return fmt.Errorf("the cut-off leader %v acknowledged %d MAJORITY writes after losing "+
			"its majority, e.g. %s", old, len(acked), acked[0])
	}
	// It must notice: a leader that hears from no majority for an election timeout steps down.
	if err := waitFor(3*time.Second, "the cut-off leader steps down", func() bool {
		st, err := c.Status(old, time.Second)
		return err == nil && st.Role != "leader"
	}); err != nil {
		return fmt.Errorf("%v; cluster: %s", err, c.Describe())
	}
	return nil
}

// isolateFollower cuts one follower off: the leader keeps acknowledging writes with the other.
func isolateFollower(t *testing.T, c *harness.Cluster, round int) error {
	leader, err := c.WaitLeader(10 * time.Second * harness.Slow())
	if err != nil {
		return err
	}
	f := follower(c, leader)
	if err := c.Net.Isolate(f.ID - 1); err != nil {
		return err
	}
	c.Logf("round %d: follower %v cut off", round, f)
	cl := c.NewClient()
	cl.SetHint(leader)
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second*harness.Slow())
		r := cl.Put(ctx, []byte(fmt.Sprintf("m/follower-cut/%d/%d", round, i)), []byte("z"),
			pb.AckLevel_ACK_MAJORITY)
		cancel()
		if r.Outcome != harness.Acked {
			return fmt.Errorf("write %d with follower %v cut off: %v: %v", i, f, r.Outcome, r.Err)
		}
	}
	// Past the follower's election timeouts.
	time.Sleep(400 * time.Millisecond * time.Duration(harness.TimeoutScale()))
	return nil
}

// Partition rounds on network namespaces, with the history workload running throughout.
func TestPartitions(t *testing.T) {
	s := seed(t)
	r := rand.New(rand.NewSource(s))
	c, _ := newCluster(t, harness.Options{Netns: true}, 90*time.Second)
	c.Logf("nodes in namespaces %v at %v; the test at %s", c.Net.Names, c.Net.Addrs,
		c.Net.HostAddr)
	w := &harness.Workload{C: c, Seed: s, Clients: 4, Keys: 16, Prefix: "w/"}
	w.Start()
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	direct := 0
	rounds := 6
	for i := 1; i <= rounds; i++ {
		var err error
		if i%2 == 1 || r.Intn(4) == 0 {
			err = isolateLeader(t, c, i, &direct)
		} else {
			err = isolateFollower(t, c, i)
		}
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		must(t, c.Net.Heal())
		c.Logf("round %d: healed", i)
		if _, err := c.WaitLeader(15 * time.Second * harness.Slow()); err != nil {
			t.Fatalf("round %d: after healing: %v", i, err)
		}
		before := w.Acked()
		must(t, waitFor(15*time.Second, "writes acknowledged after healing", func() bool {
			return w.Acked() > before+5
		}))
		c.Logf("round %d: %s", i, w.Stats())
	}
	w.Stop()
	stopped = true
	scan, seq, err := c.Converge(60 * time.Second * harness.Slow())
	must(t, err)
	c.Logf("converged at sequence %d after %d rounds; %d writes sent to cut-off leaders, none "+
		"acknowledged", seq, rounds, direct)
	for _, p := range scan {
		if strings.HasPrefix(string(p.Key), "m/minority/") {
			t.Errorf("%s appears: it was written only to a leader cut off from its majority",
				p.Key)
		}
	}
	must(t, w.Check(scan, 120*time.Second, filepath.Join(c.Dir, "history.html")))
}
