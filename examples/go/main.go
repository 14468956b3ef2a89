// A small strata client in Go: put, get, an atomic batch, a scan and a delete.
//
//	tools/dev run                          # a node on 127.0.0.1:7400
//	cd examples/go && go run . -addr 127.0.0.1:7400
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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "stratademo/stratapb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7400", "a strata-node address")
	flag.Parse()

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Keys and values are bytes. Every write is given a sequence number.
	put, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("greeting"), Value: []byte("hello, strata")})
	if err != nil {
		log.Fatal(err)
	}
	got, err := kv.Get(ctx, &pb.GetRequest{Key: []byte("greeting"), MinSeq: put.Seq})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("greeting = %s   (written at seq %d)\n", got.Value, put.Seq)

	// A batch is atomic: a reader sees all of it or none of it.
	set := func(k, v string) *pb.Mutation {
		put := &pb.Mutation_Put{Key: []byte(k), Value: []byte(v)}
		return &pb.Mutation{Op: &pb.Mutation_Put_{Put: put}}
	}
	batch, err := kv.Write(ctx, &pb.WriteRequest{Mutations: []*pb.Mutation{
		set("fruit/apple", "red"), set("fruit/banana", "yellow"), set("fruit/cherry", "dark red"),
		{Op: &pb.Mutation_Delete_{Delete: &pb.Mutation_Delete{Key: []byte("fruit/durian")}}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("batch of 4 written, last seq %d\n", batch.Seq)

	// Scan [start, end) streams the pairs from one snapshot, in key order.
	stream, err := kv.Scan(ctx, &pb.ScanRequest{Start: []byte("fruit/"), End: []byte("fruit0")})
	if err != nil {
		log.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			log.Fatal(err)
		}
		for _, p := range msg.Pairs {
			fmt.Printf("%s = %s\n", p.Key, p.Value)
		}
	}

	// A missing key is the status NOT_FOUND, not an empty value.
	if _, err := kv.Delete(ctx, &pb.DeleteRequest{Key: []byte("fruit/banana")}); err != nil {
		log.Fatal(err)
	}
	if _, err := kv.Get(ctx, &pb.GetRequest{Key: []byte("fruit/banana")}); err != nil {
		st := status.Convert(err)
		fmt.Printf("fruit/banana: %v (%s)\n", st.Code(), st.Message())
	}
}
