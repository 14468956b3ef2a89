// A small strata client in Go: put, get, an atomic batch, a scan and a delete.
//
//	tools/dev run                          # a node on 127.0.0.1:7400
//	cd examples/go && go run . -addr 127.0.0.1:7400
//
// In a cluster, give any or all of its nodes (-addr 127.0.0.1:7401,127.0.0.1:7402,...): every
// call goes through client.call, which follows the leader and rides out an election.
//
// stratapb/ holds the code generated from proto/strata/v1/kv.proto (committed, so that `go run`
// needs no protoc); generate.sh regenerates it.
package main

//go:generate ./generate.sh

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "stratademo/stratapb"
)

// client is a KV stub that follows the leader across the nodes of a cluster (or talks to one
// node). call(fn) runs fn with a fresh 5 s deadline, retrying at most 10 times:
//   - FAILED_PRECONDITION naming the leader (trailing metadata "strata-leader"): this node does
//     not lead; connect to the leader and retry at once.
//   - UNAVAILABLE (node down or shutting down, leadership lost), DEADLINE_EXCEEDED on a read,
//     or FAILED_PRECONDITION naming no leader on a write (an election is under way): wait a
//     little and try the next address.
//
// Other errors (NotFound, InvalidArgument, ...) and the last one are returned.
type client struct {
	addrs   []string
	next    int
	conn    *grpc.ClientConn
	kv      pb.KVClient
	trailer metadata.MD // every call's trailing metadata lands here
}

const read, write = true, false

func (c *client) connect(addr string) error {
	if c.conn != nil {
		c.conn.Close()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.Trailer(&c.trailer)))
	if err != nil {
		return err
	}
	c.conn, c.kv = conn, pb.NewKVClient(conn)
	return nil
}

func (c *client) call(isRead bool, fn func(ctx context.Context, kv pb.KVClient) error) error {
	// Besides UNAVAILABLE: a write to a node that knows no leader yet, a read that timed out.
	retry := codes.FailedPrecondition
	if isRead {
		retry = codes.DeadlineExceeded
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.trailer = nil
		err := fn(ctx, c.kv)
		cancel()
		code, leader := status.Code(err), c.trailer.Get("strata-leader")
		switch {
		case err == nil || attempt == 9:
			return err
		case code == codes.FailedPrecondition && len(leader) > 0:
			err = c.connect(leader[0])
		case code == codes.Unavailable || code == retry:
			// 50 ms, doubling up to 0.5 s: about 3 s of waiting in all.
			time.Sleep(min(50*time.Millisecond<<attempt, 500*time.Millisecond))
			c.next = (c.next + 1) % len(c.addrs)
			err = c.connect(c.addrs[c.next])
		default:
			return err
		}
		if err != nil {
			return err
		}
	}
}

func main() {
	addrs := flag.String("addr", "127.0.0.1:7400",
		"strata-node addresses, comma-separated (any node of a cluster)")
	flag.Parse()

	c := &client{addrs: strings.Split(*addrs, ",")}
	if err := c.connect(c.addrs[0]); err != nil {
		log.Fatal(err)
	}
	defer func() { c.conn.Close() }()

	// Keys and values are bytes. Every write is given a sequence number. A Put or Delete
	// retried after UNAVAILABLE may have been applied twice; that leaves the same result.
	var put *pb.PutResponse
	err := c.call(write, func(ctx context.Context, kv pb.KVClient) (err error) {
		req := &pb.PutRequest{Key: []byte("greeting"), Value: []byte("hello, strata")}
		put, err = kv.Put(ctx, req)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	var got *pb.GetResponse
	err = c.call(read, func(ctx context.Context, kv pb.KVClient) (err error) {
		got, err = kv.Get(ctx, &pb.GetRequest{Key: []byte("greeting"), MinSeq: put.Seq})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("greeting = %s   (written at seq %d)\n", got.Value, put.Seq)

	// A batch is atomic: a reader sees all of it or none of it. Retried after UNAVAILABLE (the
	// old leader may have committed it after all), it may be applied twice: harmless for puts
	// and deletes like these, but a batch must not rely on being applied once.
	set := func(k, v string) *pb.Mutation {
		put := &pb.Mutation_Put{Key: []byte(k), Value: []byte(v)}
		return &pb.Mutation{Op: &pb.Mutation_Put_{Put: put}}
	}
	var batch *pb.WriteResponse
	err = c.call(write, func(ctx context.Context, kv pb.KVClient) (err error) {
		batch, err = kv.Write(ctx, &pb.WriteRequest{Mutations: []*pb.Mutation{
			set("fruit/apple", "red"), set("fruit/banana", "yellow"), set("fruit/cherry", "dark red"),
			{Op: &pb.Mutation_Delete_{Delete: &pb.Mutation_Delete{Key: []byte("fruit/durian")}}},
		}})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("batch of 4 written, last seq %d\n", batch.Seq)

	// Scan [start, end) streams the pairs from one snapshot, in key order. The whole stream is
	// read inside call, so that a retry starts it over. MinSeq makes any node that answers wait
	// until it has applied the batch.
	var pairs []*pb.KeyValue
	err = c.call(read, func(ctx context.Context, kv pb.KVClient) error {
		pairs = nil
		stream, err := kv.Scan(ctx, &pb.ScanRequest{Start: []byte("fruit/"), End: []byte("fruit0"),
			MinSeq: batch.Seq})
		for err == nil {
			var msg *pb.ScanResponse
			if msg, err = stream.Recv(); err == nil {
				pairs = append(pairs, msg.Pairs...)
			}
		}
		if err == io.EOF {
			return nil
		}
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pairs {
		fmt.Printf("%s = %s\n", p.Key, p.Value)
	}

	// A missing key is the status NOT_FOUND, not an empty value.
	var del *pb.DeleteResponse
	err = c.call(write, func(ctx context.Context, kv pb.KVClient) (err error) {
		del, err = kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("fruit/banana")})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	err = c.call(read, func(ctx context.Context, kv pb.KVClient) error {
		_, err := kv.Get(ctx, &pb.GetRequest{Key: []byte("fruit/banana"), MinSeq: del.Seq})
		return err
	})
	if err != nil {
		st := status.Convert(err)
		fmt.Printf("fruit/banana: %v (%s)\n", st.Code(), st.Message())
	}
}
