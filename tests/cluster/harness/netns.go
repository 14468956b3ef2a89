package harness

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Netns is a small network of Linux network namespaces, one per node, made with iproute2:
//
//	host namespace (the test)  <veth>  switch namespace: bridge  <veth>  node namespace i
//	169.254.S.254                                                       169.254.S.(i+1)
//
// Each node has its own address, its own port space and its own routing table; Partition cuts
// node pairs with blackhole routes in the nodes' namespaces (packets between them vanish, as
// on a real network; TCP connections hang rather than reset), while the test, in the host
// namespace, still reaches every node. The addresses are link-local (169.254/16): they exist
// only inside these namespaces and the host's veth, and nothing is routed anywhere else.
//
// Namespace names are "sj" + the test's pid (6 hex digits) + 2 random hex digits; NewNetns
// deletes namespaces of that shape left by processes that no longer run.
type Netns struct {
	Names []string // the nodes' namespaces
	Addrs []string // the nodes' addresses
	// HostAddr is the host namespace's address on the network.
	HostAddr string

	prefix string
	sw     string
	hostIf string

	mu      sync.Mutex
	blocked map[[2]int]bool // guarded by mu: (i, j) has a blackhole route to j in i's namespace
}

var nsName = regexp.MustCompile(`^sj([0-9a-f]{6})[0-9a-f]{2}-(sw|n[0-9]+)$`)

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return nil
}

// collectStale deletes namespaces of our naming whose creating process is gone.
func collectStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := nsName.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.ParseInt(m[1], 16, 64)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		ip("netns", "del", f[0])
	}
}

// NewNetns makes the namespaces and the network for n nodes. It fails (it never degrades to
// loopback) when that is not possible: not root, no iproute2, no namespace support.
func NewNetns(n int) (*Netns, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("the ip command (iproute2) is not installed")
	}
	collectStale()
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	prefix := fmt.Sprintf("sj%06x%02x", os.Getpid()&0xffffff, r.Intn(256))
	var subnet string
	for try := 0; ; try++ {
		s := 1 + r.Intn(250)
		if s == 169 {
			continue
		}
		subnet = fmt.Sprintf("169.254.%d", s)
		out, _ := exec.Command("ip", "-4", "addr", "show").Output()
		if !strings.Contains(string(out), subnet+".") || try > 50 {
			break
		}
	}
	ns := &Netns{prefix: prefix, sw: prefix + "-sw", hostIf: prefix + "h",
		HostAddr: subnet + ".254", blocked: map[[2]int]bool{}}
	steps := [][]string{
		{"netns", "add", ns.sw},
		{"-n", ns.sw, "link", "set", "lo", "up"},
		{"-n", ns.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", ns.sw, "link", "set", "br0", "up"},
		{"link", "add", ns.hostIf, "type", "veth", "peer", "name", prefix + "s"},
		{"link", "set", prefix + "s", "netns", ns.sw},
		{"-n", ns.sw, "link", "set", prefix + "s", "master", "br0"},
		{"-n", ns.sw, "link", "set", prefix + "s", "up"},
		{"addr", "add", ns.HostAddr + "/24", "dev", ns.hostIf},
		{"link", "set", ns.hostIf, "up"},
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-n%d", prefix, i+1)
		nif, bif := fmt.Sprintf("%sn%d", prefix, i+1), fmt.Sprintf("%sb%d", prefix, i+1)
		addr := fmt.Sprintf("%s.%d", subnet, i+1)
		ns.Names = append(ns.Names, name)
		ns.Addrs = append(ns.Addrs, addr)
		steps = append(steps,
			[]string{"netns", "add", name},
			[]string{"-n", name, "link", "set", "lo", "up"},
			[]string{"link", "add", nif, "type", "veth", "peer", "name", bif},
			[]string{"link", "set", nif, "netns", name},
			[]string{"link", "set", bif, "netns", ns.sw},
			[]string{"-n", name, "addr", "add", addr + "/24", "dev", nif},
			[]string{"-n", name, "link", "set", nif, "up"},
			[]string{"-n", ns.sw, "link", "set", bif, "master", "br0"},
			[]string{"-n", ns.sw, "link", "set", bif, "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			ns.Close()
			return nil, err
		}
	}
	return ns, nil
}

// Partition cuts the network between every two nodes (indices into Names) that are in
// different groups; nodes in no group keep their links. Cuts already in place stay.
func (ns *Netns) Partition(groups ...[]int) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	group := map[int]int{}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g + 1
		}
	}
	for i := range ns.Names {
		for j := range ns.Names {
			gi, gj := group[i], group[j]
			if i == j || gi == 0 || gj == 0 || gi == gj || ns.blocked[[2]int{i, j}] {
				continue
			}
			if err := ip("-n", ns.Names[i], "route", "add", "blackhole", ns.Addrs[j]+"/32"); err != nil {
				return err
			}
			ns.blocked[[2]int{i, j}] = true
		}
	}
	return nil
}

// Isolate cuts node i off from every other node (the test still reaches it).
func (ns *Netns) Isolate(i int) error {
	var rest []int
	for j := range ns.Names {
		if j != i {
			rest = append(rest, j)
		}
	}
	return ns.Partition([]int{i}, rest)
}

// Heal removes every cut.
func (ns *Netns) Heal() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var errs []error
	for k := range ns.blocked {
		if err := ip("-n", ns.Names[k[0]], "route", "del", "blackhole", ns.Addrs[k[1]]+"/32"); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(ns.blocked, k)
	}
	return errors.Join(errs...)
}

// Close deletes the namespaces (and with them every interface made for them).
func (ns *Netns) Close() error {
	var errs []error
	for _, name := range append(append([]string(nil), ns.Names...), ns.sw) {
		if exec.Command("ip", "netns", "pids", name).Run() != nil {
			continue // never made
		}
		if err := ip("netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	// The host's veth goes with its peer (the kernel may take a moment); make sure of it.
	if exec.Command("ip", "link", "show", ns.hostIf).Run() == nil {
		err := ip("link", "del", ns.hostIf)
		if err != nil && exec.Command("ip", "link", "show", ns.hostIf).Run() == nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
