// Package cluster_test is strata's cluster test suite: three real strata-node processes per
// test, started, killed, paused, partitioned and restarted by the harness in ./harness, and
// checked for the guarantees of docs/replication.md. Run it through run_cluster.sh or ctest
// (label "cluster"); each test is one ctest test.
//
// Issue 4 (replication): replication_test.go. Issue 5 (failover): failover_test.go and
// partition_test.go.
package cluster_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"stratacluster/harness"
)

func TestMain(m *testing.M) {
	if _, err := harness.NodeBinary(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: FAILED: %v\n", err)
		os.Exit(1)
	}
	if s := harness.Scale(); s != 1 {
		fmt.Fprintf(os.Stderr, "cluster: ST_CLUSTER_SCALE=%g (counts scaled, waits ×%d)\n", s,
			harness.Slow())
	}
	os.Exit(m.Run())
}

// newCluster prepares and starts a cluster, waits for its leader, and bounds the whole test
// by deadline (× harness.Slow()).
func newCluster(t *testing.T, o harness.Options, deadline time.Duration) (*harness.Cluster, *harness.Node) {
	t.Helper()
	c, err := harness.New(t, o)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(deadline)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	leader, err := c.WaitLeader(10 * time.Second * harness.Slow())
	if err != nil {
		t.Fatal(err)
	}
	c.Logf("leader: %v", leader)
	return c, leader
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func seed(t *testing.T) int64 {
	s := harness.Seed()
	t.Logf("seed %d (set ST_TEST_SEED=%d to repeat)", s, s)
	return s
}

// follower returns a running node other than the leader.
func follower(c *harness.Cluster, leader *harness.Node) *harness.Node {
	for _, n := range c.Nodes {
		if n != leader && n.State() == harness.Running {
			return n
		}
	}
	return nil
}

// bg is the context of a test's clients: it ends with the cluster's deadline.
func bg(c *harness.Cluster) (context.Context, context.CancelFunc) {
	return context.WithCancel(c.Context())
}

// waitFor polls cond every 10 ms for at most d (× harness.Slow()).
func waitFor(d time.Duration, what string, cond func() bool) error {
	d *= harness.Slow()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
