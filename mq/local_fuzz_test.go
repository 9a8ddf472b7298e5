package mq

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func FuzzDecodeMsg(f *testing.F) {
	b, _ := encodeMsg(&logMsg{Seq: 7, Published: 1, NotBefore: 2, Priority: 3, ID: "id", Key: "k",
		Header: Header{"A": {"x", ""}}, Data: []byte("data")})
	f.Add(b)
	f.Add([]byte{recMsg})
	f.Add(encodeDelete(3))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMsg(b, true)
		if err != nil {
			return
		}
		again, err := encodeMsg(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		m2, err := decodeMsg(again, true)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v, %+v, %v", m, m2, err)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add((&event{Type: evDeliver, Seq: 1, Attempt: 2, Owner: owner{1, 2, 3}, Time: 4}).encode())
	f.Add([]byte{evAck})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvent(b)
		if err != nil {
			return
		}
		if !bytes.Equal(e.encode(), b) {
			t.Fatal("event does not re-encode to the same bytes")
		}
	})
}

func FuzzFileHeader(f *testing.F) {
	f.Add(fileHeader{Kind: kindLog, A: 1, B: 1}.encode())
	f.Add([]byte(fileMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := validateFileHeader(b, "f", kindLog)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v is neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		if !bytes.Equal(h.encode(), b[:fileHeaderSize]) {
			t.Fatal("header does not re-encode to the same bytes")
		}
	})
}

// FuzzLogFile feeds arbitrary bytes as a stream's log file to Check and to
// recovery (Open, Read, publish): errors are typed, nothing panics or
// hangs.
func FuzzLogFile(f *testing.F) {
	rec1, _ := encodeMsg(&logMsg{Seq: 1, Data: []byte("a")})
	rec2, _ := encodeMsg(&logMsg{Seq: 2, Data: []byte("b")})
	good := fileHeader{Kind: kindLog, A: 1, B: 1}.encode()
	good, _ = AppendRecord(good, rec1)
	good, _ = AppendRecord(good, rec2)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(append(bytes.Clone(good), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		addr := fileURL(dir)
		q, err := Open(tctx(t), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		mustStream(t, q, StreamConfig{Name: "s"})
		q.Close()
		if err := os.WriteFile(filepath.Join(dir, "streams", "s", logName(1)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(tctx(t), dir); err != nil {
			t.Fatalf("Check: %v", err)
		}
		q2, err := Open(tctx(t), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer q2.Close()
		if _, err := q2.Read(tctx(t), "s", 0, 100); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Read: %v", err)
		}
		if _, err := q2.Publish(tctx(t), "s", []byte("x"), nil); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Publish: %v", err)
		}
	})
}
