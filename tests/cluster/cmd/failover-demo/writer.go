package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "stratacluster/gen/strata/v1"
)

// ackRec is one acknowledged write.
type ackRec struct {
	i    int       // key index
	node int       // the member index that acknowledged it
	seq  uint64    // its sequence
	at   time.Time // when the acknowledgement arrived
}

// writer puts key i = value(i) at ACK_MAJORITY, issuing one new key every 1/rate seconds.
// Each write goes to the node believed to lead, follows the strata-leader hint of a follower,
// moves on from a node that cannot be reached, and is retried (the same key and value: a put
// applied twice changes nothing) until it is acknowledged or its time runs out; then its fate
// is unknown (it may or may not have been applied). Every acknowledgement is recorded.
type writer struct {
	d         *demo
	rate      float64
	prefix    string
	perWrite  time.Duration // how long one write may keep trying
	attemptTO time.Duration // one call to one node

	target   atomic.Int32 // member index of the presumed leader
	downMu   sync.Mutex
	downTill []time.Time // a member that refused a connection is skipped until then

	mu       sync.Mutex
	acks     []ackRec
	issued   int
	gaveUp   []int
	retries  int // calls that failed and were tried again
	maxSeq   uint64
	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

func (w *writer) key(i int) []byte   { return []byte(fmt.Sprintf("%s%08d", w.prefix, i)) }
func (w *writer) value(i int) []byte { return []byte(fmt.Sprintf("value-%d-of-%s", i, w.prefix)) }

func (w *writer) run(leader int) {
	w.target.Store(int32(leader))
	w.downTill = make([]time.Time, len(w.d.ms))
	w.stop = make(chan struct{})
	jobs := make(chan int)
	const workers = 64
	for k := 0; k < workers; k++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := range jobs {
				w.write(i)
			}
		}()
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(jobs)
		every := time.Duration(float64(time.Second) / w.rate)
		next := time.Now()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case jobs <- i: // blocks while every worker is busy: the rate drops, nothing piles up
			}
			w.mu.Lock()
			w.issued++
			w.mu.Unlock()
			next = next.Add(every)
			if d := time.Until(next); d > 0 {
				select {
				case <-w.stop:
					return
				case <-time.After(d):
				}
			} else if d < -time.Second {
				next = time.Now() // after a stall, carry on at the rate rather than in a burst
			}
		}
	}()
}

// halt stops issuing new writes and waits for those in progress (each bounded by perWrite).
func (w *writer) halt() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
}

func (w *writer) markDown(m int) {
	w.downMu.Lock()
	w.downTill[m] = time.Now().Add(100 * time.Millisecond)
	w.downMu.Unlock()
}

func (w *writer) isDown(m int) bool {
	w.downMu.Lock()
	defer w.downMu.Unlock()
	return time.Now().Before(w.downTill[m])
}

// moveOn makes the next member that is not known to be down the target, if the target is
// still from.
func (w *writer) moveOn(from int) {
	n := len(w.d.ms)
	to := (from + 1) % n
	for k := 0; k < n-1 && w.isDown(to); k++ {
		to = (to + 1) % n
	}
	w.target.CompareAndSwap(int32(from), int32(to))
}

// notSent reports whether the call never reached the node (no connection to it).
func notSent(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable
}

func (w *writer) write(i int) {
	key, val := w.key(i), w.value(i)
	deadline := time.Now().Add(w.perWrite)
	for time.Now().Before(deadline) {
		m := int(w.target.Load())
		ctx, cancel := context.WithTimeout(context.Background(), w.attemptTO)
		var tr metadata.MD
		r, err := w.d.kv[m].Put(ctx, &pb.PutRequest{Key: key, Value: val,
			Ack: pb.AckLevel_ACK_MAJORITY}, grpc.Trailer(&tr))
		cancel()
		if err == nil {
			w.mu.Lock() // the time taken under the lock keeps acks in time order
			w.acks = append(w.acks, ackRec{i: i, node: m, seq: r.Seq, at: time.Now()})
			w.maxSeq = max(w.maxSeq, r.Seq)
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.retries++
		w.mu.Unlock()
		switch {
		case status.Code(err) == codes.FailedPrecondition:
			// A follower (or a leader that lost its majority): it names the leader if it
			// knows one. A hint at a node that just refused a connection is stale.
			if h := tr.Get("strata-leader"); len(h) > 0 {
				if to := w.d.byPeer(h[0]); to >= 0 && to != m && !w.isDown(to) {
					w.target.CompareAndSwap(int32(m), int32(to))
					continue
				}
			}
			w.moveOn(m)
		case notSent(err):
			w.markDown(m)
			w.moveOn(m)
		default:
			// DEADLINE_EXCEEDED and the like: the write may be in that node's log. Trying
			// again (the same key and value) is harmless; try another node.
			w.moveOn(m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.mu.Lock()
	w.gaveUp = append(w.gaveUp, i)
	w.mu.Unlock()
}

// snapshot returns a copy of the acknowledgements so far.
func (w *writer) snapshot() []ackRec {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ackRec(nil), w.acks...)
}

// firstAckAfter is the earliest acknowledgement after t by a member other than not.
func (w *writer) firstAckAfter(t time.Time, not int) (ackRec, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best ackRec
	found := false
	for k := len(w.acks) - 1; k >= 0 && w.acks[k].at.After(t); k-- {
		if a := w.acks[k]; a.node != not && (!found || a.at.Before(best.at)) {
			best, found = a, true
		}
	}
	return best, found
}

// lastAckBefore is the latest acknowledgement at or before t.
func (w *writer) lastAckBefore(t time.Time) (ackRec, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := len(w.acks) - 1; k >= 0; k-- {
		if !w.acks[k].at.After(t) {
			return w.acks[k], true
		}
	}
	return ackRec{}, false
}
