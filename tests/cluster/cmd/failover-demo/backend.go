package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"stratacluster/harness"
)

// member is one node of the cluster as the demo sees it.
type member struct {
	id   int
	dial string // the address the demo connects to
	peer string // its address in --peers: the strata-leader hint of a follower names it
}

// backend runs the three nodes: local processes (the harness) or the docker-compose cluster.
type backend interface {
	describe() string
	members() []member
	kill(id int) error  // SIGKILL (docker kill); returns once it is done
	start(id int) error // start again on its data; returns once the process serves
	crashed() error     // a node that exited without the demo ending it
	close() error       // stop everything the demo started
}

// demoT is the harness.T of a program: it remembers failure and runs cleanups on close.
type demoT struct {
	verbose  bool
	failed   atomic.Bool
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (t *demoT) Helper() {}
func (t *demoT) Logf(format string, args ...any) {
	if t.verbose {
		fmt.Fprintf(os.Stderr, "harness: "+format+"\n", args...)
	}
}
func (t *demoT) Errorf(format string, args ...any) {
	t.failed.Store(true)
	t.mu.Lock()
	t.errs = append(t.errs, fmt.Sprintf(format, args...))
	t.mu.Unlock()
	fmt.Fprintf(os.Stderr, "harness: error: "+format+"\n", args...)
}
func (t *demoT) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}
func (t *demoT) Failed() bool { return t.failed.Load() }
func (t *demoT) Name() string { return "failover-demo" }

// local is three strata-node processes on loopback, run by the harness.
type local struct {
	t *demoT
	c *harness.Cluster
}

func newLocal(verbose bool, syncPolicy string) (*local, error) {
	t := &demoT{verbose: verbose}
	l := &local{t: t}
	c, err := harness.New(t, harness.Options{Sync: syncPolicy})
	if err != nil {
		l.close()
		return nil, err
	}
	l.c = c
	if err := c.StartAll(); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *local) describe() string {
	return fmt.Sprintf("3 local strata-node processes (%s) in %s", l.c.PeersFlag(), l.c.Dir)
}

func (l *local) members() []member {
	var out []member
	for _, n := range l.c.Nodes {
		out = append(out, member{id: n.ID, dial: n.Listen, peer: n.Addr})
	}
	return out
}

func (l *local) kill(id int) error  { return l.c.NodeByID(uint32(id)).Kill() }
func (l *local) start(id int) error { return l.c.NodeByID(uint32(id)).Start() }
func (l *local) crashed() error     { return l.c.Crashed() }

// close runs the harness's teardown: SIGTERM to every node, each of which must exit 0.
func (l *local) close() error {
	l.t.mu.Lock()
	fs := l.t.cleanups
	l.t.cleanups = nil
	l.t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	if l.t.Failed() {
		l.t.mu.Lock()
		defer l.t.mu.Unlock()
		return fmt.Errorf("stopping the nodes: %s", strings.Join(l.t.errs, "; "))
	}
	return nil
}

// logLines returns the lines of node id's log (every start) that contain every word.
func (l *local) logLines(id int, words ...string) []string {
	return l.c.NodeByID(uint32(id)).LogLines(words...)
}

// dockerCluster is the docker-compose cluster of docker-compose.yml, driven through the
// functions of tests/docker/cluster.sh (every one of which bounds its own waits).
type dockerCluster struct {
	script  string
	keep    bool
	existed bool // the containers were there before the demo: leave them running
	ms      []member
}

// sh runs one function of cluster.sh (sourced as a library) and returns its standard output;
// its standard error goes to ours.
func (d *dockerCluster) sh(limit time.Duration, fn string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	// $0 is not the script's path, or cluster.sh would take itself for the command run.
	a := append([]string{"-c", `source "$1" && shift && "$@"`, "failover-demo", d.script, fn},
		args...)
	cmd := exec.CommandContext(ctx, "bash", a...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("cluster.sh %s %s: no answer within %v", fn,
			strings.Join(args, " "), limit)
	}
	if err != nil {
		return "", fmt.Errorf("cluster.sh %s %s: %v", fn, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(out.String()), nil
}

func newDocker(script string, keep bool, upLimit time.Duration) (*dockerCluster, error) {
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("the docker cluster script: %v", err)
	}
	d := &dockerCluster{script: script, keep: keep}
	cid, err := d.sh(2*time.Minute, "cluster_cid", "1")
	if err != nil {
		return nil, err
	}
	d.existed = cid != ""
	fmt.Fprintf(os.Stderr, "failover-demo: docker compose up (project %q; builds the image "+
		"unless STRATA_NO_BUILD=1; waits until the three nodes are healthy)\n",
		envOr("STRATA_PROJECT", "strata"))
	if _, err := d.sh(upLimit, "cluster_up"); err != nil {
		d.close()
		return nil, err
	}
	for id := 1; id <= 3; id++ {
		p, err := d.sh(time.Minute, "cluster_port", strconv.Itoa(id))
		if err != nil || p == "" {
			d.close()
			return nil, fmt.Errorf("no published port for strata%d: %v", id, err)
		}
		d.ms = append(d.ms, member{id: id, dial: "127.0.0.1:" + p,
			peer: fmt.Sprintf("strata%d:7400", id)})
	}
	return d, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (d *dockerCluster) describe() string {
	var parts []string
	for _, m := range d.ms {
		parts = append(parts, fmt.Sprintf("strata%d=%s", m.id, m.dial))
	}
	return "the docker-compose cluster (" + strings.Join(parts, ", ") + ")"
}

func (d *dockerCluster) members() []member { return d.ms }

func (d *dockerCluster) kill(id int) error {
	_, err := d.sh(time.Minute, "cluster_kill", strconv.Itoa(id))
	return err
}

func (d *dockerCluster) start(id int) error {
	_, err := d.sh(time.Minute, "cluster_start", strconv.Itoa(id))
	return err
}

func (d *dockerCluster) crashed() error { return nil }

// close takes the cluster down (volumes too) if the demo brought it up, unless -keep.
func (d *dockerCluster) close() error {
	if d.existed || d.keep {
		fmt.Fprintf(os.Stderr, "failover-demo: leaving the docker cluster running "+
			"(tests/docker/cluster.sh down removes it)\n")
		return nil
	}
	_, err := d.sh(6*time.Minute, "cluster_down")
	return err
}

// logEvent finds the first line of node id's log whose event (the third field) is ev and
// which has every one of fields (key=value, exactly), and returns the time it was logged.
func (l *local) logEvent(id int, ev string, fields ...string) (time.Time, bool) {
	for _, line := range l.logLines(id, ev) {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != ev {
			continue
		}
		ok := true
		for _, want := range fields {
			found := false
			for _, have := range f[3:] {
				if have == want {
					found = true
					break
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, f[0]); err == nil {
			return at, true
		}
	}
	return time.Time{}, false
}
