// Package stratatest tests strata.v1 from a Go grpc client against a real strata-node.
//
// The stubs in gen/ are generated from proto/ at test time by run_go_test.sh, which copies this
// module into the build directory first; run the tests through it (or ctest -R go_client):
//
//	tests/clients/go/run_go_test.sh build/node/strata-node build/tests/clients/go-work
//
// Environment: STRATA_NODE (the strata-node binary, required), STRATA_SOURCE_DIR (repository
// root), STRATA_EXAMPLE_BIN (the built examples/go client), ST_TEST_SEED, ST_TEST_TMPDIR,
// ST_KEEP_NODE_LOGS.
package stratatest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A node under ASan starts and answers more slowly; these bounds leave room for that.
const (
	startTimeout = 60 * time.Second
	callTimeout  = 60 * time.Second
)

// The node's default limits (strata-node --help), which the tests probe exactly.
const (
	maxKey     = 8 * 1024
	maxValue   = 4 * 1024 * 1024
	maxMessage = 16 * 1024 * 1024
)

// node is a strata-node child process in its own temporary directory.
type node struct {
	dir, dataDir, portFile, logPath string
	listen                          string // "127.0.0.1:0" (any free port) unless set
	extra                           []string
	cmd                             *exec.Cmd
	done                            chan struct{}
	addr                            string
}

func newNode(tag string, extra ...string) (*node, error) {
	base := os.Getenv("ST_TEST_TMPDIR")
	if base != "" {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(base, "strata-go-"+tag+"-")
	if err != nil {
		return nil, err
	}
	return &node{
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		portFile: filepath.Join(dir, "port"),
		logPath:  filepath.Join(dir, "node.log"),
		listen:   "127.0.0.1:0",
		extra:    extra,
	}, nil
}

func (n *node) start() error {
	os.Remove(n.portFile)
	args := append([]string{"--listen", n.listen, "--port-file", n.portFile,
		"--data-dir", n.dataDir, "--sync", "none"}, n.extra...)
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	n.cmd = exec.Command(os.Getenv("STRATA_NODE"), args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			return fmt.Errorf("strata-node exited (%v) before serving; log:\n%s",
				n.cmd.ProcessState, n.log())
		default:
		}
		if b, err := os.ReadFile(n.portFile); err == nil {
			if port, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && port > 0 {
				n.addr = fmt.Sprintf("127.0.0.1:%d", port)
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.cmd.Process.Kill()
	<-n.done
	return fmt.Errorf("strata-node wrote no port file in %v; log:\n%s", startTimeout, n.log())
}

// stop sends SIGTERM and waits; it returns the exit status (128+signal if killed).
func (n *node) stop() int {
	if n.cmd == nil || n.done == nil {
		return 0
	}
	select {
	case <-n.done:
	default:
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(60 * time.Second):
			n.cmd.Process.Kill()
			<-n.done
		}
	}
	ws := n.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (n *node) log() string {
	b, _ := os.ReadFile(n.logPath)
	return string(b)
}

func (n *node) cleanup() {
	n.stop()
	if os.Getenv("ST_KEEP_NODE_LOGS") == "" {
		os.RemoveAll(n.dir)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// dial opens a client connection that accepts large messages both ways.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20),
			grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// shared is the node most tests use; each test keeps to its own key prefix.
var shared *node

func TestMain(m *testing.M) {
	bin := os.Getenv("STRATA_NODE")
	if st, err := os.Stat(bin); bin == "" || err != nil || st.IsDir() {
		fmt.Fprintf(os.Stderr, "go_client: FAILED: STRATA_NODE must name the strata-node "+
			"binary (got %q); run through tests/clients/go/run_go_test.sh or ctest\n", bin)
		os.Exit(1)
	}
	var err error
	if shared, err = newNode("shared"); err == nil {
		err = shared.start()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "go_client: FAILED: starting strata-node: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	rc := shared.stop()
	if rc != 0 {
		fmt.Fprintf(os.Stderr, "go_client: FAILED: strata-node exited %d after SIGTERM "+
			"(expected 0); log:\n%s\n", rc, tail(shared.log(), 4000))
		code = 1
	}
	shared.cleanup()
	os.Exit(code)
}
