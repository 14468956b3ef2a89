package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	pb "stratacluster/gen/strata/v1"
)

// Options shape a cluster. The zero value is a 3-node cluster on loopback with the suite's
// short timeouts (--heartbeat-ms 30 --election-ms 150) and --sync none (a SIGKILL loses
// nothing the kernel has: only power loss would tell the policies apart).
type Options struct {
	Nodes       int      // members (default 3)
	HeartbeatMs int      // --heartbeat-ms (default 30)
	ElectionMs  int      // --election-ms (default 150)
	Sync        string   // --sync (default "none")
	Extra       []string // more flags for every node
	// Proxy puts a Proxy in front of every node: the address in --peers is the proxy's, so
	// every replication and vote connection to that node passes through it. Clients of the
	// harness still connect to the node directly.
	Proxy bool
	// Netns runs each node in a network namespace of its own, with its own address (see
	// Netns): New fails if the namespaces cannot be made.
	Netns bool
}

// Cluster is a set of strata-node processes that name each other in --peers. New prepares it
// and registers its teardown with t.Cleanup; StartAll (or Node.Start) starts the processes.
type Cluster struct {
	T       T
	Nodes   []*Node
	Proxies []*Proxy // with Options.Proxy: Proxies[i] fronts Nodes[i]
	Net     *Netns   // with Options.Netns
	Dir     string

	opts         Options
	bin          string
	startTimeout time.Duration
	begin        time.Time

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn

	leaderHint atomic.Int32 // index of the node last seen leading

	ctx    context.Context
	cancel context.CancelFunc
}

// New prepares a cluster under a new temporary directory; nothing runs yet.
func New(t T, o Options) (*Cluster, error) {
	bin, err := NodeBinary()
	if err != nil {
		return nil, err
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.HeartbeatMs == 0 {
		o.HeartbeatMs = 30 * TimeoutScale()
	}
	if o.ElectionMs == 0 {
		o.ElectionMs = 150 * TimeoutScale()
	}
	if o.Sync == "" {
		o.Sync = "none"
	}
	base := os.Getenv("ST_TEST_TMPDIR")
	if base != "" {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return nil, err
		}
	}
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp(base, "strata-cluster-"+name+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{T: t, Dir: dir, opts: o, bin: bin, begin: time.Now(),
		startTimeout: 30 * time.Second * Slow(), conns: map[string]*grpc.ClientConn{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	t.Cleanup(c.teardown)

	var listen []string
	if o.Netns {
		if c.Net, err = NewNetns(o.Nodes); err != nil {
			return nil, fmt.Errorf("network namespaces are required by this test and could "+
				"not be made (run as root with iproute2 installed): %w", err)
		}
		for i := 0; i < o.Nodes; i++ {
			listen = append(listen, net.JoinHostPort(c.Net.Addrs[i], "7400"))
		}
	} else if listen, err = pickAddrs(o.Nodes); err != nil {
		return nil, err
	}
	for i := 0; i < o.Nodes; i++ {
		nd := &Node{ID: i + 1, Listen: listen[i], Addr: listen[i], c: c,
			Dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1))}
		nd.DataDir = filepath.Join(nd.Dir, "data")
		nd.LogPath = filepath.Join(nd.Dir, "node.log")
		if c.Net != nil {
			nd.Netns = c.Net.Names[i]
		}
		if err := os.MkdirAll(nd.Dir, 0o755); err != nil {
			return nil, err
		}
		if o.Proxy {
			p, err := NewProxy(listen[i])
			if err != nil {
				return nil, err
			}
			c.Proxies = append(c.Proxies, p)
			nd.Addr = p.Addr()
		}
		c.Nodes = append(c.Nodes, nd)
	}
	c.logf("cluster in %s: %s", dir, c.PeersFlag())
	return c, nil
}

// pickAddrs chooses n free TCP addresses on a random 127.x.y.0/24 (all of 127/8 is loopback
// on Linux): each port is found free by binding it, and with an address of our own a port
// that another program takes meanwhile is most unlikely to collide.
func pickAddrs(n int) ([]string, error) {
	r := rand.New(rand.NewSource(time.Now().UnixNano() ^ int64(os.Getpid())<<20))
	for try := 0; try < 20; try++ {
		host := fmt.Sprintf("127.%d.%d.", 1+r.Intn(250), 1+r.Intn(250))
		var out []string
		var ls []net.Listener
		for i := 0; i < n; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("%s%d:0", host, i+1))
			if err != nil {
				break
			}
			ls = append(ls, l)
			out = append(out, l.Addr().String())
		}
		for _, l := range ls {
			l.Close()
		}
		if len(out) == n {
			return out, nil
		}
	}
	return nil, errors.New("no free loopback addresses found")
}

// PeersFlag is the --peers value every node gets.
func (c *Cluster) PeersFlag() string {
	var parts []string
	for _, n := range c.Nodes {
		parts = append(parts, fmt.Sprintf("%d=%s", n.ID, n.Addr))
	}
	return strings.Join(parts, ",")
}

func (c *Cluster) logf(format string, args ...any) {
	c.T.Logf("[%7.3fs] %s", time.Since(c.begin).Seconds(), fmt.Sprintf(format, args...))
}

// Logf logs with the cluster's clock (seconds since New).
func (c *Cluster) Logf(format string, args ...any) { c.logf(format, args...) }

// Context is cancelled when the test's deadline passes (SetDeadline) and at teardown: clients
// that retry until they succeed use it, so that they stop too.
func (c *Cluster) Context() context.Context { return c.ctx }

// StartAll starts every node that is down, concurrently, and waits until all serve.
func (c *Cluster) StartAll() error {
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes {
		if n.State() != Down {
			errs <- nil
			continue
		}
		go func(n *Node) { errs <- n.Start() }(n)
	}
	var all []error
	for range c.Nodes {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// NodeByAddr returns the node whose --peers address or listen address is addr, or nil.
func (c *Cluster) NodeByAddr(addr string) *Node {
	for _, n := range c.Nodes {
		if n.Addr == addr || n.Listen == addr {
			return n
		}
	}
	return nil
}

// NodeByID returns the node with --node-id id, or nil.
func (c *Cluster) NodeByID(id uint32) *Node {
	if id < 1 || int(id) > len(c.Nodes) {
		return nil
	}
	return c.Nodes[id-1]
}

// Conn returns the (shared, lazily made) client connection to a node. It reconnects quickly
// after the node restarts, and never waits for the node to be ready: a call to a node that is
// down fails at once with UNAVAILABLE.
func (c *Cluster) Conn(n *Node) *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[n.Listen]; cc != nil {
		return cc
	}
	cc, err := grpc.NewClient(n.Listen,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5,
				Jitter: 0.2, MaxDelay: 250 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20),
			grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		panic(fmt.Sprintf("grpc.NewClient(%s): %v", n.Listen, err)) // only bad syntax fails
	}
	c.conns[n.Listen] = cc
	return cc
}

// KV is a strata.v1.KV client for the node.
func (c *Cluster) KV(n *Node) pb.KVClient { return pb.NewKVClient(c.Conn(n)) }

// Admin is a strata.v1.Admin client for the node.
func (c *Cluster) Admin(n *Node) pb.AdminClient { return pb.NewAdminClient(c.Conn(n)) }

// Status asks one node for its Status, within timeout.
func (c *Cluster) Status(n *Node, timeout time.Duration) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Admin(n).Status(ctx, &pb.StatusRequest{})
}

// Statuses asks every running node for its Status at once; the result has nil for the nodes
// that are down, paused or did not answer within timeout.
func (c *Cluster) Statuses(timeout time.Duration) []*pb.StatusResponse {
	out := make([]*pb.StatusResponse, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		if n.State() != Running {
			continue
		}
		wg.Add(1)
		go func(i int, n *Node) {
			defer wg.Done()
			if st, err := c.Status(n, timeout); err == nil {
				out[i] = st
			}
		}(i, n)
	}
	wg.Wait()
	return out
}

// Leader returns the running node that reports itself leader in the highest term, with its
// Status, or nil if none does.
func (c *Cluster) Leader() (*Node, *pb.StatusResponse) {
	var best *Node
	var bst *pb.StatusResponse
	for i, st := range c.Statuses(time.Second * Slow()) {
		if st != nil && st.Role == "leader" && (bst == nil || st.Term > bst.Term) {
			best, bst = c.Nodes[i], st
		}
	}
	return best, bst
}

// WaitLeader waits for a leader that every other running node answering Status agrees on
// (same term and leader id), other than the nodes in not.
func (c *Cluster) WaitLeader(timeout time.Duration, not ...*Node) (*Node, error) {
	return c.waitLeader(timeout, c.Nodes, not)
}

// WaitLeaderIn is WaitLeader among some nodes only (the majority side of a partition): the
// leader is one of them and the others of them agree on it; the rest are not asked.
func (c *Cluster) WaitLeaderIn(timeout time.Duration, among []*Node) (*Node, error) {
	return c.waitLeader(timeout, among, nil)
}

func (c *Cluster) waitLeader(timeout time.Duration, among, not []*Node) (*Node, error) {
	deadline := time.Now().Add(timeout)
	in := map[*Node]bool{}
	for _, n := range among {
		in[n] = true
	}
	for {
		all := c.Statuses(time.Second * Slow())
		sts := make([]*pb.StatusResponse, len(all))
		for i, st := range all {
			if in[c.Nodes[i]] {
				sts[i] = st
			}
		}
		var leader *Node
		var lst *pb.StatusResponse
		for i, st := range sts {
			if st != nil && st.Role == "leader" && (lst == nil || st.Term > lst.Term) {
				leader, lst = c.Nodes[i], st
			}
		}
		ok := leader != nil
		for _, x := range not {
			if leader == x {
				ok = false
			}
		}
		for i, st := range sts {
			if ok && st != nil && c.Nodes[i] != leader &&
				(st.Term != lst.Term || int(st.LeaderId) != leader.ID) {
				ok = false
			}
		}
		if ok {
			c.leaderHint.Store(int32(leader.ID - 1))
			return leader, nil
		}
		if err := c.Crashed(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no agreed leader within %v: %s", timeout, c.describe(all))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) describe(sts []*pb.StatusResponse) string {
	var parts []string
	for i, st := range sts {
		n := c.Nodes[i]
		if st == nil {
			parts = append(parts, fmt.Sprintf("%v %v/no answer", n, n.State()))
			continue
		}
		parts = append(parts, fmt.Sprintf("%v %s term=%d leader=%d last=%d/t%d applied=%d "+
			"commit=%d", n, st.Role, st.Term, st.LeaderId, st.LastSeq, st.LastTerm,
			st.AppliedSeq, st.CommitSeq))
	}
	return strings.Join(parts, "; ")
}

// Describe is a one-line summary of every node's Status.
func (c *Cluster) Describe() string { return c.describe(c.Statuses(time.Second * Slow())) }

// Pair is one key and value from a scan.
type Pair struct{ Key, Value []byte }

// Scan reads every pair on the node (one consistent snapshot), waiting for minSeq to be
// applied first. It returns the pairs and the sequence the scan read at.
func (c *Cluster) Scan(n *Node, minSeq uint64, timeout time.Duration) ([]Pair, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := c.KV(n).Scan(ctx, &pb.ScanRequest{MinSeq: minSeq})
	if err != nil {
		return nil, 0, err
	}
	var out []Pair
	var seq uint64
	first := true
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return out, seq, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("scan of %v: %w", n, err)
		}
		if !first && m.Seq != seq {
			return nil, 0, fmt.Errorf("scan of %v: messages at sequences %d and %d", n, seq,
				m.Seq)
		}
		first, seq = false, m.Seq
		for _, kv := range m.Pairs {
			out = append(out, Pair{kv.Key, kv.Value})
		}
	}
}

// DiffScans compares two scans byte for byte; "" when identical, else the first difference.
func DiffScans(a, b []Pair) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return fmt.Sprintf("pair %d: %s=%s against %s=%s", i, short(a[i].Key),
				short(a[i].Value), short(b[i].Key), short(b[i].Value))
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d pairs against %d", len(a), len(b))
	}
	return ""
}

func short(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q…(%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// Converge waits until every node runs and has applied the leader's last sequence, then scans
// every node at that sequence and requires the scans to be byte-identical. It returns the
// scan (the same on every node) and the sequence. Nodes must all be running; writes must have
// stopped.
func (c *Cluster) Converge(timeout time.Duration) ([]Pair, uint64, error) {
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		if n.State() != Running {
			return nil, 0, fmt.Errorf("converge: %v is %v", n, n.State())
		}
	}
	var last string
	for {
		if err := c.Crashed(); err != nil {
			return nil, 0, err
		}
		sts := c.Statuses(time.Second * Slow())
		var lst *pb.StatusResponse
		for _, st := range sts {
			if st != nil && st.Role == "leader" && (lst == nil || st.Term > lst.Term) {
				lst = st
			}
		}
		ok := lst != nil && lst.CommitSeq == lst.LastSeq
		for _, st := range sts {
			if st == nil || lst == nil || st.AppliedSeq != lst.LastSeq ||
				st.LastSeq != lst.LastSeq || st.Term != lst.Term {
				ok = false
			}
		}
		last = c.describe(sts)
		if ok {
			seq := lst.LastSeq
			scans := make([][]Pair, len(c.Nodes))
			var err error
			for i, n := range c.Nodes {
				if scans[i], _, err = c.Scan(n, seq, 60*time.Second*Slow()); err != nil {
					break
				}
			}
			if err == nil {
				for i := 1; i < len(scans); i++ {
					if d := DiffScans(scans[0], scans[i]); d != "" {
						return nil, 0, fmt.Errorf("nodes applied sequence %d but their scans "+
							"differ: node 1 against node %d: %s", seq, i+1, d)
					}
				}
				c.logf("converged: %d nodes at sequence %d, %d pairs each, byte-identical",
					len(c.Nodes), seq, len(scans[0]))
				return scans[0], seq, nil
			}
			last += "; scan: " + err.Error()
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("not converged within %v: %s", timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Crashed returns an error for every node whose process exited without the harness ending it.
func (c *Cluster) Crashed() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.Crashed())
	}
	return errors.Join(errs...)
}

// teardown: stop every node (SIGTERM, which must end it with status 0, as a clean shutdown
// should, even after what the test did to the cluster), close proxies and connections, delete
// namespaces; print the logs if the test failed; remove the directory unless the test failed or
// ST_KEEP_NODE_LOGS is set.
func (c *Cluster) teardown() {
	t := c.T
	c.cancel()
	if err := c.Crashed(); err != nil {
		t.Errorf("%v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func(i int, n *Node) {
			defer wg.Done()
			errs[i] = n.Stop(60 * time.Second * Slow())
		}(i, n)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%v; log:\n%s", err, c.Nodes[i].LogTail(40))
		}
	}
	c.mu.Lock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	for _, p := range c.Proxies {
		p.Close()
	}
	if c.Net != nil {
		if err := c.Net.Close(); err != nil {
			t.Errorf("deleting the network namespaces: %v", err)
		}
	}
	if t.Failed() {
		for _, n := range c.Nodes {
			t.Logf("---- %v log (%s), last 150 lines ----\n%s", n, n.LogPath, n.LogTail(150))
		}
		t.Logf("cluster directory kept: %s", c.Dir)
		return
	}
	if KeepLogs() {
		t.Logf("cluster directory kept (ST_KEEP_NODE_LOGS): %s", c.Dir)
		return
	}
	os.RemoveAll(c.Dir)
}

// WALSegments lists the node's WAL segment files (names, sorted).
func (n *Node) WALSegments() []string {
	names, _ := filepath.Glob(filepath.Join(n.DataDir, "db", "wal", "*.log"))
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	sort.Strings(names)
	return names
}
