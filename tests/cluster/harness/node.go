package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// State is what the harness last did to a node's process.
type State int

const (
	// Down: never started, killed, or exited.
	Down State = iota
	// Running: started and serving (as far as the harness knows).
	Running
	// Paused: stopped with SIGSTOP.
	Paused
)

func (s State) String() string {
	switch s {
	case Running:
		return "running"
	case Paused:
		return "paused"
	}
	return "down"
}

// Node is one strata-node process of a cluster, in its own directory: data/ (the data dir),
// node.log (stdout and stderr of every start, appended), port (the --port-file).
type Node struct {
	ID      int    // --node-id, 1-based
	Listen  string // the address it binds (--listen)
	Addr    string // its address in --peers: Listen, or its proxy's address
	Dir     string
	DataDir string
	LogPath string
	Netns   string   // the network namespace it runs in; "" for the host's
	Extra   []string // flags for this node only, after the cluster's

	c      *Cluster
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	state  State
	starts int
	ended  bool // the harness killed or stopped the current process
}

// State reports what the harness last did to the node.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != Down && n.done != nil {
		select {
		case <-n.done:
			n.state = Down
		default:
		}
	}
	return n.state
}

// Pid is the process id, or 0 when the node is down.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil || n.state == Down {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *Node) String() string { return fmt.Sprintf("node %d", n.ID) }

func (n *Node) args() []string {
	c := n.c
	a := []string{
		"--listen", n.Listen,
		"--port-file", filepath.Join(n.Dir, "port"),
		"--data-dir", n.DataDir,
		"--node-id", strconv.Itoa(n.ID),
		"--peers", c.PeersFlag(),
		"--sync", c.opts.Sync,
		"--heartbeat-ms", strconv.Itoa(c.opts.HeartbeatMs),
		"--election-ms", strconv.Itoa(c.opts.ElectionMs),
	}
	a = append(a, c.opts.Extra...)
	return append(a, n.Extra...)
}

// Start starts the process (on its existing data directory, if any) and waits until it serves
// (its --port-file appears), for at most the cluster's start timeout.
func (n *Node) Start() error {
	n.mu.Lock()
	if n.state != Down {
		select {
		case <-n.done:
		default:
			n.mu.Unlock()
			return fmt.Errorf("%v: already %v", n, n.state)
		}
	}
	portFile := filepath.Join(n.Dir, "port")
	os.Remove(portFile)
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	n.starts++
	fmt.Fprintf(logf, "=== harness: start #%d of node %d at %s: %s\n", n.starts, n.ID,
		time.Now().UTC().Format(time.RFC3339Nano), strings.Join(n.args(), " "))
	var cmd *exec.Cmd
	if n.Netns != "" {
		// ip execs the program after entering the namespace: the pid is strata-node's.
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.Netns, n.c.bin}, n.args()...)...)
	} else {
		cmd = exec.Command(n.c.bin, n.args()...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal meant for the test (^C) does not reach the nodes. And
	// killed with the test, should the test itself die (a timeout panics past every cleanup).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = spawn(cmd)
	logf.Close()
	if err != nil {
		n.mu.Unlock()
		return fmt.Errorf("%v: %w", n, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.cmd, n.done, n.state, n.ended = cmd, done, Running, false
	n.mu.Unlock()

	deadline := time.Now().Add(n.c.startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("%v exited (%v) before serving; log:\n%s", n, cmd.ProcessState,
				n.LogTail(30))
		default:
		}
		if b, err := os.ReadFile(portFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.Kill()
	return fmt.Errorf("%v wrote no port file within %v; log:\n%s", n, n.c.startTimeout,
		n.LogTail(30))
}

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.state == Down {
		return fmt.Errorf("%v is down", n)
	}
	return n.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (a paused node dies too) and waits for the process to be gone.
func (n *Node) Kill() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if cmd == nil || n.state == Down {
		n.mu.Unlock()
		return nil
	}
	cmd.Process.Signal(syscall.SIGKILL)
	n.state, n.ended = Down, true
	n.mu.Unlock()
	select {
	case <-done:
		n.c.logf("%v killed (SIGKILL)", n)
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%v did not die within 20 s of SIGKILL", n)
	}
}

// Pause stops the process with SIGSTOP: its sockets stay open, it answers nothing.
func (n *Node) Pause() error {
	if err := n.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	n.mu.Lock()
	n.state = Paused
	n.mu.Unlock()
	n.c.logf("%v paused (SIGSTOP)", n)
	return nil
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error {
	if err := n.signal(syscall.SIGCONT); err != nil {
		return err
	}
	n.mu.Lock()
	n.state = Running
	n.mu.Unlock()
	n.c.logf("%v resumed (SIGCONT)", n)
	return nil
}

// Restart kills the node if it runs and starts it again on the same data directory.
func (n *Node) Restart() error {
	if err := n.Kill(); err != nil {
		return err
	}
	n.c.logf("%v restarting", n)
	return n.Start()
}

// Stop ends the node with SIGTERM (after SIGCONT, should it be paused) and waits up to
// timeout; past it the node is killed. It returns an error unless the node exited 0.
func (n *Node) Stop(timeout time.Duration) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if cmd == nil || n.state == Down {
		n.mu.Unlock()
		return nil
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	n.state, n.ended = Down, true
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("%v did not exit within %v of SIGTERM (killed)", n, timeout)
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("%v exited with %v after SIGTERM (expected status 0)", n,
			cmd.ProcessState)
	}
	return nil
}

// Wipe removes the node's data directory (the node must be down).
func (n *Node) Wipe() error {
	if n.State() != Down {
		return fmt.Errorf("%v: wipe needs the node down", n)
	}
	return os.RemoveAll(n.DataDir)
}

// Log returns the node's whole log (every start).
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail(lines int) string {
	s := strings.TrimRight(n.Log(), "\n")
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// LogLines returns the lines of the node's log that contain every one of words.
func (n *Node) LogLines(words ...string) []string {
	var out []string
	for _, l := range strings.Split(n.Log(), "\n") {
		ok := l != ""
		for _, w := range words {
			if !strings.Contains(l, w) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// WaitLog waits until the node's log has a line containing every one of words, past the first
// `after` such lines; it returns that line.
func (n *Node) WaitLog(timeout time.Duration, after int, words ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := n.LogLines(words...); len(l) > after {
			return l[after], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%v: no log line with %q within %v", n, words, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The parent-death signal is tied to the thread that forked the child: start every process
// from one goroutine locked to a thread that lives as long as the test does.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   = make(chan spawnReq)
)

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread stays
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error)
	spawnCh <- spawnReq{cmd, done}
	return <-done
}

// Crashed returns an error if the node's process exited without the harness ending it.
func (n *Node) Crashed() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.ended {
		return nil
	}
	select {
	case <-n.done:
		return fmt.Errorf("%v exited on its own (%v); log:\n%s", n, n.cmd.ProcessState,
			n.LogTail(40))
	default:
		return nil
	}
}
