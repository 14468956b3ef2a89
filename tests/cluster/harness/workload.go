package harness

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "stratacluster/gen/strata/v1"
)

// Ledger remembers every write of a key that is written once only: its value and what the
// client knows of it.
type Ledger struct {
	mu sync.Mutex
	m  map[string]LedgerEntry
}

// LedgerEntry is one write of the ledger.
type LedgerEntry struct {
	Value   string
	Outcome Outcome
	Seq     uint64
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{m: map[string]LedgerEntry{}} }

// Add records a write.
func (l *Ledger) Add(key, value string, r WriteResult) {
	l.mu.Lock()
	l.m[key] = LedgerEntry{Value: value, Outcome: r.Outcome, Seq: r.Seq}
	l.mu.Unlock()
}

// Counts returns how many writes ended acked, refused and unknown.
func (l *Ledger) Counts() (acked, refused, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.m {
		switch e.Outcome {
		case Acked:
			acked++
		case Refused:
			refused++
		default:
			unknown++
		}
	}
	return
}

// Verify checks a full scan against the ledger, for the keys that start with prefix: every
// acknowledged write is there with its value; every key there was written (acknowledged, or
// of unknown fate) with that value; no refused write is there. It returns the problems (at
// most 20) as one error.
func (l *Ledger) Verify(scan []Pair, prefix string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	seen := map[string]bool{}
	for _, p := range scan {
		k := string(p.Key)
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		seen[k] = true
		e, ok := l.m[k]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%q is present but was never written", k))
		case e.Outcome == Refused:
			bad = append(bad, fmt.Sprintf("%q is present but its write was refused", k))
		case e.Value != string(p.Value):
			bad = append(bad, fmt.Sprintf("%q is %q, written as %q (%v)", k, p.Value, e.Value,
				e.Outcome))
		}
	}
	var missing []string
	for k, e := range l.m {
		if e.Outcome == Acked && !seen[k] {
			missing = append(missing, fmt.Sprintf("%q (acknowledged at sequence %d) is missing",
				k, e.Seq))
		}
	}
	sort.Strings(missing)
	bad = append(bad, missing...)
	if len(bad) == 0 {
		return nil
	}
	n := len(bad)
	if len(bad) > 20 {
		bad = bad[:20]
	}
	return fmt.Errorf("%d problems: %s", n, strings.Join(bad, "; "))
}

// Workload runs concurrent clients against a cluster until Stop: puts at Ack to a few
// contended keys and gets of them (recorded in H for the linearizability check), and puts of
// keys written once (recorded in L).
type Workload struct {
	C       *Cluster
	H       *History
	L       *Ledger
	Clients int           // concurrent clients (default 6)
	Keys    int           // contended keys (default 32)
	Ack     pb.AckLevel   // default ACK_MAJORITY
	Prefix  string        // key prefix (default "w/")
	Pace    time.Duration // pause between one client's operations (default 2 ms)
	Seed    int64

	stop    chan struct{}
	wg      sync.WaitGroup
	acked   atomic.Int64
	unknown atomic.Int64
	refused atomic.Int64
	reads   atomic.Int64
	lastAck atomic.Int64 // History.Now() of the last acknowledged write
}

// ContendedKey is the i-th contended key.
func (w *Workload) ContendedKey(i int) string { return fmt.Sprintf("%sc/%03d", w.Prefix, i) }

// UniquePrefix is the prefix of the keys written once.
func (w *Workload) UniquePrefix() string { return w.Prefix + "u/" }

// Start launches the clients.
func (w *Workload) Start() {
	if w.Clients == 0 {
		w.Clients = 6
	}
	if w.Keys == 0 {
		w.Keys = 32
	}
	if w.Ack == pb.AckLevel_ACK_DEFAULT {
		w.Ack = pb.AckLevel_ACK_MAJORITY
	}
	if w.Prefix == "" {
		w.Prefix = "w/"
	}
	if w.Pace == 0 {
		w.Pace = 2 * time.Millisecond
	}
	if w.H == nil {
		w.H = NewHistory()
	}
	if w.L == nil {
		w.L = NewLedger()
	}
	w.stop = make(chan struct{})
	for i := 0; i < w.Clients; i++ {
		w.wg.Add(1)
		go w.client(i)
	}
}

// Stop ends the clients and waits for their calls to finish.
func (w *Workload) Stop() {
	close(w.stop)
	w.wg.Wait()
}

// Stats summarizes what the clients did.
func (w *Workload) Stats() string {
	return fmt.Sprintf("writes acked %d, unknown %d, refused %d; reads %d", w.acked.Load(),
		w.unknown.Load(), w.refused.Load(), w.reads.Load())
}

// Acked is the number of acknowledged writes so far.
func (w *Workload) Acked() int64 { return w.acked.Load() }

// LastAck is the History clock of the last acknowledged write.
func (w *Workload) LastAck() int64 { return w.lastAck.Load() }

func (w *Workload) client(id int) {
	defer w.wg.Done()
	r := rand.New(rand.NewSource(w.Seed*1000 + int64(id)))
	cl := w.C.NewClient()
	cl.AttemptTimeout = time.Second * Slow()
	n := 0
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n++
		switch x := r.Intn(10); {
		case x < 4: // put a contended key
			key := w.ContendedKey(r.Intn(w.Keys))
			val := fmt.Sprintf("v%d.%d", id, n)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second*Slow())
			call := w.H.Now()
			res := cl.Put(ctx, []byte(key), []byte(val), w.Ack)
			ret := w.H.Now()
			cancel()
			w.H.Write(id, key, val, false, call, ret, res.Outcome)
			w.count(res, ret)
		case x < 7: // get a contended key on any node
			key := w.ContendedKey(r.Intn(w.Keys))
			nd := w.C.Nodes[r.Intn(len(w.C.Nodes))]
			call := w.H.Now()
			val, _, seq, err := w.C.Get(nd, []byte(key), w.H.Token(), time.Second*Slow())
			ret := w.H.Now()
			if err == nil {
				w.H.See(seq)
				w.H.Read(id, key, string(val), call, ret)
				w.reads.Add(1)
			}
		default: // write a key once
			key := fmt.Sprintf("%s%02d/%06d", w.UniquePrefix(), id, n)
			val := fmt.Sprintf("u%d.%d.%x", id, n, r.Int63())
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second*Slow())
			res := cl.Put(ctx, []byte(key), []byte(val), w.Ack)
			cancel()
			w.L.Add(key, val, res)
			w.count(res, w.H.Now())
		}
		select {
		case <-w.stop:
			return
		case <-time.After(w.Pace):
		}
	}
}

func (w *Workload) count(r WriteResult, now int64) {
	switch r.Outcome {
	case Acked:
		w.acked.Add(1)
		w.H.See(r.Seq)
		w.lastAck.Store(now)
	case Unknown:
		w.unknown.Add(1)
	default:
		w.refused.Add(1)
	}
}

// Check verifies a converged cluster's scan against what the workload did: the ledger, and
// the linearizability of the contended keys' history with a final read of every contended key
// from the scan (every node holds that scan). htmlPath receives porcupine's visualization on a
// violation.
func (w *Workload) Check(scan []Pair, timeout time.Duration, htmlPath string) error {
	if err := w.L.Verify(scan, w.UniquePrefix()); err != nil {
		return fmt.Errorf("keys written once: %w", err)
	}
	final := map[string]string{}
	for _, p := range scan {
		final[string(p.Key)] = string(p.Value)
	}
	ops := w.H.Ops()
	now := w.H.Now()
	h := &History{ops: ops}
	for i := 0; i < w.Keys; i++ {
		k := w.ContendedKey(i)
		h.Read(w.Clients, k, final[k], now, now+1)
	}
	// Every key in the contended range must be one of ours.
	for k := range final {
		if strings.HasPrefix(k, w.Prefix+"c/") {
			var i int
			if _, err := fmt.Sscanf(k[len(w.Prefix)+2:], "%d", &i); err != nil || i >= w.Keys ||
				w.ContendedKey(i) != k {
				return fmt.Errorf("key %q was never written", k)
			}
		}
	}
	return CheckLinearizable(h.Ops(), timeout, htmlPath)
}
