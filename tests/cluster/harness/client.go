package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "stratacluster/gen/strata/v1"
)

// Outcome is what a client knows of a write after its call.
type Outcome int

const (
	// Acked: the node acknowledged the write at the level asked.
	Acked Outcome = iota
	// Refused: the write was certainly not applied (sent to a follower, which answered
	// FAILED_PRECONDITION, or never sent because no node could be reached).
	Refused
	// Unknown: the call failed after the write may have reached the leader's log (deadline,
	// leadership lost, connection broken): it may or may not commit, now or later.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Refused:
		return "refused"
	}
	return "unknown"
}

// LeaderHeader is the trailing metadata key with the leader's address on FAILED_PRECONDITION.
const LeaderHeader = "strata-leader"

// Client sends writes to the leader: it starts with the node it believes leads, follows the
// strata-leader hint of a FAILED_PRECONDITION, and moves to the next node when one cannot be
// reached. It never resends a write whose fate is unknown (the caller decides). Safe for
// concurrent use.
type Client struct {
	c *Cluster
	// AttemptTimeout bounds one call to one node (default 2 s × Slow()).
	AttemptTimeout time.Duration

	mu   sync.Mutex
	hint int // index into c.Nodes of the presumed leader
}

// NewClient returns a client of the cluster.
// It starts from the leader the cluster last saw (WaitLeader, or any client's acknowledged
// write).
func (c *Cluster) NewClient() *Client {
	return &Client{c: c, AttemptTimeout: 2 * time.Second * Slow(), hint: int(c.leaderHint.Load())}
}

// SetHint makes the client try node n first.
func (cl *Client) SetHint(n *Node) { cl.setHint(n.ID - 1) }

func (cl *Client) target() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.hint
}

func (cl *Client) setHint(i int) {
	cl.mu.Lock()
	cl.hint = i
	cl.mu.Unlock()
}

func (cl *Client) rotate(from int) {
	cl.mu.Lock()
	if cl.hint == from {
		cl.hint = (from + 1) % len(cl.c.Nodes)
	}
	cl.mu.Unlock()
}

// notSent reports whether an error means the call never left the client (no connection).
func notSent(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	m := st.Message()
	return strings.Contains(m, "Error while dialing") || strings.Contains(m, "connection refused") ||
		strings.Contains(m, "no such host")
}

// WriteResult is the outcome of one logical write.
type WriteResult struct {
	Outcome Outcome
	Seq     uint64 // the acknowledged sequence (Acked only)
	Node    *Node  // the node that answered last
	Err     error  // the last error (nil when Acked)
}

// do runs a write call against the presumed leader, following hints, until it is acked, its
// fate becomes unknown, or ctx ends (then Refused: nothing was ever sent to a leader that could
// have taken it, or the last attempt's fate is unknown).
func (cl *Client) do(ctx context.Context,
	call func(ctx context.Context, kv pb.KVClient, opts ...grpc.CallOption) (uint64, error)) WriteResult {
	var last error
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			if last == nil {
				last = ctx.Err()
			}
			return WriteResult{Outcome: Refused, Err: last}
		}
		i := cl.target()
		n := cl.c.Nodes[i]
		actx, cancel := context.WithTimeout(ctx, cl.AttemptTimeout)
		var trailer metadata.MD
		seq, err := call(actx, cl.c.KV(n), grpc.Trailer(&trailer))
		cancel()
		if err == nil {
			cl.setHint(i)
			cl.c.leaderHint.Store(int32(i))
			return WriteResult{Outcome: Acked, Seq: seq, Node: n}
		}
		last = fmt.Errorf("%v: %w", n, err)
		code := status.Code(err)
		switch {
		case code == codes.FailedPrecondition:
			if v := trailer.Get(LeaderHeader); len(v) > 0 {
				if ln := cl.c.NodeByAddr(v[0]); ln != nil && ln != n {
					cl.setHint(ln.ID - 1)
					continue
				}
			}
			cl.rotate(i)
			sleepCtx(ctx, 10*time.Millisecond)
		case notSent(err):
			cl.rotate(i)
			if attempt%len(cl.c.Nodes) == len(cl.c.Nodes)-1 {
				sleepCtx(ctx, 20*time.Millisecond)
			}
		case code == codes.InvalidArgument:
			return WriteResult{Outcome: Refused, Node: n, Err: last}
		default:
			// DEADLINE_EXCEEDED, UNAVAILABLE after the call went out, INTERNAL, …: the write
			// may be in the leader's log. Try another node next time.
			cl.rotate(i)
			return WriteResult{Outcome: Unknown, Node: n, Err: last}
		}
	}
}

// Put writes key=value at the given acknowledgement level (see do for the outcomes).
func (cl *Client) Put(ctx context.Context, key, value []byte, ack pb.AckLevel) WriteResult {
	return cl.do(ctx, func(ctx context.Context, kv pb.KVClient, o ...grpc.CallOption) (uint64, error) {
		r, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: value, Ack: ack}, o...)
		return r.GetSeq(), err
	})
}

// Delete deletes key at the given acknowledgement level.
func (cl *Client) Delete(ctx context.Context, key []byte, ack pb.AckLevel) WriteResult {
	return cl.do(ctx, func(ctx context.Context, kv pb.KVClient, o ...grpc.CallOption) (uint64, error) {
		r, err := kv.Delete(ctx, &pb.DeleteRequest{Key: key, Ack: ack}, o...)
		return r.GetSeq(), err
	})
}

// Write applies a batch atomically at the given acknowledgement level.
func (cl *Client) Write(ctx context.Context, muts []*pb.Mutation, ack pb.AckLevel) WriteResult {
	return cl.do(ctx, func(ctx context.Context, kv pb.KVClient, o ...grpc.CallOption) (uint64, error) {
		r, err := kv.Write(ctx, &pb.WriteRequest{Mutations: muts, Ack: ack}, o...)
		return r.GetSeq(), err
	})
}

// MustWrite retries a write until it is acknowledged or ctx ends. Only for writes that may be
// applied twice without harm (puts of the same value: the caller's data is unique per key).
func (cl *Client) MustWrite(ctx context.Context, muts []*pb.Mutation, ack pb.AckLevel) (uint64, error) {
	for {
		r := cl.Write(ctx, muts, ack)
		if r.Outcome == Acked {
			return r.Seq, nil
		}
		if ctx.Err() != nil || status.Code(errors.Unwrap(r.Err)) == codes.InvalidArgument {
			return 0, fmt.Errorf("write of %d mutations not acknowledged: %v", len(muts), r.Err)
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
}

// Get reads key on node n (any role), after minSeq is applied there, within timeout. found is
// false for NOT_FOUND; seq is the sequence the read was made at.
func (c *Cluster) Get(n *Node, key []byte, minSeq uint64, timeout time.Duration) (value []byte, found bool, seq uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := c.KV(n).Get(ctx, &pb.GetRequest{Key: key, MinSeq: minSeq})
	if status.Code(err) == codes.NotFound {
		return nil, false, 0, nil
	}
	if err != nil {
		return nil, false, 0, err
	}
	return r.Value, true, r.Seq, nil
}

// PutMut and DelMut build batch mutations.
func PutMut(key, value []byte) *pb.Mutation {
	return &pb.Mutation{Op: &pb.Mutation_Put_{Put: &pb.Mutation_Put{Key: key, Value: value}}}
}

// DelMut builds a delete mutation.
func DelMut(key []byte) *pb.Mutation {
	return &pb.Mutation{Op: &pb.Mutation_Delete_{Delete: &pb.Mutation_Delete{Key: key}}}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
