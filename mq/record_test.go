package mq

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	var buf []byte
	bodies := [][]byte{{}, []byte("a"), bytes.Repeat([]byte("xy"), 1000)}
	for _, b := range bodies {
		var err error
		if buf, err = AppendRecord(buf, b); err != nil {
			t.Fatal(err)
		}
	}
	off := 0
	for i, want := range bodies {
		got, n, err := DecodeRecord(buf[off:], int64(off))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d: body differs", i)
		}
		off += n
	}
	if off != len(buf) {
		t.Fatalf("consumed %d of %d bytes", off, len(buf))
	}
}

func TestRecordDamage(t *testing.T) {
	rec, err := AppendRecord(nil, []byte("hello, queue"))
	if err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut < len(rec); cut++ { // every torn tail
		if _, _, err := DecodeRecord(rec[:cut], 100); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: err %v, want ErrCorrupt", cut, err)
		}
	}
	for i := range rec { // every flipped bit in every byte
		for bit := range 8 {
			bad := bytes.Clone(rec)
			bad[i] ^= 1 << bit
			_, _, err := DecodeRecord(bad, 7)
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset != 7 {
				t.Fatalf("byte %d bit %d flipped: err %v, want *CorruptError at 7", i, bit, err)
			}
		}
	}
	if _, err := AppendRecord(nil, make([]byte, MaxRecordBody+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized body: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	rec, _ := AppendRecord(nil, []byte("seed"))
	f.Add(rec)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		body, n, err := DecodeRecord(b, 0)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, _ := AppendRecord(nil, body)
		if !bytes.Equal(again, b[:n]) {
			t.Fatal("decoded record does not re-encode to the same bytes")
		}
	})
}
