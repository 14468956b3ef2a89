// Package harness starts real strata-node processes as a cluster and does to them what the
// cluster tests and the failover benchmark need: kill (SIGKILL), pause (SIGSTOP/SIGCONT),
// restart on the same data directory, find the leader, write through a client that follows
// the leader, full-scan every node and compare, put a man-in-the-middle proxy between nodes,
// and place each node in its own Linux network namespace to cut the network between them.
//
// Every wait is bounded, and everything a cluster started (processes, proxies, namespaces) is
// torn down by the cleanup it registers, whether the test passed or not. Node logs are kept per
// node and printed when the test fails.
//
// Environment:
//
//	STRATA_NODE        the strata-node binary (required)
//	ST_TEST_TMPDIR     where the clusters' temporary directories go (default: the system's)
//	ST_TEST_SEED       the seed of randomized tests (default: from the clock; always printed)
//	ST_CLUSTER_SCALE   multiplies the tests' counts and durations (default 1; CMake sets a
//	                   smaller one when strata-node is built with a sanitizer)
//	ST_CLUSTER_TIMEOUT_SCALE  multiplies the nodes' --heartbeat-ms 30 and --election-ms 150
//	                   (default 1; CMake sets 4 for a ThreadSanitizer build, whose nodes are too
//	                   slow for elections that short)
//	ST_KEEP_NODE_LOGS  keep every cluster's directory, logs and data, even after a pass
package harness

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// T is the part of testing.TB the harness uses, so that the failover benchmark (a program,
// not a test) can drive clusters too.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	Name() string
}

// NodeBinary returns $STRATA_NODE, or an error saying how to set it.
func NodeBinary() (string, error) {
	bin := os.Getenv("STRATA_NODE")
	if bin == "" {
		return "", fmt.Errorf("STRATA_NODE must name the strata-node binary " +
			"(run through tests/cluster/run_cluster.sh or ctest -L cluster)")
	}
	st, err := os.Stat(bin)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("STRATA_NODE=%s is not an executable file", bin)
	}
	return bin, nil
}

// Scale is $ST_CLUSTER_SCALE (default 1, clamped to [0.05, 10]).
func Scale() float64 {
	v, err := strconv.ParseFloat(os.Getenv("ST_CLUSTER_SCALE"), 64)
	if err != nil || v <= 0 {
		return 1
	}
	if v < 0.05 {
		return 0.05
	}
	if v > 10 {
		return 10
	}
	return v
}

// Scaled returns n × Scale(), at least min.
func Scaled(n, min int) int {
	v := int(float64(n) * Scale())
	if v < min {
		return min
	}
	return v
}

// Slow is how much longer than a plain build things take (1 normally, up to 5 for a
// sanitizer build): waits for leaders, convergence and starts are multiplied by it.
func Slow() time.Duration {
	s := Scale()
	if s >= 1 {
		return 1
	}
	f := time.Duration(1/s + 0.5)
	if f > 5 {
		f = 5
	}
	return f
}

// TimeoutScale is $ST_CLUSTER_TIMEOUT_SCALE (default 1, at most 20).
func TimeoutScale() int {
	v, err := strconv.Atoi(os.Getenv("ST_CLUSTER_TIMEOUT_SCALE"))
	if err != nil || v < 1 {
		return 1
	}
	return min(v, 20)
}

// Seed returns $ST_TEST_SEED or a seed from the clock.
func Seed() int64 {
	if v, err := strconv.ParseInt(os.Getenv("ST_TEST_SEED"), 0, 64); err == nil {
		return v
	}
	return time.Now().UnixNano() & 0x7fffffffffff
}

// KeepLogs reports whether ST_KEEP_NODE_LOGS is set.
func KeepLogs() bool { return os.Getenv("ST_KEEP_NODE_LOGS") != "" }
