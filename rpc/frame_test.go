package rpc

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/metadata"
)

func seedFrames() [][]byte {
	md := metadata.Pairs("k", "v", "k", "w", "bin-bin", "\x00\x01")
	var fs [][]byte
	fs = append(fs, appendHello(nil, protocolVersion, defaultWindow))
	b := appendFrameHeader(nil, frameData, flagHead|flagEnd|flagMsg, 1)
	b = appendHead(b, "/pkg.Svc/M", 12345, "json", md)
	fs = append(fs, append(b, "payload"...))
	b = appendFrameHeader(nil, frameData, flagHeader|flagStatus|flagMsg, 1<<40)
	b = appendMD(b, md)
	b = appendStatus(b, 5, "not found", []byte{1, 2}, md)
	fs = append(fs, append(b, 0xff))
	fs = append(fs, appendFrameHeader(nil, frameCancel, 0, 7), appendFrameHeader(nil, frameGoAway, 0, 0))
	fs = append(fs, append(appendFrameHeader(nil, frameWindow, 0, 3), 16))
	return fs
}

func TestFrameRoundTrip(t *testing.T) {
	fs := seedFrames()
	var f frame
	if err := decodeFrame(fs[1], &f); err != nil {
		t.Fatal(err)
	}
	if string(f.method) != "/pkg.Svc/M" || f.timeout != 12345 || string(f.subtype) != "json" ||
		len(f.md["k"]) != 2 || string(f.payload) != "payload" || f.id != 1 {
		t.Fatalf("head %+v", f)
	}
	if err := decodeFrame(fs[2], &f); err != nil {
		t.Fatal(err)
	}
	if f.code != 5 || string(f.msg) != "not found" || !bytes.Equal(f.details, []byte{1, 2}) ||
		f.trailer["bin-bin"][0] != "\x00\x01" || f.id != 1<<40 || !bytes.Equal(f.payload, []byte{0xff}) {
		t.Fatalf("reply %+v", f)
	}
	for _, b := range fs {
		if err := decodeFrame(b, &f); err != nil {
			t.Fatalf("%x: %v", b, err)
		}
	}
	// Every truncation of a frame without a message is an error, never a panic.
	for _, b := range fs {
		for n := range len(b) - 1 {
			if b[0] == frameData && b[1]&flagMsg != 0 {
				continue
			}
			if err := decodeFrame(b[:n], &f); !errors.Is(err, errFrame) {
				t.Fatalf("%x cut at %d: %v", b, n, err)
			}
		}
	}
	h := appendHello(nil, protocolVersion, defaultWindow)
	h[5] ^= 1
	if err := decodeFrame(h, &f); !errors.Is(err, errFrame) {
		t.Fatalf("hello with a bad checksum: %v", err)
	}
}

// FuzzDecodeFrame: any bytes decode to a frame or an errFrame error, and a
// decoded frame's parts lie inside the input.
func FuzzDecodeFrame(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr frame
		err := decodeFrame(b, &fr)
		if err != nil {
			if !errors.Is(err, errFrame) {
				t.Fatalf("error %v is not errFrame", err)
			}
			return
		}
		if len(fr.payload) > len(b) || len(fr.method) > len(b) {
			t.Fatal("a part longer than the frame")
		}
	})
}
