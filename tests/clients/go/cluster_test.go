package stratatest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "stratatest/gen/strata/v1"
)

// tests/node/cluster_harness.c's timings: elections take a few hundred milliseconds.
var clusterFlags = []string{"--heartbeat-ms", "20", "--election-ms", "150", "--workers", "2"}

// freePorts returns n distinct free loopback ports: all bound at once (so they differ), then
// released.
func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startCluster starts a 3-node cluster on loopback; t.Cleanup stops it, and fails the test if a
// node that was not killed by the test exits other than 0 after SIGTERM.
func startCluster(t *testing.T) []*node {
	for attempt := 1; attempt <= 5; attempt++ {
		ports, err := freePorts(3)
		if err != nil {
			t.Fatal(err)
		}
		var peers []string
		for i, p := range ports {
			peers = append(peers, fmt.Sprintf("%d=127.0.0.1:%d", i+1, p))
		}
		var nodes []*node
		for i, p := range ports {
			n, err := newNode(fmt.Sprintf("cluster-n%d", i+1), append(slices.Clone(clusterFlags),
				"--node-id", strconv.Itoa(i+1), "--peers", strings.Join(peers, ","))...)
			if err != nil {
				t.Fatal(err)
			}
			n.listen = fmt.Sprintf("127.0.0.1:%d", p)
			nodes = append(nodes, n)
			if err = n.start(); err != nil {
				// Most likely a port taken meanwhile: start over on fresh ones.
				t.Logf("cluster start attempt %d: %v", attempt, err)
				break
			}
		}
		if len(nodes) == 3 && nodes[2].addr != "" {
			t.Cleanup(func() {
				for _, n := range nodes {
					killed := exited(n)
					if rc := n.stop(); !killed && rc != 0 {
						t.Errorf("%s exited %d after SIGTERM; log:\n%s", n.addr, rc,
							tail(n.log(), 4000))
					}
					n.cleanup()
				}
			})
			return nodes
		}
		for _, n := range nodes {
			n.cleanup()
		}
	}
	t.Fatal("a 3-node cluster did not start in 5 attempts")
	return nil
}

// waitLeader returns the node every live member names as leader, once they agree on one.
func waitLeader(t *testing.T, nodes []*node) *node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var leader *node
		leaders, agreed := 0, true
		var named []string
		for _, n := range nodes {
			if exited(n) {
				continue // killed
			}
			st, err := nodeStatus(n)
			if err != nil {
				agreed = false
				break
			}
			if st.Role == "leader" {
				leader, leaders = n, leaders+1
			}
			named = append(named, st.LeaderAddr)
		}
		if agreed && leaders == 1 {
			for _, a := range named {
				agreed = agreed && a == leader.addr
			}
			if agreed {
				return leader
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no agreed leader in 30 s")
	return nil
}

func exited(n *node) bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func nodeStatus(n *node) (*pb.StatusResponse, error) {
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return pb.NewAdminClient(conn).Status(ctx, &pb.StatusRequest{})
}

var writtenAt = regexp.MustCompile(`written at seq (\d+)`)

// runExample runs examples/go with -addr addrs, checks its output and returns the seq of its
// first write.
func runExample(t *testing.T, bin string, addrs ...string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-addr", strings.Join(addrs, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -addr %s: %v\n%s", bin, strings.Join(addrs, ","), err, out)
	}
	for _, want := range []string{"greeting = hello, strata", "fruit/apple = red",
		"fruit/cherry = dark red", "fruit/banana: NotFound"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("example output lacks %q:\n%s", want, out)
		}
	}
	m := writtenAt.FindSubmatch(out)
	if m == nil {
		t.Fatalf("example output has no 'written at seq':\n%s", out)
	}
	seq, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return seq
}

// checkOnLeader checks that the example's writes, from seq on, are in the leader.
func checkOnLeader(t *testing.T, leader *node, seq uint64) {
	t.Helper()
	c := newClient(t, leader.addr)
	if v := c.get(b("greeting")); string(v) != "hello, strata" {
		t.Fatalf("greeting on the leader is %q", v)
	}
	pairs, _ := c.scan(&pb.ScanRequest{Start: b("fruit/"), End: b("fruit0")})
	want := []kvPair{{"fruit/apple", "red"}, {"fruit/cherry", "dark red"}}
	if !slices.Equal(pairs, want) {
		t.Fatalf("fruit/ on the leader: %v, want %v", pairs, want)
	}
	// Put, Write of 4, Delete: the leader committed at least seq+5.
	st, err := nodeStatus(leader)
	if err != nil || st.CommitSeq < seq+5 {
		t.Fatalf("leader commit_seq %v (err %v), want at least %d", st.GetCommitSeq(), err, seq+5)
	}
}

// TestExampleClientCluster runs examples/go against a 3-node cluster: sent to a follower, its
// writes go to the leader; started while the leader is dead, it waits out the election.
func TestExampleClientCluster(t *testing.T) {
	bin := os.Getenv("STRATA_EXAMPLE_BIN")
	if bin == "" {
		t.Fatal("STRATA_EXAMPLE_BIN not set (run_go_test.sh builds examples/go and sets it)")
	}
	nodes := startCluster(t)
	leader := waitLeader(t, nodes)
	var followers []string
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n.addr)
		}
	}
	// Only a follower's address: the example can reach the leader only through the hint.
	seq := runExample(t, bin, followers[0])
	checkOnLeader(t, leader, seq)

	// The leader is killed: the first address is dead, the others elect a new leader while the
	// example runs (its first write most likely lands in the election).
	leader.cmd.Process.Kill()
	<-leader.done
	seq2 := runExample(t, bin, append([]string{leader.addr}, followers...)...)
	if seq2 <= seq {
		t.Fatalf("second run wrote at seq %d, not after the first's %d", seq2, seq)
	}
	newLeader := waitLeader(t, nodes)
	if newLeader == leader {
		t.Fatal("the killed node is still named leader")
	}
	checkOnLeader(t, newLeader, seq2)
}
