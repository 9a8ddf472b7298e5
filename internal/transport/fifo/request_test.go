//go:build linux

package fifo_test

import (
	"bytes"
	"testing"

	"github.com/ipcgo/ipc/internal/transport/fifo"
)

func request(id byte) []byte {
	r := make([]byte, fifo.ReqSize)
	copy(r, "IPCF")
	r[4], r[5], r[8] = fifo.Version, 1, id
	return r
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestNextRequest: the control FIFO's reader finds the requests among bytes
// that others wrote, including the head of a request and no more.
func TestNextRequest(t *testing.T) {
	junk := bytes.Repeat([]byte{0x17}, 37)
	for _, tc := range []struct {
		name string
		in   []byte
		ids  []byte
		left int // bytes kept for the next read
	}{
		{"two requests", cat(request(1), request(2)), []byte{1, 2}, 0},
		{"junk first", cat(junk, request(1)), []byte{1}, 0},
		{"junk between", cat(request(1), junk, request(2)), []byte{1, 2}, 0},
		{"the head of a request first", cat(request(9)[:32], request(1)), []byte{1}, 0},
		{"the head of a request last", cat(request(1), request(2)[:20]), []byte{1}, 20},
		{"a long head of a request first", cat(request(9)[:61], request(1)), []byte{1}, 0},
		{"junk ending in a magic's start", cat(junk, []byte("IP")), nil, 3},
		{"only junk", junk, nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []byte
			off := fifo.NextRequest(tc.in, func(req []byte) { ids = append(ids, req[8]) })
			if !bytes.Equal(ids, tc.ids) || len(tc.in)-off != tc.left {
				t.Fatalf("requests %v, %d bytes left; want %v, %d", ids, len(tc.in)-off, tc.ids, tc.left)
			}
		})
	}
}

// FuzzNextRequest: whatever the bytes, the reader hands out only 64-byte
// records that begin with the magic and hold no other, keeps less than a
// request and the start of a magic, and a request appended after them is
// found.
func FuzzNextRequest(f *testing.F) {
	f.Add(cat(request(1), request(2)))
	f.Add(cat(request(9)[:32], request(1)))
	f.Add([]byte("IPCFIPCFIPCF"))
	f.Add(bytes.Repeat([]byte{0x17}, 100))
	f.Fuzz(func(t *testing.T, in []byte) {
		check := func(req []byte) {
			if len(req) != fifo.ReqSize || string(req[:4]) != "IPCF" || bytes.Contains(req[1:], []byte("IPCF")) {
				t.Fatalf("handed out %q", req)
			}
		}
		off := fifo.NextRequest(in, check)
		if off < 0 || off > len(in) || len(in)-off >= fifo.ReqSize+3 {
			t.Fatalf("used %d of %d bytes", off, len(in))
		}
		// What is kept, then a request: the request is found.
		rest := cat(in[off:], request(0xEE))
		found := false
		fifo.NextRequest(rest, func(req []byte) {
			check(req)
			found = found || bytes.Equal(req, request(0xEE))
		})
		if !found {
			t.Fatalf("a request after %q was not found", in[off:])
		}
	})
}
