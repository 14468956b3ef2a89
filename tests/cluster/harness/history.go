package harness

import (
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// KVInput is one operation of the register-per-key model: Get, Put (Value) or Delete.
type KVInput struct {
	Op    KVOp
	Key   string
	Value string
}

// KVOp names the operations.
type KVOp uint8

const (
	OpGet KVOp = iota
	OpPut
	OpDelete
)

// KVOutput is what a Get returned ("" for NOT_FOUND: the model's absent value; the workload
// never writes an empty value).
type KVOutput struct{ Value string }

// KVModel is porcupine's key-value model (as in porcupine's own tests), partitioned by key: a
// history is linearizable iff every key's sub-history is. The state of one partition is the
// key's value, "" when absent; Delete sets it to "".
var KVModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		m := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(KVInput).Key
			m[k] = append(m[k], op)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, m[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(KVInput)
		switch in.Op {
		case OpGet:
			return output.(KVOutput).Value == state.(string), state
		case OpPut:
			return true, in.Value
		default:
			return true, ""
		}
	},
	Equal: func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output any) string {
		in := input.(KVInput)
		switch in.Op {
		case OpGet:
			return fmt.Sprintf("get(%q) -> %q", in.Key, output.(KVOutput).Value)
		case OpPut:
			return fmt.Sprintf("put(%q, %q)", in.Key, in.Value)
		}
		return fmt.Sprintf("delete(%q)", in.Key)
	},
	DescribeState: func(s any) string { return fmt.Sprintf("%q", s.(string)) },
}

// History records operations for the linearizability check, with times from one monotonic
// clock, and keeps the highest sequence any client has seen acknowledged or read (the causal
// token: reads pass it as min_seq, see Token).
type History struct {
	begin time.Time
	token atomic.Uint64

	mu  sync.Mutex
	ops []porcupine.Operation
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{begin: time.Now()} }

// Now is the history's clock.
func (h *History) Now() int64 { return int64(time.Since(h.begin)) }

// Token is the highest sequence any client has been acknowledged or has read at. A read that
// passes it as min_seq observes every write that completed before the read began and
// everything any earlier read observed: with strata's one log, that makes reads on any node
// linearizable (strata has no read lease; a read without min_seq on a deposed leader may be
// stale, which is allowed by its contract and not what this checks).
func (h *History) Token() uint64 { return h.token.Load() }

// See raises the token to seq.
func (h *History) See(seq uint64) {
	for {
		cur := h.token.Load()
		if seq <= cur || h.token.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Write records a put (value != "") or delete of key called at call. An Acked write returns
// at ret; an Unknown one may take effect at any later time, so it never returns; a Refused one
// is not recorded (it certainly did nothing).
func (h *History) Write(client int, key, value string, del bool, call, ret int64, o Outcome) {
	if o == Refused {
		return
	}
	if o == Unknown {
		ret = math.MaxInt64
	}
	in := KVInput{Op: OpPut, Key: key, Value: value}
	if del {
		in = KVInput{Op: OpDelete, Key: key}
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call,
		Output: KVOutput{}, Return: ret})
	h.mu.Unlock()
}

// Read records a get of key that returned value ("" for NOT_FOUND).
func (h *History) Read(client int, key, value string, call, ret int64) {
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client,
		Input: KVInput{Op: OpGet, Key: key}, Call: call, Output: KVOutput{Value: value},
		Return: ret})
	h.mu.Unlock()
}

// Ops returns a copy of the operations recorded.
func (h *History) Ops() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// CheckLinearizable runs porcupine over the history. On a violation (or a check that does not
// finish within timeout) it writes porcupine's visualization to htmlPath (when not "") and
// returns an error.
func CheckLinearizable(ops []porcupine.Operation, timeout time.Duration, htmlPath string) error {
	res, info := porcupine.CheckOperationsVerbose(KVModel, ops, timeout)
	if res == porcupine.Ok {
		return nil
	}
	where := ""
	if htmlPath != "" {
		if f, err := os.Create(htmlPath); err == nil {
			if porcupine.Visualize(KVModel, info, f) == nil {
				where = "; visualization in " + htmlPath
			}
			f.Close()
		}
	}
	if res == porcupine.Unknown {
		return fmt.Errorf("linearizability check of %d operations did not finish within %v%s",
			len(ops), timeout, where)
	}
	return fmt.Errorf("history of %d operations is not linearizable%s", len(ops), where)
}
