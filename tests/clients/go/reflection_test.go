package stratatest

// Server reflection, as a generic tool uses it: list the services, fetch strata.v1.KV's file
// descriptor, and call Put, Get and Scan with messages built from that descriptor alone (no
// generated code). Both grpc.reflection.v1 and v1alpha are exercised: their messages are
// identical on the wire, so the v1alpha path converts through bytes and shares the checks.

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// reflector sends one reflection request on an open stream and returns the answer.
type reflector func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error)

func openV1(t *testing.T, conn *grpc.ClientConn) reflector {
	s, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.CloseSend() })
	return func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		if err := s.Send(req); err != nil {
			return nil, err
		}
		return s.Recv()
	}
}

func openV1alpha(t *testing.T, conn *grpc.ClientConn) reflector {
	s, err := rpbalpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.CloseSend() })
	return func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		raw, err := proto.Marshal(req)
		if err != nil {
			return nil, err
		}
		areq := &rpbalpha.ServerReflectionRequest{}
		if err := proto.Unmarshal(raw, areq); err != nil {
			return nil, err
		}
		if err := s.Send(areq); err != nil {
			return nil, err
		}
		aresp, err := s.Recv()
		if err != nil {
			return nil, err
		}
		if raw, err = proto.Marshal(aresp); err != nil {
			return nil, err
		}
		resp := &rpb.ServerReflectionResponse{}
		return resp, proto.Unmarshal(raw, resp)
	}
}

// resolve asks for the file defining symbol and builds a registry from the answer.
func resolve(t *testing.T, r reflector, symbol string) *protoregistry.Files {
	t.Helper()
	resp, err := r(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: symbol}})
	if err != nil {
		t.Fatalf("FileContainingSymbol %s: %v", symbol, err)
	}
	return filesOf(t, resp, symbol)
}

func filesOf(t *testing.T, resp *rpb.ServerReflectionResponse, what string) *protoregistry.Files {
	t.Helper()
	fdr := resp.GetFileDescriptorResponse()
	if fdr == nil || len(fdr.FileDescriptorProto) == 0 {
		t.Fatalf("%s: no file descriptor in the answer: %v", what, resp)
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, raw := range fdr.FileDescriptorProto {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			t.Fatalf("%s: a file descriptor does not parse: %v", what, err)
		}
		set.File = append(set.File, fd)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("%s: the descriptors do not form a valid set: %v", what, err)
	}
	return files
}

// dynamicCall invokes a unary method with a message built from its descriptor.
func dynamicCall(t *testing.T, conn *grpc.ClientConn, m protoreflect.MethodDescriptor,
	fields map[string]protoreflect.Value) (*dynamicpb.Message, error) {
	t.Helper()
	req := dynamicpb.NewMessage(m.Input())
	for name, v := range fields {
		f := m.Input().Fields().ByName(protoreflect.Name(name))
		if f == nil {
			t.Fatalf("%s has no field %s", m.Input().FullName(), name)
		}
		req.Set(f, v)
	}
	resp := dynamicpb.NewMessage(m.Output())
	method := fmt.Sprintf("/%s/%s", m.Parent().FullName(), m.Name())
	return resp, conn.Invoke(ctx(t), method, req, resp)
}

func field(m *dynamicpb.Message, name string) protoreflect.Value {
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
}

func testReflection(t *testing.T, open func(*testing.T, *grpc.ClientConn) reflector,
	prefix, reflectionService string) {
	conn := dial(t, shared.addr)
	r := open(t, conn)

	resp, err := r(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err != nil {
		t.Fatalf("ListServices: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"strata.v1.KV", "strata.v1.Admin", "grpc.health.v1.Health",
		reflectionService} {
		if !slices.Contains(names, want) {
			t.Errorf("ListServices %v lacks %s", names, want)
		}
	}

	files := resolve(t, r, "strata.v1.KV")
	d, err := files.FindDescriptorByName("strata.v1.KV")
	if err != nil {
		t.Fatalf("strata.v1.KV not in its own file: %v", err)
	}
	kv, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		t.Fatalf("strata.v1.KV is a %T, not a service", d)
	}
	var methods []string
	for i := 0; i < kv.Methods().Len(); i++ {
		methods = append(methods, string(kv.Methods().Get(i).Name()))
	}
	if !slices.Equal(methods, []string{"Put", "Get", "Delete", "Write", "Scan"}) {
		t.Errorf("KV methods %v", methods)
	}
	put, get, scan := kv.Methods().ByName("Put"), kv.Methods().ByName("Get"),
		kv.Methods().ByName("Scan")
	if !scan.IsStreamingServer() || scan.IsStreamingClient() || put.IsStreamingServer() {
		t.Errorf("streaming flags: Scan %v/%v, Put %v", scan.IsStreamingClient(),
			scan.IsStreamingServer(), put.IsStreamingServer())
	}
	// The descriptors keep their comments (what `grpcurl describe` shows).
	loc := put.ParentFile().SourceLocations().ByDescriptor(put)
	if !strings.Contains(loc.LeadingComments, "Set key to value") {
		t.Errorf("Put's leading comment is %q", loc.LeadingComments)
	}

	// Put and Get with dynamic messages only.
	key := []byte(prefix + "/key\x00\xff")
	presp, err := dynamicCall(t, conn, put, map[string]protoreflect.Value{
		"key": protoreflect.ValueOfBytes(key), "value": protoreflect.ValueOfBytes([]byte("dyn")),
		"ack": protoreflect.ValueOfEnum(put.Input().Fields().ByName("ack").Enum().Values().
			ByName("ACK_LEADER").Number())})
	if err != nil {
		t.Fatalf("dynamic Put: %v", err)
	}
	seq := field(presp, "seq").Uint()
	if seq == 0 {
		t.Fatal("dynamic Put answered seq 0")
	}
	gresp, err := dynamicCall(t, conn, get, map[string]protoreflect.Value{
		"key": protoreflect.ValueOfBytes(key), "min_seq": protoreflect.ValueOfUint64(seq)})
	if err != nil {
		t.Fatalf("dynamic Get: %v", err)
	}
	if v := field(gresp, "value").Bytes(); string(v) != "dyn" || field(gresp, "seq").Uint() < seq {
		t.Fatalf("dynamic Get: %v", gresp)
	}
	_, err = dynamicCall(t, conn, get, map[string]protoreflect.Value{
		"key": protoreflect.ValueOfBytes([]byte(prefix + "/missing"))})
	wantCode(t, err, codes.NotFound, "dynamic Get of a missing key")

	// The dynamic write is what the generated stubs read.
	if v := newClient(t, shared.addr).get(key); string(v) != "dyn" {
		t.Fatalf("generated Get of the dynamic Put: %q", v)
	}

	// A server-streaming Scan with dynamic messages.
	stream, err := conn.NewStream(ctx(t), &grpc.StreamDesc{ServerStreams: true},
		"/strata.v1.KV/Scan")
	if err != nil {
		t.Fatal(err)
	}
	sreq := dynamicpb.NewMessage(scan.Input())
	sreq.Set(scan.Input().Fields().ByName("start"), protoreflect.ValueOfBytes([]byte(prefix+"/")))
	sreq.Set(scan.Input().Fields().ByName("end"), protoreflect.ValueOfBytes([]byte(prefix+"0")))
	if err := stream.SendMsg(sreq); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var keys []string
	for {
		m := dynamicpb.NewMessage(scan.Output())
		if err := stream.RecvMsg(m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("dynamic Scan: %v", err)
		}
		pairs := field(m, "pairs").List()
		for i := 0; i < pairs.Len(); i++ {
			p := pairs.Get(i).Message()
			keys = append(keys, string(p.Get(p.Descriptor().Fields().ByName("key")).Bytes()))
		}
	}
	if !slices.Equal(keys, []string{string(key)}) {
		t.Fatalf("dynamic Scan keys %q", keys)
	}

	// Other ways in: a message symbol, a method symbol, a file name.
	for _, sym := range []string{"strata.v1.PutRequest", "strata.v1.KV.Put"} {
		if _, err := resolve(t, r, sym).FindDescriptorByName("strata.v1.PutRequest"); err != nil {
			t.Errorf("%s: %v", sym, err)
		}
	}
	resp, err = r(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{
			FileByFilename: "strata/v1/admin.proto"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := filesOf(t, resp, "admin.proto").FindDescriptorByName("strata.v1.Admin"); err != nil {
		t.Errorf("admin.proto: %v", err)
	}
	// An unknown symbol is an error answer on the same stream, which stays usable.
	resp, err = r(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "strata.v1.NoSuchThing"}})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetErrorResponse(); e == nil || codes.Code(e.ErrorCode) != codes.NotFound {
		t.Errorf("unknown symbol: %v (want an error response with NOT_FOUND)", resp)
	}
	resolve(t, r, "strata.v1.Admin")
}

func TestReflectionV1(t *testing.T) {
	testReflection(t, openV1, "refl1", "grpc.reflection.v1.ServerReflection")
}

func TestReflectionV1alpha(t *testing.T) {
	testReflection(t, openV1alpha, "refl1alpha", "grpc.reflection.v1alpha.ServerReflection")
}
