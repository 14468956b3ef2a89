package harness

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	pb "stratacluster/gen/strata/v1"
)

// Key is the i-th key of a load: prefix + 8 decimal digits (so keys sort as their numbers).
func Key(prefix string, i int) []byte { return []byte(fmt.Sprintf("%s%08d", prefix, i)) }

// Values makes the value of key i of a load: a deterministic function of the seed and i, of
// length min..max, with every byte value (NUL and 0xFF included).
func Values(seed int64, minLen, maxLen int) func(i int) []byte {
	return func(i int) []byte {
		r := rand.New(rand.NewSource(seed ^ int64(i)*0x5DEECE66D))
		b := make([]byte, minLen+r.Intn(maxLen-minLen+1))
		r.Read(b)
		return b
	}
}

// Load writes the keys Key(prefix, i), i in [from, to), with value(i): in batches of `batch`
// keys through Write, except that batch 1 uses Put. `writers` clients work concurrently,
// taking the next batch as they go. Every batch is retried until acknowledged at ack (the
// values never change, so a batch applied twice is harmless). Done counts the keys
// acknowledged so far, if not nil.
func (c *Cluster) Load(ctx context.Context, prefix string, from, to, batch, writers int,
	ack pb.AckLevel, value func(int) []byte, done *atomic.Int64) error {
	var next atomic.Int64
	next.Store(int64(from))
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.NewClient()
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= to {
					return
				}
				hi := min(lo+batch, to)
				var muts []*pb.Mutation
				for i := lo; i < hi; i++ {
					muts = append(muts, PutMut(Key(prefix, i), value(i)))
				}
				var err error
				if batch == 1 {
					err = c.mustPut(ctx, cl, Key(prefix, lo), value(lo), ack)
				} else {
					_, err = cl.MustWrite(ctx, muts, ack)
				}
				if err != nil {
					errs <- fmt.Errorf("keys %d..%d: %w", lo, hi-1, err)
					return
				}
				if done != nil {
					done.Add(int64(hi - lo))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (c *Cluster) mustPut(ctx context.Context, cl *Client, key, value []byte, ack pb.AckLevel) error {
	for {
		r := cl.Put(ctx, key, value, ack)
		if r.Outcome == Acked {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("put not acknowledged: %v", r.Err)
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
}

// VerifyLoad checks that scan holds exactly the keys Key(prefix, i), i in [from, to), with
// value(i), among its keys with that prefix.
func VerifyLoad(scan []Pair, prefix string, from, to int, value func(int) []byte) error {
	want := from
	var bad []string
	for _, p := range scan {
		if !bytes.HasPrefix(p.Key, []byte(prefix)) {
			continue
		}
		if want >= to || !bytes.Equal(p.Key, Key(prefix, want)) {
			bad = append(bad, fmt.Sprintf("unexpected key %s (expected %s)", short(p.Key),
				Key(prefix, want)))
			if len(bad) > 10 {
				break
			}
			continue
		}
		if !bytes.Equal(p.Value, value(want)) {
			bad = append(bad, fmt.Sprintf("%s has a wrong value: %s", p.Key, short(p.Value)))
		}
		want++
	}
	if want != to && len(bad) == 0 {
		bad = append(bad, fmt.Sprintf("keys %s.. missing (%d of %d present)", Key(prefix, want),
			want-from, to-from))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d problems with %s*: %v", len(bad), prefix, bad)
	}
	return nil
}

// SetDeadline fails the test and kills every node if it still runs after d: every call and
// wait of the harness then ends quickly, and the test's cleanup reports what it had.
// d is multiplied by Slow(), but kept 20 s short of the test binary's own timeout, if the
// test has one (so that the cleanup runs and prints the logs).
func (c *Cluster) SetDeadline(d time.Duration) {
	d *= Slow()
	if td, ok := c.T.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := td.Deadline(); ok && time.Until(end)-20*time.Second < d {
			d = max(time.Until(end)-20*time.Second, time.Second)
		}
	}
	timer := time.AfterFunc(d, func() {
		c.T.Errorf("the test's deadline of %v passed: killing the cluster (%s)", d,
			c.Describe())
		c.cancel()
		for _, n := range c.Nodes {
			n.Kill()
		}
	})
	c.T.Cleanup(func() { timer.Stop() })
}
