package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// RawUnary makes one unary gRPC call over plain HTTP/2, with a grpc-timeout header of its own
// (the deadline the server sees) while the client waits up to wait: so the test reads the
// status and message the server sends when that deadline passes, which a gRPC client, whose
// own deadline fires at the same instant, never shows. method is "/pkg.Service/Method".
func RawUnary(addr, method string, req proto.Message, serverDeadline, wait time.Duration) (codes.Code, string, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return 0, "", err
	}
	frame := make([]byte, 5+len(body))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
	copy(frame[5:], body)
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+method,
		bytes.NewReader(frame))
	if err != nil {
		return 0, "", err
	}
	hreq.Header.Set("content-type", "application/grpc")
	hreq.Header.Set("te", "trailers")
	hreq.Header.Set("grpc-timeout", strconv.FormatInt(serverDeadline.Milliseconds(), 10)+"m")
	resp, err := tr.RoundTrip(hreq)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	get := func(k string) string {
		if v := resp.Trailer.Get(k); v != "" {
			return v
		}
		return resp.Header.Get(k) // a trailers-only answer puts them in the headers
	}
	s := get("grpc-status")
	if s == "" {
		return 0, "", fmt.Errorf("%s: no grpc-status (HTTP %d)", method, resp.StatusCode)
	}
	code, err := strconv.Atoi(s)
	if err != nil {
		return 0, "", fmt.Errorf("%s: grpc-status %q", method, s)
	}
	msg, _ := url.PathUnescape(get("grpc-message"))
	return codes.Code(code), msg, nil
}
