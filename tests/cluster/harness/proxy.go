package harness

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy in front of one node. Every connection to Addr() is relayed to the node.
// In the direction towards the node it reads HTTP/2 frames, so that it can flip one bit inside
// one gRPC message (ArmFlip) and limit the bandwidth (SetRate); the other direction is copied
// as it comes.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	conns    map[net.Conn]struct{} // guarded by mu: both ends of every live relay
	closed   bool
	accepted int
	rate     int64   // bytes per second towards the node; 0: unlimited
	decider  Decider // non-nil while a flip is wanted
	flips    []FlipEvent
	flipAt   []time.Time
	wg       sync.WaitGroup
}

// NewProxy listens on a free port of target's host and relays to target.
func NewProxy(target string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("proxy for %s: %w", target, err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to connect to instead of the node's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted counts the connections the proxy took.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// SetRate limits the bytes per second relayed towards the node, on each connection (0: no
// limit).
func (p *Proxy) SetRate(bytesPerSecond int64) {
	p.mu.Lock()
	p.rate = bytesPerSecond
	p.mu.Unlock()
}

func (p *Proxy) getRate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// ArmFlip asks the proxy to flip one bit in the data of the first replicated record of the
// (skip+1)-th Replicate message towards the node that carries records, after which it disarms.
// The bit is inside LogRecord.data, so only the record's CRC can reveal it.
func (p *Proxy) ArmFlip(skip int, seed int64) {
	seen := 0
	p.mu.Lock()
	p.decider = func(head []byte, total int) (int, uint, bool) {
		off, n, _, ok := RecordData(head)
		if !ok || off+n > total {
			return 0, 0, false
		}
		if seen++; seen <= skip {
			return 0, 0, false
		}
		return off + n/2, uint(seed) & 7, true
	}
	p.mu.Unlock()
}

func (p *Proxy) getDecider() Decider {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.decider
}

func (p *Proxy) flipped(e FlipEvent) {
	p.mu.Lock()
	p.decider = nil
	p.flips = append(p.flips, e)
	p.flipAt = append(p.flipAt, time.Now())
	p.mu.Unlock()
}

// Flips returns the bits flipped so far and when.
func (p *Proxy) Flips() ([]FlipEvent, []time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]FlipEvent(nil), p.flips...), append([]time.Time(nil), p.flipAt...)
}

// Close stops accepting and closes every relayed connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(1)
		go p.relay(c)
	}
}

func (p *Proxy) relay(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, true) || !p.track(server, true) {
		client.Close()
		server.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(client, server)
		done <- struct{}{}
	}()
	go func() {
		p.up(client, server)
		done <- struct{}{}
	}()
	<-done // either side ends: end both
	client.Close()
	server.Close()
	<-done
	p.track(client, false)
	p.track(server, false)
}

// up relays client→server frame by frame through an h2Flipper, at the proxy's rate.
func (p *Proxy) up(client, server net.Conn) {
	r := bufio.NewReaderSize(client, 64<<10)
	w := &rateWriter{w: server, rate: p.getRate}
	pre := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(r, pre); err != nil {
		return
	}
	if _, err := w.Write(pre); err != nil {
		return
	}
	if string(pre) != h2Preface {
		io.Copy(w, r) // not HTTP/2 from its first byte: just relay
		return
	}
	f := newH2Flipper(p.getDecider, p.flipped)
	for {
		hdr := make([]byte, h2HeaderLen)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		frame := make([]byte, h2HeaderLen+n)
		copy(frame, hdr)
		if _, err := io.ReadFull(r, frame[h2HeaderLen:]); err != nil {
			return
		}
		for _, out := range f.Frame(frame) {
			if _, err := w.Write(out); err != nil {
				return
			}
		}
	}
}

// rateWriter paces writes to rate() bytes per second.
type rateWriter struct {
	w    io.Writer
	rate func() int64
	next time.Time
}

func (rw *rateWriter) Write(b []byte) (int, error) {
	if r := rw.rate(); r > 0 {
		now := time.Now()
		if rw.next.Before(now) {
			rw.next = now
		}
		rw.next = rw.next.Add(time.Duration(float64(len(b)) / float64(r) * float64(time.Second)))
		time.Sleep(time.Until(rw.next))
	}
	return rw.w.Write(b)
}
